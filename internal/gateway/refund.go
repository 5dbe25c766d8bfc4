package gateway

import (
	"context"
	"fmt"
	"time"
)

// Refunds gives money of a succeeded payment back. Kept apart from Gateway so
// that the charge path and its fakes need nothing more; a provider implements
// both. Like a charge, creating a refund carries an idempotency key chosen by
// the caller: an indefinite answer is retried with the same key, which replays
// the first result instead of refunding twice.
type Refunds interface {
	// CreateRefund refunds req.Amount of req.PaymentIntent. The Result's Kind
	// says what the refund became (ResultFromRefund); Result.Refund is set
	// whenever the gateway returned the refund.
	CreateRefund(ctx context.Context, req RefundRequest) Result
	// RetrieveRefund reads a refund's current state by its gateway id;
	// paymentIntent is the payment it refunds (Checkout.com reads refunds
	// as actions of their payment).
	RetrieveRefund(ctx context.Context, paymentIntent, id string) Result
}

// RefundRequest is the frozen request of one refund row: a replay sends
// identical parameters.
type RefundRequest struct {
	PaymentIntent  string // the succeeded payment to refund (pi_…)
	Amount         int64  // ISO 4217 minor units, at most what the payment took
	Currency       string // upper-case ISO 4217; checked against the payment's
	Reason         RefundReason
	Metadata       map[string]string
	IdempotencyKey string
	// Replay is set when the refund may have reached the gateway before; a
	// provider whose KeyPolicy has LookupBeforeResend looks for a refund
	// made under the key (its reference) before it sends again.
	Replay bool
}

// RefundReason is the reason sent with a refund, as Stripe-shaped gateways
// spell it.
type RefundReason string

// Refund reasons the gateway accepts.
const (
	RefundDuplicate           RefundReason = "duplicate"
	RefundFraudulent          RefundReason = "fraudulent"
	RefundRequestedByCustomer RefundReason = "requested_by_customer"
)

// RefundStatus is the gateway's refund status, as the gateway spells it.
type RefundStatus string

// Refund statuses of WooshPay (Stripe-shaped).
const (
	RefundPending        RefundStatus = "pending"
	RefundRequiresAction RefundStatus = "requires_action"
	RefundSucceeded      RefundStatus = "succeeded"
	RefundFailed         RefundStatus = "failed"
	RefundCanceled       RefundStatus = "canceled"
)

// Refund is the provider-neutral view of a gateway refund.
type Refund struct {
	ID            string
	PaymentIntent string
	Amount        int64
	Currency      string
	Status        RefundStatus
	Reason        string
	// FailureReason says why a failed refund failed (e.g. expired_or_canceled_card).
	FailureReason string
	Metadata      map[string]string
	Created       time.Time
}

// ResultFromRefund maps a refund returned with HTTP success to a Result:
// succeeded → Succeeded; pending and requires_action → Processing (the refund
// webhook or a read settles it); failed → Declined; canceled → Canceled.
func ResultFromRefund(rf *Refund, httpStatus int) Result {
	r := Result{Refund: rf, HTTPStatus: httpStatus}
	switch rf.Status {
	case RefundSucceeded:
		r.Kind = Succeeded
	case RefundPending, RefundRequiresAction:
		r.Kind = Processing
	case RefundFailed:
		r.Kind = Declined
		r.Decline = &Decline{Type: "refund_error", Code: "refund_failed", DeclineCode: rf.FailureReason, Message: "refund failed: " + rf.FailureReason}
	case RefundCanceled:
		r.Kind = Canceled
	default:
		r.Kind = Transient
		r.Err = fmt.Errorf("refund %s in unknown status %q", rf.ID, rf.Status)
	}
	return r
}

// EventRefundUpdated is the refund webhook: its object is the refund.
const EventRefundUpdated = "charge.refund.updated"
