package checkout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
)

// Payment statuses as Checkout.com spells them (payments.PaymentStatus in the
// official SDK; the OpenAPI reference also spells "Cancelled").
const (
	statusPending           = "Pending"
	statusAuthorized        = "Authorized"
	statusCardVerified      = "Card Verified"
	statusCaptured          = "Captured"
	statusPartiallyCaptured = "Partially Captured"
	statusRefunded          = "Refunded"
	statusPartiallyRefunded = "Partially Refunded"
	statusPaid              = "Paid"
	statusDeclined          = "Declined"
	statusExpired           = "Expired"
	statusCanceled          = "Canceled"
	statusCancelled         = "Cancelled"
	statusVoided            = "Voided"
)

// wirePayment is a payment as POST /payments (201/202), GET /payments/{id},
// the payments list and the payment webhooks' data send it. Fields absent
// from one of those shapes are simply zero.
type wirePayment struct {
	ID              string              `json:"id"`
	ActionID        string              `json:"action_id"`
	Amount          *int64              `json:"amount"`
	Currency        string              `json:"currency"`
	Approved        *bool               `json:"approved"`
	Status          string              `json:"status"`
	ResponseCode    string              `json:"response_code"`
	ResponseSummary string              `json:"response_summary"`
	Source          *wireSource         `json:"source"`
	Customer        *wireCustomerRef    `json:"customer"`
	Reference       string              `json:"reference"`
	Description     string              `json:"description"`
	PaymentType     string              `json:"payment_type"`
	Metadata        stringMap           `json:"metadata"`
	RequestedOn     ckoTime             `json:"requested_on"`
	ProcessedOn     ckoTime             `json:"processed_on"`
	SchemeID        string              `json:"scheme_id"`
	Balances        *wireBalances       `json:"balances"`
	Links           map[string]wireLink `json:"_links"`
	ThreeDS         json.RawMessage     `json:"3ds"`
}

type wireBalances struct {
	TotalAuthorized *int64 `json:"total_authorized"`
	TotalCaptured   *int64 `json:"total_captured"`
	TotalRefunded   *int64 `json:"total_refunded"`
}

type wireLink struct {
	Href string `json:"href"`
}

// wireSource is a payment's card source. API answers spell the last digits
// last4, webhooks last_4; both are read.
type wireSource struct {
	ID            string `json:"id"`
	Type          string `json:"type"`
	Scheme        string `json:"scheme"`
	Last4         string `json:"last4"`
	Last4Webhook  string `json:"last_4"`
	ExpiryMonth   int    `json:"expiry_month"`
	ExpiryYear    int    `json:"expiry_year"`
	Fingerprint   string `json:"fingerprint"`
	Bin           string `json:"bin"`
	CardType      string `json:"card_type"`
	IssuerCountry string `json:"issuer_country"`
}

type wireCustomerRef struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

func (w *wirePayment) validate() error {
	if w.ID == "" {
		return errors.New("payment without id")
	}
	if err := checkID("payment", w.ID); err != nil {
		return err
	}
	if w.Status == "" {
		return errors.New("payment without status")
	}
	return nil
}

func (w *wirePayment) redirect() string {
	if l, ok := w.Links["redirect"]; ok {
		return l.Href
	}
	return ""
}

// wirePaymentList is GET /payments?reference=….
type wirePaymentList struct {
	Limit      int           `json:"limit"`
	Skip       int           `json:"skip"`
	TotalCount int           `json:"total_count"`
	Data       []wirePayment `json:"data"`
}

func (w *wirePaymentList) validate() error {
	for i := range w.Data {
		if err := w.Data[i].validate(); err != nil {
			return fmt.Errorf("payment #%d: %w", i+1, err)
		}
	}
	return nil
}

// wireAction is one entry of GET /payments/{id}/actions (a JSON array).
type wireAction struct {
	ID              string    `json:"id"`
	Type            string    `json:"type"`
	ProcessedOn     ckoTime   `json:"processed_on"`
	Amount          *int64    `json:"amount"`
	Approved        *bool     `json:"approved"`
	ResponseCode    string    `json:"response_code"`
	ResponseSummary string    `json:"response_summary"`
	Reference       string    `json:"reference"`
	Metadata        stringMap `json:"metadata"`
}

type wireActions []wireAction

func (w *wireActions) validate() error {
	for i, a := range *w {
		if a.ID == "" || a.Type == "" {
			return fmt.Errorf("action #%d without id or type", i+1)
		}
	}
	return nil
}

// wireRefundAccepted is the 202 answer of POST /payments/{id}/refunds.
type wireRefundAccepted struct {
	ActionID  string `json:"action_id"`
	Reference string `json:"reference"`
}

func (w *wireRefundAccepted) validate() error {
	if w.ActionID == "" {
		return errors.New("refund answer without action_id")
	}
	return checkID("refund action", w.ActionID)
}

// wireHostedPage is the 201 answer of POST /hosted-payments.
type wireHostedPage struct {
	ID        string              `json:"id"`
	Reference string              `json:"reference"`
	Links     map[string]wireLink `json:"_links"`
}

func (w *wireHostedPage) validate() error {
	if w.ID == "" {
		return errors.New("hosted page without id")
	}
	if !apicall.IsBrowserURL(w.Links["redirect"].Href) {
		return errors.New("hosted page without an absolute http(s) _links.redirect")
	}
	return nil
}

// wireCustomer is GET /customers/{id}.
type wireCustomer struct {
	ID       string    `json:"id"`
	Email    string    `json:"email"`
	Name     string    `json:"name"`
	Default  string    `json:"default"`
	Metadata stringMap `json:"metadata"`
}

func (w *wireCustomer) validate() error {
	if w.ID == "" {
		return errors.New("customer without id")
	}
	return nil
}

// wireInstrument is GET /instruments/{id}.
type wireInstrument struct {
	ID            string           `json:"id"`
	Type          string           `json:"type"`
	Customer      *wireCustomerRef `json:"customer"`
	ExpiryMonth   int              `json:"expiry_month"`
	ExpiryYear    int              `json:"expiry_year"`
	Scheme        string           `json:"scheme"`
	Last4         string           `json:"last4"`
	CardType      string           `json:"card_type"`
	IssuerCountry string           `json:"issuer_country"`
}

func (w *wireInstrument) validate() error {
	if w.ID == "" {
		return errors.New("instrument without id")
	}
	return nil
}

// wireErrorBody is Checkout.com's error envelope (422, 409, 429, sometimes
// 404): {"request_id", "error_type", "error_codes"}.
type wireErrorBody struct {
	RequestID  string   `json:"request_id"`
	ErrorType  string   `json:"error_type"`
	ErrorCodes []string `json:"error_codes"`
}

// wireObject is what a 2xx body decodes into: it validates itself, so that an
// answer billingd cannot act on counts as unknown rather than as success.
type wireObject interface {
	validate() error
}

// decodeObject decodes a JSON body into v and validates it.
func decodeObject(b []byte, v wireObject) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("empty body")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	return v.validate()
}

// stringMap is metadata: Checkout.com stores one level of primitives and
// may send numbers and booleans (partner_id: 123989 in its examples);
// billingd's metadata is strings, so primitives are kept as their JSON text
// and nested values are dropped.
type stringMap map[string]string

func (m *stringMap) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*m = nil
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return errors.New("metadata is not an object")
	}
	out := make(stringMap, len(raw))
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		if len(v) == 0 {
			continue
		}
		switch v[0] {
		case '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			out[k] = s
		case '{', '[':
			// Not a value billingd wrote; ignore.
		default:
			if string(v) != "null" {
				out[k] = string(v)
			}
		}
	}
	*m = out
	return nil
}

// ckoTime is an RFC 3339 timestamp with any number of fractional digits
// (Checkout.com sends seven). An unreadable timestamp is kept as zero rather
// than failing the answer: no money decision depends on it.
type ckoTime struct{ time.Time }

func (t *ckoTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil || s == "" {
		t.Time = time.Time{}
		return nil
	}
	p, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Time = time.Time{}
		return nil
	}
	t.Time = p.UTC()
	return nil
}

// fromWire converts a wire amount of currency to ISO minor units.
func (c *Client) fromWire(amount int64, currency string) (int64, error) {
	return c.units.FromWire(amount, strings.ToUpper(currency))
}

// intentFromPayment converts a payment to the provider-neutral view. The
// status is mapped as documented in docs/gateway-checkout.md: a Pending
// payment with a redirect waits for 3-D Secure (requires_action), without one
// it is being processed; Authorized and later states are succeeded (with
// capture true, billingd's payments are captured right after the
// authorization); Declined is requires_payment_method with the decline, or
// requires_action for 20154; Expired, Canceled and Voided are canceled.
func (c *Client) intentFromPayment(w *wirePayment) (*gateway.PaymentIntent, error) {
	pi := &gateway.PaymentIntent{
		ID:              w.ID,
		Currency:        strings.ToUpper(w.Currency),
		MerchantOrderID: w.Reference,
		Metadata:        map[string]string(w.Metadata),
		Created:         w.RequestedOn.Time,
	}
	if pi.Created.IsZero() {
		pi.Created = w.ProcessedOn.Time
	}
	if w.Customer != nil {
		pi.Customer = w.Customer.ID
	}
	if w.Source != nil {
		pi.PaymentMethod = w.Source.ID
	}
	if w.Amount != nil {
		if pi.Currency == "" {
			return nil, errors.New("payment amount without currency")
		}
		amt, err := c.fromWire(*w.Amount, pi.Currency)
		if err != nil {
			return nil, err
		}
		pi.Amount = amt
	}
	pi.Status, pi.LastError = c.paymentStatus(w)
	switch pi.Status {
	case gateway.IntentRequiresAction:
		pi.ActionURL = w.redirect()
	case gateway.IntentSucceeded:
		received := pi.Amount
		if w.Balances != nil && w.Balances.TotalCaptured != nil && *w.Balances.TotalCaptured > 0 && pi.Currency != "" {
			got, err := c.fromWire(*w.Balances.TotalCaptured, pi.Currency)
			if err != nil {
				return nil, err
			}
			received = got
		}
		if w.Amount != nil {
			pi.AmountReceived = &received
		}
	}
	return pi, nil
}

// paymentStatus maps a payment's status (and, for declines, its code).
func (c *Client) paymentStatus(w *wirePayment) (gateway.IntentStatus, *gateway.Decline) {
	switch w.Status {
	case statusPending:
		if w.redirect() != "" {
			return gateway.IntentRequiresAction, nil
		}
		return gateway.IntentProcessing, nil
	case statusAuthorized, statusCaptured, statusPartiallyCaptured, statusCardVerified,
		statusPaid, statusRefunded, statusPartiallyRefunded:
		if w.Approved != nil && !*w.Approved {
			return c.declined(w)
		}
		return gateway.IntentSucceeded, nil
	case statusDeclined:
		return c.declined(w)
	case statusExpired, statusCanceled, statusCancelled, statusVoided:
		return gateway.IntentCanceled, nil
	}
	return gateway.IntentStatus(apicall.Truncate(c.scrubCode(w.Status), 40)), nil
}

func (c *Client) declined(w *wirePayment) (gateway.IntentStatus, *gateway.Decline) {
	code := c.scrubCode(w.ResponseCode)
	if code == "" {
		d := gateway.NewDecline("card_error", "", softDefault, "", "declined without a response code")
		return gateway.IntentRequiresPaymentMethod, d
	}
	d, action := declineFor(code, c.scrub(w.ResponseSummary))
	if action {
		return gateway.IntentRequiresAction, d
	}
	return gateway.IntentRequiresPaymentMethod, d
}

// cardFromSource describes a card source.
func cardFromSource(s *wireSource) *gateway.CardDetails {
	if s == nil {
		return nil
	}
	last4 := s.Last4
	if last4 == "" {
		last4 = s.Last4Webhook
	}
	return &gateway.CardDetails{
		Brand:    strings.ToLower(s.Scheme),
		Last4:    last4,
		ExpMonth: s.ExpiryMonth,
		ExpYear:  s.ExpiryYear,
		Country:  strings.ToUpper(s.IssuerCountry),
		Funding:  strings.ToLower(s.CardType),
	}
}

// resultFromPayment maps a 2xx payment answer to a Result.
func (c *Client) resultFromPayment(w *wirePayment, status int) gateway.Result {
	pi, err := c.intentFromPayment(w)
	if err != nil {
		return gateway.Result{Kind: gateway.Transient, HTTPStatus: status,
			Err: fmt.Errorf("checkout: payment %s: %s", w.ID, c.scrub(err.Error()))}
	}
	r := gateway.ResultFromIntent(pi, status)
	if r.Kind == gateway.RequiresAction && pi.LastError != nil {
		r.Decline = pi.LastError
	}
	if r.Err != nil {
		r.Err = fmt.Errorf("checkout: %s", c.scrub(r.Err.Error()))
	}
	return r
}

// refundFromAction converts a Refund action of a payment.
func (c *Client) refundFromAction(paymentID, currency string, a *wireAction) (*gateway.Refund, error) {
	rf := &gateway.Refund{
		ID:            a.ID,
		PaymentIntent: paymentID,
		Currency:      strings.ToUpper(currency),
		Metadata:      map[string]string(a.Metadata),
		Created:       a.ProcessedOn.Time,
		Status:        gateway.RefundPending,
	}
	if a.Amount != nil && currency != "" {
		amt, err := c.fromWire(*a.Amount, currency)
		if err != nil {
			return nil, err
		}
		rf.Amount = amt
	}
	if a.Approved != nil {
		if *a.Approved {
			rf.Status = gateway.RefundSucceeded
		} else {
			rf.Status = gateway.RefundFailed
			rf.FailureReason = c.scrubCode(a.ResponseCode)
		}
	}
	return rf, nil
}
