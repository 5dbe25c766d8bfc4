package sim

import (
	"encoding/json"
	"time"
)

// Intent statuses, as WooshPay spells them.
const (
	statusRequiresPaymentMethod = "requires_payment_method"
	statusRequiresConfirmation  = "requires_confirmation"
	statusRequiresAction        = "requires_action"
	statusProcessing            = "processing"
	statusSucceeded             = "succeeded"
	statusCanceled              = "canceled"
)

// Event types the simulator emits.
const (
	evtPICreated        = "payment_intent.created"
	evtPISucceeded      = "payment_intent.succeeded"
	evtPIPaymentFailed  = "payment_intent.payment_failed"
	evtPIRequiresAction = "payment_intent.requires_action"
	evtPIProcessing     = "payment_intent.processing"
	evtPICanceled       = "payment_intent.canceled"
	evtSISucceeded      = "setup_intent.succeeded"
)

type customer struct {
	id          string
	created     time.Time
	email       string
	name        string
	description string
	metadata    map[string]string
	methods     []string // payment method ids, oldest first
}

// paymentMethod is a saved card. It deliberately has no field that could hold the
// card number or CVC: the charge outcome the number selects is kept as rule.
type paymentMethod struct {
	id       string
	customer string
	created  time.Time
	brand    string
	last4    string
	expMonth int
	expYear  int
	rule     cardRule
}

type setupIntent struct {
	id            string
	created       time.Time
	status        string
	customer      string
	paymentMethod string
	usage         string
	description   string
	returnURL     string
	metadata      map[string]string
	secret        string
	lastError     *cardError
}

type paymentIntent struct {
	id                 string
	created            time.Time
	amount             int64
	currency           string
	status             string
	customer           string
	paymentMethod      string
	merchantOrderID    string
	description        string
	returnURL          string
	metadata           map[string]string
	offSession         bool
	secret             string
	lastError          *cardError // shared, immutable table entry
	challengeURL       string     // set while requires_action
	processingSince    time.Time
	succeededAt        time.Time
	canceledAt         time.Time
	cancellationReason string
	actionSince        time.Time // when the challenge was handed out

	// Checkout.com's payments: a capture apart from the authorization, card
	// verifications, the merchant-initiated series and the redirect URLs.
	deferCapture      bool // approved MIT: captured after Options.CaptureDelay
	captured          bool
	capturedAt        time.Time
	captureDeclined   bool
	expired           bool
	verification      bool // amount 0, "Card Verified"; not in the ledger
	paymentType       string
	merchantInitiated bool
	previousPaymentID string
	successURL        string
	failureURL        string
	responseCode      string // Checkout.com response code of the last answer
	sourceType        string // "card" or "id", as requested
	actionID          string // the authorization's action
	captureActionID   string
}

// ---- wire forms ----

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func msOrNil(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

func metaOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

type customerWire struct {
	ID          string            `json:"id"`
	Object      string            `json:"object"`
	Created     int64             `json:"created"`
	Email       *string           `json:"email"`
	Name        *string           `json:"name"`
	Description *string           `json:"description"`
	Metadata    map[string]string `json:"metadata"`
	Livemode    bool              `json:"livemode"`
}

func (c *customer) wire() customerWire {
	return customerWire{
		ID: c.id, Object: "customer", Created: c.created.UnixMilli(),
		Email: strOrNil(c.email), Name: strOrNil(c.name), Description: strOrNil(c.description),
		Metadata: metaOrEmpty(c.metadata),
	}
}

type cardWire struct {
	Brand    string `json:"brand"`
	Last4    string `json:"last4"`
	ExpMonth int    `json:"exp_month"`
	ExpYear  int    `json:"exp_year"`
	Funding  string `json:"funding"`
}

type paymentMethodWire struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"`
	Type     string            `json:"type"`
	Customer *string           `json:"customer"`
	Card     cardWire          `json:"card"`
	Created  int64             `json:"created"`
	Metadata map[string]string `json:"metadata"`
	Livemode bool              `json:"livemode"`
}

func (pm *paymentMethod) wire() paymentMethodWire {
	return paymentMethodWire{
		ID: pm.id, Object: "payment_method", Type: "card", Customer: strOrNil(pm.customer),
		Card:    cardWire{Brand: pm.brand, Last4: pm.last4, ExpMonth: pm.expMonth, ExpYear: pm.expYear, Funding: "credit"},
		Created: pm.created.UnixMilli(), Metadata: map[string]string{},
	}
}

type setupIntentWire struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Created            int64             `json:"created"`
	Status             string            `json:"status"`
	Customer           *string           `json:"customer"`
	PaymentMethod      *string           `json:"payment_method"`
	PaymentMethodTypes []string          `json:"payment_method_types"`
	Usage              string            `json:"usage"`
	Description        *string           `json:"description"`
	ReturnURL          *string           `json:"return_url"`
	Metadata           map[string]string `json:"metadata"`
	ClientSecret       string            `json:"client_secret"`
	LastSetupError     *cardError        `json:"last_setup_error"`
	NextAction         *nextActionWire   `json:"next_action"`
	Livemode           bool              `json:"livemode"`
}

func (si *setupIntent) wire() setupIntentWire {
	return setupIntentWire{
		ID: si.id, Object: "setup_intent", Created: si.created.UnixMilli(), Status: si.status,
		Customer: strOrNil(si.customer), PaymentMethod: strOrNil(si.paymentMethod),
		PaymentMethodTypes: []string{"card"}, Usage: si.usage,
		Description: strOrNil(si.description), ReturnURL: strOrNil(si.returnURL),
		Metadata: metaOrEmpty(si.metadata), ClientSecret: si.id + "_secret_" + si.secret,
		LastSetupError: si.lastError,
	}
}

type nextActionWire struct {
	Type              string                `json:"type"`
	ChallengeRedirect challengeRedirectWire `json:"challenge_redirect"`
}

type challengeRedirectWire struct {
	URL       string `json:"url"`
	ReturnURL string `json:"return_url"`
}

type paymentIntentWire struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Created            int64             `json:"created"`
	Amount             int64             `json:"amount"`
	AmountReceived     int64             `json:"amount_received"`
	Currency           string            `json:"currency"`
	Status             string            `json:"status"`
	Customer           *string           `json:"customer"`
	PaymentMethod      *string           `json:"payment_method"`
	PaymentMethodTypes []string          `json:"payment_method_types"`
	MerchantOrderID    *string           `json:"merchant_order_id"`
	Description        *string           `json:"description"`
	Metadata           map[string]string `json:"metadata"`
	OffSession         bool              `json:"off_session"`
	ClientSecret       string            `json:"client_secret"`
	ReturnURL          *string           `json:"return_url"`
	LastPaymentError   *cardError        `json:"last_payment_error"`
	NextAction         *nextActionWire   `json:"next_action"`
	CanceledAt         *int64            `json:"canceled_at"`
	CancellationReason *string           `json:"cancellation_reason"`
	CaptureMethod      string            `json:"capture_method"`
	ConfirmationMethod string            `json:"confirmation_method"`
	Livemode           bool              `json:"livemode"`
}

func (pi *paymentIntent) wire() paymentIntentWire {
	w := paymentIntentWire{
		ID: pi.id, Object: "payment_intent", Created: pi.created.UnixMilli(),
		Amount: wpAmount(pi.amount, pi.currency), Currency: pi.currency, Status: pi.status,
		Customer: strOrNil(pi.customer), PaymentMethod: strOrNil(pi.paymentMethod),
		PaymentMethodTypes: []string{"card"}, MerchantOrderID: strOrNil(pi.merchantOrderID),
		Description: strOrNil(pi.description), Metadata: metaOrEmpty(pi.metadata),
		OffSession: pi.offSession, ClientSecret: pi.id + "_secret_" + pi.secret,
		ReturnURL: strOrNil(pi.returnURL), LastPaymentError: pi.lastError,
		CanceledAt: msOrNil(pi.canceledAt), CancellationReason: strOrNil(pi.cancellationReason),
		CaptureMethod: "automatic", ConfirmationMethod: "automatic",
	}
	if pi.status == statusSucceeded {
		w.AmountReceived = w.Amount
	}
	if pi.status == statusRequiresAction {
		w.NextAction = &nextActionWire{
			Type:              "challenge_redirect",
			ChallengeRedirect: challengeRedirectWire{URL: pi.challengeURL, ReturnURL: pi.returnURL},
		}
	}
	return w
}

// mustJSON marshals values built from the types above, which cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("sim: marshal: " + err.Error())
	}
	return b
}
