package checkout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
)

// maxRetryAfter bounds a Retry-After value so a malformed header cannot park
// the engine for days.
const maxRetryAfter = 24 * time.Hour

// decide is the one place that says what an exchange means. Whatever the
// charge path branches on — definite or not, hard or soft, how long to wait —
// is settled here, where status, headers and body are at hand:
//
//   - 2xx: into decodes and validates the body, or the answer is Transient
//     (the call's effect is unknown). A *wirePayment is mapped by its status
//     and response_code (201 approved → Succeeded, approved:false → Declined
//     or, for 20154, RequiresAction; 202 Pending with a redirect →
//     RequiresAction, without one → Processing). Other objects give Succeeded,
//     meaning only that the call did what was asked.
//   - 401, 403 and other 4xx: Invalid (the request itself was refused, no
//     money moved, a human must look); 404 wraps gateway.ErrNotFound.
//   - 422: OurDataError for a charge whose error_codes blame billingd's ids
//     (an unknown source, customer or previous payment), else Invalid; Param
//     names the field.
//   - 409 (the same key is being processed), 429, 5xx, 1xx/3xx, transport
//     errors, timeouts, unreadable or oversized bodies: Transient, with
//     RetryAfter from Retry-After.
func (c *Client) decide(ctx context.Context, cl call, a answer, into wireObject) gateway.Result {
	r := gateway.Result{HTTPStatus: a.status}
	if a.err != nil {
		if errors.Is(a.err, errRequestEncoding) || errors.Is(a.err, errRequestBuild) {
			kind := gateway.Invalid
			if cl.charge {
				kind = gateway.OurDataError
			}
			return refuse(cl, kind, a.err)
		}
		r.Kind = gateway.Transient
		r.Err = c.transportError(ctx, cl, a)
		return r
	}
	switch {
	case a.status >= 200 && a.status < 300:
		if into == nil {
			r.Kind = gateway.Succeeded
			return r
		}
		if a.tooLarge {
			return c.transient(r, cl, fmt.Sprintf("%d response body larger than %d bytes", a.status, maxBodyBytes))
		}
		if err := decodeObject(a.body, into); err != nil {
			return c.transient(r, cl, fmt.Sprintf("%d unreadable response: %v", a.status, err))
		}
		if wp, ok := into.(*wirePayment); ok {
			return c.resultFromPayment(wp, a.status)
		}
		r.Kind = gateway.Succeeded
		return r
	}

	e := c.parseError(a.body, a.tooLarge)
	desc := c.describe(cl, a, e)
	switch {
	case a.status == http.StatusConflict, a.status == http.StatusTooManyRequests,
		a.status == http.StatusRequestTimeout, a.status >= 500:
		// 409: a request with this key is still being processed; 429: rate
		// limited; 5xx: the payment may or may not have been made. Unknown.
		r.Kind = gateway.Transient
		r.RetryAfter = c.retryAfter(a.header)
		r.Err = errors.New(desc)
	case a.status == http.StatusUnauthorized:
		r.Kind = gateway.Invalid
		r.Err = errors.New(desc + " (check gateway.secret_key)")
	case a.status == http.StatusNotFound:
		r.Kind = gateway.Invalid
		r.Err = fmt.Errorf("%s: %w", desc, gateway.ErrNotFound)
	case a.status == http.StatusUnprocessableEntity:
		r.Kind, r.Param = classify422(cl, e)
		r.Err = errors.New(desc)
	case a.status >= 400:
		r.Kind = gateway.Invalid
		r.Err = errors.New(desc)
	default:
		// 1xx/3xx: not an API answer (a redirecting proxy, a wrong base URL).
		// Nothing says the request was not executed.
		r.Kind = gateway.Transient
		r.Err = errors.New(desc)
	}
	return r
}

// ourDataCodes are the 422 error codes that blame an id billingd sent, with
// the parameter they name. For a charge they make the answer OurDataError:
// the card or customer billingd holds is unknown to Checkout.com (which only
// the charge path can tell apart from a card the customer removed).
var ourDataCodes = map[string]string{
	"source_id_invalid":            "source",
	"source_invalid":               "source",
	"source_not_found":             "source",
	"card_not_found":               "source",
	"instrument_not_found":         "source",
	"instrument_invalid":           "source",
	"customer_not_found":           "customer",
	"customer_id_invalid":          "customer",
	"customer_invalid":             "customer",
	"previous_payment_id_invalid":  "previous_payment_id",
	"previous_payment_id_required": "previous_payment_id",
}

// classify422 reads a validation error's codes.
func classify422(cl call, e *wireErrorBody) (gateway.Kind, string) {
	if e == nil {
		return gateway.Invalid, ""
	}
	for _, code := range e.ErrorCodes {
		if p, ok := ourDataCodes[code]; ok {
			if cl.charge {
				return gateway.OurDataError, p
			}
			return gateway.Invalid, p
		}
	}
	if len(e.ErrorCodes) > 0 {
		return gateway.Invalid, paramOfCode(e.ErrorCodes[0])
	}
	return gateway.Invalid, ""
}

// paramOfCode takes the field out of a validation code: amount_invalid →
// amount, billing_descriptor_city_required → billing_descriptor_city.
func paramOfCode(code string) string {
	for _, suffix := range []string{"_invalid", "_required", "_not_found", "_too_long", "_exceeded"} {
		if p, ok := strings.CutSuffix(code, suffix); ok && p != "" {
			return p
		}
	}
	return ""
}

func (c *Client) transient(r gateway.Result, cl call, msg string) gateway.Result {
	r.Kind = gateway.Transient
	r.Err = fmt.Errorf("checkout: %s: %s", cl.op(), c.scrub(msg))
	return r
}

// transportError explains a failed exchange; a context error of the caller's
// is wrapped so the engine can tell shutdown from a gateway problem.
func (c *Client) transportError(ctx context.Context, cl call, a answer) error {
	return apicall.TransportError(ctx, "checkout: "+cl.op(), a.status, a.err, c.timeout, closedText, c.scrub)
}

var closedText = apicall.ClosedText{BeforeStatus: "connection closed early", MidBody: "connection closed early"}

// parseError reads the error envelope leniently: a missing or broken body
// yields nil and the status alone decides. Every string is scrubbed.
func (c *Client) parseError(body []byte, truncated bool) *wireErrorBody {
	if truncated || len(body) == 0 {
		return nil
	}
	var e wireErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		return nil
	}
	if e.ErrorType == "" && len(e.ErrorCodes) == 0 && e.RequestID == "" {
		return nil
	}
	e.RequestID = c.scrubCode(e.RequestID)
	e.ErrorType = c.scrubCode(e.ErrorType)
	codes := e.ErrorCodes[:0]
	for _, code := range e.ErrorCodes {
		if s := c.scrubCode(code); s != "" {
			codes = append(codes, s)
		}
		if len(codes) == 10 {
			break
		}
	}
	e.ErrorCodes = codes
	return &e
}

// describe builds "checkout: POST /payments: 422 request_invalid [amount_invalid] [request 0HL…]".
func (c *Client) describe(cl call, a answer, e *wireErrorBody) string {
	var b strings.Builder
	b.WriteString("checkout: ")
	b.WriteString(cl.op())
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(a.status))
	if e == nil {
		b.WriteString(" ")
		if t := http.StatusText(a.status); t != "" {
			b.WriteString(strings.ToLower(t))
		} else {
			b.WriteString("unexpected status")
		}
	} else {
		if e.ErrorType != "" {
			b.WriteString(" ")
			b.WriteString(e.ErrorType)
		}
		if len(e.ErrorCodes) > 0 {
			b.WriteString(" [")
			b.WriteString(strings.Join(e.ErrorCodes, " "))
			b.WriteString("]")
		}
	}
	id := ""
	if e != nil {
		id = e.RequestID
	}
	if id == "" && a.header != nil {
		id = c.scrubCode(a.header.Get("Cko-Request-Id"))
	}
	if id != "" {
		b.WriteString(" [request ")
		b.WriteString(id)
		b.WriteString("]")
	}
	return b.String()
}

// retryAfter reads Retry-After as delay-seconds or an HTTP date, capped.
func (c *Client) retryAfter(h http.Header) time.Duration {
	return apicall.RetryAfter(h, c.now(), maxRetryAfter)
}

const (
	maxMessageLen = apicall.MaxMessageLen
	maxCodeLen    = apicall.MaxCodeLen
	redacted      = apicall.Redacted
)

// apiKeyPattern matches Checkout.com keys of both platforms in anything
// echoed back: sk_sbox_…, sk_…, pk_…, sk_test_<uuid>.
var apiKeyPattern = regexp.MustCompile(`\b(?:sk|pk)_(?:sbox_|test_)?[A-Za-z0-9*#$=-]{8,}`)

// scrubber removes the client's own secret (none for a nil Client, as when
// decoding events) and anything shaped like a key or a card number.
func (c *Client) scrubber() apicall.Scrubber {
	s := apicall.Scrubber{KeyPattern: apiKeyPattern}
	if c != nil {
		s.Secret = c.secret
	}
	return s
}

// scrub makes gateway or transport text safe for an error and the database.
func (c *Client) scrub(s string) string { return c.scrubber().Scrub(s) }

func (c *Client) scrubCode(s string) string { return c.scrubber().ScrubCode(s) }
