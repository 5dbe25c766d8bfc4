package schedule

import (
	"context"
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
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// IdempotencyWindow is how long billingd trusts the gateway to remember an
// idempotency key. Gateways keep keys about 24 hours; an unresolved attempt older
// than this is never replayed (a replay could charge again): only the reconciler,
// reading the gateway's records, settles it.
const IdempotencyWindow = 23 * time.Hour

// maxCatchUpPerPage bounds how many missed periods of one subscription one page
// invoices, so a long outage cannot make one transaction huge; the rest follow
// on the next pages of the same pass.
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
	Log      zerolog.Logger
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
// After each committed page it signals invoiced, so that charging can claim the
// new invoices. It writes only run.SubscriptionsDue and run.InvoicesCreated.
func (b *Biller) invoiceDue(stop context.Context, run *models.BillingRun, log zerolog.Logger, invoiced chan<- struct{}) error {
	var cursor store.DueCursor
	for {
		if err := stop.Err(); err != nil {
			return fmt.Errorf("stopped while invoicing: %w", err)
		}
		now := b.Clock.Now()
		var n, created int
		err := b.Store.InTx(context.WithoutCancel(stop), func(tx *store.Tx) error {
			subs, err := tx.DueSubscriptions(now, cursor, b.PageSize)
			if err != nil {
				return err
			}
			n = len(subs)
			var invs []store.NewInvoice
			for i := range subs {
				s := &subs[i]
				cursor = store.DueCursor{NextBillingAt: s.NextBillingAt, ID: s.ID}
				rec, err := b.recurrence(s)
				if err != nil {
					log.Error().Err(err).Int64("subscription_id", s.ID).Msg("subscription has invalid billing terms; not invoiced")
					continue
				}
				due := rec.Due(s.NextPeriod, now, maxCatchUpPerPage)
				if len(due) == 0 {
					// next_billing_at disagrees with the period math (the billing
					// timezone changed): realign it, bill nothing early.
					if err := tx.AdvanceSubscription(now, s.ID, s.NextPeriod, s.NextPeriod, rec.PeriodStart(s.NextPeriod)); err != nil {
						return err
					}
					continue
				}
				for _, k := range due {
					start, end := rec.Period(k)
					invs = append(invs, store.NewInvoice{SubscriptionID: s.ID, PeriodIndex: k, PeriodStart: start, PeriodEnd: end, Amount: s.Amount, Currency: s.Currency})
				}
				last := due[len(due)-1]
				if err := tx.AdvanceSubscription(now, s.ID, s.NextPeriod, last+1, rec.PeriodStart(last+1)); err != nil {
					return err
				}
			}
			created, err = tx.CreateInvoices(now, invs)
			return err
		})
		if err != nil {
			return fmt.Errorf("invoicing: %w", err)
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
		run.SubscriptionsDue += n
		if n < b.PageSize {
			return nil
		}
	}
}

// chargeDue claims and executes attempts until nothing is claimable and invoicing
// has finished: first replays of attempts left pending/unknown (by a crash, or by
// a transient outcome whose retry time has come), then new attempts for due
// invoices. When nothing is claimable while invoicing goes on, it waits for the
// next committed page.
func (b *Biller) chargeDue(stop, abort context.Context, run *models.BillingRun, log zerolog.Logger, invoiced <-chan struct{}, invoicingDone <-chan struct{}) error {
	jobs := make(chan models.ChargeAttempt)
	var mu sync.Mutex
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
				mu.Unlock()
			}
		}()
	}
	var claimErr error
	for {
		if stop.Err() != nil {
			claimErr = fmt.Errorf("stopped while charging: %w", stop.Err())
			break
		}
		// Read before claiming: if invoicing had finished by then, an empty
		// claim means the pass is done.
		lastRound := closed(invoicingDone)
		now := b.Clock.Now()
		until := now.Add(b.LeaseFor)
		batch, err := b.Store.ClaimReplayAttempts(context.WithoutCancel(stop), b.Owner, now, until, now.Add(-IdempotencyWindow), b.Concurrency)
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
		mu.Unlock()
		if len(batch) == 0 {
			if lastRound || claimErr != nil {
				break
			}
			select {
			case <-invoiced:
			case <-invoicingDone:
			case <-stop.Done():
			}
			continue
		}
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

// Planned is one charge a pass would make, for `once --dry-run`.
type Planned struct {
	Reference   string
	Invoice     string // public id, or "(new)" for a period not yet invoiced
	PeriodStart time.Time
	Amount      int64
	Currency    string
	Kind        string // new-period | open-invoice | replay
}

// Plan lists what a pass started now would charge, without writing anything.
func (b *Biller) Plan(ctx context.Context, limit int) ([]Planned, error) {
	now := b.Clock.Now()
	db := b.Store.DB().WithContext(ctx)
	var out []Planned
	var replays []models.ChargeAttempt
	if err := db.Where("status IN ? AND created_at >= ?", []string{"pending", "unknown"}, now.Add(-IdempotencyWindow)).Order("id").Limit(limit).Find(&replays).Error; err != nil {
		return nil, err
	}
	for _, a := range replays {
		out = append(out, Planned{Invoice: a.MerchantOrderID, Amount: a.Amount, Currency: a.Currency, Kind: "replay " + a.IdempotencyKey})
	}
	var open []struct {
		models.Invoice
		Reference string
	}
	if err := db.Raw(`SELECT i.*, s.reference FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
	                   WHERE i.status = 'open' AND i.next_attempt_at IS NOT NULL AND i.next_attempt_at <= ? ORDER BY i.next_attempt_at, i.id LIMIT ?`, now, limit).Scan(&open).Error; err != nil {
		return nil, err
	}
	for _, i := range open {
		out = append(out, Planned{Reference: i.Reference, Invoice: i.PublicID, PeriodStart: i.PeriodStart, Amount: i.Amount, Currency: i.Currency, Kind: "open-invoice"})
	}
	var subs []models.Subscription
	if err := db.Where("status IN ? AND next_billing_at <= ?", []string{"active", "past_due"}, now).Order("next_billing_at, id").Limit(limit).Find(&subs).Error; err != nil {
		return nil, err
	}
	for i := range subs {
		s := &subs[i]
		rec, err := b.recurrence(s)
		if err != nil {
			continue
		}
		for _, k := range rec.Due(s.NextPeriod, now, limit) {
			out = append(out, Planned{Reference: s.Reference, Invoice: "(new)", PeriodStart: rec.PeriodStart(k), Amount: s.Amount, Currency: s.Currency, Kind: "new-period"})
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
