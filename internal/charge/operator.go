package charge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// What operator actions (internal/ops) need of the engine beyond what the
// daemon's jobs use: the lease of an attempt an operator starts, one refund
// worked now, a read of an attempt that needs review, and the settling of
// what that read established. Each piece is the daemon's own path, so an
// operator's retry, refund or resolve behaves exactly as the daemon would.

// LateVoidRefundKey is the idempotency key of the automatic refund of a
// payment that succeeded for an invoice an operator had voided: one per
// payment, so the same success reported twice (a webhook and a read) records
// one refund.
func LateVoidRefundKey(paymentIntentID string) string { return "refund-void-" + paymentIntentID }

// recordLateSuccessOnVoid records, in the caller's transaction, that the
// gateway took money for a void invoice (an intent that was still unknown or
// processing when the operator voided it): a pending refund of the whole
// payment, keyed by the payment, that the refund job sends. The warning is
// for the log, at error level.
func recordLateSuccessOnVoid(tx *store.Tx, now time.Time, invoiceID int64, paymentIntentID string) (string, error) {
	key := LateVoidRefundKey(paymentIntentID)
	rf, created, err := tx.ReserveRefund(now, store.NewRefund{
		InvoiceID: invoiceID, PaymentIntentID: paymentIntentID,
		Reason: models.RefundReasonRequestedByCustomer, IdempotencyKey: key, Status: models.RefundPending,
	})
	switch {
	case errors.Is(err, store.ErrRefundExceedsPayment), errors.Is(err, store.ErrNoPayment):
		return fmt.Sprintf("LATE SUCCESS ON A VOID INVOICE: invoice %d was voided; payment %s cannot be refunded automatically (%v): refund it at the gateway",
			invoiceID, paymentIntentID, err), nil
	case err != nil:
		return "", err
	case !created:
		return "", nil // already recorded: the same report again
	}
	return fmt.Sprintf("LATE SUCCESS ON A VOID INVOICE: invoice %d was voided, then payment %s (%d %s) succeeded; it is refunded automatically (refund %s)",
		invoiceID, paymentIntentID, rf.Amount, rf.Currency, key), nil
}

// AttemptLease is how long an attempt an operator starts belongs to the
// operator's process: the whole backoff window of one exchange plus a
// margin, so no other worker replays it while this one may still send.
func (e *Engine) AttemptLease() time.Duration {
	return e.tune.Load().Retry.MaxElapsedTime + 2*time.Minute
}

// WorkRefund claims one open refund by id and moves it on now, as the refund
// job would (send it, replay it with its key, read it back). It returns the
// row as stored afterwards; a refund another worker holds, or one already
// final, is returned unchanged.
func (e *Engine) WorkRefund(ctx context.Context, id int64) (*models.Refund, error) {
	if e.opts.Refunds != nil {
		now := e.opts.Clock.Now()
		claimed, err := e.opts.Store.ClaimRefund(ctx, e.refundOwner(), now, now.Add(e.refundLease()), id)
		if err != nil {
			return nil, err
		}
		if claimed != nil {
			e.workRefund(ctx, claimed)
		}
	}
	return e.opts.Store.RefundByID(context.WithoutCancel(ctx), id)
}

// Reading is what the gateway says about an attempt, read and not applied.
type Reading struct {
	// Found: the gateway has a PaymentIntent for the attempt.
	Found bool
	// PaymentIntentID is the intent read ("" when none was found).
	PaymentIntentID string
	// Result is the state the intent establishes for the attempt.
	Result store.AttemptResult
	// Mismatch, when set, says the intent names another amount or currency
	// than the attempt's frozen request: it must not be applied.
	Mismatch string
}

// ReadAttempt reads an attempt's payment from the gateway (by payment id,
// else by order id and the attempt's key) without changing anything: the
// first half of Resolve, for an operator who applies the answer in a
// transaction with the action's audit row (SettleReviewed).
func (e *Engine) ReadAttempt(ctx context.Context, a *models.ChargeAttempt) (Reading, error) {
	res, found, err := e.readIntent(ctx, a)
	if err != nil || !found {
		return Reading{}, err
	}
	out := Reading{Found: true, PaymentIntentID: res.Intent.ID}
	if reason := AmountMismatch(a, res.Intent); reason != "" {
		out.Mismatch = reason
		return out, nil
	}
	out.Result = ResultOf(res)
	out.Result.LastHTTPStatus = 0
	if out.Result.Status.Unresolved() {
		next := e.opts.Clock.Now().Add(e.tune.Load().RecheckAfter)
		out.Result.NextReconcileAt = &next
	}
	return out, nil
}

// SettleReviewed applies, in the caller's transaction, what the gateway's
// records establish for an attempt that needs review: the attempt moves to
// r's state, and its invoice, subscription and dunning case follow exactly as
// after a webhook (a success pays the invoice once; a decline lets dunning
// proceed). moved is false when the attempt was no longer needs_review.
func (e *Engine) SettleReviewed(tx *store.Tx, now time.Time, a *models.ChargeAttempt, r store.AttemptResult) (moved bool, warning string, err error) {
	if r.Status == models.AttemptSucceeded {
		moved, err = tx.SettleSucceeded(now, a.ID, r)
	} else {
		moved, err = tx.SettleReviewedAttempt(now, a.ID, r)
	}
	if err != nil || !moved {
		return moved, "", err
	}
	a.Status = r.Status
	warning, err = e.applyOutcome(tx, now, a, r)
	return true, warning, err
}

// LogWarning logs, at error level and naming the attempt, a warning that a
// settle in the caller's transaction returned (a second or late payment that
// is refunded automatically).
func (e *Engine) LogWarning(a *models.ChargeAttempt, warning string) {
	if warning == "" {
		return
	}
	log := Logger(e.opts.Log, a)
	log.Error().Str("payment_intent", a.PaymentIntentID).Msg(warning)
}
