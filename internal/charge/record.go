package charge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// maxRecordBatch bounds how many outcomes one transaction records, so that a
// transaction stays short (milliseconds) however many workers are waiting.
const maxRecordBatch = 128

// recorder writes the outcomes of exchanges by group commit: a worker whose
// outcome is ready while another worker's transaction is running queues it, and
// the next transaction records everything queued, each outcome exactly as it
// would be recorded alone (its attempt, invoice, subscription and dunning case
// change together or not at all). One commit — one fsync on SQLite — then
// carries many charges instead of one. No worker waits for a timer: a lone
// outcome is committed at once.
//
// If a grouped transaction fails, each of its outcomes is retried in a
// transaction of its own, so one outcome that cannot be written (a deadlock
// with a webhook, a failing hook) never holds back the others.
type recorder struct {
	mu      sync.Mutex
	queue   []*pendingOutcome
	writing bool // a leader is committing; new outcomes queue behind it
}

// pendingOutcome is one attempt's outcome waiting to be committed.
type pendingOutcome struct {
	a   *models.ChargeAttempt
	r   store.AttemptResult
	now time.Time
	// lead is sent true to make the receiver commit the next batch, false when
	// another worker committed (or failed to commit) its outcome.
	lead    chan bool
	warning string
	err     error
}

// record commits one outcome (FinishAttempt, then the invoice, subscription and
// hook) and returns the warning of ApplyToInvoice, ErrLeaseLost when the
// attempt's outcome was written by someone else first, or the error that kept
// it from being written.
func (e *Engine) record(ctx context.Context, a *models.ChargeAttempt, r store.AttemptResult, now time.Time) (string, error) {
	p := &pendingOutcome{a: a, r: r, now: now, lead: make(chan bool, 1)}
	rec := &e.rec
	rec.mu.Lock()
	rec.queue = append(rec.queue, p)
	if rec.writing {
		rec.mu.Unlock()
		if lead := <-p.lead; !lead {
			return p.warning, p.err
		}
		rec.mu.Lock()
	}
	rec.writing = true
	n := min(len(rec.queue), maxRecordBatch)
	batch := make([]*pendingOutcome, n)
	copy(batch, rec.queue)
	rec.queue = append(rec.queue[:0], rec.queue[n:]...)
	rec.mu.Unlock()

	e.commitOutcomes(ctx, batch)

	rec.mu.Lock()
	if len(rec.queue) > 0 {
		rec.queue[0].lead <- true // the oldest waiter commits the next batch
	} else {
		rec.writing = false
	}
	rec.mu.Unlock()
	for _, q := range batch {
		if q != p {
			q.lead <- false
		}
	}
	return p.warning, p.err
}

// commitOutcomes records a batch in one transaction, or each outcome alone if
// that fails. Attempts are restored to their claimed state when a transaction
// that changed them rolls back.
func (e *Engine) commitOutcomes(ctx context.Context, batch []*pendingOutcome) {
	claimed := make([]models.ChargeAttempt, len(batch))
	for i, p := range batch {
		claimed[i] = *p.a
	}
	write := func(ps []*pendingOutcome) error {
		return e.opts.Store.InTx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
			for _, p := range ps {
				p.warning, p.err = "", nil
			}
			for len(ps) > 0 {
				n := successRun(tx, ps)
				if n < 2 {
					if err := e.writeOne(tx, ps[0]); err != nil {
						return err
					}
					ps = ps[1:]
					continue
				}
				if err := e.writeSuccesses(tx, ps[:n]); err != nil {
					return err
				}
				ps = ps[n:]
			}
			failpoint.Hit(failpoint.ChargeBeforeCommit)
			return nil
		})
	}
	err := write(batch)
	if err == nil {
		return
	}
	if len(batch) == 1 {
		*batch[0].a = claimed[0]
		batch[0].err = err
		return
	}
	for i, p := range batch {
		*p.a = claimed[i]
		if err := write([]*pendingOutcome{p}); err != nil {
			*p.a = claimed[i]
			p.err = err
		}
	}
}

// writeOne records one outcome with its own statements: FinishAttempt, then
// the invoice, subscription and hook (applyOutcome).
func (e *Engine) writeOne(tx *store.Tx, p *pendingOutcome) error {
	if err := tx.FinishAttempt(p.now, p.a, p.r); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			p.err = err // nothing was written for it; the others go on
			return nil
		}
		return err
	}
	w, err := e.applyOutcome(tx, p.now, p.a, p.r)
	if err != nil {
		return err
	}
	p.warning = w
	return nil
}

// batchSuccesses turns writeSuccesses on; off, every outcome takes writeOne
// (the benchmark that compares the two turns it off).
var batchSuccesses = true

// successRun is how many outcomes at the head of ps writeSuccesses may record
// together: consecutive successes of distinct attempts, invoices and
// subscriptions, with events off. Everything else — declines, an unresolved
// or needs_review result (an amount mismatch is one), a second outcome for an
// invoice or subscription already in the run, any outcome while events are
// on (their order in the outbox is the per-outcome order) — ends the run and
// is written by writeOne, in its place in the batch.
func successRun(tx *store.Tx, ps []*pendingOutcome) int {
	if tx.EventsOn() || !batchSuccesses {
		return 0
	}
	attempts := make(map[int64]bool, len(ps))
	invoices := make(map[int64]bool, len(ps))
	subs := make(map[int64]bool, len(ps))
	for i, p := range ps {
		if p.r.Status != models.AttemptSucceeded || attempts[p.a.ID] || invoices[p.a.InvoiceID] || subs[p.a.SubscriptionID] {
			return i
		}
		attempts[p.a.ID], invoices[p.a.InvoiceID], subs[p.a.SubscriptionID] = true, true, true
	}
	return len(ps)
}

// writeSuccesses records a run of succeeded outcomes (successRun) with one
// statement per step instead of one per outcome, each outcome written as
// writeOne would write it (docs/performance.md, "The outcome write"): the
// fenced attempt results (an attempt whose lease was lost gets ErrLeaseLost
// and changes nothing else), the invoices that were payable marked paid and
// their other waiting intents asked to be canceled, a second payment or a
// late success on a void invoice recorded one by one as ApplyToInvoice
// records it, the subscriptions reactivated, and the hook's dunning cases.
// The outcomes of the run touch distinct invoices and subscriptions, so no
// step of one sees another's writes in a different state than writeOne's
// order would show it.
func (e *Engine) writeSuccesses(tx *store.Tx, ps []*pendingOutcome) error {
	outs := make([]store.Outcome, len(ps))
	for i, p := range ps {
		outs[i] = store.Outcome{Now: p.now, Attempt: p.a, Result: p.r}
	}
	moved, err := tx.FinishAttempts(outs)
	if err != nil {
		return err
	}
	done := outs[:0:0]
	var movedPs []*pendingOutcome
	for i, p := range ps {
		if !moved[i] {
			p.err = store.ErrLeaseLost // nothing was written for it; the others go on
			continue
		}
		done = append(done, outs[i])
		movedPs = append(movedPs, p)
	}
	if len(done) == 0 {
		return nil
	}
	paid, err := tx.MarkInvoicesPaid(done)
	if err != nil {
		return err
	}
	for i, p := range movedPs {
		if paid[i] {
			continue
		}
		if p.warning, err = successNotPaid(tx, p.now, p.a.InvoiceID, p.r); err != nil {
			return err
		}
	}
	if err := tx.ReactivateSubscriptionsIfSettled(done); err != nil {
		return err
	}
	switch h := e.opts.Hook.(type) {
	case nil:
		return nil
	case SuccessesHook:
		return h.AfterSuccesses(tx, done)
	default:
		for _, o := range done {
			if err := h.AfterOutcome(tx, o.Now, o.Attempt, o.Result); err != nil {
				return err
			}
		}
		return nil
	}
}
