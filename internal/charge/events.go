package charge

import (
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// EventOutcome is what applying one webhook event did.
type EventOutcome struct {
	Result models.WebhookResult
	Detail string
	// Attempt is the attempt the event was about, if it was billingd's.
	Attempt *models.ChargeAttempt
	// Warning is set when the event reveals money to give back (a second
	// successful charge for one invoice); it is logged at error level.
	Warning string
	// RetryNow asks for a billing pass once the transaction has committed (a
	// new card was saved for an invoice in dunning).
	RetryNow bool
	// NeedsReview: the event was stored, not applied, because a human must
	// look at it (it reported another amount or currency than its attempt
	// asked for; Detail says what). Its attempt is needs_review.
	NeedsReview bool
}

// ApplyEvent applies a verified gateway event inside the caller's transaction
// (the one that stored it in the inbox). The PaymentIntent's status in the event
// is the authority; state only moves forward, so duplicates, reordering and
// late failures after a success change nothing.
func (e *Engine) ApplyEvent(tx *store.Tx, now time.Time, ev *gateway.Event) (EventOutcome, error) {
	switch {
	case ev.Type == gateway.EventPaymentCaptureDeclined && ev.PaymentIntent != nil:
		return e.applyCaptureDeclined(tx, now, ev.PaymentIntent)
	case ev.PaymentIntent != nil:
		return e.applyIntentEvent(tx, now, ev.PaymentIntent)
	case ev.Refund != nil:
		return e.applyRefundEvent(tx, now, ev.Refund)
	case ev.SetupIntent != nil && ev.Type == gateway.EventSetupIntentSucceeded:
		si := ev.SetupIntent
		saved := store.SavedCard{SeriesPaymentID: si.SeriesPaymentID}
		if si.Card != nil {
			saved.Brand, saved.Last4 = si.Card.Brand, si.Card.Last4
			saved.ExpMonth, saved.ExpYear = si.Card.ExpMonth, si.Card.ExpYear
		}
		ok, err := tx.RecordPaymentMethod(now, si.Customer, si.PaymentMethod, saved)
		if err != nil {
			return EventOutcome{}, err
		}
		if !ok {
			return EventOutcome{Result: models.WebhookIgnored, Detail: "customer " + si.Customer + " is not billed by billingd"}, nil
		}
		out := EventOutcome{Result: models.WebhookApplied, Detail: "payment method " + si.PaymentMethod + " saved for " + si.Customer}
		if e.opts.Hook != nil {
			applied, detail, retryNow, err := e.opts.Hook.AfterPaymentMethodSaved(tx, now, si)
			if err != nil {
				return EventOutcome{}, err
			}
			if applied {
				out.Detail += "; " + detail
				out.RetryNow = retryNow
			}
		}
		return out, nil
	}
	return EventOutcome{Result: models.WebhookIgnored, Detail: "event type not used by billingd"}, nil
}

func (e *Engine) applyIntentEvent(tx *store.Tx, now time.Time, pi *gateway.PaymentIntent) (EventOutcome, error) {
	a, err := tx.AttemptForIntent(pi.ID, pi.Metadata["idempotency_key"])
	if err != nil {
		return EventOutcome{}, err
	}
	if a == nil {
		return EventOutcome{Result: models.WebhookIgnored, Detail: "payment intent " + pi.ID + " was not created by billingd"}, nil
	}
	if out, handled, err := secondPaymentOfAttempt(tx, now, a, pi); handled || err != nil {
		return out, err
	}
	if reason := AmountMismatch(a, pi); reason != "" {
		moved, err := e.flagMismatch(tx, now, a, pi, reason)
		if err != nil {
			return EventOutcome{}, err
		}
		detail := reason
		if moved {
			detail = fmt.Sprintf("attempt %s: %s -> needs_review: %s", a.IdempotencyKey, a.Status, reason)
		}
		return EventOutcome{Result: models.WebhookIgnored, NeedsReview: true, Attempt: a, Warning: reason, Detail: detail}, nil
	}
	res := OnSessionOutcome(a, gateway.ResultFromIntent(pi, 0))
	if !res.Kind.Definite() && res.Kind != gateway.Processing {
		return EventOutcome{Result: models.WebhookIgnored, Attempt: a, Detail: fmt.Sprintf("payment intent status %q settles nothing", pi.Status)}, nil
	}
	r := ResultOf(res)
	moved, warning, err := e.Settle(tx, now, a, r)
	if err != nil {
		return EventOutcome{}, err
	}
	if r.Status == models.AttemptSucceeded {
		if _, err := tx.RecordPaymentMethod(now, pi.Customer, pi.PaymentMethod, store.SavedCard{}); err != nil {
			return EventOutcome{}, err
		}
	}
	if !moved {
		return EventOutcome{Result: models.WebhookIgnored, Attempt: a, Warning: warning,
			Detail: fmt.Sprintf("attempt %s is already past %s", a.IdempotencyKey, r.Status)}, nil
	}
	return EventOutcome{Result: models.WebhookApplied, Attempt: a, Warning: warning,
		Detail: fmt.Sprintf("attempt %s: %s -> %s", a.IdempotencyKey, a.Status, r.Status)}, nil
}

// applyCaptureDeclined reopens the invoice a payment had paid when the
// gateway reports that the approved payment could not be captured
// (store.ReopenAfterCaptureDeclined), and lets dunning treat it as a soft
// decline of a charge billingd made: a case opens (or reopens), the next
// retry is scheduled and the customer is told. A second delivery, or one about
// a payment that did not pay its invoice, changes nothing.
func (e *Engine) applyCaptureDeclined(tx *store.Tx, now time.Time, pi *gateway.PaymentIntent) (EventOutcome, error) {
	a, err := tx.AttemptForIntent(pi.ID, pi.Metadata["idempotency_key"])
	if err != nil {
		return EventOutcome{}, err
	}
	if a == nil {
		return EventOutcome{Result: models.WebhookIgnored, Detail: "payment " + pi.ID + " was not created by billingd"}, nil
	}
	msg := "the gateway approved the payment, then declined its capture: no money moved"
	moved, err := tx.ReopenAfterCaptureDeclined(now, a.ID, pi.ID, msg)
	if err != nil {
		return EventOutcome{}, err
	}
	if !moved {
		if a.Status.Unresolved() || a.Status == models.AttemptRequiresAction {
			// The decline came before the approval was recorded (webhooks
			// come in any order, an answer may be lost): the attempt settles
			// as this decline, so the late approval cannot pay the invoice.
			r := store.AttemptResult{Status: models.AttemptDeclined, PaymentIntentID: pi.ID, DeclineCode: store.DeclineCaptureDeclined, ErrorMessage: msg}
			settled, warning, err := e.Settle(tx, now, a, r)
			if err != nil {
				return EventOutcome{}, err
			}
			if settled {
				return EventOutcome{Result: models.WebhookApplied, Attempt: a, Warning: warning,
					Detail: fmt.Sprintf("attempt %s: %s -> declined (capture declined before the approval was recorded)", a.IdempotencyKey, a.Status)}, nil
			}
		}
		return EventOutcome{Result: models.WebhookIgnored, Attempt: a,
			Detail: fmt.Sprintf("attempt %s is %s, not paid by %s: nothing to reopen", a.IdempotencyKey, a.Status, pi.ID)}, nil
	}
	r := store.AttemptResult{Status: models.AttemptDeclined, PaymentIntentID: pi.ID, DeclineCode: store.DeclineCaptureDeclined, ErrorMessage: msg}
	if err := tx.MarkSubscriptionPastDue(now, a.InvoiceID); err != nil {
		return EventOutcome{}, err
	}
	if e.opts.Hook != nil {
		// Dunning follows the invoice whichever session the payment was
		// made in: the invoice is unpaid again and billingd collects it.
		billed := *a
		billed.OffSession = true
		if err := e.opts.Hook.AfterOutcome(tx, now, &billed, r); err != nil {
			return EventOutcome{}, err
		}
	}
	return EventOutcome{Result: models.WebhookApplied, Attempt: a, Warning: fmt.Sprintf("invoice %s reopened: %s", a.MerchantOrderID, msg),
		Detail: fmt.Sprintf("attempt %s: succeeded -> declined (capture declined); invoice reopened", a.IdempotencyKey)}, nil
}
