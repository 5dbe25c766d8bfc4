package wooshpay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/billingd/billingd/internal/gateway"
)

// CustomerParams are the fields of a new gateway customer. billingd creates
// customers only for the demo and for imports that lack a gateway id.
type CustomerParams struct {
	Email    string
	Name     string
	Metadata map[string]string
}

// Customer is a gateway customer, the owner of saved payment methods.
type Customer struct {
	ID       string
	Email    string
	Name     string
	Metadata map[string]string
	Created  time.Time
}

// CardData is a raw card, used only by the demo to seed saved cards through the
// gateway's save-card flow (billingd itself never handles card numbers). It is
// written into exactly one request body and nowhere else; every formatting path
// (fmt verbs, JSON, slog) shows at most the last four digits and never the CVC,
// so a stray log statement cannot leak it.
type CardData struct {
	Number   string
	ExpMonth string // "1".."12"
	ExpYear  string // four digits
	CVC      string
	Name     string
}

// redacted returns the printable form of c.
func (c CardData) redacted() string {
	cvc := ""
	if c.CVC != "" {
		cvc = "***"
	}
	return fmt.Sprintf("CardData{Number:%s ExpMonth:%s ExpYear:%s CVC:%s Name:%s}",
		maskPAN(c.Number), c.ExpMonth, c.ExpYear, cvc, c.Name)
}

// maskPAN keeps only the last four digits, which are not secret (receipts print
// them) and help tell test cards apart.
func maskPAN(n string) string {
	if n == "" {
		return ""
	}
	digits := make([]byte, 0, len(n))
	for i := 0; i < len(n); i++ {
		if isDigit(n[i]) {
			digits = append(digits, n[i])
		}
	}
	if len(digits) < 12 {
		return "****"
	}
	return "****" + string(digits[len(digits)-4:])
}

// String redacts the number and CVC.
func (c CardData) String() string { return c.redacted() }

// GoString redacts the number and CVC under %#v.
func (c CardData) GoString() string { return "wooshpay." + c.redacted() }

// Format redacts under every fmt verb, including ones (%d, %x) that would
// otherwise print the fields one by one.
func (c CardData) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(c.GoString()))
		return
	}
	_, _ = f.Write([]byte(c.redacted()))
}

// MarshalJSON redacts, so logging the struct as JSON cannot leak it either.
func (c CardData) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"number": maskPAN(c.Number), "exp_month": c.ExpMonth, "exp_year": c.ExpYear})
}

// LogValue redacts for log/slog.
func (c CardData) LogValue() slog.Value { return slog.StringValue(c.redacted()) }

// SetupIntentParams describe a save-card request: the card is attached to
// Customer as a payment method usable off-session.
type SetupIntentParams struct {
	Customer  string
	Card      CardData
	Usage     string // default "off_session"
	ReturnURL string
	Metadata  map[string]string
}

// SetupIntent is the result of a save-card request. PaymentMethod is the saved
// card's id (pm_…) once Status is succeeded.
type SetupIntent struct {
	ID            string
	Status        string // succeeded, requires_action, requires_payment_method, …
	Customer      string
	PaymentMethod string
	Usage         string
	Metadata      map[string]string
	// ActionURL is where the cardholder authenticates when Status is requires_action.
	ActionURL string
	// LastError is why the last setup attempt failed, if it did.
	LastError *gateway.Decline
	Created   time.Time
}

// PaymentMethod is a saved card as the gateway describes it (the
// provider-neutral type, so the client serves gateway.Accounts directly).
type PaymentMethod = gateway.PaymentMethod

// CardDetails are the non-sensitive facts of a saved card.
type CardDetails = gateway.CardDetails

// CreateCustomer creates a gateway customer. idempotencyKey may be empty, but a
// caller that retries should pass one so a retry does not create a twin.
func (c *Client) CreateCustomer(ctx context.Context, p CustomerParams, idempotencyKey string) (*Customer, error) {
	cl := call{method: http.MethodPost, path: "/v1/customers", idempotencyKey: idempotencyKey}
	if err := checkIdempotencyKey(idempotencyKey, false); err != nil {
		return nil, asError(cl, invalidLocally(cl, err))
	}
	cl.body = customerBody(p)
	var w wireCustomer
	if r := c.exchange(ctx, cl, &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	return &Customer{
		ID:       w.ID,
		Email:    w.Email,
		Name:     w.Name,
		Metadata: map[string]string(w.Metadata),
		Created:  w.Created.Time,
	}, nil
}

// CreateSetupIntent saves p.Card for p.Customer through a confirmed SetupIntent
// (the gateway's save-card flow) and returns the intent with the new payment
// method id. A refused card comes back as an *Error whose Result is Declined.
//
// This is the only call that carries card data; it appears in the request body
// and nowhere else, and errors never include it.
func (c *Client) CreateSetupIntent(ctx context.Context, p SetupIntentParams, idempotencyKey string) (*SetupIntent, error) {
	cl := call{method: http.MethodPost, path: "/v1/setup_intents", idempotencyKey: idempotencyKey}
	if err := checkIdempotencyKey(idempotencyKey, false); err != nil {
		return nil, asError(cl, invalidLocally(cl, err))
	}
	if p.Card.Number == "" {
		return nil, asError(cl, invalidLocally(cl, errors.New("card number is required")))
	}
	usage := p.Usage
	if usage == "" {
		usage = "off_session"
	}
	cl.body = setupIntentBody{
		Confirm:            true,
		Customer:           p.Customer,
		PaymentMethodTypes: []string{"card"},
		PaymentMethodData: wirePMData{
			Type: "card",
			Card: wireCardData{
				Number:   p.Card.Number,
				ExpMonth: p.Card.ExpMonth,
				ExpYear:  p.Card.ExpYear,
				CVC:      p.Card.CVC,
				Name:     p.Card.Name,
			},
		},
		Usage:     usage,
		ReturnURL: p.ReturnURL,
		Metadata:  p.Metadata,
	}
	var w wireSetupIntent
	if r := c.exchange(ctx, cl, &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	return c.setupIntentFromWire(&w), nil
}

// setupIntentFromWire converts a decoded SetupIntent, scrubbing the gateway's
// free text.
func (c *Client) setupIntentFromWire(w *wireSetupIntent) *SetupIntent {
	return &SetupIntent{
		ID:            w.ID,
		Status:        w.Status,
		Customer:      string(w.Customer),
		PaymentMethod: string(w.PaymentMethod),
		Usage:         w.Usage,
		Metadata:      map[string]string(w.Metadata),
		ActionURL:     actionURL(w.NextAction),
		LastError:     c.declineFromWire(w.LastSetupError),
		Created:       w.Created.Time,
	}
}

// RetrieveCustomer reads a customer (GET /v1/customers/{id}): an import checks
// with it that a customer id exists before billingd charges it. A deleted
// customer comes back with Deleted set; an unknown id is an *Error for which
// errors.Is(err, gateway.ErrNotFound) holds.
func (c *Client) RetrieveCustomer(ctx context.Context, id string) (*gateway.Customer, error) {
	cl := call{method: http.MethodGet, path: "/v1/customers/" + id}
	if err := checkID("customer", id); err != nil {
		cl.path = "/v1/customers/{id}"
		return nil, asError(cl, invalidLocally(cl, err))
	}
	var w wireCustomer
	if r := c.exchange(ctx, cl, &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	return &gateway.Customer{
		ID:       w.ID,
		Email:    w.Email,
		Name:     w.Name,
		Metadata: map[string]string(w.Metadata),
		Deleted:  w.Deleted,
		Created:  w.Created.Time,
	}, nil
}

// RetrievePaymentMethod reads a saved payment method, e.g. to record its brand,
// last four digits and expiry next to a subscription, or to check at import that
// it belongs to the customer it will be charged for.
func (c *Client) RetrievePaymentMethod(ctx context.Context, id string) (*PaymentMethod, error) {
	cl := call{method: http.MethodGet, path: "/v1/payment_methods/" + id}
	if err := checkID("payment method", id); err != nil {
		cl.path = "/v1/payment_methods/{id}"
		return nil, asError(cl, invalidLocally(cl, err))
	}
	var w wirePaymentMethod
	if r := c.exchange(ctx, cl, &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	pm := &PaymentMethod{
		ID:       w.ID,
		Type:     w.Type,
		Customer: string(w.Customer),
		Metadata: map[string]string(w.Metadata),
		Created:  w.Created.Time,
	}
	if w.Card != nil {
		pm.Card = &CardDetails{
			Brand:    w.Card.Brand,
			Last4:    w.Card.Last4,
			ExpMonth: int(w.Card.ExpMonth),
			ExpYear:  int(w.Card.ExpYear),
			Country:  w.Card.Country,
			Funding:  w.Card.Funding,
		}
	}
	return pm, nil
}
