package charge

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// MaxCancelTries bounds the cancels of one waiting intent that get no definite
// answer; after the last the attempt is needs_review (a human establishes
// whether the intent can still be paid) and its invoice still starts nothing.
const MaxCancelTries = 5

// cancelRetryBase is the wait after the first failed cancel; it doubles after
// each further one (1m, 2m, 4m, 8m).
const cancelRetryBase = time.Minute

// CancelOutcome is what one cancel of a waiting intent established.
type CancelOutcome string

// The outcomes of CancelWaiting.
const (
	// CancelDone: the gateway canceled the intent; the invoice is free.
	CancelDone CancelOutcome = "canceled"
	// CancelPaid: the intent had succeeded (the customer passed the challenge
	// after all): the attempt is settled as succeeded from the gateway's read.
	CancelPaid CancelOutcome = "succeeded"
	// CancelMoved: the gateway's read shows the intent moved on another way
	// (processing, failed); the attempt follows it.
	CancelMoved CancelOutcome = "moved"
	// CancelPending: no definite answer (a timeout, a dropped connection, a
	// 5xx): the attempt keeps waiting and blocking its invoice; the cancel is
	// tried again later.
	CancelPending CancelOutcome = "pending"
	// CancelGaveUp: MaxCancelTries cancels got no definite answer; the
	// attempt is needs_review.
	CancelGaveUp CancelOutcome = "needs_review"
)

// CancelWaiting cancels the intent of an attempt waiting for the customer to
// authenticate whose cancel was recorded (store.RequestCancel,
// RequestAbandonedCancels, an invoice settled), and records what the gateway
// answered. Only a definite cancel frees the invoice; a cancel the gateway
// answers "already succeeded" settles the attempt as paid, from a read of the
// intent; a cancel without a definite answer is retried later (same key),
// never followed by a new intent.
func (e *Engine) CancelWaiting(ctx context.Context, a *models.ChargeAttempt) (CancelOutcome, error) {
	log := Logger(e.opts.Log, a)
	if a.PaymentIntentID == "" {
		// Nothing to cancel by id: a human finds the intent.
		return CancelGaveUp, e.cancelFailed(ctx, a, MaxCancelTries, "waiting attempt has no payment intent id to cancel")
	}
	res := e.opts.Gateway.CancelPaymentIntent(ctx, a.PaymentIntentID, "cancel-"+a.IdempotencyKey)
	if res.Kind == gateway.Canceled {
		return CancelDone, e.markCanceled(ctx, a)
	}
	if res.Kind == gateway.Transient {
		return e.cancelPending(ctx, a, res.Err)
	}
	// Refused (the intent succeeded, is processing, or is already canceled):
	// the intent as the gateway holds it now decides.
	read := e.opts.Gateway.RetrievePaymentIntent(ctx, a.PaymentIntentID)
	if read.Kind == gateway.Transient || read.Intent == nil {
		err := res.Err
		if read.Err != nil {
			err = read.Err
		}
		return e.cancelPending(ctx, a, err)
	}
	switch read.Kind {
	case gateway.Canceled:
		return CancelDone, e.markCanceled(ctx, a)
	case gateway.RequiresAction:
		return e.cancelPending(ctx, a, fmt.Errorf("cancel refused while the intent still waits: %v", res.Err))
	}
	now := e.opts.Clock.Now()
	if reason := AmountMismatch(a, read.Intent); reason != "" {
		// The intent the gateway holds is not the payment billingd asked for:
		// read, not applied (docs/protocol.md); a human looks.
		var moved bool
		err := e.opts.Store.InTx(ctx, func(tx *store.Tx) error {
			var err error
			moved, err = e.flagMismatch(tx, now, a, read.Intent, reason)
			return err
		})
		if err != nil {
			return CancelPending, err
		}
		log.Error().Str("payment_intent", a.PaymentIntentID).Bool("moved", moved).Msg(reason)
		return CancelMoved, nil
	}
	r := ResultOf(read)
	r.LastHTTPStatus = 0
	if r.Status.Unresolved() {
		next := now.Add(e.tune.Load().RecheckAfter)
		r.NextReconcileAt = &next
	}
	var warning string
	err := e.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		_, warning, err = e.Settle(tx, now, a, r)
		return err
	})
	if err != nil {
		return CancelPending, err
	}
	if warning != "" {
		log.Error().Str("payment_intent", a.PaymentIntentID).Msg(warning)
	}
	log.Info().Str("status", string(r.Status)).Str("payment_intent", a.PaymentIntentID).Msg("cancel refused; the attempt follows the gateway's read of the intent")
	if r.Status == models.AttemptSucceeded {
		return CancelPaid, nil
	}
	return CancelMoved, nil
}

func (e *Engine) markCanceled(ctx context.Context, a *models.ChargeAttempt) error {
	now := e.opts.Clock.Now()
	err := e.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.MarkIntentCanceled(now, a.ID)
		return err
	})
	if err == nil {
		a.Status = models.AttemptCanceled
		log := Logger(e.opts.Log, a)
		log.Info().Str("payment_intent", a.PaymentIntentID).Str("reason", a.CancelReason).
			Msg("waiting payment intent canceled at the gateway; the invoice is free for its next attempt")
	}
	return err
}

func (e *Engine) cancelPending(ctx context.Context, a *models.ChargeAttempt, cause error) (CancelOutcome, error) {
	tries := a.CancelTries + 1
	msg := fmt.Sprintf("cancel of %s got no definite answer (try %d of %d): %v", a.PaymentIntentID, tries, MaxCancelTries, cause)
	if tries >= MaxCancelTries {
		return CancelGaveUp, e.cancelFailed(ctx, a, tries, msg)
	}
	now := e.opts.Clock.Now()
	next := now.Add(cancelRetryBase << (tries - 1))
	err := e.opts.Store.InTx(ctx, func(tx *store.Tx) error { return tx.RecordCancelFailure(now, a.ID, next, false, msg) })
	log := Logger(e.opts.Log, a)
	log.Warn().Str("payment_intent", a.PaymentIntentID).Time("next_try_at", next).Msg(msg + "; nothing new starts for the invoice until the cancel is definite")
	a.CancelTries = tries
	return CancelPending, err
}

func (e *Engine) cancelFailed(ctx context.Context, a *models.ChargeAttempt, _ int, msg string) error {
	now := e.opts.Clock.Now()
	err := e.opts.Store.InTx(ctx, func(tx *store.Tx) error { return tx.RecordCancelFailure(now, a.ID, now, true, msg) })
	if err == nil {
		a.Status = models.AttemptNeedsReview
	}
	log := Logger(e.opts.Log, a)
	log.Error().Str("payment_intent", a.PaymentIntentID).Msg(msg + "; the attempt needs review (establish at the gateway whether the intent can still be paid) and its invoice starts nothing new")
	return err
}
