package wooshpay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway/units"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
)

// searchLimit is the largest page the search endpoint serves. One order never has
// anywhere near this many intents, so a single page is the whole answer.
const searchLimit = "100"

// cancellationReason is sent on cancel: billingd only cancels intents it has
// given up on (a superseded on-session attempt, a reconciled duplicate).
const cancellationReason = "abandoned"

// CreatePaymentIntent creates and confirms (confirm=true) a PaymentIntent in one
// request. req.IdempotencyKey is required: without it a retry after a timeout could
// charge twice, so the call is refused locally (OurDataError, HTTPStatus 0) instead.
func (c *Client) CreatePaymentIntent(ctx context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	cl := call{method: http.MethodPost, path: "/v1/payment_intents", idempotencyKey: req.IdempotencyKey, charge: true}
	if err := checkIdempotencyKey(req.IdempotencyKey, true); err != nil {
		return invalidLocally(cl, err)
	}
	if req.Amount <= 0 {
		return invalidLocally(cl, errors.New("amount must be positive"))
	}
	if req.Currency == "" {
		return invalidLocally(cl, errors.New("currency is required"))
	}
	amount, err := units.WooshPay.ToWire(req.Amount, req.Currency)
	if err != nil {
		return invalidLocally(cl, err)
	}
	cl.body = createIntentBody{
		Amount:          amount,
		Currency:        req.Currency,
		Confirm:         true,
		OffSession:      req.OffSession,
		Customer:        req.Customer,
		PaymentMethod:   req.PaymentMethod,
		MerchantOrderID: req.MerchantOrderID,
		Description:     req.Description,
		Metadata:        req.Metadata,
		ReturnURL:       req.ReturnURL,
	}
	return c.exchange(ctx, cl, &wireIntent{})
}

// RetrievePaymentIntent reads an intent's current state. The Result's Kind reflects
// that state (a requires_payment_method intent reads as Declined), which is what the
// reconciler needs to settle an attempt left unknown.
func (c *Client) RetrievePaymentIntent(ctx context.Context, id string) gateway.Result {
	cl := call{method: http.MethodGet, path: "/v1/payment_intents/" + id}
	if err := checkID("payment intent", id); err != nil {
		cl.path = "/v1/payment_intents/{id}"
		return invalidLocally(cl, err)
	}
	return c.exchange(ctx, cl, &wireIntent{})
}

// ConfirmPaymentIntent confirms an existing intent, e.g. an on-session retry with
// the saved card. Like create, it may move money, so an idempotency key is required.
func (c *Client) ConfirmPaymentIntent(ctx context.Context, id string, req gateway.ConfirmRequest) gateway.Result {
	cl := call{method: http.MethodPost, path: "/v1/payment_intents/" + id + "/confirm", idempotencyKey: req.IdempotencyKey, charge: true}
	if err := checkID("payment intent", id); err != nil {
		cl.path = "/v1/payment_intents/{id}/confirm"
		return invalidLocally(cl, err)
	}
	if err := checkIdempotencyKey(req.IdempotencyKey, true); err != nil {
		return invalidLocally(cl, err)
	}
	cl.body = confirmIntentBody{
		PaymentMethod: req.PaymentMethod,
		OffSession:    req.OffSession,
		ReturnURL:     req.ReturnURL,
	}
	return c.exchange(ctx, cl, &wireIntent{})
}

// CancelPaymentIntent cancels an intent that has not succeeded. The gateway refuses
// to cancel a succeeded intent (400 → Invalid, with the intent attached when the
// gateway sends it), which is how a caller learns the money did move after all.
// The idempotency key is optional: canceling twice is harmless.
func (c *Client) CancelPaymentIntent(ctx context.Context, id string, idempotencyKey string) gateway.Result {
	cl := call{method: http.MethodPost, path: "/v1/payment_intents/" + id + "/cancel", idempotencyKey: idempotencyKey}
	if err := checkID("payment intent", id); err != nil {
		cl.path = "/v1/payment_intents/{id}/cancel"
		return invalidLocally(cl, err)
	}
	if err := checkIdempotencyKey(idempotencyKey, false); err != nil {
		return invalidLocally(cl, err)
	}
	cl.body = cancelIntentBody{CancellationReason: cancellationReason}
	return c.exchange(ctx, cl, &wireIntent{})
}

// SearchPaymentIntentsByOrder lists the intents whose merchant_order_id is
// merchantOrderID, newest first, as the gateway returned them (at most 100). The
// reconciler uses it when an attempt never learned its intent id.
//
// An empty slice with a nil error means the gateway answered and found nothing;
// any failure is an *Error, whose Result says whether asking again may help. Ids
// containing a quote or backslash are refused: they cannot be expressed safely in
// the search query language.
func (c *Client) SearchPaymentIntentsByOrder(ctx context.Context, merchantOrderID string) ([]gateway.PaymentIntent, error) {
	cl := call{method: http.MethodGet, path: "/v1/payment_intents/search"}
	switch {
	case merchantOrderID == "":
		return nil, asError(cl, invalidLocally(cl, errors.New("merchant order id is empty")))
	case strings.ContainsAny(merchantOrderID, `'\`):
		return nil, asError(cl, invalidLocally(cl, errors.New("merchant order id contains a quote or backslash")))
	case !apicall.IsHeaderSafe(merchantOrderID):
		return nil, asError(cl, invalidLocally(cl, errors.New("merchant order id contains control characters")))
	}
	cl.query = url.Values{
		"query": {"merchant_order_id:'" + merchantOrderID + "'"},
		"limit": {searchLimit},
	}
	var ws wireSearch
	r := c.exchange(ctx, cl, &ws)
	if r.Kind != gateway.Succeeded {
		return nil, asError(cl, r)
	}
	out := make([]gateway.PaymentIntent, 0, len(ws.Data))
	for i := range ws.Data {
		out = append(out, *c.intentFromWire(&ws.Data[i]))
	}
	return out, nil
}

// listLimit is the largest page the list endpoint serves.
const listLimit = 100

// ListPaymentIntents reads one page of the account's intents created at or
// after req.CreatedFrom, newest first (GET /v1/payment_intents with
// created[gte], limit and starting_after, as Stripe's "List all
// PaymentIntents"). The filter is sent in Unix seconds, Stripe's unit, rounded
// down; intents the gateway returns from before req.CreatedFrom (the rest of
// that second, or a gateway that reads the filter in milliseconds and so
// returns more) are dropped here, and the page then ends the list, since
// everything after it is older still. A filter read in the wrong unit thus
// costs more pages, never a missed payment.
func (c *Client) ListPaymentIntents(ctx context.Context, req gateway.PaymentListRequest) (gateway.PaymentPage, error) {
	cl := call{method: http.MethodGet, path: "/v1/payment_intents"}
	limit := req.Limit
	if limit == 0 {
		limit = listLimit
	}
	if limit < 1 || limit > listLimit {
		return gateway.PaymentPage{}, asError(cl, invalidLocally(cl, fmt.Errorf("limit %d: want 1..%d", limit, listLimit)))
	}
	cl.query = url.Values{"limit": {strconv.Itoa(limit)}}
	if !req.CreatedFrom.IsZero() {
		cl.query.Set("created[gte]", strconv.FormatInt(req.CreatedFrom.Unix(), 10))
	}
	if req.StartingAfter != "" {
		if err := checkID("payment intent", req.StartingAfter); err != nil {
			return gateway.PaymentPage{}, asError(cl, invalidLocally(cl, err))
		}
		cl.query.Set("starting_after", req.StartingAfter)
	}
	var ws wireSearch
	r := c.exchange(ctx, cl, &ws)
	if r.Kind != gateway.Succeeded {
		return gateway.PaymentPage{}, asError(cl, r)
	}
	page := gateway.PaymentPage{Intents: make([]gateway.PaymentIntent, 0, len(ws.Data)), HasMore: ws.HasMore}
	for i := range ws.Data {
		pi := c.intentFromWire(&ws.Data[i])
		if !req.CreatedFrom.IsZero() && pi.Created.Before(req.CreatedFrom) {
			page.HasMore = false
			break
		}
		page.Intents = append(page.Intents, *pi)
	}
	if page.HasMore && len(page.Intents) == 0 {
		// A page that says more follow but gives no cursor would loop.
		return gateway.PaymentPage{}, asError(cl, gateway.Result{Kind: gateway.Transient, HTTPStatus: http.StatusOK,
			Err: fmt.Errorf("wooshpay: %s: has_more without data", cl.op())})
	}
	return page, nil
}

// Policy is WooshPay's key policy: like Stripe, it replays a key's first
// answer whatever it was; its retention is undocumented, so billingd trusts
// Stripe's 24 hours less an hour's margin, and resends with the same key
// without looking first.
var Policy = gateway.KeyPolicy{Window: 23 * time.Hour}

// KeyPolicy returns Policy.
func (c *Client) KeyPolicy() gateway.KeyPolicy { return Policy }
