package wooshpay

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/billingd/billingd/internal/gateway/units"
	"net/http"
	"strings"

	"github.com/billingd/billingd/internal/gateway"
)

// WooshPay's refund API is Stripe's: POST /v1/refunds with payment_intent,
// amount (the payment's minor units, like the charge), reason
// (duplicate | fraudulent | requested_by_customer) and metadata, under an
// Idempotency-Key; GET /v1/refunds/{id}; the refund's status is pending,
// requires_action, succeeded, failed or canceled, and every change is sent as
// the webhook event charge.refund.updated whose data.object is the refund.

// CreateRefund refunds part or all of a succeeded PaymentIntent. Like a charge
// it moves money, so req.IdempotencyKey is required; a retry with the same key
// after an indefinite answer replays the first refund instead of refunding
// twice.
func (c *Client) CreateRefund(ctx context.Context, req gateway.RefundRequest) gateway.Result {
	cl := call{method: http.MethodPost, path: "/v1/refunds", idempotencyKey: req.IdempotencyKey}
	if err := checkIdempotencyKey(req.IdempotencyKey, true); err != nil {
		return invalidLocally(cl, err)
	}
	if err := checkID("payment intent", req.PaymentIntent); err != nil {
		return invalidLocally(cl, err)
	}
	if req.Amount <= 0 {
		return invalidLocally(cl, errors.New("refund amount must be positive"))
	}
	amount, err := units.WooshPay.ToWire(req.Amount, req.Currency)
	if err != nil {
		return invalidLocally(cl, err)
	}
	cl.body = createRefundBody{
		PaymentIntent: req.PaymentIntent,
		Amount:        amount,
		Reason:        string(req.Reason),
		Metadata:      req.Metadata,
	}
	return c.refundExchange(ctx, cl)
}

// RetrieveRefund reads a refund's current state.
func (c *Client) RetrieveRefund(ctx context.Context, _ string, id string) gateway.Result {
	cl := call{method: http.MethodGet, path: "/v1/refunds/" + id}
	if err := checkID("refund", id); err != nil {
		cl.path = "/v1/refunds/{id}"
		return invalidLocally(cl, err)
	}
	return c.refundExchange(ctx, cl)
}

// refundExchange sends a refund call; a 2xx answer's refund decides the Kind.
func (c *Client) refundExchange(ctx context.Context, cl call) gateway.Result {
	var w wireRefund
	r := c.exchange(ctx, cl, &w)
	if r.Kind != gateway.Succeeded || r.HTTPStatus < 200 || r.HTTPStatus >= 300 {
		return r
	}
	return gateway.ResultFromRefund(refundFromWire(&w), r.HTTPStatus)
}

type createRefundBody struct {
	PaymentIntent string            `json:"payment_intent"`
	Amount        int64             `json:"amount"`
	Reason        string            `json:"reason,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
}

// wireRefund is the refund object as the gateway sends it.
type wireRefund struct {
	ID            string     `json:"id"`
	Object        string     `json:"object"`
	Created       msTime     `json:"created"`
	Amount        int64      `json:"amount"`
	Currency      string     `json:"currency"`
	Status        string     `json:"status"`
	PaymentIntent idOrObject `json:"payment_intent"`
	Reason        *string    `json:"reason"`
	FailureReason *string    `json:"failure_reason"`
	Metadata      stringMap  `json:"metadata"`
}

func (w *wireRefund) validate() error {
	if err := checkObject(w.Object, "refund", w.ID); err != nil {
		return err
	}
	if w.Status == "" {
		return errors.New("refund without status")
	}
	return nil
}

func refundFromWire(w *wireRefund) *gateway.Refund {
	currency := strings.ToUpper(w.Currency)
	rf := &gateway.Refund{
		ID:            w.ID,
		PaymentIntent: string(w.PaymentIntent),
		Amount:        isoAmount(w.Amount, currency),
		Currency:      currency,
		Status:        gateway.RefundStatus(w.Status),
		Metadata:      map[string]string(w.Metadata),
		Created:       w.Created.Time,
	}
	if w.Reason != nil {
		rf.Reason = eventScrubber.scrubCode(*w.Reason)
	}
	if w.FailureReason != nil {
		rf.FailureReason = eventScrubber.scrubCode(*w.FailureReason)
	}
	return rf
}

// refundEventPrefix is the family of the refund webhook (charge.refund.updated).
const refundEventPrefix = "charge.refund."

func decodeEventRefund(raw json.RawMessage) (*gateway.Refund, error) {
	if isAbsent(raw) {
		return nil, errors.New("no data.object")
	}
	var w wireRefund
	if err := decodeObject(raw, &w); err != nil {
		return nil, err
	}
	if w.Object != "refund" {
		return nil, errors.New("data.object is not a refund")
	}
	return refundFromWire(&w), nil
}

var _ gateway.Refunds = (*Client)(nil)
