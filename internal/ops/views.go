package ops

import (
	"time"

	"github.com/billingd/billingd/internal/money"
)

// The views below are what the CLI's --json and the admin API return: the
// merchant's names for things (the subscription's reference, the invoice's
// order id, the gateway's ids), amounts in minor units beside their display
// form, and times in UTC. docs/admin-api.md and docs/openapi.yaml describe
// them; a field added here is added there.

// Money is an amount in the currency's minor unit with its display form
// ("12.50 USD", by the ISO 4217 exponent).
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Display  string `json:"display"`
}

// NewMoney pairs an amount with its display form.
func NewMoney(amount int64, currency string) Money {
	return Money{Amount: amount, Currency: currency, Display: money.Format(amount, currency)}
}

// Card is a saved card as billingd knows it: never the number.
type Card struct {
	PaymentMethod string `json:"payment_method"`
	Brand         string `json:"brand,omitempty"`
	Last4         string `json:"last4,omitempty"`
	ExpMonth      int    `json:"exp_month,omitempty"`
	ExpYear       int    `json:"exp_year,omitempty"`
	// Dead is the decline code with which the gateway called the card dead
	// ("" while it may be charged).
	Dead string `json:"dead,omitempty"`
}

// Subscription is one subscription.
type Subscription struct {
	ID            int64      `json:"id"`
	Reference     string     `json:"reference"`
	Status        string     `json:"status"`
	Customer      string     `json:"customer"`
	Email         string     `json:"email"`
	Card          Card       `json:"card"`
	Price         Money      `json:"price"`
	Interval      string     `json:"interval"`
	IntervalCount int        `json:"interval_count"`
	Anchor        time.Time  `json:"anchor"`
	Timezone      string     `json:"timezone"`
	Description   string     `json:"description"`
	NextBillingAt time.Time  `json:"next_billing_at"`
	CancelAt      *time.Time `json:"cancel_at,omitempty"`
	CanceledAt    *time.Time `json:"canceled_at,omitempty"`
	PausedAt      *time.Time `json:"paused_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
}

// Invoice is what one period owes, with what was refunded of it.
type Invoice struct {
	ID            int64      `json:"id"`
	Number        string     `json:"number"` // the order id sent to the gateway
	Subscription  string     `json:"subscription"`
	Customer      string     `json:"customer"`
	Period        int        `json:"period"`
	PeriodStart   time.Time  `json:"period_start"`
	PeriodEnd     time.Time  `json:"period_end"`
	Total         Money      `json:"total"`
	Refunded      Money      `json:"refunded"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	PaidAt        *time.Time `json:"paid_at,omitempty"`
	Payment       string     `json:"payment,omitempty"` // the gateway's payment id
	CreatedAt     time.Time  `json:"created_at"`
}

// Attempt is one charge attempt (one idempotency key).
type Attempt struct {
	ID           int64      `json:"id"`
	Invoice      string     `json:"invoice"`
	Subscription string     `json:"subscription"`
	AttemptNo    int        `json:"attempt_no"`
	Status       string     `json:"status"`
	OffSession   bool       `json:"off_session"`
	Amount       Money      `json:"amount"`
	Payment      string     `json:"payment,omitempty"`
	DeclineCode  string     `json:"decline_code,omitempty"`
	AdviceCode   string     `json:"advice_code,omitempty"`
	HardDecline  bool       `json:"hard_decline,omitempty"`
	Error        string     `json:"error,omitempty"`
	Key          string     `json:"idempotency_key"`
	CreatedAt    time.Time  `json:"created_at"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
}

// DunningCase is the recovery of one unpaid invoice.
type DunningCase struct {
	ID              int64      `json:"id"`
	Invoice         string     `json:"invoice"`
	Subscription    string     `json:"subscription"`
	Reason          string     `json:"reason"`
	Status          string     `json:"status"`
	Step            int        `json:"step"`
	Retries         int        `json:"retries"`
	NextStepAt      *time.Time `json:"next_step_at,omitempty"`
	LastDeclineCode string     `json:"last_decline_code,omitempty"`
	OpenedAt        time.Time  `json:"opened_at"`
	ClosedAt        *time.Time `json:"closed_at,omitempty"`
}

// Refund is money given back of one payment.
type Refund struct {
	ID            int64      `json:"id"`
	Invoice       string     `json:"invoice"`
	Payment       string     `json:"payment"`
	Amount        Money      `json:"amount"`
	Reason        string     `json:"reason"`
	Status        string     `json:"status"`
	GatewayRefund string     `json:"gateway_refund,omitempty"`
	Error         string     `json:"error,omitempty"`
	Key           string     `json:"idempotency_key"`
	CreatedAt     time.Time  `json:"created_at"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
}

// Email is one outbox email.
type Email struct {
	ID      int64      `json:"id"`
	Kind    string     `json:"kind"`
	To      string     `json:"to"`
	Status  string     `json:"status"`
	Link    string     `json:"link,omitempty"` // the link's purpose, never its token
	Invoice string     `json:"invoice,omitempty"`
	SentAt  *time.Time `json:"sent_at,omitempty"`
	Error   string     `json:"error,omitempty"`
	Created time.Time  `json:"created_at"`
}

// PayLink is one emailed link, by purpose and state (never its token).
type PayLink struct {
	ID        int64      `json:"id"`
	Purpose   string     `json:"purpose"`
	Invoice   string     `json:"invoice,omitempty"`
	State     string     `json:"state"` // live | expired | revoked | settled
	ExpiresAt time.Time  `json:"expires_at"`
	Uses      int        `json:"uses"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// DunningStep is one transition of a case.
type DunningStep struct {
	Step   int       `json:"step"`
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
}

// AuditEntry is one operator action.
type AuditEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Via    string    `json:"via"`
	Action string    `json:"action"`
	Target string    `json:"target"` // type:ref
	Reason string    `json:"reason,omitempty"`
	Before string    `json:"before,omitempty"`
	After  string    `json:"after,omitempty"`
}

// Filter narrows a listing; zero fields match everything.
type Filter struct {
	// Status is one or more status names (any of them matches).
	Status []string
	// Customer is the gateway's customer id or the customer's email.
	Customer string
	// Reference is a subscription's reference (or, for invoices, an
	// invoice's number).
	Reference string
	// From and To bound the listed objects' main date (a subscription's
	// creation, an invoice's period start, an attempt's creation, a case's
	// opening), From inclusive and To exclusive.
	From, To *time.Time
	// Limit caps the rows (0: 100).
	Limit int
}

// SubscriptionStory is everything about one subscription.
type SubscriptionStory struct {
	Subscription Subscription  `json:"subscription"`
	Invoices     []Invoice     `json:"invoices"`
	Attempts     []Attempt     `json:"attempts"`
	Cases        []DunningCase `json:"dunning_cases"`
	Refunds      []Refund      `json:"refunds"`
	Emails       []Email       `json:"emails"`
	Links        []PayLink     `json:"links"`
	Audit        []AuditEntry  `json:"audit"`
}

// InvoiceStory is everything about one invoice.
type InvoiceStory struct {
	Invoice  Invoice       `json:"invoice"`
	Attempts []Attempt     `json:"attempts"`
	Case     *DunningCase  `json:"dunning_case,omitempty"`
	Steps    []DunningStep `json:"dunning_steps"`
	Refunds  []Refund      `json:"refunds"`
	Emails   []Email       `json:"emails"`
	Links    []PayLink     `json:"links"`
	Audit    []AuditEntry  `json:"audit"`
}

// CaseStory is one dunning case with its steps and emails.
type CaseStory struct {
	Case    DunningCase   `json:"dunning_case"`
	Invoice Invoice       `json:"invoice"`
	Steps   []DunningStep `json:"steps"`
	Emails  []Email       `json:"emails"`
	Links   []PayLink     `json:"links"`
	Audit   []AuditEntry  `json:"audit"`
}
