package checkout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/billingd/billingd/internal/gateway"
)

// Checkout.com refunds are actions of their payment: POST
// /payments/{id}/refunds {amount, reference, metadata} answers 202 with the
// refund's action_id, the refund is processed asynchronously, and its outcome
// is the Refund action in GET /payments/{id}/actions (approved or not) and the
// webhook payment_refunded or payment_refund_declined.

type refundBody struct {
	Amount    int64             `json:"amount"`
	Reference string            `json:"reference"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// CreateRefund refunds req.Amount of payment req.PaymentIntent. The refund's
// reference is its idempotency key, so that a refund that may have been made
// is found again: with req.Replay the payment's actions are read first, and a
// Refund action with that reference is returned instead of refunding again (a
// failed read sends nothing and answers Transient). A 202 is Processing, with
// Refund.ID the action id.
func (c *Client) CreateRefund(ctx context.Context, req gateway.RefundRequest) gateway.Result {
	cl := call{method: http.MethodPost, path: "/payments/" + req.PaymentIntent + "/refunds", idempotencyKey: req.IdempotencyKey}
	if err := checkID("payment", req.PaymentIntent); err != nil {
		cl.path = "/payments/{id}/refunds"
		return refuse(cl, gateway.Invalid, err)
	}
	if err := checkIdempotencyKey(req.IdempotencyKey, true); err != nil {
		return refuse(cl, gateway.Invalid, err)
	}
	if err := checkReference("refund idempotency key (sent as its reference)", req.IdempotencyKey); err != nil {
		return refuse(cl, gateway.Invalid, err)
	}
	if req.Amount <= 0 {
		return refuse(cl, gateway.Invalid, errors.New("refund amount must be positive"))
	}
	currency := strings.ToUpper(strings.TrimSpace(req.Currency))
	wire, err := c.units.ToWire(req.Amount, currency)
	if err != nil {
		return refuse(cl, gateway.Invalid, err)
	}
	if req.Replay {
		rf, r := c.findRefund(ctx, req.PaymentIntent, currency, func(a *wireAction) bool {
			return a.Type == "Refund" && a.Reference == req.IdempotencyKey
		})
		if r != nil {
			res := *r
			res.Kind = gateway.Transient
			res.Err = fmt.Errorf("checkout: lookup before resend: %w", res.Err)
			return res
		}
		if rf != nil {
			return gateway.ResultFromRefund(rf, http.StatusOK)
		}
	}
	cl.body = refundBody{Amount: wire, Reference: req.IdempotencyKey, Metadata: req.Metadata}
	var w wireRefundAccepted
	r := c.decide(ctx, cl, c.do(ctx, cl), &w)
	if r.Kind != gateway.Succeeded {
		return r
	}
	rf := &gateway.Refund{
		ID:            w.ActionID,
		PaymentIntent: req.PaymentIntent,
		Amount:        req.Amount,
		Currency:      currency,
		Status:        gateway.RefundPending,
		Reason:        string(req.Reason),
		Metadata:      req.Metadata,
	}
	return gateway.ResultFromRefund(rf, r.HTTPStatus)
}

// RetrieveRefund reads refund action id of payment paymentIntent from the
// payment's actions: approved → Succeeded, not approved → Declined; an action
// not (yet) listed is still being processed → Processing.
func (c *Client) RetrieveRefund(ctx context.Context, paymentIntent, id string) gateway.Result {
	cl := call{method: http.MethodGet, path: "/payments/" + paymentIntent + "/actions"}
	if err := checkID("payment", paymentIntent); err != nil {
		cl.path = "/payments/{id}/actions"
		return refuse(cl, gateway.Invalid, err)
	}
	if err := checkID("refund action", id); err != nil {
		return refuse(cl, gateway.Invalid, err)
	}
	// The actions carry no currency; the payment has it.
	p := c.RetrievePaymentIntent(ctx, paymentIntent)
	if p.Intent == nil {
		return p
	}
	rf, r := c.findRefund(ctx, paymentIntent, p.Intent.Currency, func(a *wireAction) bool { return a.ID == id })
	if r != nil {
		return *r
	}
	if rf == nil {
		rf = &gateway.Refund{ID: id, PaymentIntent: paymentIntent, Currency: p.Intent.Currency, Status: gateway.RefundPending}
	}
	return gateway.ResultFromRefund(rf, http.StatusOK)
}

// findRefund reads the payment's actions and returns the first one match
// accepts as a refund, nil when none does, or the failed read's Result.
func (c *Client) findRefund(ctx context.Context, paymentID, currency string, match func(*wireAction) bool) (*gateway.Refund, *gateway.Result) {
	cl := call{method: http.MethodGet, path: "/payments/" + paymentID + "/actions"}
	var actions wireActions
	r := c.decide(ctx, cl, c.do(ctx, cl), &actions)
	if r.Kind != gateway.Succeeded {
		return nil, &r
	}
	for i := range actions {
		a := &actions[i]
		if !match(a) {
			continue
		}
		if a.Type != "Refund" {
			res := refuse(cl, gateway.Invalid, fmt.Errorf("action %s is a %s, not a refund", a.ID, c.scrubCode(a.Type)))
			return nil, &res
		}
		rf, err := c.refundFromAction(paymentID, currency, a)
		if err != nil {
			res := gateway.Result{Kind: gateway.Transient, HTTPStatus: http.StatusOK,
				Err: fmt.Errorf("checkout: %s: %s", cl.op(), c.scrub(err.Error()))}
			return nil, &res
		}
		return rf, nil
	}
	return nil, nil
}
