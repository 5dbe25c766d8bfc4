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
				if err := tx.FinishAttempt(p.now, p.a, p.r); err != nil {
					if errors.Is(err, store.ErrLeaseLost) {
						p.err = err // nothing was written for it; the others go on
						continue
					}
					return err
				}
				w, err := e.applyOutcome(tx, p.now, p.a, p.r)
				if err != nil {
					return err
				}
				p.warning = w
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
