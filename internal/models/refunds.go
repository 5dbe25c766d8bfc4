package models

import "time"

// RefundStatus is the state of one refund row (one idempotency key); see
// docs/state-machines.md. A refund reserves its amount of the payment it
// refunds from the moment its row is committed until it fails or is canceled,
// so refunds of one payment can never add up to more than it took.
type RefundStatus string

const (
	// RefundConfirming: a second successful payment of an invoice was recorded
	// and waits for billingd to read both payments back from the gateway;
	// nothing has been sent. It moves to pending once both are confirmed
	// distinct and succeeded, to canceled when the second is not.
	RefundConfirming RefundStatus = "confirming"
	// RefundPending: the row is committed and its request may or may not have
	// been sent. Replaying it with the same idempotency key is always safe.
	RefundPending RefundStatus = "pending"
	// RefundUnknown: the request was sent and no definite answer came back
	// (timeout, dropped connection, 5xx, 409, 429 past the backoff); it is
	// replayed with the same key.
	RefundUnknown RefundStatus = "unknown"
	// RefundProcessing: the gateway accepted the refund and settles it later
	// (its status is pending); the webhook or a read gives the outcome.
	RefundProcessing RefundStatus = "processing"
	// RefundSucceeded: the money went back to the customer. Final.
	RefundSucceeded RefundStatus = "succeeded"
	// RefundFailed: the gateway refused the refund or it failed at the bank;
	// nothing went back and the reservation is released. Final.
	RefundFailed RefundStatus = "failed"
	// RefundCanceled: a duplicate that reading the gateway did not confirm
	// (the second payment had not succeeded); nothing was sent. Final.
	RefundCanceled RefundStatus = "canceled"
	// RefundNeedsReview: billingd cannot tell what to do (the payments read
	// back did not match, or the key's replay window passed without a
	// definite answer); the reservation is kept. A human looks.
	RefundNeedsReview RefundStatus = "needs_review"
)

// OpenRefundStatuses are the states the refund job works on.
var OpenRefundStatuses = []RefundStatus{RefundConfirming, RefundPending, RefundUnknown, RefundProcessing}

// ReleasedRefundStatuses are the states whose amount is no longer reserved:
// nothing went back to the customer. Every other state reserves its amount.
var ReleasedRefundStatuses = []RefundStatus{RefundFailed, RefundCanceled}

// Open reports whether the refund job still works on a refund in this state.
func (s RefundStatus) Open() bool {
	for _, o := range OpenRefundStatuses {
		if s == o {
			return true
		}
	}
	return false
}

// RefundReason is why money is given back, as the gateway spells it.
type RefundReason string

const (
	// RefundReasonDuplicate: a second payment for one invoice (refunded
	// automatically).
	RefundReasonDuplicate RefundReason = "duplicate"
	// RefundReasonRequestedByCustomer: an operator's refund.
	RefundReasonRequestedByCustomer RefundReason = "requested_by_customer"
	// RefundReasonFraudulent: an operator's refund of a fraudulent payment.
	RefundReasonFraudulent RefundReason = "fraudulent"
)

// Refund gives back Amount of the payment PaymentIntentID took for InvoiceID,
// under one idempotency key. The row is committed before anything is sent.
type Refund struct {
	ID        int64 `gorm:"primaryKey"`
	InvoiceID int64 `gorm:"column:invoice_id"`
	// AttemptID is the charge attempt whose payment is refunded, when billingd
	// has one for that payment.
	AttemptID       *int64 `gorm:"column:attempt_id"`
	PaymentIntentID string `gorm:"column:payment_intent_id"`
	// OriginalPaymentIntentID is, for a duplicate, the payment the invoice
	// was paid with (the one kept).
	OriginalPaymentIntentID string `gorm:"column:original_payment_intent_id"`
	Amount                  int64
	Currency                string
	Reason                  RefundReason
	IdempotencyKey          string `gorm:"column:idempotency_key"`
	Status                  RefundStatus
	GatewayRefundID         string `gorm:"column:gateway_refund_id"`
	ErrorMessage            string `gorm:"column:error_message"`
	Tries                   int
	LeaseOwner              string
	LeaseUntil              *time.Time
	LeaseVersion            int64
	NextTryAt               *time.Time
	FinishedAt              *time.Time
	CreatedAt               time.Time
	UpdatedAt               time.Time
	// LeaseDeadline is when this process's claim's lease runs out on its
	// monotonic clock (not stored; zero for a row not claimed here): the
	// refund job sends nothing once it has passed.
	LeaseDeadline time.Time `gorm:"-"`
}

// TableName pins the table name.
func (Refund) TableName() string { return "refunds" }

// RowID implements Leased.
func (r *Refund) RowID() int64 { return r.ID }

// TakeLease implements Leased.
func (r *Refund) TakeLease(owner string, until time.Time) {
	r.LeaseOwner, r.LeaseUntil = owner, &until
	r.LeaseVersion++
}
