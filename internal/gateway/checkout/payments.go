package checkout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
)

const (
	// MetadataIdempotencyKey is the metadata key under which every payment
	// billingd makes carries its idempotency key. Checkout.com keeps a key's
	// answer only for requests it processed, so a request that may have been
	// made is found again by its reference and recognised by this key.
	MetadataIdempotencyKey = "idempotency_key"

	// ReturnResultParam is the query parameter added to a pay page's return
	// URL: Checkout.com sends the customer to success_url or failure_url, and
	// the page shows the right message while it reads the payment itself.
	ReturnResultParam = "cko_result"

	// listLimit is the largest page of GET /payments?reference=….
	listLimit = 100
	// maxListPages bounds a lookup: one order never has anywhere near 1000
	// payments, and a lookup that cannot see them all answers Transient.
	maxListPages = 10

	paymentTypeRecurring = "Recurring"
)

// paymentBody is POST /payments as billingd sends it.
type paymentBody struct {
	Source            paymentSource     `json:"source"`
	Amount            int64             `json:"amount"`
	Currency          string            `json:"currency"`
	PaymentType       string            `json:"payment_type"`
	MerchantInitiated bool              `json:"merchant_initiated"`
	PreviousPaymentID string            `json:"previous_payment_id,omitempty"`
	Reference         string            `json:"reference"`
	Description       string            `json:"description,omitempty"`
	Capture           bool              `json:"capture"`
	Customer          *customerBody     `json:"customer,omitempty"`
	ThreeDS           *threeDSBody      `json:"3ds,omitempty"`
	SuccessURL        string            `json:"success_url,omitempty"`
	FailureURL        string            `json:"failure_url,omitempty"`
	Metadata          map[string]string `json:"metadata"`
}

type paymentSource struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type customerBody struct {
	ID    string `json:"id,omitempty"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
}

type threeDSBody struct {
	Enabled bool `json:"enabled"`
}

// CreatePaymentIntent makes a card payment from a stored card (source type
// "id") in one request: an off-session request is a merchant-initiated
// recurring charge (payment_type Recurring, merchant_initiated true,
// previous_payment_id the series' first payment); an on-session one is a
// customer-initiated payment with 3-D Secure for the pay page, whose success
// and failure URLs are req.ReturnURL. The amount is converted to
// Checkout.com's wire units; a currency or amount it cannot take is refused
// locally (Invalid, nothing sent). The metadata always carries the
// idempotency key, so that the payment can be recognised again.
//
// With req.Replay set, the request may have reached Checkout.com before
// under this key, and a 5xx or timeout then leaves no replay behind. So the
// payments with the order's reference are read first: one carrying the key
// is returned as a read would return it, and nothing is sent; a lookup that
// fails sends nothing and answers Transient; only when the lookup answered
// and found nothing is the payment requested.
func (c *Client) CreatePaymentIntent(ctx context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	cl := call{method: http.MethodPost, path: "/payments", idempotencyKey: req.IdempotencyKey, charge: true}
	body, kind, err := c.paymentBody(req)
	if err != nil {
		return refuse(cl, kind, err)
	}
	cl.body = body
	if req.Replay {
		found, res := c.findByKey(ctx, req.MerchantOrderID, req.IdempotencyKey)
		if res != nil {
			return *res
		}
		if found != nil {
			return c.resultFromPayment(found, http.StatusOK)
		}
	}
	var w wirePayment
	r := c.decide(ctx, cl, c.do(ctx, cl), &w)
	if r.Intent != nil && w.Amount == nil && r.Intent.Status != gateway.IntentSucceeded {
		// A 202 Pending answer carries no amount: the payment is the one just
		// requested, and its settlement (webhook or read) is checked against
		// the attempt with the amount Checkout.com reports then.
		r.Intent.Amount, r.Intent.Currency = req.Amount, body.Currency
	}
	return r
}

// paymentBody builds and checks the request; the Kind says how a refusal is
// classified (Invalid for an amount Checkout.com cannot take, OurDataError
// for data billingd should never have produced).
func (c *Client) paymentBody(req gateway.PaymentIntentRequest) (*paymentBody, gateway.Kind, error) {
	if err := checkIdempotencyKey(req.IdempotencyKey, true); err != nil {
		return nil, gateway.OurDataError, err
	}
	if err := checkReference("merchant order id", req.MerchantOrderID); err != nil {
		return nil, gateway.OurDataError, err
	}
	if req.Amount <= 0 {
		return nil, gateway.OurDataError, errors.New("amount must be positive")
	}
	if err := checkID("payment method", req.PaymentMethod); err != nil {
		return nil, gateway.OurDataError, err
	}
	if req.Customer != "" {
		if err := checkID("customer", req.Customer); err != nil {
			return nil, gateway.OurDataError, err
		}
	}
	currency := strings.ToUpper(strings.TrimSpace(req.Currency))
	wire, err := c.units.ToWire(req.Amount, currency)
	if err != nil {
		return nil, gateway.Invalid, err
	}
	md := make(map[string]string, len(req.Metadata)+1)
	for k, v := range req.Metadata {
		md[k] = v
	}
	if v, ok := md[MetadataIdempotencyKey]; ok && v != req.IdempotencyKey {
		return nil, gateway.OurDataError, errors.New("metadata idempotency_key differs from the request's idempotency key")
	}
	md[MetadataIdempotencyKey] = req.IdempotencyKey
	b := &paymentBody{
		Source:      paymentSource{Type: "id", ID: req.PaymentMethod},
		Amount:      wire,
		Currency:    currency,
		PaymentType: paymentTypeRecurring,
		Reference:   req.MerchantOrderID,
		Description: apicall.Truncate(req.Description, 100),
		Capture:     true,
		Metadata:    md,
	}
	if req.Customer != "" {
		b.Customer = &customerBody{ID: req.Customer}
	}
	if req.OffSession {
		// Without the series' first payment Checkout.com may refuse the
		// charge (422 previous_payment_id_…); that is its call to make.
		if req.PreviousPaymentID != "" {
			if err := checkID("previous payment", req.PreviousPaymentID); err != nil {
				return nil, gateway.OurDataError, err
			}
		}
		b.MerchantInitiated = true
		b.PreviousPaymentID = req.PreviousPaymentID
		return b, "", nil
	}
	if !apicall.IsBrowserURL(req.ReturnURL) {
		return nil, gateway.OurDataError, errors.New("an on-session payment needs an absolute http(s) return URL")
	}
	b.ThreeDS = &threeDSBody{Enabled: true}
	b.SuccessURL = withParam(req.ReturnURL, ReturnResultParam, "success")
	b.FailureURL = withParam(req.ReturnURL, ReturnResultParam, "failure")
	return b, "", nil
}

func withParam(raw, key, value string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// findByKey looks for the payment made under key among the payments with
// reference. It returns the payment (nil when the gateway answered and none
// carries the key) or a Result to return instead of sending: the lookup did
// not give a complete answer, so sending could pay twice, and the attempt
// stays unknown (Transient) until a lookup succeeds.
func (c *Client) findByKey(ctx context.Context, reference, key string) (*wirePayment, *gateway.Result) {
	var found *wirePayment
	complete, r := c.listPayments(ctx, reference, func(w *wirePayment) bool {
		if w.Metadata[MetadataIdempotencyKey] == key {
			found = w
			return false
		}
		return true
	})
	if r != nil {
		res := *r
		res.Kind = gateway.Transient
		res.Err = fmt.Errorf("checkout: lookup before resend: %w", res.Err)
		return nil, &res
	}
	if found == nil && !complete {
		return nil, &gateway.Result{Kind: gateway.Transient,
			Err: errors.New("checkout: lookup before resend: too many payments under the reference to be sure none carries the key")}
	}
	return found, nil
}

// listPayments pages through GET /payments?reference=…, newest first, calling
// each until it returns false. complete reports whether every payment was
// seen (or each stopped the walk); a non-nil Result is a failed page.
func (c *Client) listPayments(ctx context.Context, reference string, each func(*wirePayment) bool) (complete bool, failed *gateway.Result) {
	cl := call{method: http.MethodGet, path: "/payments"}
	if err := checkReference("merchant order id", reference); err != nil {
		r := refuse(cl, gateway.Invalid, err)
		return false, &r
	}
	skip := 0
	for page := 0; page < maxListPages; page++ {
		cl.query = url.Values{"reference": {reference}, "limit": {strconv.Itoa(listLimit)}}
		if skip > 0 {
			cl.query.Set("skip", strconv.Itoa(skip))
		}
		var list wirePaymentList
		r := c.decide(ctx, cl, c.do(ctx, cl), &list)
		if r.Kind != gateway.Succeeded {
			return false, &r
		}
		for i := range list.Data {
			if !each(&list.Data[i]) {
				return true, nil
			}
		}
		skip += len(list.Data)
		if len(list.Data) == 0 || skip >= list.TotalCount {
			return true, nil
		}
	}
	return false, nil
}

// RetrievePaymentIntent reads a payment (GET /payments/{id}); the Result's
// Kind reflects its state, which is what the reconciler needs.
func (c *Client) RetrievePaymentIntent(ctx context.Context, id string) gateway.Result {
	cl := call{method: http.MethodGet, path: "/payments/" + id}
	if err := checkID("payment", id); err != nil {
		cl.path = "/payments/{id}"
		return refuse(cl, gateway.Invalid, err)
	}
	return c.decide(ctx, cl, c.do(ctx, cl), &wirePayment{})
}

// ConfirmPaymentIntent is not part of Checkout.com's flow: a payment is
// requested and authorized in one call, and 3-D Secure completes on
// Checkout.com's redirect. It answers Invalid without sending anything.
func (c *Client) ConfirmPaymentIntent(_ context.Context, id string, _ gateway.ConfirmRequest) gateway.Result {
	cl := call{method: http.MethodPost, path: "/payments/{id}/confirm"}
	return refuse(cl, gateway.Invalid, fmt.Errorf("payment %s: Checkout.com payments are not confirmed separately; request a new payment instead", apicall.Truncate(id, 40)))
}

// CancelPaymentIntent settles a payment billingd gives up on. Checkout.com
// cannot cancel a payment waiting for 3-D Secure: it expires on its own. So
// the payment is read and its state answers: Expired, Canceled, Voided or
// Declined → Canceled (no money moved); Authorized, Captured and later →
// Succeeded (the money moved after all: the caller settles the invoice as
// paid); still Pending → RequiresAction (still waiting; the caller asks again
// later); a failed read → its Transient or Invalid result. Nothing is sent
// that could change the payment, so the key is not used.
func (c *Client) CancelPaymentIntent(ctx context.Context, id string, _ string) gateway.Result {
	r := c.RetrievePaymentIntent(ctx, id)
	if r.Intent == nil {
		return r
	}
	switch r.Intent.Status {
	case gateway.IntentCanceled, gateway.IntentRequiresPaymentMethod:
		r.Kind = gateway.Canceled
		r.Decline = nil
	case gateway.IntentSucceeded:
		r.Kind = gateway.Succeeded
	case gateway.IntentRequiresAction, gateway.IntentProcessing:
		// A 20154 decline reads as requires_action but is over: canceled.
		if r.Intent.LastError != nil {
			r.Kind = gateway.Canceled
			r.Decline = nil
			break
		}
		r.Kind = gateway.RequiresAction
	}
	return r
}

// SearchPaymentIntentsByOrder lists the payments whose reference is
// merchantOrderID, newest first (GET /payments?reference=…). An empty slice
// with a nil error means Checkout.com answered and found none; a failure is
// an *Error whose Result says whether asking again may help.
func (c *Client) SearchPaymentIntentsByOrder(ctx context.Context, merchantOrderID string) ([]gateway.PaymentIntent, error) {
	cl := call{method: http.MethodGet, path: "/payments"}
	out := []gateway.PaymentIntent{}
	var convErr error
	complete, r := c.listPayments(ctx, merchantOrderID, func(w *wirePayment) bool {
		pi, err := c.intentFromPayment(w)
		if err != nil {
			convErr = err
			return false
		}
		out = append(out, *pi)
		return true
	})
	switch {
	case r != nil:
		return nil, asError(cl, *r)
	case convErr != nil:
		return nil, asError(cl, gateway.Result{Kind: gateway.Transient, HTTPStatus: http.StatusOK,
			Err: fmt.Errorf("checkout: %s: %s", cl.op(), c.scrub(convErr.Error()))})
	case !complete:
		return nil, asError(cl, gateway.Result{Kind: gateway.Transient, HTTPStatus: http.StatusOK,
			Err: fmt.Errorf("checkout: %s: more than %d payments under one reference", cl.op(), listLimit*maxListPages)})
	}
	return out, nil
}

// Policy is Checkout.com's key policy: it keeps a key for 24 hours (trusted
// for 23) and only for requests it processed and answered 2xx, so a request
// that may have been sent is looked up by reference before it is resent.
var Policy = gateway.KeyPolicy{Window: 23 * time.Hour, LookupBeforeResend: true}

// KeyPolicy returns Policy.
func (c *Client) KeyPolicy() gateway.KeyPolicy { return Policy }
