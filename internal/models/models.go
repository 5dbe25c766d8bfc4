// Package models holds the rows billingd keeps and the documented state enums that
// finance ops filter on. It has no queries: reading and writing belong to store.
//
// Amounts are integers in the currency's minor unit; currencies are upper-case ISO
// 4217 codes; every time is UTC. Status columns are plain strings so that
// `SELECT … WHERE status = 'past_due'` works from any SQL client.
package models

import "time"

// SubscriptionStatus is the billing state of a subscription (see docs/state-machines.md).
type SubscriptionStatus string

const (
	// SubscriptionActive subscriptions are billed when a period starts.
	SubscriptionActive SubscriptionStatus = "active"
	// SubscriptionPastDue subscriptions have an open invoice whose charge did not
	// complete; they keep being billed while dunning tries to recover.
	SubscriptionPastDue SubscriptionStatus = "past_due"
	// SubscriptionUnpaid subscriptions exhausted dunning with final_action unpaid;
	// they are no longer billed.
	SubscriptionUnpaid SubscriptionStatus = "unpaid"
	// SubscriptionPaused subscriptions are not invoiced while paused; an
	// operator's resume bills from the next period start on, never the
	// periods that started while paused.
	SubscriptionPaused SubscriptionStatus = "paused"
	// SubscriptionCanceled subscriptions are never billed again.
	SubscriptionCanceled SubscriptionStatus = "canceled"
)

// BillableSubscriptionStatuses are the states in which the sweep creates invoices
// for a subscription. It is the one definition of that list: Billable reads it, and
// the store builds its due queries and the subscriptions_due partial index's
// condition from it.
var BillableSubscriptionStatuses = []SubscriptionStatus{SubscriptionActive, SubscriptionPastDue}

// Billable reports whether the sweep creates invoices for a subscription in this state.
func (s SubscriptionStatus) Billable() bool {
	for _, b := range BillableSubscriptionStatuses {
		if s == b {
			return true
		}
	}
	return false
}

// InvoiceStatus is the state of one billing period's invoice.
type InvoiceStatus string

const (
	// InvoiceOpen invoices are owed and not yet collected.
	InvoiceOpen InvoiceStatus = "open"
	// InvoicePaid invoices were collected by exactly one succeeded charge attempt.
	InvoicePaid InvoiceStatus = "paid"
	// InvoiceUncollectible invoices were given up on after dunning.
	InvoiceUncollectible InvoiceStatus = "uncollectible"
	// InvoiceVoid invoices were canceled before collection and are not owed.
	InvoiceVoid InvoiceStatus = "void"
)

// AttemptStatus is the state of one charge attempt (one idempotency key).
type AttemptStatus string

const (
	// AttemptPending: the attempt row is committed and its request may or may not
	// have been sent. Replaying it with the same idempotency key is always safe.
	AttemptPending AttemptStatus = "pending"
	// AttemptUnknown: the request was sent and no definite answer came back
	// (timeout, dropped connection, 5xx, 409, 429 past the backoff window).
	AttemptUnknown AttemptStatus = "unknown"
	// AttemptProcessing: the gateway accepted the charge and settles it later.
	AttemptProcessing AttemptStatus = "processing"
	// AttemptSucceeded: money moved; the invoice is paid.
	AttemptSucceeded AttemptStatus = "succeeded"
	// AttemptRequiresAction: the issuer wants on-session authentication (3-D Secure).
	AttemptRequiresAction AttemptStatus = "requires_action"
	// AttemptDeclined: the card was refused (decline_code, hard_decline say how).
	AttemptDeclined AttemptStatus = "declined"
	// AttemptCanceled: the PaymentIntent was canceled; no money moved.
	AttemptCanceled AttemptStatus = "canceled"
	// AttemptFailed: the gateway rejected the request itself; no money moved and
	// retrying the same request cannot help. Needs a human.
	AttemptFailed AttemptStatus = "failed"
	// AttemptNeedsReview: the outcome could not be established; money may or may
	// not have moved. Never retried blindly; needs a human.
	AttemptNeedsReview AttemptStatus = "needs_review"
)

// UnresolvedAttemptStatuses are the states in which an attempt's outcome is not yet
// known. While an invoice has an attempt in one of them, no other attempt for it may
// start (a partial unique index enforces it).
var UnresolvedAttemptStatuses = []AttemptStatus{AttemptPending, AttemptUnknown, AttemptProcessing}

// OpenAttemptStatuses are the states in which an attempt could still take the
// customer's money: its outcome is not known yet, or its intent waits for the
// customer to authenticate (requires_action, begun on- or off-session; it
// leaves this list when the intent is canceled at the gateway or fails). One
// open customer payment per invoice: while an invoice has an attempt in one of
// them, no other attempt for it may start (the charge_attempts_one_open
// partial unique index enforces it).
var OpenAttemptStatuses = []AttemptStatus{AttemptPending, AttemptUnknown, AttemptProcessing, AttemptRequiresAction}

// AttentionAttemptStatuses are the states in which an attempt waits for a human:
// its outcome could not be established, or the gateway refused billingd's own
// request. `billingd status`, /metrics and the README's queries read this list.
var AttentionAttemptStatuses = []AttemptStatus{AttemptNeedsReview, AttemptFailed}

// Unresolved reports whether the attempt's outcome is still open.
func (s AttemptStatus) Unresolved() bool {
	for _, u := range UnresolvedAttemptStatuses {
		if s == u {
			return true
		}
	}
	return false
}

// RunStatus is the state of a billing_runs row.
type RunStatus string

const (
	// RunRunning: the pass is in progress (or its process died; see finished_at).
	RunRunning RunStatus = "running"
	// RunFinished: the pass ran to the end.
	RunFinished RunStatus = "finished"
	// RunInterrupted: the pass stopped early (shutdown or error); the next pass resumes.
	RunInterrupted RunStatus = "interrupted"
)

// Customer is a gateway customer billingd charges.
type Customer struct {
	ID        int64  `gorm:"primaryKey"`
	GatewayID string `gorm:"column:gateway_customer_id"`
	Email     string
	// VerifiedAt is when the gateway confirmed the id exists (an import with
	// verification); nil when never checked. A charge refused because the
	// gateway does not know a verified customer is the customer's problem, an
	// unverified one billingd's.
	VerifiedAt *time.Time `gorm:"column:verified_at"`
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// PaymentMethod is a card saved at the gateway. billingd keeps only the gateway's id
// and display hints, never card numbers.
type PaymentMethod struct {
	ID         int64  `gorm:"primaryKey"`
	CustomerID int64  `gorm:"column:customer_id"`
	GatewayID  string `gorm:"column:gateway_payment_method_id"`
	Brand      string
	Last4      string `gorm:"column:last4"`
	// VerifiedAt is when the gateway confirmed the card exists and belongs to
	// the customer (an import with verification); nil when never checked. A
	// verified card the gateway no longer knows was removed by the customer: a
	// hard decline and a card-update email, not a data error for a human.
	VerifiedAt *time.Time `gorm:"column:verified_at"`
	// DeadAt is when the gateway called the card dead (a hard decline such as
	// expired, lost or stolen); nil while it may be charged. Charging a dead card
	// again cannot succeed and counts against the merchant with the card
	// networks, so no off-session charge uses it until the subscription gets
	// another payment method.
	DeadAt *time.Time `gorm:"column:dead_at"`
	// DeadReason is the decline code that killed the card ("" while alive).
	DeadReason string `gorm:"column:dead_reason"`
	// PreviousPaymentID is the customer-initiated payment that stored the
	// card (Checkout.com): every merchant-initiated charge on it names that
	// payment as its previous_payment_id. "" on WooshPay.
	PreviousPaymentID string `gorm:"column:previous_payment_id"`
	// ExpMonth and ExpYear are the card's expiry as the gateway last
	// reported it (0 when unknown); DetailsReadAt is when brand, last 4 and
	// expiry were read. They name the card to the customer and decide the
	// expiring-card notice.
	ExpMonth      int        `gorm:"column:exp_month"`
	ExpYear       int        `gorm:"column:exp_year"`
	DetailsReadAt *time.Time `gorm:"column:details_read_at"`
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Subscription bills Amount every IntervalCount × Interval from AnchorAt.
//
// NextPeriod is the index of the next period to invoice (periods 0…NextPeriod-1 have
// invoices) and NextBillingAt is that period's start: the sweep selects on it.
//
// Timezone is the IANA zone the subscription's calendar is read in (the anchor's
// day of month and wall-clock time), fixed when the subscription is created, so
// that changing the configured default zone never moves the periods of a
// subscription that already exists.
type Subscription struct {
	ID              int64  `gorm:"primaryKey"`
	Reference       string // the merchant's unique id
	CustomerID      int64  `gorm:"column:customer_id"`
	PaymentMethodID int64  `gorm:"column:payment_method_id"`
	Description     string
	Amount          int64
	Currency        string
	Interval        string `gorm:"column:interval_unit"`
	IntervalCount   int
	AnchorAt        time.Time
	Timezone        string `gorm:"column:timezone"`
	NextPeriod      int
	NextBillingAt   time.Time
	Status          SubscriptionStatus
	CanceledAt      *time.Time
	// CancelAt is an operator's cancel at period end: the subscription keeps
	// its status, and is billed for no period that starts at or after this
	// time, when it becomes canceled.
	CancelAt *time.Time `gorm:"column:cancel_at"`
	// PausedAt is when an operator paused the subscription (nil unless
	// paused).
	PausedAt  *time.Time `gorm:"column:paused_at"`
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Invoice is what one subscription owes for one period. UNIQUE(subscription_id,
// period_start) makes invoice creation idempotent.
//
// NextAttemptAt is when the next charge attempt may start; NULL means nothing is
// scheduled (an attempt is in flight, the invoice is settled, or it waits for the
// customer).
type Invoice struct {
	ID              int64  `gorm:"primaryKey"`
	PublicID        string `gorm:"column:public_id"` // sent as merchant_order_id
	SubscriptionID  int64  `gorm:"column:subscription_id"`
	PeriodIndex     int
	PeriodStart     time.Time
	PeriodEnd       time.Time
	Amount          int64
	Currency        string
	Status          InvoiceStatus
	AttemptCount    int
	NextAttemptAt   *time.Time
	PaidAt          *time.Time
	PaymentIntentID string `gorm:"column:payment_intent_id"`
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// ChargeAttempt is one try to collect an invoice, under one idempotency key. Its
// request fields are frozen when the row is committed, before anything is sent, so a
// replay sends byte-identical parameters.
type ChargeAttempt struct {
	ID              int64  `gorm:"primaryKey"`
	InvoiceID       int64  `gorm:"column:invoice_id"`
	SubscriptionID  int64  `gorm:"column:subscription_id"`
	AttemptNo       int    `gorm:"column:attempt_no"`
	IdempotencyKey  string `gorm:"column:idempotency_key"`
	MerchantOrderID string `gorm:"column:merchant_order_id"`
	Amount          int64
	Currency        string
	GatewayCustomer string `gorm:"column:gateway_customer_id"`
	GatewayPM       string `gorm:"column:gateway_payment_method_id"`
	// PreviousPaymentID is the card's series payment the attempt was sent
	// with (Checkout.com's previous_payment_id), frozen like the rest of the
	// request.
	PreviousPaymentID string `gorm:"column:previous_payment_id"`
	OffSession        bool
	Status            AttemptStatus
	PaymentIntentID   string `gorm:"column:payment_intent_id"`
	DeclineCode       string
	AdviceCode        string
	HardDecline       bool
	ActionURL         string `gorm:"column:action_url"`
	ErrorMessage      string
	Tries             int
	LastHTTPStatus    int `gorm:"column:last_http_status"`
	LeaseOwner        string
	LeaseUntil        *time.Time
	LeaseVersion      int64
	NextTryAt         *time.Time
	// ReconcileCount and NextReconcileAt are the reconciler's schedule for an
	// attempt it could not settle yet.
	ReconcileCount  int
	NextReconcileAt *time.Time
	FinishedAt      *time.Time
	// CancelRequestedAt is set when billingd decided to cancel the attempt's
	// intent at the gateway (CancelReason says why: a challenge abandoned
	// past dunning.challenge_timeout, or the invoice paid, written off or
	// voided otherwise); the intents job performs the cancel, CancelTries
	// counts its failed tries and CancelNextTryAt is when it tries again.
	CancelRequestedAt *time.Time
	CancelReason      string
	CancelTries       int
	CancelNextTryAt   *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
	// LeaseDeadline is when the lease this process's claim took runs out,
	// on this process's monotonic clock (not stored; zero for a row not
	// claimed here). The charge engine sends nothing once it has passed
	// (docs/protocol.md, "No send on a lost lease"); unlike LeaseUntil it cannot be moved by the wall
	// clock stepping.
	LeaseDeadline time.Time `gorm:"-"`
}

// Why billingd cancels an attempt's intent at the gateway.
const (
	// CancelChallengeTimeout: the customer left the 3-D Secure challenge
	// unanswered past dunning.challenge_timeout.
	CancelChallengeTimeout = "challenge_timeout"
	// CancelInvoiceSettled: the invoice was paid (by another intent), written
	// off or voided while the intent still waited.
	CancelInvoiceSettled = "invoice_settled"
	// CancelSuperseded: the customer pressed Pay on a link while an
	// off-session intent waited for authentication; it is canceled before
	// the on-session one starts.
	CancelSuperseded = "superseded"
)

// BillingRun is one sweep, kept so ops can see when billing ran and what it did.
type BillingRun struct {
	ID        int64  `gorm:"primaryKey"`
	Trigger   string `gorm:"column:triggered_by"`
	Owner     string
	Status    RunStatus
	StartedAt time.Time
	// InvoicedAt is when the pass finished invoicing (nil while it still
	// invoices): a peer pass with nothing to claim waits for it.
	InvoicedAt       *time.Time
	FinishedAt       *time.Time
	DurationMS       int64 `gorm:"column:duration_ms"`
	SubscriptionsDue int
	InvoicesCreated  int
	AttemptsStarted  int
	AttemptsReplayed int
	Succeeded        int
	Processing       int
	RequiresAction   int
	Declined         int
	Failed           int
	Unknown          int
	Error            string
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// WebhookResult says what a stored webhook event did.
type WebhookResult string

const (
	// WebhookApplied: the event moved an attempt, invoice or payment method.
	WebhookApplied WebhookResult = "applied"
	// WebhookIgnored: nothing to do (not billingd's PaymentIntent, or the state
	// had already moved past it); Detail says which.
	WebhookIgnored WebhookResult = "ignored"
)

// WebhookEvent is one gateway event in the inbox, unique by gateway event id.
type WebhookEvent struct {
	ID               int64  `gorm:"primaryKey"`
	GatewayEventID   string `gorm:"column:gateway_event_id"`
	Type             string
	ObjectID         string
	Result           WebhookResult
	Detail           string
	Payload          string
	GatewayCreatedAt *time.Time
	// NeedsReview: the event reported an amount or currency other than its
	// attempt's frozen request; it was stored, not applied (Detail says why).
	NeedsReview bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// TableName pins the table name.
func (WebhookEvent) TableName() string { return "webhook_events" }

// TableName pins the table names so GORM's pluralization can never drift from the
// migrations.
func (Customer) TableName() string { return "customers" }

// TableName pins the table name.
func (PaymentMethod) TableName() string { return "payment_methods" }

// TableName pins the table name.
func (Subscription) TableName() string { return "subscriptions" }

// TableName pins the table name.
func (Invoice) TableName() string { return "invoices" }

// TableName pins the table name.
func (ChargeAttempt) TableName() string { return "charge_attempts" }

// TableName pins the table name.
func (BillingRun) TableName() string { return "billing_runs" }

// Leased rows are worked on by one worker at a time: a claim writes the owner,
// the lease's end and a new lease version, and result writes check the version.
type Leased interface {
	// RowID is the row's primary key.
	RowID() int64
	// TakeLease records, in memory, the lease a claim just wrote.
	TakeLease(owner string, until time.Time)
}

// RowID implements Leased.
func (a *ChargeAttempt) RowID() int64 { return a.ID }

// TakeLease implements Leased.
func (a *ChargeAttempt) TakeLease(owner string, until time.Time) {
	a.LeaseOwner, a.LeaseUntil = owner, &until
	a.LeaseVersion++
}

// RowID implements Leased.
func (e *Email) RowID() int64 { return e.ID }

// TakeLease implements Leased.
func (e *Email) TakeLease(owner string, until time.Time) {
	e.LeaseOwner, e.LeaseUntil = owner, &until
	e.LeaseVersion++
}
