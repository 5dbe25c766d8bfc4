package wooshpay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/billingd/billingd/internal/gateway/units"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
)

// wireObject is a response type that can tell whether what was decoded really is
// the object asked for. A 2xx that fails this check has an unknown effect.
type wireObject interface {
	validate() error
}

// decodeObject decodes a whole JSON body into into and validates it.
func decodeObject(body []byte, into wireObject) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("empty body")
	}
	if err := json.Unmarshal(body, into); err != nil {
		return err
	}
	return into.validate()
}

func checkObject(got, want, id string) error {
	if got != "" && got != want {
		return fmt.Errorf("object is %q, want %q", apicall.Truncate(got, 40), want)
	}
	if id == "" {
		return fmt.Errorf("%s without id", want)
	}
	return nil
}

// msTime is a Unix-milliseconds timestamp, the gateway's time format.
type msTime struct{ time.Time }

func (t *msTime) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		t.Time = time.Time{}
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < math.MinInt64 || f > math.MaxInt64 {
			return errors.New("timestamp is not a number of milliseconds")
		}
		ms = int64(f)
	}
	if ms == 0 {
		t.Time = time.Time{}
		return nil
	}
	t.Time = time.UnixMilli(ms).UTC()
	return nil
}

// stringMap is metadata. The gateway sends string values; a number or boolean is
// kept as its JSON text rather than failing the whole (possibly money-moving)
// answer over a cosmetic field.
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
		switch {
		case len(v) > 0 && v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return errors.New("metadata value is not a string")
			}
			out[k] = s
		case string(v) == "null":
			out[k] = ""
		default:
			out[k] = string(v)
		}
	}
	*m = out
	return nil
}

// idOrObject is a reference that is either an id string or an expanded object
// with an "id" field (Stripe's expand convention).
type idOrObject string

func (r *idOrObject) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*r = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*r = idOrObject(s)
		return nil
	case len(b) > 0 && b[0] == '{':
		var o struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		*r = idOrObject(o.ID)
		return nil
	}
	return errors.New("reference is neither an id nor an object")
}

// flexInt accepts a number or a numeric string (expiry months are strings in
// requests and numbers in responses).
type flexInt int

func (n *flexInt) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		*n = 0
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	*n = flexInt(v)
	return nil
}

// wireIntent is the PaymentIntent as the gateway sends it.
type wireIntent struct {
	ID               string          `json:"id"`
	Object           string          `json:"object"`
	Created          msTime          `json:"created"`
	Amount           int64           `json:"amount"`
	AmountReceived   *int64          `json:"amount_received"`
	Currency         string          `json:"currency"`
	Status           string          `json:"status"`
	Customer         idOrObject      `json:"customer"`
	PaymentMethod    idOrObject      `json:"payment_method"`
	MerchantOrderID  string          `json:"merchant_order_id"`
	Metadata         stringMap       `json:"metadata"`
	LastPaymentError *wireError      `json:"last_payment_error"`
	NextAction       *wireNextAction `json:"next_action"`
}

type wireNextAction struct {
	Type              string `json:"type"`
	ChallengeRedirect *struct {
		URL string `json:"url"`
	} `json:"challenge_redirect"`
	RedirectToURL *struct {
		URL string `json:"url"`
	} `json:"redirect_to_url"`
}

func (w *wireIntent) validate() error {
	if err := checkObject(w.Object, "payment_intent", w.ID); err != nil {
		return err
	}
	if w.Status == "" {
		return errors.New("payment_intent without status")
	}
	return nil
}

// intentFromWire converts a decoded intent, scrubbing the gateway's free text.
func (c *Client) intentFromWire(w *wireIntent) *gateway.PaymentIntent {
	currency := strings.ToUpper(w.Currency)
	var received *int64
	if w.AmountReceived != nil {
		r := isoAmount(*w.AmountReceived, currency)
		received = &r
	}
	pi := &gateway.PaymentIntent{
		ID:              w.ID,
		Status:          gateway.IntentStatus(w.Status),
		Amount:          isoAmount(w.Amount, currency),
		AmountReceived:  received,
		Currency:        currency,
		Customer:        string(w.Customer),
		PaymentMethod:   string(w.PaymentMethod),
		MerchantOrderID: w.MerchantOrderID,
		Metadata:        map[string]string(w.Metadata),
		ActionURL:       actionURL(w.NextAction),
		LastError:       c.declineFromWire(w.LastPaymentError),
		Created:         w.Created.Time,
	}
	return pi
}

func (c *Client) declineFromWire(e *wireError) *gateway.Decline {
	if e == nil {
		return nil
	}
	typ, code, dc, ac := c.scrubCode(e.Type), c.scrubCode(e.Code), c.scrubCode(e.DeclineCode), c.scrubCode(e.AdviceCode)
	msg := c.scrub(e.Message)
	if typ == "" && code == "" && dc == "" && msg == "" {
		return nil
	}
	return gateway.NewDecline(typ, code, dc, ac, msg)
}

// actionURL picks where the customer authenticates. Only absolute http(s) URLs
// are passed on, because billingd redirects browsers to it.
func actionURL(na *wireNextAction) string {
	if na == nil {
		return ""
	}
	var raw string
	switch {
	case na.ChallengeRedirect != nil && na.ChallengeRedirect.URL != "":
		raw = na.ChallengeRedirect.URL
	case na.RedirectToURL != nil && na.RedirectToURL.URL != "":
		raw = na.RedirectToURL.URL
	default:
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return raw
}

// wireSearch is the answer of the search endpoint.
type wireSearch struct {
	Object  string       `json:"object"`
	Data    []wireIntent `json:"data"`
	HasMore bool         `json:"has_more"`
}

func (w *wireSearch) validate() error {
	if w.Object != "" && w.Object != "search_result" && w.Object != "list" {
		return fmt.Errorf("object is %q, want \"search_result\"", apicall.Truncate(w.Object, 40))
	}
	// An answer without a data array must not read as "nothing found": the
	// reconciler would then believe no charge exists.
	if w.Data == nil {
		return errors.New("search_result without data")
	}
	for i := range w.Data {
		if err := w.Data[i].validate(); err != nil {
			return fmt.Errorf("data[%d]: %w", i, err)
		}
	}
	return nil
}

type wireCustomer struct {
	ID       string    `json:"id"`
	Object   string    `json:"object"`
	Created  msTime    `json:"created"`
	Email    string    `json:"email"`
	Name     string    `json:"name"`
	Metadata stringMap `json:"metadata"`
	// Deleted: the gateway answers for a deleted customer with its id and
	// deleted=true (HTTP 200), as Stripe-shaped APIs do.
	Deleted bool `json:"deleted"`
}

func (w *wireCustomer) validate() error { return checkObject(w.Object, "customer", w.ID) }

type wireSetupIntent struct {
	ID             string          `json:"id"`
	Object         string          `json:"object"`
	Created        msTime          `json:"created"`
	Status         string          `json:"status"`
	Customer       idOrObject      `json:"customer"`
	PaymentMethod  idOrObject      `json:"payment_method"`
	Usage          string          `json:"usage"`
	Metadata       stringMap       `json:"metadata"`
	LastSetupError *wireError      `json:"last_setup_error"`
	NextAction     *wireNextAction `json:"next_action"`
}

func (w *wireSetupIntent) validate() error {
	if err := checkObject(w.Object, "setup_intent", w.ID); err != nil {
		return err
	}
	if w.Status == "" {
		return errors.New("setup_intent without status")
	}
	return nil
}

type wirePaymentMethod struct {
	ID       string     `json:"id"`
	Object   string     `json:"object"`
	Created  msTime     `json:"created"`
	Type     string     `json:"type"`
	Customer idOrObject `json:"customer"`
	Card     *struct {
		Brand    string  `json:"brand"`
		Last4    string  `json:"last4"`
		ExpMonth flexInt `json:"exp_month"`
		ExpYear  flexInt `json:"exp_year"`
		Country  string  `json:"country"`
		Funding  string  `json:"funding"`
	} `json:"card"`
	Metadata stringMap `json:"metadata"`
}

func (w *wirePaymentMethod) validate() error { return checkObject(w.Object, "payment_method", w.ID) }

// Request bodies.

type createIntentBody struct {
	Amount          int64             `json:"amount"`
	Currency        string            `json:"currency"`
	Confirm         bool              `json:"confirm"`
	OffSession      bool              `json:"off_session"`
	Customer        string            `json:"customer,omitempty"`
	PaymentMethod   string            `json:"payment_method,omitempty"`
	MerchantOrderID string            `json:"merchant_order_id,omitempty"`
	Description     string            `json:"description,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	ReturnURL       string            `json:"return_url,omitempty"`
}

type confirmIntentBody struct {
	PaymentMethod string `json:"payment_method,omitempty"`
	OffSession    bool   `json:"off_session"`
	ReturnURL     string `json:"return_url,omitempty"`
}

type cancelIntentBody struct {
	CancellationReason string `json:"cancellation_reason,omitempty"`
}

type customerBody struct {
	Email    string            `json:"email,omitempty"`
	Name     string            `json:"name,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type setupIntentBody struct {
	Confirm            bool              `json:"confirm"`
	Customer           string            `json:"customer,omitempty"`
	PaymentMethodTypes []string          `json:"payment_method_types"`
	PaymentMethodData  wirePMData        `json:"payment_method_data"`
	Usage              string            `json:"usage,omitempty"`
	ReturnURL          string            `json:"return_url,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
}

type wirePMData struct {
	Type string       `json:"type"`
	Card wireCardData `json:"card"`
}

// wireCardData is the only place a card number is ever serialized. It is a
// distinct type from CardData so that CardData's redacting MarshalJSON does not
// apply here, and nothing else can serialize the real number by accident.
type wireCardData struct {
	Number   string `json:"number"`
	ExpMonth string `json:"exp_month"`
	ExpYear  string `json:"exp_year"`
	CVC      string `json:"cvc,omitempty"`
	Name     string `json:"name,omitempty"`
}

// unconvertible stands for a wire amount that is no whole number of the
// currency's ISO minor units (or of a currency WooshPay cannot charge): no
// attempt asks for it, so every amount check flags the answer for review
// instead of booking a rounded amount.
const unconvertible = -1

// isoAmount converts a WooshPay wire amount to ISO 4217 minor units, the
// units billingd books (units.WooshPay: 1234500 ISK on the wire is 12345 ISK).
func isoAmount(wire int64, currency string) int64 {
	v, err := units.WooshPay.FromWire(wire, currency)
	if err != nil {
		return unconvertible
	}
	return v
}
