package charge

import (
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// applyRefundEvent applies charge.refund.updated inside the caller's
// transaction (the one that stored it in the inbox). The refund is found by its
// gateway id, else by the key billingd put in its metadata. State only moves
// forward: a duplicate or late event changes nothing, and a refund already
// final stays as it is.
func (e *Engine) applyRefundEvent(tx *store.Tx, now time.Time, gr *gateway.Refund) (EventOutcome, error) {
	rf, err := tx.RefundForGateway(gr.ID, gr.Metadata["refund_key"])
	if err != nil {
		return EventOutcome{}, err
	}
	if rf == nil {
		return EventOutcome{Result: models.WebhookIgnored, Detail: "refund " + gr.ID + " was not created by billingd"}, nil
	}
	var status models.RefundStatus
	msg := ""
	switch gr.Status {
	case gateway.RefundSucceeded:
		status = models.RefundSucceeded
	case gateway.RefundFailed, gateway.RefundCanceled:
		status = models.RefundFailed
		msg = "the gateway reports the refund " + string(gr.Status)
		if gr.FailureReason != "" {
			msg += ": " + gr.FailureReason
		}
	case gateway.RefundPending, gateway.RefundRequiresAction:
		status = models.RefundProcessing
	default:
		return EventOutcome{Result: models.WebhookIgnored, Detail: fmt.Sprintf("refund status %q settles nothing", gr.Status)}, nil
	}
	if gr.PaymentIntent != "" && gr.PaymentIntent != rf.PaymentIntentID {
		return EventOutcome{Result: models.WebhookIgnored,
			Detail: fmt.Sprintf("refund %s is of payment %s, refund %s of %s", gr.ID, gr.PaymentIntent, rf.IdempotencyKey, rf.PaymentIntentID)}, nil
	}
	moved, err := tx.SettleRefund(now, rf.ID, rf.Reason, status, gr.ID, msg)
	if err != nil {
		return EventOutcome{}, err
	}
	if !moved {
		return EventOutcome{Result: models.WebhookIgnored, Detail: fmt.Sprintf("refund %s is already %s", rf.IdempotencyKey, rf.Status)}, nil
	}
	return EventOutcome{Result: models.WebhookApplied, Detail: fmt.Sprintf("refund %s: %s -> %s", rf.IdempotencyKey, rf.Status, status)}, nil
}

// secondPaymentOfAttempt handles a succeeded PaymentIntent that carries an
// attempt's key while that attempt is already paid by another intent: the
// gateway took a second payment for the same invoice. It is recorded in this
// transaction as a duplicate to refund (handled false: not such a case).
func secondPaymentOfAttempt(tx *store.Tx, now time.Time, a *models.ChargeAttempt, pi *gateway.PaymentIntent) (EventOutcome, bool, error) {
	if pi.Status != gateway.IntentSucceeded || a.PaymentIntentID == "" || a.PaymentIntentID == pi.ID ||
		a.Status != models.AttemptSucceeded || (pi.MerchantOrderID != "" && pi.MerchantOrderID != a.MerchantOrderID) {
		return EventOutcome{}, false, nil
	}
	warning, err := recordSecondPayment(tx, now, a.InvoiceID, a.PaymentIntentID, pi.ID, pi.Amount, pi.Currency)
	if err != nil {
		return EventOutcome{}, true, err
	}
	out := EventOutcome{Result: models.WebhookApplied, Attempt: a, Warning: warning,
		Detail: fmt.Sprintf("second payment %s for attempt %s (paid by %s) recorded for refund", pi.ID, a.IdempotencyKey, a.PaymentIntentID)}
	if warning == "" {
		out.Result = models.WebhookIgnored
		out.Detail = fmt.Sprintf("second payment %s for attempt %s is already recorded", pi.ID, a.IdempotencyKey)
	}
	return out, true, nil
}
