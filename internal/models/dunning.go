package models

import "time"

// DunningReason is why a case opened; it decides what the case does.
type DunningReason string

const (
	// ReasonActionRequired: the issuer wants the customer to authenticate
	// (3-D Secure). Never retried off-session; the customer pays on-session
	// through the emailed link.
	ReasonActionRequired DunningReason = "action_required"
	// ReasonSoftDecline: a temporary refusal (insufficient_funds, …). Retried
	// off-session on dunning.retry_schedule.
	ReasonSoftDecline DunningReason = "soft_decline"
	// ReasonHardDecline: the card cannot be charged again (expired, lost,
	// stolen, do-not-retry advice). Waits for a new payment method.
	ReasonHardDecline DunningReason = "hard_decline"
)

// CaseStatus is the state of a dunning case.
type CaseStatus string

const (
	// CaseOpen: billingd is still trying to collect the invoice.
	CaseOpen CaseStatus = "open"
	// CaseRecovered: the invoice was paid.
	CaseRecovered CaseStatus = "recovered"
	// CaseExhausted: the schedule ran out; the invoice is uncollectible and the
	// configured final action was applied to the subscription.
	CaseExhausted CaseStatus = "exhausted"
	// CaseStopped: an operator ended the case (`dunning stop`, voiding the
	// invoice, canceling the subscription); nothing more is tried or sent.
	CaseStopped CaseStatus = "stopped"
)

// FinalAction is what an exhausted case does to its subscription
// (dunning.final_action).
type FinalAction string

const (
	// FinalCancel cancels the subscription: it is never billed again.
	FinalCancel FinalAction = "cancel"
	// FinalUnpaid keeps the subscription as unpaid: not billed until
	// reactivated.
	FinalUnpaid FinalAction = "unpaid"
	// FinalPastDue leaves the subscription past_due: it keeps being billed.
	FinalPastDue FinalAction = "past_due"
)

// FinalActions lists every final action, in the order the config documents them.
var FinalActions = []FinalAction{FinalCancel, FinalUnpaid, FinalPastDue}

// EndsSubscription reports whether the action stops billing the subscription
// (and so writes off the invoices waiting behind the exhausted one).
func (a FinalAction) EndsSubscription() bool { return a == FinalCancel || a == FinalUnpaid }

// StepAction names one recorded transition of a dunning case (dunning_steps.action).
type StepAction string

const (
	// StepOpened: the case opened after the invoice's first failed attempt.
	StepOpened StepAction = "opened"
	// StepRetryScheduled: an off-session retry was scheduled (soft decline).
	StepRetryScheduled StepAction = "retry_scheduled"
	// StepReminder: a reminder email went out (or a retry the card cap held back).
	StepReminder StepAction = "reminder"
	// StepPaymentMethodUpdated: the customer saved a new card; it is retried at once.
	StepPaymentMethodUpdated StepAction = "payment_method_updated"
	// StepRecovered: the invoice was paid.
	StepRecovered StepAction = "recovered"
	// StepExhausted: the schedule ran out; the final action was applied.
	StepExhausted StepAction = "exhausted"
	// StepQueueWrittenOff: a later invoice of the subscription, waiting behind
	// the exhausted one, was written off with it.
	StepQueueWrittenOff StepAction = "queue_written_off"
	// StepHeldForReview: the gateway reported another amount or currency for
	// StepStopped: an operator ended the case (its detail says which action
	// and why).
	StepStopped StepAction = "stopped"
	// one of the invoice's attempts; the case waits (no retry, no reminder,
	// no exhaustion) until a human resolved the attempt.
	StepHeldForReview StepAction = "held_for_review"
)

// DunningCase tracks the recovery of one unpaid invoice. Step is the number of
// schedule steps used (retries for a soft decline, reminders otherwise);
// NextStepAt is when the case wakes up on its own (a reminder or exhaustion).
type DunningCase struct {
	ID              int64 `gorm:"primaryKey"`
	InvoiceID       int64
	SubscriptionID  int64
	Reason          DunningReason
	Status          CaseStatus
	Step            int
	Retries         int
	NextStepAt      *time.Time
	LastDeclineCode string
	FinalAction     FinalAction
	OpenedAt        time.Time
	ClosedAt        *time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// DunningStep is one recorded transition of a case.
type DunningStep struct {
	ID        int64 `gorm:"primaryKey"`
	CaseID    int64
	Step      int
	Action    StepAction
	Detail    string
	At        time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// EmailKind names a dunning email template.
type EmailKind string

const (
	// EmailActionRequired asks the customer to authenticate a payment (3-D Secure link).
	EmailActionRequired EmailKind = "action_required"
	// EmailPaymentFailed says a payment failed and will be retried (pay link).
	EmailPaymentFailed EmailKind = "payment_failed"
	// EmailCardUpdate asks for a new card (card-update link).
	EmailCardUpdate EmailKind = "card_update"
	// EmailRecovered is the receipt once the invoice is paid.
	EmailRecovered EmailKind = "recovered"
	// EmailSubscriptionEnded says the subscription was canceled or suspended.
	EmailSubscriptionEnded EmailKind = "subscription_ended"
	// EmailCardExpiring warns that the subscription's card expires before its
	// next charge and asks for a new one (a subscription-scoped card-update
	// link). It belongs to no invoice and no dunning case.
	EmailCardExpiring EmailKind = "card_expiring"
)

// EmailStatus is the state of an outbox row.
type EmailStatus string

const (
	// EmailPending: waiting to be sent (again) at next_attempt_at.
	EmailPending EmailStatus = "pending"
	// EmailSent: the SMTP server accepted it.
	EmailSent EmailStatus = "sent"
	// EmailFailed: the SMTP server permanently refused it (bad address); kept
	// for ops, never silently dropped.
	EmailFailed EmailStatus = "failed"
	// EmailCanceled: no longer relevant when its turn came: it asked the
	// customer to pay or to update the card for an invoice that was no longer
	// open by then (paid, or written off when its case ran out while the SMTP
	// server was down). The reason is in LastError; the email of what happened
	// instead (the receipt, the subscription-ended email) is sent.
	EmailCanceled EmailStatus = "canceled"
)

// LinkPurpose is what a pay link lets the customer do.
type LinkPurpose string

const (
	// LinkPay opens an on-session payment with the saved card (3-D Secure if asked).
	LinkPay LinkPurpose = "pay"
	// LinkUpdateCard opens the gateway's hosted page to save a new card.
	LinkUpdateCard LinkPurpose = "update_card"
)

// Email is one outbox row. The body is rendered when it is sent (so a pay link's
// token never rests in the database); MessageID is fixed at creation so a resend
// after a crash carries the same Message-ID.
type Email struct {
	ID        int64 `gorm:"primaryKey"`
	DedupeKey string
	Kind      EmailKind
	CaseID    *int64
	// InvoiceID is the invoice the email is about; nil for an email about
	// the subscription itself (its card expires before the next charge).
	InvoiceID *int64
	// SubscriptionID is the subscription the email is about; an email about
	// the subscription itself (its card expires) has no invoice.
	SubscriptionID *int64 `gorm:"column:subscription_id"`
	ToAddress      string
	LinkPurpose    LinkPurpose
	MessageID      string
	Subject        string
	Status         EmailStatus
	Attempts       int
	NextAttemptAt  time.Time
	LastError      string
	LeaseOwner     string
	LeaseUntil     *time.Time
	LeaseVersion   int64
	SentAt         *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// PayLink is an emailed link to pay or replace the card for one invoice, or
// (InvoiceID nil) to replace the card of one subscription. Only the SHA-256 of
// its token is stored.
type PayLink struct {
	ID        int64 `gorm:"primaryKey"`
	TokenHash string
	// ReturnHash is the SHA-256 of the link's return id, the value the
	// return, success and cancel URLs handed to the gateway carry instead of
	// the token: it opens only a page showing the payment's state.
	ReturnHash string
	// InvoiceID is the invoice the link collects; nil for a link scoped to
	// the subscription, which can only replace its card.
	InvoiceID *int64
	// SubscriptionID is the link's subscription; a link with no invoice is
	// scoped to the subscription and can only replace its card.
	SubscriptionID *int64 `gorm:"column:subscription_id"`
	CaseID         *int64
	EmailID        *int64
	Purpose        LinkPurpose
	ExpiresAt      time.Time
	LastUsedAt     *time.Time
	Uses           int
	// RevokedAt is when an operator's cancel or void killed the link: it
	// answers like an expired one from then on.
	RevokedAt *time.Time `gorm:"column:revoked_at"`
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TableName pins the table name.
func (DunningCase) TableName() string { return "dunning_cases" }

// TableName pins the table name.
func (DunningStep) TableName() string { return "dunning_steps" }

// TableName pins the table name.
func (Email) TableName() string { return "emails" }

// TableName pins the table name.
func (PayLink) TableName() string { return "pay_links" }
