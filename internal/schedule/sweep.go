package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// DefaultKeyWindow is the key window of a Biller that names none: gateways
// keep keys about 24 hours. It is the charge engine's, which looks for an
// earlier payment before charging a period older than it.
const DefaultKeyWindow = charge.DefaultKeyWindow

// maxCatchUpPerPage bounds how many missed periods of one subscription one page
// invoices, so a long outage cannot make one transaction huge; the rest follow
// in later rounds of the same pass (see invoiceDue).
const maxCatchUpPerPage = 64

// Biller runs billing passes: invoice every started period, then charge what is
// due, replaying attempts whose outcome is still unknown.
type Biller struct {
	Store       *store.Store
	Engine      *charge.Engine
	Clock       clock.Clock
	Location    *time.Location
	PageSize    int
	Concurrency int
	// Owner names this process in leases and billing_runs.
	Owner string
	// LeaseFor is how long a claimed attempt belongs to this process. It must
	// exceed the longest exchange (retry max elapsed time + one request timeout).
	LeaseFor time.Duration
	// KeyWindow is how long the provider is trusted to replay an idempotency
	// key (gateway.KeyPolicy.Window; DefaultKeyWindow when zero). An
	// unresolved attempt older than this is never replayed (a replay could
	// charge again): only the reconciler, reading the gateway's records,
	// settles it.
	KeyWindow time.Duration
	Log       zerolog.Logger
	// Reconciler, when set, runs at the start of every pass, so that a one-off
	// pass (billingd once) also settles what earlier passes left unknown.
	Reconciler *Reconciler
	// Dunning, when set, wakes due dunning cases (reminders, exhaustion) at the
	// start of every pass, before retries are claimed.
	Dunning *dunning.Service
	Metrics *metrics.Metrics
}

// Pass runs one billing pass and records it in billing_runs. stop ends the pass
// early at a safe point (no new claims; attempts already claimed are finished —
// the drain); abort cancels in-flight requests, leaving their attempts to be
// replayed with the same key.
func (b *Biller) Pass(stop, abort context.Context, trigger string) (*models.BillingRun, error) {
	ctx := context.WithoutCancel(stop)
	run, err := b.Store.StartRun(ctx, trigger, b.Owner, b.Clock.Now())
	if err != nil {
		return nil, err
	}
	log := b.Log.With().Int64("billing_run_id", run.ID).Str("trigger", trigger).Logger()
	log.Info().Msg("billing pass started")

	if b.Reconciler != nil {
		if _, err := b.Reconciler.Run(stop); err != nil && stop.Err() == nil {
			log.Error().Err(err).Msg("reconciler failed; the pass continues")
		}
	}
	if b.Dunning != nil {
		if _, err := b.Dunning.Wake(stop, b.Clock.Now()); err != nil && stop.Err() == nil {
			log.Error().Err(err).Msg("waking dunning cases failed; the pass continues")
		}
	}
	// Invoicing and charging overlap: charges for the first page of invoices go
	// out while later pages are still being invoiced, so a million-subscription
	// day starts charging at once instead of after the whole sweep.
	invoiced := make(chan struct{}, 1)
	invoicingDone := make(chan struct{})
	var invoiceErr error
	go func() {
		defer close(invoicingDone)
		invoiceErr = b.invoiceDue(stop, run, log, invoiced)
		if err := b.Store.MarkRunInvoiced(ctx, run, b.Clock.Now()); err != nil {
			log.Warn().Err(err).Msg("could not record the end of the pass's invoicing; peers' passes may end before they would")
		}
	}()
	chargeErr := b.chargeDue(stop, abort, run, log, invoiced, invoicingDone)
	<-invoicingDone
	passErr := invoiceErr
	if passErr == nil {
		passErr = chargeErr
	}
	run.Status = models.RunFinished
	if passErr != nil {
		run.Status = models.RunInterrupted
		run.Error = passErr.Error()
	}
	b.Metrics.Pass(string(run.Status))
	b.Metrics.PassDuration(b.Clock.Now().Sub(run.StartedAt))
	if err := b.Store.FinishRun(ctx, run, b.Clock.Now()); err != nil {
		log.Error().Err(err).Msg("could not record the end of the billing pass")
	}
	ev := log.Info()
	if passErr != nil {
		ev = log.Warn().Err(passErr)
	}
	ev.Str("status", string(run.Status)).Int("subscriptions_due", run.SubscriptionsDue).
		Int("invoices_created", run.InvoicesCreated).Int("attempts_started", run.AttemptsStarted).
		Int("attempts_replayed", run.AttemptsReplayed).Int("succeeded", run.Succeeded).
		Int("declined", run.Declined).Int("requires_action", run.RequiresAction).
		Int("processing", run.Processing).Int("unknown", run.Unknown).Int("failed", run.Failed).
		Int64("duration_ms", run.DurationMS).Msg("billing pass finished")
	return run, passErr
}

// recurrence builds the period math of a subscription, in the subscription's
// own time zone: b.Location (the configured zone) is the cron's and the default
// for new imports, and never moves an existing subscription's periods. A
// subscription without a valid zone is an error, never billed in a guessed one.
func (b *Biller) recurrence(s *models.Subscription) (Recurrence, error) {
	return NewRecurrence(s.AnchorAt, s.Interval, s.IntervalCount, s.Timezone)
}

// invoiceDue creates an invoice for every started, not yet invoiced period, page by
// page, each page in one transaction together with the advance of its
// subscriptions' next_billing_at: a period is invoiced exactly once, in order.
// A subscription further behind than maxCatchUpPerPage periods is still due
// after its page; when the scan reaches its end, it starts again from the
// beginning until no subscription had periods left over, so one pass invoices
// every missed period however many. After each committed page it signals
// invoiced, so that charging can claim the new invoices. It writes only
// run.SubscriptionsDue (counted by the first scan: later ones only revisit
// subscriptions it saw) and run.InvoicesCreated.
//
// On PostgreSQL the scan skips rows another transaction holds; a subscription
// left over by one round that the next round did not meet, and that is still
// due, is looked for again (up to maxSkippedRounds times), so that a short
// lock never leaves a catch-up to a later pass.
func (b *Biller) invoiceDue(stop context.Context, run *models.BillingRun, log zerolog.Logger, invoiced chan<- struct{}) error {
	var pending map[int64]bool
	skipped := 0
	for round := 0; ; round++ {
		seen := map[int64]bool{}
		left, err := b.invoiceRound(stop, run, log, invoiced, round == 0, pending, seen)
		if err != nil {
			return err
		}
		var unseen []int64
		for id := range pending {
			if !seen[id] {
				unseen = append(unseen, id)
			}
		}
		if len(unseen) > 0 && skipped < maxSkippedRounds {
			still, err := b.Store.StillDue(context.WithoutCancel(stop), b.Clock.Now(), unseen)
			if err != nil {
				return fmt.Errorf("invoicing: %w", err)
			}
			if len(still) > 0 {
				skipped++
				left = append(left, still...)
				select {
				case <-time.After(5 * time.Millisecond): // the holder's transaction is short
				case <-stop.Done():
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		pending = make(map[int64]bool, len(left))
		for _, id := range left {
			pending[id] = true
		}
	}
}

// maxSkippedRounds bounds how often invoiceDue scans again for subscriptions
// that a concurrent transaction's lock hid from it.
const maxSkippedRounds = 100

// invoiceRound is one scan of the due subscriptions. It returns the
// subscriptions that had more missed periods than one page invoices, and marks
// in seen those of expect it met.
func (b *Biller) invoiceRound(stop context.Context, run *models.BillingRun, log zerolog.Logger, invoiced chan<- struct{}, count bool,
	expect, seen map[int64]bool) (left []int64, _ error) {
	var cursor store.DueCursor
	for {
		if err := stop.Err(); err != nil {
			return nil, fmt.Errorf("stopped while invoicing: %w", err)
		}
		now := b.Clock.Now()
		var n, created int
		var pageLeft, pageSeen []int64
		err := b.Store.InTx(context.WithoutCancel(stop), func(tx *store.Tx) error {
			pageLeft, pageSeen = pageLeft[:0], pageSeen[:0]
			subs, err := tx.DueSubscriptions(now, cursor, b.PageSize)
			if err != nil {
				return err
			}
			n = len(subs)
			var invs []store.NewInvoice
			// The page's advances are written together, before its invoices,
			// in one statement per store batch (AdvanceSubscriptions).
			var advs []store.Advance
			for i := range subs {
				s := &subs[i]
				cursor = store.DueCursor{NextBillingAt: s.NextBillingAt, ID: s.ID}
				if expect[s.ID] {
					pageSeen = append(pageSeen, s.ID)
				}
				rec, err := b.recurrence(s)
				if err == nil {
					if aerr := money.CheckAmount(s.Amount, s.Currency); aerr != nil {
						err = fmt.Errorf("amount %w", aerr)
					}
				}
				if err != nil {
					log.Error().Err(err).Int64("subscription_id", s.ID).Msg("subscription has invalid billing terms; not invoiced")
					continue
				}
				due := rec.Due(s.NextPeriod, now, maxCatchUpPerPage)
				if s.CancelAt != nil {
					// A cancel at period end: no period starting at or after
					// cancel_at is invoiced, and once it has come the
					// subscription ends here, where it would have been invoiced.
					before := beforeCancel(rec, s, due)
					if len(before) < len(due) || !rec.PeriodStart(s.NextPeriod).Before(*s.CancelAt) {
						if len(before) > 0 {
							b.invoicePeriods(s, rec, before, &invs, &advs)
						}
						if !s.CancelAt.After(now) {
							if err := b.finishCancelAt(tx, now, s, log); err != nil {
								return err
							}
						}
						continue
					}
				}
				if len(due) == 0 {
					// next_billing_at disagrees with the period math (the billing
					// timezone changed): realign it, bill nothing early.
					advs = append(advs, store.Advance{ID: s.ID, OldNext: s.NextPeriod, NewNext: s.NextPeriod, NextBillingAt: rec.PeriodStart(s.NextPeriod)})
					continue
				}
				b.invoicePeriods(s, rec, due, &invs, &advs)
				last := due[len(due)-1]
				if len(due) == maxCatchUpPerPage && !rec.PeriodStart(last+1).After(now) {
					pageLeft = append(pageLeft, s.ID)
				}
			}
			if _, err := tx.AdvanceSubscriptions(now, advs); err != nil {
				return err
			}
			created, err = tx.CreateInvoices(now, invs)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("invoicing: %w", err)
		}
		// Counted once committed: a page rolled back created nothing.
		run.InvoicesCreated += created
		failpoint.Hit(failpoint.InvoiceAfterCommit)
		if created > 0 {
			select {
			case invoiced <- struct{}{}:
			default: // a signal is already pending
			}
		}
		if count {
			run.SubscriptionsDue += n
		}
		left = append(left, pageLeft...)
		for _, id := range pageSeen {
			seen[id] = true
		}
		if n < b.PageSize {
			return left, nil
		}
	}
}

// invoicePeriods adds the invoices of the due periods of s (consecutive, from
// s.NextPeriod) to invs and the subscription's advance past them to advs; the
// page writes both in its transaction.
func (b *Biller) invoicePeriods(s *models.Subscription, rec Recurrence, due []int, invs *[]store.NewInvoice, advs *[]store.Advance) {
	for _, k := range due {
		start, end := rec.Period(k)
		*invs = append(*invs, store.NewInvoice{SubscriptionID: s.ID, Reference: s.Reference, PeriodIndex: k, PeriodStart: start, PeriodEnd: end, Amount: s.Amount, Currency: s.Currency})
	}
	last := due[len(due)-1]
	*advs = append(*advs, store.Advance{ID: s.ID, OldNext: s.NextPeriod, NewNext: last + 1, NextBillingAt: rec.PeriodStart(last + 1)})
}

// beforeCancel keeps the periods of due that start before the subscription's
// cancel_at (all of them when it has none): a subscription canceled at
// period end is billed up to then and never after.
func beforeCancel(rec Recurrence, s *models.Subscription, due []int) []int {
	if s.CancelAt == nil {
		return due
	}
	for i, k := range due {
		if !rec.PeriodStart(k).Before(*s.CancelAt) {
			return due[:i]
		}
	}
	return due
}

// CancelAtPeriodEndActor is the audit log's actor when billingd carries out
// an operator's cancel at period end.
const CancelAtPeriodEndActor = "billingd"

// ActionCanceledAtPeriodEnd is the audit action of that cancel taking effect.
const ActionCanceledAtPeriodEnd = "subscription.canceled_at_period_end"

// finishCancelAt ends a subscription whose cancel_at has come, in the
// sweep's transaction, with its audit row (actor billingd, via system): the
// operator decided it earlier, billingd carries it out. Its open invoices of
// earlier periods keep being collected.
func (b *Biller) finishCancelAt(tx *store.Tx, now time.Time, s *models.Subscription, log zerolog.Logger) error {
	ok, err := tx.FinishCancelAtPeriodEnd(now, s.ID)
	if err != nil || !ok {
		return err
	}
	type state struct {
		Status     models.SubscriptionStatus `json:"status"`
		CancelAt   *time.Time                `json:"cancel_at,omitempty"`
		CanceledAt *time.Time                `json:"canceled_at,omitempty"`
	}
	before, _ := json.Marshal(state{Status: s.Status, CancelAt: s.CancelAt})
	after, _ := json.Marshal(state{Status: models.SubscriptionCanceled, CancelAt: s.CancelAt, CanceledAt: s.CancelAt})
	log.Info().Int64("subscription_id", s.ID).Str("reference", s.Reference).Time("cancel_at", *s.CancelAt).
		Msg("subscription canceled at period end, as an operator asked")
	return tx.InsertAudit(now, &models.AuditEntry{Actor: CancelAtPeriodEndActor, Via: models.ViaSystem, Action: ActionCanceledAtPeriodEnd,
		TargetType: "subscription", TargetID: s.ID, TargetRef: s.Reference, Reason: "cancel at period end reached its date",
		BeforeJSON: string(before), AfterJSON: string(after)})
}

// chargeDue claims and executes attempts until nothing is claimable, invoicing
// has finished and no attempt this pass started is still settling: first replays
// of attempts left pending/unknown (by a crash, or by a transient outcome whose
// retry time has come), then new attempts for due invoices. A subscription's
// invoices are claimed one at a time in period order (the claim only offers the
// head of each queue), so the outcome of an attempt in flight can make the next
// period claimable: when nothing is claimable, it waits for the next committed
// page of invoices or the next recorded outcome, and claims again. A catch-up of
// many periods is thus charged in order within one pass, each period after the
// one before it was paid; the first decline stops the rest.
func (b *Biller) chargeDue(stop, abort context.Context, run *models.BillingRun, log zerolog.Logger, invoiced <-chan struct{}, invoicingDone <-chan struct{}) error {
	jobs := make(chan models.ChargeAttempt)
	// Replays are those due when charging began: an attempt that turns
	// unknown during this pass is replayed by the next one, so a pass ends
	// even while the gateway answers nothing but errors.
	replaysDueBy := b.Clock.Now()
	// settled receives a signal after each outcome is recorded; one pending
	// signal is enough to make the claim loop look again.
	settled := make(chan struct{}, 1)
	var mu sync.Mutex
	inFlight := 0
	var wg sync.WaitGroup
	for i := 0; i < b.workers(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				status, err := b.Engine.Execute(abort, &a)
				mu.Lock()
				if err == nil {
					tally(run, status)
				}
				inFlight--
				mu.Unlock()
				select {
				case settled <- struct{}{}:
				default:
				}
			}
		}()
	}
	var claimErr error
	// peerWait is when this pass, with nothing left of its own, began
	// waiting for a peer's invoicing (zero: not waiting).
	var peerWait time.Time
	for {
		if stop.Err() != nil {
			claimErr = fmt.Errorf("stopped while charging: %w", stop.Err())
			break
		}
		// Read before claiming: if invoicing had finished by then and no
		// attempt was in flight, an empty claim means the pass is done (an
		// outcome recorded after this point signals settled).
		lastRound := closed(invoicingDone)
		mu.Lock()
		idle := inFlight == 0
		mu.Unlock()
		now := b.Clock.Now()
		until := now.Add(b.LeaseFor)
		batch, err := b.Store.ClaimReplayAttempts(context.WithoutCancel(stop), b.Owner, now, replaysDueBy, until, now.Add(-b.keyWindow()), b.Concurrency)
		if err != nil {
			claimErr = err
			break
		}
		replays := len(batch)
		fresh, err := b.Store.ClaimNewAttempts(context.WithoutCancel(stop), b.Owner, now, until, b.Concurrency)
		if err != nil {
			claimErr = err
		}
		batch = append(batch, fresh...)
		mu.Lock()
		run.AttemptsReplayed += replays
		run.AttemptsStarted += len(fresh)
		inFlight += len(batch)
		mu.Unlock()
		if len(batch) == 0 {
			if claimErr != nil {
				break
			}
			if lastRound && idle {
				if peerWait.IsZero() {
					peerWait = time.Now()
				}
				// A peer's row may say "still invoicing" forever when its last
				// writes were lost with its connection: the wait is bounded.
				if time.Since(peerWait) > peerWaitMax || !b.peerStillInvoicing(stop, now, log) {
					break
				}
				// A peer instance's pass still invoices: its pages become
				// chargeable as they commit.
				select {
				case <-settled:
				case <-stop.Done():
				case <-time.After(peerPoll):
				}
				continue
			}
			// Once invoicing is over only an outcome can make more claimable
			// (a closed channel would make this loop spin).
			pages := invoicingDone
			if lastRound {
				pages = nil
			}
			select {
			case <-invoiced:
			case <-pages:
			case <-settled:
			case <-stop.Done():
			}
			continue
		}
		peerWait = time.Time{}
		failpoint.Hit(failpoint.AttemptAfterCommit)
		// Claimed attempts are in flight: they are sent even if stop arrives now.
		for _, a := range batch {
			jobs <- a
		}
		if claimErr != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if claimErr != nil && !errors.Is(claimErr, context.Canceled) {
		log.Error().Err(claimErr).Msg("claiming attempts failed")
	}
	return claimErr
}

// peerPoll is how often a pass with nothing to claim looks again while a
// peer instance's pass still invoices.
const peerPoll = 200 * time.Millisecond

// peerWaitMax ends that wait when nothing became claimable for this long: a
// peer invoices a page in well under a second, so a longer silence is a
// peer whose pass row no longer tells the truth (a write lost with its
// connection), and its invoices are charged by the next passes.
const peerWaitMax = 10 * time.Second

// peerStillInvoicing reports whether another live instance's pass still
// invoices (PostgreSQL); a failed read ends the pass as before.
func (b *Biller) peerStillInvoicing(stop context.Context, now time.Time, log zerolog.Logger) bool {
	busy, err := b.Store.PeerStillInvoicing(context.WithoutCancel(stop), b.Owner, now)
	if err != nil {
		log.Warn().Err(err).Msg("could not tell whether a peer's pass still invoices; this pass ends")
		return false
	}
	return busy
}

// workers sizes the charging pool. When the engine caps requests at the gateway
// (MaxInFlight), three workers per request slot: the extra workers, each holding
// a claimed attempt, take a slot the moment one frees while others wait for
// their outcome to be committed (with two per slot a burst of commits left slots
// idle: 94-95% of the latency bound against 96-97% with three). Without a cap
// the pool itself is the cap, one worker per allowed request.
func (b *Biller) workers() int {
	if n := b.Engine.MaxInFlight(); n > 0 {
		return 3 * n
	}
	return b.Concurrency
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func tally(run *models.BillingRun, s models.AttemptStatus) {
	switch s {
	case models.AttemptSucceeded:
		run.Succeeded++
	case models.AttemptProcessing:
		run.Processing++
	case models.AttemptRequiresAction:
		run.RequiresAction++
	case models.AttemptDeclined:
		run.Declined++
	case models.AttemptFailed, models.AttemptNeedsReview, models.AttemptCanceled:
		run.Failed++
	case models.AttemptUnknown, models.AttemptPending:
		run.Unknown++
	}
}

// Kinds of planned charge.
const (
	// PlanReplay: an unresolved attempt sent again with its own key.
	PlanReplay = "replay"
	// PlanCharge: a new attempt the pass starts at once (the head of its
	// subscription's queue).
	PlanCharge = "charge"
	// PlanFollow: a new attempt the pass starts once every charge before it in
	// the subscription's queue has succeeded; a decline (or an outcome still
	// processing) leaves it waiting.
	PlanFollow = "follow"
)

// Planned is one charge a pass would make, for `once --dry-run`.
type Planned struct {
	Reference   string
	Invoice     string // public id, or "(new)" for a period not yet invoiced
	PeriodIndex int
	PeriodStart time.Time
	Amount      int64
	Currency    string
	Kind        string // PlanReplay, PlanCharge or PlanFollow
	// Key is the idempotency key a replay sends again ("" otherwise).
	Key string
}

// Plan lists what a pass started now would charge, without writing anything.
// It reads the state with the pass's own selections (the store's PlanPass):
// replays, then for each subscription's queue its head, charged at once, and the
// invoices and new periods behind it, which follow one at a time as outcomes
// arrive (PlanFollow). With a fixed clock, no other writer and every charge
// succeeding, the pass starts exactly these charges. The dunning wake and the
// reconciler, which a pass runs first when they are configured, are not
// simulated: a retry they would schedule for now is not listed. limit caps the
// list (0: no cap).
func (b *Biller) Plan(ctx context.Context, limit int) ([]Planned, error) {
	now := b.Clock.Now()
	p, err := b.Store.PlanPass(ctx, now, now.Add(-b.keyWindow()), limit)
	if err != nil {
		return nil, err
	}
	// follows lists what waits behind a head charged now: its open invoices
	// in order while each could be claimed once the one before is paid.
	// It reports whether the whole queue follows, so that new periods do too.
	follows := func(subID int64, head models.Invoice) ([]Planned, bool) {
		var fs []Planned
		for _, q := range p.Queues[subID] {
			if q.PeriodIndex <= head.PeriodIndex {
				continue
			}
			if q.Unresolved || q.NextAttemptAt == nil || q.NextAttemptAt.After(now) {
				return fs, false
			}
			fs = append(fs, Planned{Reference: p.References[subID], Invoice: q.PublicID, PeriodIndex: q.PeriodIndex,
				PeriodStart: q.PeriodStart, Amount: q.Amount, Currency: q.Currency, Kind: PlanFollow})
		}
		return fs, true
	}
	var out []Planned
	headOf := map[int64]bool{} // subscriptions whose queue has a head charged now
	queueFollows := map[int64]bool{}
	// A replay is its invoice's charge: if it succeeds, the periods behind it
	// follow.
	for _, a := range p.Replays {
		var inv *store.PlannedInvoice
		for i, q := range p.Queues[a.SubscriptionID] {
			if q.ID == a.InvoiceID {
				inv = &p.Queues[a.SubscriptionID][i]
			}
		}
		out = append(out, Planned{Reference: p.References[a.SubscriptionID], Invoice: a.MerchantOrderID, Amount: a.Amount,
			Currency: a.Currency, Kind: PlanReplay, Key: a.IdempotencyKey})
		if inv == nil {
			continue
		}
		out[len(out)-1].PeriodIndex, out[len(out)-1].PeriodStart = inv.PeriodIndex, inv.PeriodStart
		fs, all := follows(a.SubscriptionID, inv.Invoice)
		out = append(out, fs...)
		headOf[a.SubscriptionID] = true
		queueFollows[a.SubscriptionID] = all
	}
	for _, h := range p.Heads {
		out = append(out, Planned{Reference: p.References[h.SubscriptionID], Invoice: h.PublicID, PeriodIndex: h.PeriodIndex,
			PeriodStart: h.PeriodStart, Amount: h.Amount, Currency: h.Currency, Kind: PlanCharge})
		fs, all := follows(h.SubscriptionID, h)
		out = append(out, fs...)
		headOf[h.SubscriptionID] = true
		queueFollows[h.SubscriptionID] = all
	}
	for i := range p.Due {
		s := &p.Due[i]
		rec, err := b.recurrence(s)
		if err != nil {
			continue
		}
		due := beforeCancel(rec, s, rec.Due(s.NextPeriod, now, limit))
		if len(due) == 0 {
			continue
		}
		// The new periods join the end of the queue. They are charged in this
		// pass only if the queue ahead of them is: empty (the first new period
		// is the head, unless the card is dead) or headed by a charge now
		// with every invoice behind it following.
		kind := PlanFollow
		switch {
		case headOf[s.ID]:
			if !queueFollows[s.ID] {
				continue
			}
		case len(p.Queues[s.ID]) > 0 || p.DeadCard[s.ID]:
			continue
		default:
			kind = PlanCharge
		}
		for j, k := range due {
			if j > 0 {
				kind = PlanFollow
			}
			out = append(out, Planned{Reference: s.Reference, Invoice: "(new)", PeriodIndex: k, PeriodStart: rec.PeriodStart(k),
				Amount: s.Amount, Currency: s.Currency, Kind: kind})
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (b *Biller) keyWindow() time.Duration {
	if b.KeyWindow > 0 {
		return b.KeyWindow
	}
	return DefaultKeyWindow
}
