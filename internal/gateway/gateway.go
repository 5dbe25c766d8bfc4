// Package gateway defines what the charge path needs from a payment gateway and the
// outcome types every provider maps its answers into.
//
// The charge path never looks at HTTP status codes or provider JSON: a provider
// subpackage (wooshpay/, later checkout/) decides, where the answer is read, whether
// a call ended in money moving, in a definite refusal, or in an unknown state that
// must be retried with the same idempotency key. Keeping that decision in one place
// per provider is what lets the rest of billingd stay provider-agnostic and lets the
// exactly-once protocol reason about four cases instead of dozens of codes.
//
// This package imports no other internal package.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Gateway is the set of calls the billing engine makes. Every charge-moving call
// carries an idempotency key chosen by the caller, so a retry after an indefinite
// outcome replays the first result instead of charging again.
type Gateway interface {
	// CreatePaymentIntent creates and confirms a PaymentIntent in one call.
	CreatePaymentIntent(ctx context.Context, req PaymentIntentRequest) Result
	// RetrievePaymentIntent reads the current state of a PaymentIntent by id.
	RetrievePaymentIntent(ctx context.Context, id string) Result
	// ConfirmPaymentIntent confirms an existing PaymentIntent (same key rules as create).
	ConfirmPaymentIntent(ctx context.Context, id string, req ConfirmRequest) Result
	// CancelPaymentIntent cancels a PaymentIntent that has not succeeded.
	CancelPaymentIntent(ctx context.Context, id string, idempotencyKey string) Result
	// SearchPaymentIntentsByOrder finds PaymentIntents by merchant_order_id. The
	// reconciler uses it when an attempt never learned its PaymentIntent id.
	SearchPaymentIntentsByOrder(ctx context.Context, merchantOrderID string) ([]PaymentIntent, error)
	// KeyPolicy says how the provider keeps idempotency keys.
	KeyPolicy() KeyPolicy
}

// KeyPolicy is how a provider keeps idempotency keys, which decides how safe a
// resend with the same key is. Providers differ: WooshPay (Stripe-shaped)
// replays a key's first answer, whatever it was, for about a day; Checkout.com
// keeps a result only for a request it processed and answered 2xx, so a 5xx
// after the payment was made leaves no replay behind and a plain resend pays
// twice.
type KeyPolicy struct {
	// Window is how long after its first use a key is trusted to replay
	// (kept a little under the provider's documented retention). An attempt
	// older than this is never resent; only a read of the gateway settles it.
	Window time.Duration
	// LookupBeforeResend is set when the provider keeps results only for
	// requests it processed: the client then looks a possibly-sent request
	// up (PaymentIntentRequest.Replay) before it sends it again.
	LookupBeforeResend bool
}

// PaymentIntentRequest is the frozen request of one charge attempt. It is built from
// the attempt row, never from live subscription data, so a replay sends identical
// parameters and the gateway's idempotency layer accepts it.
type PaymentIntentRequest struct {
	Amount          int64
	Currency        string // upper-case ISO 4217
	Customer        string // gateway customer id (cus_…)
	PaymentMethod   string // gateway payment method id (pm_…)
	OffSession      bool
	MerchantOrderID string
	Description     string
	ReturnURL       string
	Metadata        map[string]string
	IdempotencyKey  string
	// PreviousPaymentID is the first customer-initiated payment of the
	// card's recurring series (Checkout.com's previous_payment_id), sent with
	// every merchant-initiated charge on that card; it changes when the card
	// changes. Providers that do not chain payments ignore it.
	PreviousPaymentID string
	// Replay is set when this request, under this key, may have reached the
	// gateway before (a retry after an indefinite answer, an attempt taken
	// over after a crash). A provider whose KeyPolicy has LookupBeforeResend
	// first looks for a payment made under the key (by MerchantOrderID,
	// matched by the key in the payment's metadata) and returns it instead of
	// sending.
	Replay bool
}

// ConfirmRequest carries the parameters of a confirm call.
type ConfirmRequest struct {
	PaymentMethod  string
	OffSession     bool
	ReturnURL      string
	IdempotencyKey string
}

// PaymentIntent is the provider-neutral view of a gateway PaymentIntent.
type PaymentIntent struct {
	ID     string
	Status IntentStatus
	Amount int64
	// AmountReceived is what the gateway says it collected, when it says so
	// (nil otherwise). A succeeded intent that collected another amount than
	// it was for is not the payment billingd asked for.
	AmountReceived  *int64
	Currency        string
	Customer        string
	PaymentMethod   string
	MerchantOrderID string
	Metadata        map[string]string
	// ActionURL is where the customer must go to authenticate (3-D Secure) when
	// Status is requires_action.
	ActionURL string
	// LastError is the decline of the most recent confirmation, if any.
	LastError *Decline
	Created   time.Time
}

// IntentStatus is the gateway's PaymentIntent status, as the gateway spells it.
type IntentStatus string

// PaymentIntent statuses shared by WooshPay and its Stripe-like peers.
const (
	IntentRequiresPaymentMethod IntentStatus = "requires_payment_method"
	IntentRequiresConfirmation  IntentStatus = "requires_confirmation"
	IntentRequiresAction        IntentStatus = "requires_action"
	IntentProcessing            IntentStatus = "processing"
	IntentRequiresCapture       IntentStatus = "requires_capture"
	IntentSucceeded             IntentStatus = "succeeded"
	IntentCanceled              IntentStatus = "canceled"
)

// Kind is the class of a call's result, the only thing the charge state machine
// branches on.
type Kind string

const (
	// Succeeded: the money moved. Definite.
	Succeeded Kind = "succeeded"
	// Processing: the gateway accepted the charge and will settle it later; the
	// webhook (or a poll) gives the final answer. Not retryable with a new attempt.
	Processing Kind = "processing"
	// RequiresAction: the issuer wants the cardholder to authenticate on-session.
	// Definite for an off-session attempt: never retried off-session.
	RequiresAction Kind = "requires_action"
	// Declined: the card was refused. Definite; Decline says whether it is hard.
	Declined Kind = "declined"
	// Canceled: the PaymentIntent was canceled. Definite, no money moved.
	Canceled Kind = "canceled"
	// Transient: the outcome is unknown (network error, timeout, 409, 429, 5xx).
	// Retry the same request with the same idempotency key.
	Transient Kind = "transient"
	// Invalid: the gateway rejected the request itself (4xx other than 402/409/429,
	// idempotency_error). Definite, no money moved, retrying will not help; it
	// needs a human.
	Invalid Kind = "invalid"
	// OurDataError: the gateway refused a charge because of what billingd sent,
	// not because of the card: an id it does not know (a customer or payment
	// method resource_missing), or a request it calls invalid
	// (invalid_request_error that is not a card problem). Definite, no money
	// moved. Result.Param names the parameter the gateway blamed. Whether it
	// is the customer's problem after all — a card that was verified with the
	// gateway or charged before and is gone now — only the charge path can
	// tell, from its database; otherwise a human must fix billingd's data and
	// the customer hears nothing.
	OurDataError Kind = "our_data_error"
)

// Definite reports whether a result of this kind settles the attempt's fate, so
// that a new attempt number may later be created.
func (k Kind) Definite() bool {
	switch k {
	case Succeeded, RequiresAction, Declined, Canceled, Invalid, OurDataError:
		return true
	}
	return false
}

// Result is the outcome of one gateway call.
type Result struct {
	Kind Kind
	// Intent is the PaymentIntent the gateway returned, when it returned one.
	Intent *PaymentIntent
	// Refund is the refund the gateway returned (refund calls only).
	Refund *Refund
	// Decline is set for Declined (and for Invalid when the gateway gave codes).
	Decline *Decline
	// RetryAfter is the gateway's requested wait before the next try (429/503).
	RetryAfter time.Duration
	// HTTPStatus is the response status, 0 when no response was read.
	HTTPStatus int
	// Param is the request parameter the gateway's error named (customer,
	// payment_method, amount…), "" when it named none. For OurDataError it
	// tells an unknown card or customer from a malformed request.
	Param string
	// IdempotencyConflict is set when the gateway refused the request because
	// its idempotency key was used before with other parameters. The key's
	// first use may have charged, so the attempt needs a human rather than a
	// verdict. The provider sets it where it reads the answer, so nobody
	// matches error text.
	IdempotencyConflict bool
	// Err explains a Transient or Invalid result. It never contains card data.
	Err error
}

// Decline describes why a charge was refused.
type Decline struct {
	Type        string // card_error, invalid_request_error, …
	Code        string // e.g. card_declined
	DeclineCode string // e.g. insufficient_funds
	AdviceCode  string // e.g. do_not_try_again
	Message     string
	// Hard means retrying the same card is pointless or forbidden; dunning waits
	// for a new payment method.
	Hard bool
}

// Reason returns the most specific code available, for logs and the database.
func (d *Decline) Reason() string {
	if d == nil {
		return ""
	}
	if d.DeclineCode != "" {
		return d.DeclineCode
	}
	return d.Code
}

// NewDecline builds a Decline with its hard/soft class filled in.
func NewDecline(typ, code, declineCode, adviceCode, message string) *Decline {
	return &Decline{
		Type:        typ,
		Code:        code,
		DeclineCode: declineCode,
		AdviceCode:  adviceCode,
		Message:     message,
		Hard:        IsHardDecline(code, declineCode, adviceCode),
	}
}

// ResultFromIntent maps a PaymentIntent returned with HTTP success to a Result. A
// requires_payment_method intent after a confirmation is a decline, described by
// its LastError.
func ResultFromIntent(pi *PaymentIntent, httpStatus int) Result {
	r := Result{Intent: pi, HTTPStatus: httpStatus}
	switch pi.Status {
	case IntentSucceeded:
		r.Kind = Succeeded
	case IntentProcessing:
		r.Kind = Processing
	case IntentRequiresAction:
		r.Kind = RequiresAction
	case IntentCanceled:
		r.Kind = Canceled
	case IntentRequiresPaymentMethod:
		r.Kind = Declined
		r.Decline = pi.LastError
		if r.Decline == nil {
			r.Decline = NewDecline("card_error", "card_declined", "generic_decline", "", "payment method required")
		}
	case IntentRequiresConfirmation, IntentRequiresCapture:
		// Not a state an auto-capture, confirm=true charge should rest in; treat
		// as unknown so it is looked at again rather than guessed.
		r.Kind = Transient
		r.Err = fmt.Errorf("payment intent %s in unexpected status %q", pi.ID, pi.Status)
	default:
		r.Kind = Transient
		r.Err = fmt.Errorf("payment intent %s in unknown status %q", pi.ID, pi.Status)
	}
	return r
}

// ErrNotFound is returned (wrapped) when the gateway has no such object.
var ErrNotFound = errors.New("gateway: not found")

// Event is a verified webhook event, provider-neutral. At most one of
// PaymentIntent, SetupIntent and Refund is set for the event types billingd acts on.
type Event struct {
	ID      string // the gateway's event id: the inbox's unique key
	Type    string // e.g. payment_intent.succeeded
	Created time.Time
	// PaymentIntent is the event's object for payment_intent.* events.
	PaymentIntent *PaymentIntent
	// SetupIntent is the event's object for setup_intent.* events.
	SetupIntent *SetupIntent
	// Refund is the event's object for charge.refund.updated.
	Refund *Refund
}

// SetupIntent is the provider-neutral view of a saved-card setup: a WooshPay
// setup intent, or a Checkout.com card verification on the hosted page.
type SetupIntent struct {
	ID            string
	Status        string
	Customer      string
	PaymentMethod string
	Metadata      map[string]string
	// SeriesPaymentID is the customer-initiated payment that stored the card
	// (Checkout.com): the previous_payment_id of every later recurring charge
	// on it. Empty on providers that do not chain payments.
	SeriesPaymentID string
	// Card describes the saved card when the event carried it.
	Card *CardDetails
}

// Webhook event types billingd acts on.
const (
	EventPaymentIntentSucceeded      = "payment_intent.succeeded"
	EventPaymentIntentPaymentFailed  = "payment_intent.payment_failed"
	EventPaymentIntentRequiresAction = "payment_intent.requires_action"
	EventPaymentIntentProcessing     = "payment_intent.processing"
	EventPaymentIntentCanceled       = "payment_intent.canceled"
	EventSetupIntentSucceeded        = "setup_intent.succeeded"
	// EventPaymentCaptureDeclined: an approved (authorized) payment could not
	// be captured, so no money moved after all. It reopens a paid invoice:
	// the one recorded exception to forward-only (Checkout.com's
	// payment_capture_declined).
	EventPaymentCaptureDeclined = "payment.capture_declined"
)

// Webhook verification errors. A receiver answers 400 to ErrWebhookMalformed and
// 401 to ErrWebhookSignature and ErrWebhookStale, and changes nothing.
var (
	// ErrWebhookMalformed: the signature header or the body cannot be parsed.
	ErrWebhookMalformed = errors.New("webhook: malformed")
	// ErrWebhookSignature: no signature in the header matches any secret.
	ErrWebhookSignature = errors.New("webhook: signature mismatch")
	// ErrWebhookStale: the signed timestamp is outside the tolerance (a replay).
	ErrWebhookStale = errors.New("webhook: timestamp outside tolerance")
)

// WebhookVerifier authenticates and decodes a webhook delivery. Only the raw body
// is signed, so it must be verified before anything parses it.
type WebhookVerifier interface {
	VerifyWebhook(body []byte, header http.Header, now time.Time) (*Event, error)
}

// SetupSessionRequest asks for a hosted page where the customer saves a new card.
type SetupSessionRequest struct {
	Customer       string
	SuccessURL     string
	CancelURL      string
	Metadata       map[string]string // returned on the setup_intent.succeeded event
	IdempotencyKey string
}

// CheckoutSession is a hosted gateway page; billingd redirects the customer to URL.
type CheckoutSession struct {
	ID          string
	URL         string
	SetupIntent string
	ExpiresAt   time.Time
}

// SetupSessions creates setup-mode checkout sessions: the card-update path of
// dunning. Kept apart from Gateway so the charge path needs nothing more.
type SetupSessions interface {
	CreateSetupCheckoutSession(ctx context.Context, req SetupSessionRequest) (*CheckoutSession, error)
}

// Accounts reads the gateway's customers and saved payment methods. An import
// uses it to check, before anything is written, that every id in the file exists
// at the gateway and that each payment method belongs to its row's customer.
// Kept apart from Gateway so the charge path needs nothing more.
type Accounts interface {
	// RetrieveCustomer reads a customer; an unknown id is an error for which
	// errors.Is(err, ErrNotFound) holds.
	RetrieveCustomer(ctx context.Context, id string) (*Customer, error)
	// RetrievePaymentMethod reads a saved payment method; an unknown id is an
	// error for which errors.Is(err, ErrNotFound) holds.
	RetrievePaymentMethod(ctx context.Context, id string) (*PaymentMethod, error)
}

// Customer is the provider-neutral view of a gateway customer.
type Customer struct {
	ID       string
	Email    string
	Name     string
	Metadata map[string]string
	// Deleted is set when the gateway still answers for the id but the customer
	// was deleted: it can no longer be charged.
	Deleted bool
	Created time.Time
}

// PaymentMethod is a saved card as the gateway describes it: enough to show the
// customer which card will be charged, to notice expiry and to check whose it
// is, never the number.
type PaymentMethod struct {
	ID   string
	Type string // "card"
	// Customer is the customer the method is attached to, "" when detached.
	Customer string
	Card     *CardDetails // nil for non-card methods
	Metadata map[string]string
	Created  time.Time
}

// CardDetails are the non-sensitive facts of a saved card.
type CardDetails struct {
	Brand    string
	Last4    string
	ExpMonth int
	ExpYear  int
	Country  string
	Funding  string
}

// PaymentListRequest asks for one page of the account's payments, newest
// first.
type PaymentListRequest struct {
	// CreatedFrom keeps payments created at or after this instant.
	CreatedFrom time.Time
	// StartingAfter is the cursor: the id of the last payment of the page
	// before ("" for the first page).
	StartingAfter string
	// Limit is the page size, 1..100 (0 means 100).
	Limit int
}

// PaymentPage is one page of a payment list.
type PaymentPage struct {
	Intents []PaymentIntent
	// HasMore is set when older payments (still inside CreatedFrom) follow:
	// ask again with StartingAfter the last intent's id.
	HasMore bool
}

// PaymentLister lists the account's payments by creation time, which
// `billingd reconcile` reads to find every payment made since an instant (a
// database restored from a backup older than its payments). Optional, and
// kept apart from Gateway: a provider with no such list (Checkout.com) is
// reconciled by looking each order id up (SearchPaymentIntentsByOrder).
type PaymentLister interface {
	ListPaymentIntents(ctx context.Context, req PaymentListRequest) (PaymentPage, error)
}
