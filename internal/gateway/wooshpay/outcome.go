package wooshpay

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

// maxRetryAfter bounds a Retry-After value so that a malformed header cannot
// overflow a time.Duration or park the engine for days; the engine applies its own,
// tighter deadline anyway.
const maxRetryAfter = 24 * time.Hour

// decide is the one place that says what an exchange means. Everything the charge
// path branches on — definite or not, hard or soft, wait how long — is settled here,
// where the status code, headers and body are at hand, so no caller ever has to
// look at HTTP again.
//
// into, when non-nil, receives a 2xx body; it must decode and validate, or the
// answer is Transient (the call's effect is unknown). A *wireIntent is mapped with
// gateway.ResultFromIntent; any other object yields Kind Succeeded, meaning only
// "the call did what was asked".
func (c *Client) decide(ctx context.Context, cl call, a answer, into wireObject) gateway.Result {
	r := gateway.Result{HTTPStatus: a.status}

	if a.notSent {
		r.Kind = invalidLocally(cl, nil).Kind
		r.Err = fmt.Errorf("wooshpay: %s: %w", cl.op(), a.err)
		return r
	}
	if a.err != nil {
		// No (complete) answer: the request may or may not have been executed.
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
		if wi, ok := into.(*wireIntent); ok {
			res := gateway.ResultFromIntent(c.intentFromWire(wi), a.status)
			if res.Err != nil {
				// The text quotes gateway-supplied id and status: scrub it too.
				res.Err = errors.New(c.scrub(fmt.Sprintf("wooshpay: %s: %d: %v", cl.op(), a.status, res.Err)))
			}
			return res
		}
		r.Kind = gateway.Succeeded
		return r
	}

	// Not a success: read the error envelope, if there is a usable one.
	e, intent := c.parseError(a.body, a.tooLarge)
	r.Intent = intent
	desc := c.describe(cl, a, e)

	switch {
	case a.status == http.StatusPaymentRequired:
		// Valid request, card refused: definite, no money moved.
		r.Kind = gateway.Declined
		switch {
		case e != nil && (e.Type != "" || e.Code != "" || e.DeclineCode != ""):
			r.Decline = gateway.NewDecline(e.Type, e.Code, e.DeclineCode, e.AdviceCode, e.Message)
		case intent != nil && intent.LastError != nil:
			r.Decline = intent.LastError
		default:
			r.Decline = gateway.NewDecline("card_error", "card_declined", "", "", "declined without error details")
		}
	case a.status == http.StatusConflict,
		a.status == http.StatusRequestTimeout,
		a.status == http.StatusTooEarly:
		// 409: the same key is still in flight; the replay will tell.
		r.Kind = gateway.Transient
		r.RetryAfter = c.retryAfter(a.header)
		r.Err = errors.New(desc)
	case a.status == http.StatusTooManyRequests || a.status >= 500:
		// Rate limited, or gateway trouble: the charge may or may not have been
		// recorded. Retry with the same key, honouring Retry-After.
		r.Kind = gateway.Transient
		r.RetryAfter = c.retryAfter(a.header)
		r.Err = errors.New(desc)
	case a.status == http.StatusNotFound:
		r.Kind = refusalKind(cl, a.status, e)
		r.Decline = declineFromError(e)
		r.Param = paramOf(e)
		r.Err = fmt.Errorf("%s: %w", desc, gateway.ErrNotFound)
	case a.status >= 400:
		// 400 (including idempotency_error), 401, 403 and other refusals of the
		// request itself: definite, no money moved, a human must look.
		r.Kind = refusalKind(cl, a.status, e)
		r.Decline = declineFromError(e)
		r.Param = paramOf(e)
		r.IdempotencyConflict = e != nil && e.Type == "idempotency_error"
		r.Err = errors.New(desc)
	default:
		// 1xx/3xx: not an API answer (a redirecting proxy, a misconfigured base
		// URL). Nothing says the request was not executed, so do not guess.
		r.Kind = gateway.Transient
		r.Err = errors.New(desc)
	}
	return r
}

// refusalKind classifies a 4xx refusal other than 402/409/429. For a charge, a
// 400 or 404 invalid_request_error (an unknown customer or payment method, a
// parameter the gateway rejects) is about billingd's data, not the card:
// OurDataError. Anything else — 401 and 403 (the account's key or permissions,
// which WooshPay also types invalid_request_error), an idempotency_error, a
// refusal without an error object — stays Invalid.
func refusalKind(cl call, status int, e *wireError) gateway.Kind {
	if cl.charge && (status == http.StatusBadRequest || status == http.StatusNotFound) &&
		e != nil && e.Type == "invalid_request_error" {
		return gateway.OurDataError
	}
	return gateway.Invalid
}

func paramOf(e *wireError) string {
	if e == nil {
		return ""
	}
	return e.Param
}

func (c *Client) transient(r gateway.Result, cl call, msg string) gateway.Result {
	r.Kind = gateway.Transient
	r.Err = fmt.Errorf("wooshpay: %s: %s", cl.op(), c.scrub(msg))
	return r
}

// transportError explains a failed exchange. When the caller's own context ended,
// the error wraps the context's error so the engine can tell shutdown from a
// gateway problem; the outcome stays unknown either way.
func (c *Client) transportError(ctx context.Context, cl call, a answer) error {
	return apicall.TransportError(ctx, "wooshpay: "+cl.op(), a.status, a.err, c.timeout, closedText, c.scrub)
}

var closedText = apicall.ClosedText{BeforeStatus: "connection closed without a response", MidBody: "connection closed mid-body"}

// wireError is the gateway's error object.
type wireError struct {
	Type          string          `json:"type"`
	Code          string          `json:"code"`
	DeclineCode   string          `json:"decline_code"`
	AdviceCode    string          `json:"advice_code"`
	Message       string          `json:"message"`
	Param         string          `json:"param"`
	PaymentIntent json.RawMessage `json:"payment_intent"`
}

// parseError reads {"error": {...}} leniently: a missing or broken envelope yields
// nil, and the status code alone decides. Every string is scrubbed.
func (c *Client) parseError(body []byte, truncated bool) (*wireError, *gateway.PaymentIntent) {
	if truncated || len(body) == 0 {
		return nil, nil
	}
	var env struct {
		Error *wireError `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil {
		return nil, nil
	}
	e := env.Error
	e.Type = c.scrubCode(e.Type)
	e.Code = c.scrubCode(e.Code)
	e.DeclineCode = c.scrubCode(e.DeclineCode)
	e.AdviceCode = c.scrubCode(e.AdviceCode)
	e.Param = c.scrubCode(e.Param)
	e.Message = c.scrub(e.Message)
	var intent *gateway.PaymentIntent
	if raw := e.PaymentIntent; len(raw) > 0 && string(raw) != "null" {
		var wi wireIntent
		if decodeObject(raw, &wi) == nil {
			intent = c.intentFromWire(&wi)
		}
	}
	return e, intent
}

func declineFromError(e *wireError) *gateway.Decline {
	if e == nil || (e.Type == "" && e.Code == "" && e.DeclineCode == "") {
		return nil
	}
	return gateway.NewDecline(e.Type, e.Code, e.DeclineCode, e.AdviceCode, e.Message)
}

// describe builds the short error text: "wooshpay: POST /v1/x: 500 api_error: msg".
func (c *Client) describe(cl call, a answer, e *wireError) string {
	var b strings.Builder
	b.WriteString("wooshpay: ")
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
		if a.tooLarge {
			b.WriteString(" (oversized body)")
		} else if len(a.body) > 0 {
			b.WriteString(" (no error object in body)")
		}
	} else {
		if e.Type != "" {
			b.WriteString(" ")
			b.WriteString(e.Type)
		}
		if e.Code != "" {
			b.WriteString(" ")
			b.WriteString(e.Code)
		}
		if e.DeclineCode != "" {
			b.WriteString(" (")
			b.WriteString(e.DeclineCode)
			b.WriteString(")")
		}
		if e.Param != "" {
			b.WriteString(" param=")
			b.WriteString(e.Param)
		}
		if e.Message != "" {
			b.WriteString(": ")
			b.WriteString(e.Message)
		}
	}
	if id := c.scrubCode(a.header.Get("Request-Id")); id != "" {
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

// apiKeyPattern matches WooshPay/Stripe-style API keys, whichever account they
// belong to, in anything the gateway echoes back.
var apiKeyPattern = regexp.MustCompile(`\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9_*]+`)

// scrub makes gateway-supplied or transport text safe for an error string and
// the database: no secret key, nothing shaped like an API key or a card number.
func (c *Client) scrub(s string) string {
	return apicall.Scrubber{Secret: c.secret, KeyPattern: apiKeyPattern}.Scrub(s)
}

// scrubCode is scrub for short identifiers (type, code, request id).
func (c *Client) scrubCode(s string) string {
	return apicall.Scrubber{Secret: c.secret, KeyPattern: apiKeyPattern}.ScrubCode(s)
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// Error is returned by the calls that answer with an object rather than a
// gateway.Result (customers, setup intents, checkout sessions, payment methods,
// search); see apicall.Error.
type Error = apicall.Error

// errorStyle prints a declined object call with its reason.
var errorStyle = apicall.ErrorStyle{Prefix: "wooshpay", DeclineDetail: true}

// asError turns a non-success Result into an *Error.
func asError(cl call, r gateway.Result) error {
	return errorStyle.Wrap(cl.op(), r)
}
