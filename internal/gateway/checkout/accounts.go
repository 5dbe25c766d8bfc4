package checkout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
)

// RetrieveCustomer reads a customer (GET /customers/{id}); an unknown id is an
// *Error for which errors.Is(err, gateway.ErrNotFound) holds.
func (c *Client) RetrieveCustomer(ctx context.Context, id string) (*gateway.Customer, error) {
	cl := call{method: http.MethodGet, path: "/customers/" + id}
	if err := checkID("customer", id); err != nil {
		cl.path = "/customers/{id}"
		return nil, asError(cl, refuse(cl, gateway.Invalid, err))
	}
	var w wireCustomer
	if r := c.decide(ctx, cl, c.do(ctx, cl), &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	return &gateway.Customer{
		ID:       w.ID,
		Email:    w.Email,
		Name:     w.Name,
		Metadata: map[string]string(w.Metadata),
	}, nil
}

// RetrievePaymentMethod reads a stored card (GET /instruments/{id}): the
// src_… id billingd charges. Customer is the instrument's customer, so an
// import can check that each card belongs to its row's customer.
func (c *Client) RetrievePaymentMethod(ctx context.Context, id string) (*gateway.PaymentMethod, error) {
	cl := call{method: http.MethodGet, path: "/instruments/" + id}
	if err := checkID("instrument", id); err != nil {
		cl.path = "/instruments/{id}"
		return nil, asError(cl, refuse(cl, gateway.Invalid, err))
	}
	var w wireInstrument
	if r := c.decide(ctx, cl, c.do(ctx, cl), &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	pm := &gateway.PaymentMethod{ID: w.ID, Type: strings.ToLower(w.Type)}
	if w.Customer != nil {
		pm.Customer = w.Customer.ID
	}
	if pm.Type == "card" || pm.Type == "" {
		pm.Type = "card"
		pm.Card = &gateway.CardDetails{
			Brand:    strings.ToLower(w.Scheme),
			Last4:    w.Last4,
			ExpMonth: w.ExpiryMonth,
			ExpYear:  w.ExpiryYear,
			Country:  strings.ToUpper(w.IssuerCountry),
			Funding:  strings.ToLower(w.CardType),
		}
	}
	return pm, nil
}

// Hosted page defaults where the setup request says nothing.
const (
	// DefaultVerificationCurrency is the currency of the card verification
	// when the session's metadata names none.
	DefaultVerificationCurrency = "USD"
	// DefaultBillingCountry fills the hosted page's required billing country
	// when the session's metadata names none.
	DefaultBillingCountry = "US"
	// HostedPageLifetime is how long billingd treats a hosted page as usable:
	// Checkout.com's answer carries no expiry.
	HostedPageLifetime = 24 * time.Hour
)

type hostedBody struct {
	Amount      int64             `json:"amount"`
	Currency    string            `json:"currency"`
	Reference   string            `json:"reference"`
	Description string            `json:"description"`
	Customer    customerBody      `json:"customer"`
	Billing     hostedBilling     `json:"billing"`
	PaymentType string            `json:"payment_type"`
	SuccessURL  string            `json:"success_url"`
	FailureURL  string            `json:"failure_url"`
	CancelURL   string            `json:"cancel_url"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	ThreeDS     threeDSBody       `json:"3ds"`
}

type hostedBilling struct {
	Address struct {
		Country string `json:"country"`
	} `json:"address"`
}

// CreateSetupCheckoutSession creates a Hosted Payments Page on which the
// customer saves a new card: a card verification (amount 0) in the customer's
// currency (req.Metadata["currency"], else USD), recurring, with 3-D Secure,
// for customer req.Customer. When the card is verified Checkout.com sends
// card_verified carrying req.Metadata, the stored card (source.id) and the
// verification payment, which becomes the card's previous_payment_id; the
// browser returns to req.SuccessURL (failure and cancel both to
// req.CancelURL). The redirect proves nothing; the webhook does.
//
// The API documents no idempotency for /hosted-payments; the key is sent
// anyway, and a retry at worst creates a second page nobody visits.
func (c *Client) CreateSetupCheckoutSession(ctx context.Context, req gateway.SetupSessionRequest) (*gateway.CheckoutSession, error) {
	cl := call{method: http.MethodPost, path: "/hosted-payments", idempotencyKey: req.IdempotencyKey}
	if err := checkIdempotencyKey(req.IdempotencyKey, true); err != nil {
		return nil, asError(cl, refuse(cl, gateway.Invalid, err))
	}
	if err := checkID("customer", req.Customer); err != nil {
		return nil, asError(cl, refuse(cl, gateway.Invalid, err))
	}
	for _, u := range []struct{ name, value string }{{"success URL", req.SuccessURL}, {"cancel URL", req.CancelURL}} {
		if !apicall.IsBrowserURL(u.value) {
			return nil, asError(cl, refuse(cl, gateway.Invalid, fmt.Errorf("%s must be an absolute http(s) URL", u.name)))
		}
	}
	currency := strings.ToUpper(strings.TrimSpace(req.Metadata["currency"]))
	if currency == "" {
		currency = DefaultVerificationCurrency
	}
	if _, err := c.units.Rule(currency); err != nil {
		return nil, asError(cl, refuse(cl, gateway.Invalid, err))
	}
	country := strings.ToUpper(strings.TrimSpace(req.Metadata["country"]))
	if country == "" {
		country = DefaultBillingCountry
	}
	if len(country) != 2 {
		return nil, asError(cl, refuse(cl, gateway.Invalid, errors.New("metadata country must be a two-letter ISO code")))
	}
	ref := req.Metadata["reference"]
	if ref == "" {
		ref = "setup-" + req.Customer
	}
	if err := checkReference("hosted page reference", ref); err != nil {
		return nil, asError(cl, refuse(cl, gateway.Invalid, err))
	}
	b := hostedBody{
		Amount:      0,
		Currency:    currency,
		Reference:   ref,
		Description: "Card update",
		Customer:    customerBody{ID: req.Customer},
		PaymentType: paymentTypeRecurring,
		SuccessURL:  req.SuccessURL,
		FailureURL:  req.CancelURL,
		CancelURL:   req.CancelURL,
		Metadata:    req.Metadata,
		ThreeDS:     threeDSBody{Enabled: true},
	}
	b.Billing.Address.Country = country
	cl.body = b
	var w wireHostedPage
	if r := c.decide(ctx, cl, c.do(ctx, cl), &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	return &gateway.CheckoutSession{
		ID:        w.ID,
		URL:       w.Links["redirect"].Href,
		ExpiresAt: c.now().Add(HostedPageLifetime).UTC(),
	}, nil
}
