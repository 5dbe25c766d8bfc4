package schedule

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// Reconciler settles attempts whose outcome neither their own request nor a
// webhook delivered, by reading the gateway (Kill Bill calls this the Janitor).
// An attempt it cannot settle is looked at again on a backoff schedule; after
// the last step it becomes needs_review and is never retried blindly.
type Reconciler struct {
	Store  *store.Store
	Engine *charge.Engine
	Clock  clock.Clock
	// After is the age an unresolved attempt must reach before the reconciler
	// touches it.
	After time.Duration
	// Backoff lists the waits between looks; its length is the number of
	// further looks before needs_review.
	Backoff  []time.Duration
	Owner    string
	LeaseFor time.Duration
	Batch    int
	Log      zerolog.Logger
	Metrics  *metrics.Metrics
}

// ReconcileSummary counts what one run did.
type ReconcileSummary struct {
	Examined, Resolved, Deferred, NeedsReview, Errors int
}

// Run looks at every attempt due for reconciliation now.
func (r *Reconciler) Run(ctx context.Context) (ReconcileSummary, error) {
	var sum ReconcileSummary
	batch := r.Batch
	if batch <= 0 {
		batch = 100
	}
	for ctx.Err() == nil {
		now := r.Clock.Now()
		claimed, err := r.Store.ClaimForReconcile(ctx, r.Owner, now, now.Add(r.LeaseFor), now.Add(-r.After), batch)
		if err != nil {
			return sum, err
		}
		if len(claimed) == 0 {
			break
		}
		for i := range claimed {
			r.one(ctx, &claimed[i], &sum)
		}
	}
	if sum.Examined > 0 {
		r.Log.Info().Int("examined", sum.Examined).Int("resolved", sum.Resolved).Int("deferred", sum.Deferred).
			Int("needs_review", sum.NeedsReview).Int("errors", sum.Errors).Msg("reconciler run finished")
	}
	return sum, ctx.Err()
}

func (r *Reconciler) one(ctx context.Context, a *models.ChargeAttempt, sum *ReconcileSummary) {
	sum.Examined++
	log := charge.Logger(r.Log, a)
	res, err := r.Engine.Resolve(ctx, a)
	if err == nil && res.Moved {
		sum.Resolved++
		r.Metrics.Reconcile("resolved")
		return
	}
	now := r.Clock.Now()
	reason := ""
	switch {
	case err != nil:
		sum.Errors++
		r.Metrics.Reconcile("error")
		reason = "the gateway could not be read: " + err.Error()
		log.Warn().Err(err).Msg("reconciler could not read the gateway; will look again")
	case !res.Found:
		reason = "the gateway has no payment intent for this attempt"
	default:
		reason = fmt.Sprintf("the gateway still reports the payment intent as %s", res.Status)
	}
	review := a.ReconcileCount >= len(r.Backoff)
	next := now
	if !review {
		next = now.Add(r.Backoff[a.ReconcileCount])
	}
	moved, derr := deferReconcile(ctx, r.Store, now, a, next, review, "needs review: "+reason+" after "+fmt.Sprint(a.ReconcileCount+1)+" looks")
	switch {
	case derr != nil:
		log.Error().Err(derr).Msg("reconciler could not record its schedule")
	case !moved:
		// Settled meanwhile (a webhook, a replay): nothing to do.
	case review:
		sum.NeedsReview++
		r.Metrics.Reconcile("needs_review")
		log.Error().Str("reason", reason).Msg("attempt outcome could not be established: needs_review — check the gateway before acting; it will not be retried")
	default:
		sum.Deferred++
		r.Metrics.Reconcile("deferred")
		log.Info().Str("reason", reason).Time("next_look", next).Msg("reconciler will look again")
	}
}

func deferReconcile(ctx context.Context, st *store.Store, now time.Time, a *models.ChargeAttempt, next time.Time, review bool, reason string) (bool, error) {
	var moved bool
	err := st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		moved, err = tx.DeferReconcile(now, a, next, review, reason)
		if err != nil || !moved || !review {
			return err
		}
		_, err = charge.ApplyToInvoice(tx, now, a.InvoiceID, store.AttemptResult{Status: models.AttemptNeedsReview})
		return err
	})
	return moved, err
}
