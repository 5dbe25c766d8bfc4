package wooshpay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
)

var _ gateway.SetupSessions = (*Client)(nil)

// CreateSetupCheckoutSession creates a setup-mode checkout session: a page hosted
// by the gateway on which the customer saves a new card, so that billingd never
// sees the card number. The customer is redirected to the returned URL; when the
// card is saved, the gateway sends setup_intent.succeeded carrying req.Metadata,
// and the browser comes back to req.SuccessURL with ?session_id=cs_… appended.
// The redirect is not proof of anything; the webhook is.
//
// req.IdempotencyKey is required even though no money moves: a retry after a
// timeout must return the session the first try created, so that one dunning
// step hands out one page, not several. Failures are *Error with the
// classified Result: Transient may be retried with the same key; Invalid (a 404
// wrapping gateway.ErrNotFound for an unknown customer) needs a human.
func (c *Client) CreateSetupCheckoutSession(ctx context.Context, req gateway.SetupSessionRequest) (*gateway.CheckoutSession, error) {
	cl := call{method: http.MethodPost, path: "/v1/checkout/sessions/setup", idempotencyKey: req.IdempotencyKey}
	if err := checkIdempotencyKey(req.IdempotencyKey, true); err != nil {
		return nil, asError(cl, invalidLocally(cl, err))
	}
	if err := checkID("customer", req.Customer); err != nil {
		return nil, asError(cl, invalidLocally(cl, err))
	}
	for _, u := range []struct{ name, value string }{{"success URL", req.SuccessURL}, {"cancel URL", req.CancelURL}} {
		if !apicall.IsBrowserURL(u.value) {
			return nil, asError(cl, invalidLocally(cl, fmt.Errorf("%s must be an absolute http(s) URL", u.name)))
		}
	}
	cl.body = setupSessionBody{
		Customer:           req.Customer,
		SuccessURL:         req.SuccessURL,
		CancelURL:          req.CancelURL,
		PaymentMethodTypes: []string{"card"},
		Metadata:           req.Metadata,
	}
	var w wireCheckoutSession
	if r := c.exchange(ctx, cl, &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	return &gateway.CheckoutSession{
		ID:          w.ID,
		URL:         w.URL,
		SetupIntent: string(w.SetupIntent),
		ExpiresAt:   w.ExpiresAt.Time,
	}, nil
}

// RetrieveSetupIntent reads a SetupIntent, e.g. to settle a card update whose
// setup_intent.succeeded webhook has not arrived (the webhook remains the
// authoritative signal; this is the poll that backs it up).
func (c *Client) RetrieveSetupIntent(ctx context.Context, id string) (*SetupIntent, error) {
	cl := call{method: http.MethodGet, path: "/v1/setup_intents/" + id}
	if err := checkID("setup intent", id); err != nil {
		cl.path = "/v1/setup_intents/{id}"
		return nil, asError(cl, invalidLocally(cl, err))
	}
	var w wireSetupIntent
	if r := c.exchange(ctx, cl, &w); r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	return c.setupIntentFromWire(&w), nil
}

type setupSessionBody struct {
	Customer           string            `json:"customer"`
	SuccessURL         string            `json:"success_url"`
	CancelURL          string            `json:"cancel_url"`
	PaymentMethodTypes []string          `json:"payment_method_types"`
	Metadata           map[string]string `json:"metadata,omitempty"`
}

// wireCheckoutSession is the checkout.session object as the gateway sends it.
type wireCheckoutSession struct {
	ID          string     `json:"id"`
	Object      string     `json:"object"`
	Mode        string     `json:"mode"`
	Status      string     `json:"status"`
	Customer    idOrObject `json:"customer"`
	SetupIntent idOrObject `json:"setup_intent"`
	URL         string     `json:"url"`
	Metadata    stringMap  `json:"metadata"`
	ExpiresAt   unixTime   `json:"expires_at"`
}

// validate insists on a usable url: billingd sends a browser there, and a
// session without one is of no use, so the answer counts as unknown rather than
// as success.
func (w *wireCheckoutSession) validate() error {
	if err := checkObject(w.Object, "checkout.session", w.ID); err != nil {
		return err
	}
	if w.Mode != "" && w.Mode != "setup" {
		return fmt.Errorf("checkout.session in mode %q, want \"setup\"", apicall.Truncate(w.Mode, 40))
	}
	if !apicall.IsBrowserURL(w.URL) {
		return errors.New("checkout.session without an absolute http(s) url")
	}
	return nil
}

// unixTime is a timestamp in Unix seconds or milliseconds. WooshPay's objects
// use milliseconds, while Stripe, whose checkout sessions WooshPay's mirror,
// sends expires_at in seconds; the two ranges cannot be confused (see
// millisThreshold), so both are accepted rather than trusting one reading.
type unixTime struct{ time.Time }

func (t *unixTime) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		t.Time = time.Time{}
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("timestamp is not an integer")
	}
	switch {
	case v == 0:
		t.Time = time.Time{}
	case v < 0:
		return errors.New("timestamp is negative")
	case v < millisThreshold:
		t.Time = time.Unix(v, 0).UTC()
	default:
		t.Time = time.UnixMilli(v).UTC()
	}
	return nil
}
