package wooshpay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

// intentJSON renders a PaymentIntent body; extra is appended as further fields.
func intentJSON(id, status, extra string) string {
	s := `{"id":"` + id + `","object":"payment_intent","created":1732406400123,"amount":2500,` +
		`"currency":"usd","status":"` + status + `","customer":"cus_123","payment_method":"pm_456",` +
		`"merchant_order_id":"inv_789","description":"Pro plan","metadata":{"invoice":"inv_789"},` +
		`"off_session":true,"client_secret":"` + id + `_secret_abc","amount_received":0,"canceled_at":null`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// cardErrorJSON renders a 402 body, with the declined intent attached when withIntent.
func cardErrorJSON(declineCode, adviceCode, message string, withIntent bool) string {
	e := fmt.Sprintf(`"type":"card_error","code":"card_declined","decline_code":%q,"advice_code":%q,"message":%q`,
		declineCode, adviceCode, message)
	if withIntent {
		lpe := `"last_payment_error":{` + e + `}`
		e += `,"payment_intent":` + intentJSON("pi_declined", "requires_payment_method", lpe)
	}
	return `{"error":{` + e + `}}`
}

func apiErrorJSON(typ, code, message string) string {
	return fmt.Sprintf(`{"error":{"type":%q,"code":%q,"message":%q}}`, typ, code, message)
}

var fixedNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// TestErrorTable covers every row of the error table in docs/gateway-wooshpay.md,
// plus the malformed answers around it.
func TestErrorTable(t *testing.T) {
	type want struct {
		kind         gateway.Kind
		declineCode  string
		code         string
		hard         bool
		retryAfter   time.Duration
		notFound     bool
		intentStatus gateway.IntentStatus // "" means no Intent
		errContains  string               // "" means Err must be nil
		param        string
		conflict     bool
	}
	tests := []struct {
		name    string
		status  int
		headers []string
		body    string
		want    want
	}{
		{"400 invalid_request_error", 400, nil,
			apiErrorJSON("invalid_request_error", "parameter_missing", "Missing required param: amount."),
			want{kind: gateway.OurDataError, code: "parameter_missing", errContains: "400 invalid_request_error parameter_missing: Missing required param: amount."}},
		{"400 idempotency_error", 400, nil,
			apiErrorJSON("idempotency_error", "idempotency_key_reused", "Keys for idempotent requests can only be used with the same parameters."),
			want{kind: gateway.Invalid, code: "idempotency_key_reused", conflict: true, errContains: "400 idempotency_error"}},
		{"400 cancel of a succeeded intent carries the intent", 400, nil,
			`{"error":{"type":"invalid_request_error","code":"payment_intent_unexpected_state","message":"This PaymentIntent could not be canceled.","payment_intent":` +
				intentJSON("pi_ok", "succeeded", "") + `}}`,
			want{kind: gateway.OurDataError, code: "payment_intent_unexpected_state", intentStatus: gateway.IntentSucceeded, errContains: "payment_intent_unexpected_state"}},
		{"401 bad key, key echoed back", 401, nil,
			apiErrorJSON("invalid_request_error", "api_key_invalid", "Invalid API Key provided: "+testKey),
			want{kind: gateway.Invalid, code: "api_key_invalid", errContains: "401 invalid_request_error api_key_invalid: Invalid API Key provided: [redacted]"}},
		{"401 no body", 401, nil, "",
			want{kind: gateway.Invalid, errContains: "401 unauthorized"}},
		{"403", 403, nil,
			apiErrorJSON("invalid_request_error", "permission_denied", "Not allowed."),
			want{kind: gateway.Invalid, code: "permission_denied", errContains: "403"}},
		{"402 insufficient_funds, intent attached", 402, nil,
			cardErrorJSON("insufficient_funds", "", "Your card has insufficient funds.", true),
			want{kind: gateway.Declined, code: "card_declined", declineCode: "insufficient_funds", hard: false, intentStatus: gateway.IntentRequiresPaymentMethod}},
		{"402 expired_card is hard", 402, nil,
			cardErrorJSON("expired_card", "", "Your card has expired.", true),
			want{kind: gateway.Declined, code: "card_declined", declineCode: "expired_card", hard: true, intentStatus: gateway.IntentRequiresPaymentMethod}},
		{"402 lost_card is hard", 402, nil,
			cardErrorJSON("lost_card", "", "Your card was declined.", true),
			want{kind: gateway.Declined, code: "card_declined", declineCode: "lost_card", hard: true, intentStatus: gateway.IntentRequiresPaymentMethod}},
		{"402 stolen_card is hard", 402, nil,
			cardErrorJSON("stolen_card", "", "Your card was declined.", true),
			want{kind: gateway.Declined, code: "card_declined", declineCode: "stolen_card", hard: true, intentStatus: gateway.IntentRequiresPaymentMethod}},
		{"402 generic_decline is soft", 402, nil,
			cardErrorJSON("generic_decline", "", "Your card was declined.", true),
			want{kind: gateway.Declined, code: "card_declined", declineCode: "generic_decline", intentStatus: gateway.IntentRequiresPaymentMethod}},
		{"402 processing_error is soft", 402, nil,
			cardErrorJSON("processing_error", "", "An error occurred while processing your card.", true),
			want{kind: gateway.Declined, code: "card_declined", declineCode: "processing_error", intentStatus: gateway.IntentRequiresPaymentMethod}},
		{"402 soft code with do_not_try_again advice is hard", 402, nil,
			cardErrorJSON("insufficient_funds", "do_not_try_again", "Declined.", true),
			want{kind: gateway.Declined, code: "card_declined", declineCode: "insufficient_funds", hard: true, intentStatus: gateway.IntentRequiresPaymentMethod}},
		{"402 without intent", 402, nil,
			cardErrorJSON("incorrect_number", "", "Your card number is incorrect: "+testCard, false),
			want{kind: gateway.Declined, code: "card_declined", declineCode: "incorrect_number", hard: true}},
		{"402 unreadable body is still a decline", 402, nil, "<html>Payment Required</html>",
			want{kind: gateway.Declined, code: "card_declined"}},
		{"404 resource_missing", 404, nil,
			apiErrorJSON("invalid_request_error", "resource_missing", "No such payment_intent: 'pi_nope'"),
			want{kind: gateway.OurDataError, code: "resource_missing", notFound: true, errContains: "404 invalid_request_error resource_missing"}},
		{"404 unknown customer names the parameter", 404, nil,
			`{"error":{"type":"invalid_request_error","code":"resource_missing","param":"customer","message":"No such customer: 'cus_nope'"}}`,
			want{kind: gateway.OurDataError, code: "resource_missing", param: "customer", notFound: true, errContains: "param=customer: No such customer"}},
		{"400 detached payment method names the parameter", 400, nil,
			`{"error":{"type":"invalid_request_error","code":"parameter_invalid","param":"payment_method","message":"The payment method pm_1 does not belong to customer cus_1."}}`,
			want{kind: gateway.OurDataError, code: "parameter_invalid", param: "payment_method", errContains: "param=payment_method"}},
		{"400 without an error object is not classified as our data", 400, nil, "",
			want{kind: gateway.Invalid, errContains: "400 bad request"}},
		{"404 html", 404, []string{"Content-Type", "text/html"}, "<html>not found</html>",
			want{kind: gateway.Invalid, notFound: true, errContains: "404 not found (no error object in body)"}},
		{"409 idempotency_key_in_use", 409, nil,
			apiErrorJSON("idempotency_error", "idempotency_key_in_use", "There is currently another in-progress request using this Idempotent Key."),
			want{kind: gateway.Transient, code: "", errContains: "409 idempotency_error idempotency_key_in_use"}},
		{"429 Retry-After seconds", 429, []string{"Retry-After", "2"},
			apiErrorJSON("api_error", "rate_limit", "Too many requests."),
			want{kind: gateway.Transient, retryAfter: 2 * time.Second, errContains: "429 api_error rate_limit"}},
		{"429 Retry-After HTTP date", 429, []string{"Retry-After", fixedNow.Add(90 * time.Second).Format(http.TimeFormat)},
			apiErrorJSON("api_error", "rate_limit", "Too many requests."),
			want{kind: gateway.Transient, retryAfter: 90 * time.Second, errContains: "429"}},
		{"429 Retry-After date in the past", 429, []string{"Retry-After", fixedNow.Add(-time.Hour).Format(http.TimeFormat)},
			apiErrorJSON("api_error", "rate_limit", "Too many requests."),
			want{kind: gateway.Transient, errContains: "429"}},
		{"429 without Retry-After", 429, nil,
			apiErrorJSON("api_error", "rate_limit", "Too many requests."),
			want{kind: gateway.Transient, errContains: "429"}},
		{"500 api_error", 500, []string{"Request-Id", "req_abc"},
			apiErrorJSON("api_error", "", "Something went wrong."),
			want{kind: gateway.Transient, errContains: "wooshpay: POST /v1/payment_intents: 500 api_error: Something went wrong. [request req_abc]"}},
		{"502 html from a proxy", 502, []string{"Content-Type", "text/html"}, "<html><body>Bad Gateway</body></html>",
			want{kind: gateway.Transient, errContains: "502 bad gateway"}},
		{"503 Retry-After honoured", 503, []string{"Retry-After", "5"},
			apiErrorJSON("api_error", "", "Service unavailable."),
			want{kind: gateway.Transient, retryAfter: 5 * time.Second, errContains: "503 api_error"}},
		{"504 empty", 504, nil, "",
			want{kind: gateway.Transient, errContains: "504 gateway timeout"}},
		{"500 oversized body", 500, nil, strings.Repeat("x", maxBodyBytes+10),
			want{kind: gateway.Transient, errContains: "500 internal server error (oversized body)"}},
		{"302 redirect is not an answer", 302, []string{"Location", "https://elsewhere.example/"}, "",
			want{kind: gateway.Transient, errContains: "302 found"}},
		{"2xx garbage JSON", 200, nil, `{"id":"pi_1","status":`,
			want{kind: gateway.Transient, errContains: "200 unreadable response"}},
		{"2xx HTML", 200, []string{"Content-Type", "text/html"}, "<html>hello</html>",
			want{kind: gateway.Transient, errContains: "200 unreadable response"}},
		{"2xx empty body", 200, nil, "",
			want{kind: gateway.Transient, errContains: "empty body"}},
		{"2xx empty object", 200, nil, "{}",
			want{kind: gateway.Transient, errContains: "payment_intent without id"}},
		{"2xx error envelope", 200, nil, apiErrorJSON("api_error", "", "odd"),
			want{kind: gateway.Transient, errContains: "200 unreadable response"}},
		{"2xx another object", 200, nil, `{"id":"cus_1","object":"customer"}`,
			want{kind: gateway.Transient, errContains: `object is "customer"`}},
		{"2xx intent without status", 200, nil, `{"id":"pi_1","object":"payment_intent"}`,
			want{kind: gateway.Transient, errContains: "without status"}},
		{"2xx wrong field type", 200, nil, `{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":"2500"}`,
			want{kind: gateway.Transient, errContains: "unreadable response"}},
		{"2xx oversized", 200, nil, `{"id":"pi_1","object":"payment_intent","status":"succeeded","description":"` + strings.Repeat("x", maxBodyBytes) + `"}`,
			want{kind: gateway.Transient, errContains: "larger than"}},
		{"2xx unknown status", 200, nil, intentJSON("pi_1", "exploded", ""),
			want{kind: gateway.Transient, intentStatus: "exploded", errContains: "unknown status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, reply(tt.status, tt.body, tt.headers...))
			c := f.client()
			c.now = func() time.Time { return fixedNow }
			r := c.CreatePaymentIntent(context.Background(), chargeRequest())

			require.Equal(t, tt.want.kind, r.Kind, "err: %v", r.Err)
			require.Equal(t, tt.status, r.HTTPStatus)
			require.Equal(t, tt.want.retryAfter, r.RetryAfter)
			require.Equal(t, tt.want.param, r.Param)
			require.Equal(t, tt.want.conflict, r.IdempotencyConflict)
			if tt.want.errContains == "" {
				require.NoError(t, r.Err)
			} else {
				require.Error(t, r.Err)
				require.Contains(t, r.Err.Error(), tt.want.errContains)
				require.True(t, strings.HasPrefix(r.Err.Error(), "wooshpay: "), r.Err.Error())
				requireClean(t, r.Err.Error())
				require.Less(t, len(r.Err.Error()), 600, "error text must stay short")
			}
			require.Equal(t, tt.want.notFound, errors.Is(r.Err, gateway.ErrNotFound))
			if tt.want.intentStatus == "" {
				require.Nil(t, r.Intent)
			} else {
				require.NotNil(t, r.Intent)
				require.Equal(t, tt.want.intentStatus, r.Intent.Status)
			}
			if tt.want.kind == gateway.Declined {
				require.NotNil(t, r.Decline)
				require.Equal(t, tt.want.code, r.Decline.Code)
				require.Equal(t, tt.want.declineCode, r.Decline.DeclineCode)
				require.Equal(t, tt.want.hard, r.Decline.Hard)
				requireClean(t, r.Decline.Message)
				if r.Intent != nil {
					require.NotNil(t, r.Intent.LastError)
					require.Equal(t, tt.want.declineCode, r.Intent.LastError.DeclineCode)
				}
			}
			if tt.want.kind == gateway.Invalid && tt.want.code != "" {
				require.NotNil(t, r.Decline, "Invalid keeps the gateway's codes")
				require.Equal(t, tt.want.code, r.Decline.Code)
			}
		})
	}
}

func TestDeclineDetails(t *testing.T) {
	f := newFake(t, reply(402, cardErrorJSON("insufficient_funds", "try_again_later", "Your card has insufficient funds.", true)))
	r := f.client().CreatePaymentIntent(context.Background(), chargeRequest())
	require.Equal(t, gateway.Declined, r.Kind)
	require.Equal(t, &gateway.Decline{
		Type: "card_error", Code: "card_declined", DeclineCode: "insufficient_funds",
		AdviceCode: "try_again_later", Message: "Your card has insufficient funds.", Hard: false,
	}, r.Decline)
	require.Equal(t, "insufficient_funds", r.Decline.Reason())
	require.Equal(t, "pi_declined", r.Intent.ID)
	require.NoError(t, r.Err)
	require.True(t, r.Kind.Definite())
}

func TestIntentMapping(t *testing.T) {
	challenge := `"next_action":{"type":"challenge_redirect","challenge_redirect":{"url":"https://sim.example/3ds/pi_1","return_url":"https://b.example/r"}}`
	redirect := `"next_action":{"type":"redirect_to_url","redirect_to_url":{"url":"https://acs.example/x","return_url":"https://b.example/r"}}`
	hostile := `"next_action":{"type":"redirect_to_url","redirect_to_url":{"url":"javascript:alert(1)"}}`
	lpe := `"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"expired_card","advice_code":"","message":"Your card has expired."}`
	tests := []struct {
		name       string
		status     int
		body       string
		kind       gateway.Kind
		actionURL  string
		decline    string
		hard       bool
		wantErrNil bool
	}{
		{"succeeded", 200, intentJSON("pi_1", "succeeded", `"amount_received":2500`), gateway.Succeeded, "", "", false, true},
		{"created 201", 201, intentJSON("pi_1", "succeeded", ""), gateway.Succeeded, "", "", false, true},
		{"processing", 200, intentJSON("pi_1", "processing", ""), gateway.Processing, "", "", false, true},
		{"requires_action challenge_redirect", 200, intentJSON("pi_1", "requires_action", challenge), gateway.RequiresAction, "https://sim.example/3ds/pi_1", "", false, true},
		{"requires_action redirect_to_url", 200, intentJSON("pi_1", "requires_action", redirect), gateway.RequiresAction, "https://acs.example/x", "", false, true},
		{"requires_action non-http url dropped", 200, intentJSON("pi_1", "requires_action", hostile), gateway.RequiresAction, "", "", false, true},
		{"requires_payment_method with last error", 200, intentJSON("pi_1", "requires_payment_method", lpe), gateway.Declined, "", "expired_card", true, true},
		{"requires_payment_method without last error", 200, intentJSON("pi_1", "requires_payment_method", `"last_payment_error":null`), gateway.Declined, "", "generic_decline", false, true},
		{"canceled", 200, intentJSON("pi_1", "canceled", `"canceled_at":1732406400999,"cancellation_reason":"abandoned"`), gateway.Canceled, "", "", false, true},
		{"requires_confirmation is not a resting state", 200, intentJSON("pi_1", "requires_confirmation", ""), gateway.Transient, "", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, reply(tt.status, tt.body))
			r := f.client().RetrievePaymentIntent(context.Background(), "pi_1")
			require.Equal(t, tt.kind, r.Kind, "err: %v", r.Err)
			require.Equal(t, tt.status, r.HTTPStatus)
			require.Equal(t, tt.wantErrNil, r.Err == nil)
			require.NotNil(t, r.Intent)
			pi := r.Intent
			require.Equal(t, "pi_1", pi.ID)
			require.Equal(t, int64(2500), pi.Amount)
			require.Equal(t, "USD", pi.Currency, "currency is normalized to upper case")
			require.Equal(t, "cus_123", pi.Customer)
			require.Equal(t, "pm_456", pi.PaymentMethod)
			require.Equal(t, "inv_789", pi.MerchantOrderID)
			require.Equal(t, map[string]string{"invoice": "inv_789"}, pi.Metadata)
			require.Equal(t, time.Date(2024, 11, 24, 0, 0, 0, 123_000_000, time.UTC), pi.Created)
			require.Equal(t, time.UTC, pi.Created.Location())
			require.Equal(t, tt.actionURL, pi.ActionURL)
			if tt.decline != "" {
				require.NotNil(t, r.Decline)
				require.Equal(t, tt.decline, r.Decline.DeclineCode)
				require.Equal(t, tt.hard, r.Decline.Hard)
			}
		})
	}
}

func TestIntentLenientFields(t *testing.T) {
	body := `{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":100,"currency":"JPY",` +
		`"created":null,"customer":{"id":"cus_x","object":"customer"},"payment_method":null,` +
		`"metadata":{"n":7,"b":true,"z":null,"s":"v"},"unknown_field":{"nested":[1,2,3]}}`
	f := newFake(t, reply(200, body))
	r := f.client().RetrievePaymentIntent(context.Background(), "pi_1")
	require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
	require.Equal(t, "cus_x", r.Intent.Customer)
	require.Empty(t, r.Intent.PaymentMethod)
	require.True(t, r.Intent.Created.IsZero())
	require.Equal(t, map[string]string{"n": "7", "b": "true", "z": "", "s": "v"}, r.Intent.Metadata)
}

func TestTransportFailures(t *testing.T) {
	t.Run("connection closed without response", func(t *testing.T) {
		f := newFake(t, func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		})
		r := f.client().CreatePaymentIntent(context.Background(), chargeRequest())
		require.Equal(t, gateway.Transient, r.Kind)
		require.Zero(t, r.HTTPStatus)
		require.Error(t, r.Err)
		require.True(t, strings.HasPrefix(r.Err.Error(), "wooshpay: POST /v1/payment_intents: "), r.Err.Error())
		requireClean(t, r.Err.Error())
		require.NotContains(t, r.Err.Error(), "http://", "the URL is not repeated")
		require.Contains(t, r.Err.Error(), "connection closed without a response")
	})

	t.Run("body cut short after headers", func(t *testing.T) {
		f := newFake(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "5000")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, `{"id":"pi_1","status":"succ`)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		})
		r := f.client().CreatePaymentIntent(context.Background(), chargeRequest())
		require.Equal(t, gateway.Transient, r.Kind)
		require.Equal(t, 200, r.HTTPStatus)
		require.Contains(t, r.Err.Error(), "200 reading body")
	})

	t.Run("timeout", func(t *testing.T) {
		f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		c := f.client(func(o *Options) { o.Timeout = 50 * time.Millisecond })
		start := time.Now()
		r := c.CreatePaymentIntent(context.Background(), chargeRequest())
		require.Less(t, time.Since(start), 3*time.Second)
		require.Equal(t, gateway.Transient, r.Kind)
		require.Zero(t, r.HTTPStatus)
		require.Error(t, r.Err)
		requireClean(t, r.Err.Error())
	})

	t.Run("timeout with a caller-supplied http client", func(t *testing.T) {
		f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		c := f.client(func(o *Options) { o.Timeout = 50 * time.Millisecond; o.HTTPClient = &http.Client{} })
		r := c.CreatePaymentIntent(context.Background(), chargeRequest())
		require.Equal(t, gateway.Transient, r.Kind)
		require.ErrorIs(t, r.Err, context.DeadlineExceeded)
		require.Contains(t, r.Err.Error(), "no answer within 50ms")
	})

	t.Run("caller context canceled", func(t *testing.T) {
		started := make(chan struct{})
		f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done()
		})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-started; cancel() }()
		r := f.client().CreatePaymentIntent(ctx, chargeRequest())
		require.Equal(t, gateway.Transient, r.Kind, "the request was sent: its outcome is unknown")
		require.ErrorIs(t, r.Err, context.Canceled)
		require.Zero(t, r.HTTPStatus)
	})

	t.Run("caller deadline exceeded", func(t *testing.T) {
		f := newFake(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		r := f.client().CreatePaymentIntent(ctx, chargeRequest())
		require.Equal(t, gateway.Transient, r.Kind)
		require.ErrorIs(t, r.Err, context.DeadlineExceeded)
	})

	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		c, err := New(Options{BaseURL: "http://" + addr, SecretKey: testKey})
		require.NoError(t, err)
		r := c.CreatePaymentIntent(context.Background(), chargeRequest())
		require.Equal(t, gateway.Transient, r.Kind)
		require.Zero(t, r.HTTPStatus)
		var ne net.Error
		require.ErrorAs(t, r.Err, &ne, "the network error stays in the chain")
		requireClean(t, r.Err.Error())
	})
}

func TestRetryAfter(t *testing.T) {
	c := &Client{now: func() time.Time { return fixedNow }}
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"2", 2 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{"999999999999999999", maxRetryAfter},
		{"99999999999999999999999", 0},
		{fixedNow.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{fixedNow.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{fixedNow.Add(30 * time.Second).Format(time.RFC850), 30 * time.Second},
		{fixedNow.Add(72 * time.Hour).Format(http.TimeFormat), maxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("Retry-After", tt.header)
			}
			require.Equal(t, tt.want, c.retryAfter(h))
		})
	}
}

func TestScrub(t *testing.T) {
	c := &Client{secret: "whsec_or_any_custom_key_value"}
	tests := []struct{ in, want string }{
		{"plain message.", "plain message."},
		{"card 4242424242424242 declined", "card [redacted] declined"},
		{"card 4242 4242 4242 4242 declined", "card [redacted] declined"},
		{"card 4242-4242-4242-4242.", "card [redacted]."},
		{"amount 2500 on 2026-11-23", "amount 2500 on 2026-11-23"},
		{"order 123456789012", "order [redacted]"},
		{"key sk_live_abcDEF123 bad", "key [redacted] bad"},
		{"key sk_test_****1234 bad", "key [redacted] bad"},
		{"custom whsec_or_any_custom_key_value here", "custom [redacted] here"},
		{"line1\nline2\r\x00", "line1 line2"},
		{strings.Repeat("é", 400), strings.Repeat("é", 150) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 30)], func(t *testing.T) {
			require.Equal(t, tt.want, c.scrub(tt.in))
		})
	}
}

func TestErrorsNeverLeak(t *testing.T) {
	// Every failing answer echoes the key and a card number in every text field.
	leak := testKey + " " + testCard + " 4242 4242 4242 4242"
	body := fmt.Sprintf(`{"error":{"type":%q,"code":%q,"decline_code":%q,"message":%q,"param":%q}}`, leak, leak, leak, leak, leak)
	for _, status := range []int{200, 400, 401, 402, 403, 404, 409, 429, 500, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			f := newFake(t, reply(status, body, "Request-Id", leak))
			c := f.client()
			for _, r := range []gateway.Result{
				c.CreatePaymentIntent(context.Background(), chargeRequest()),
				c.RetrievePaymentIntent(context.Background(), "pi_1"),
			} {
				require.NotEqual(t, gateway.Succeeded, r.Kind)
				if r.Err != nil {
					requireClean(t, r.Err.Error())
				}
				if r.Decline != nil {
					requireClean(t, fmt.Sprintf("%+v", *r.Decline))
				}
			}
			_, err := c.SearchPaymentIntentsByOrder(context.Background(), "inv_1")
			require.Error(t, err)
			requireClean(t, err.Error())
			_, err = c.CreateSetupIntent(context.Background(), SetupIntentParams{
				Customer: "cus_1", Card: CardData{Number: testCard, ExpMonth: "12", ExpYear: "2030", CVC: "987"},
			}, "seti-1")
			require.Error(t, err)
			requireClean(t, err.Error())
			require.NotContains(t, err.Error(), "987")
		})
	}
}

func TestServerSideRedirectNotFollowed(t *testing.T) {
	var hits int
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if r.URL.Path == "/elsewhere" {
			_, _ = io.WriteString(w, intentJSON("pi_1", "succeeded", ""))
			return
		}
		http.Redirect(w, r, srv.URL+"/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL, SecretKey: testKey})
	require.NoError(t, err)
	r := c.CreatePaymentIntent(context.Background(), chargeRequest())
	require.Equal(t, gateway.Transient, r.Kind)
	require.Equal(t, 302, r.HTTPStatus)
	require.Equal(t, 1, hits)
}

func TestNothingSentIsInvalid(t *testing.T) {
	c := &Client{}
	cl := call{method: http.MethodPost, path: "/v1/payment_intents"}
	r := c.decide(context.Background(), cl, answer{err: errRequestBuild, notSent: true}, &wireIntent{})
	require.Equal(t, gateway.Invalid, r.Kind)
	require.Zero(t, r.HTTPStatus)
	require.ErrorIs(t, r.Err, errRequestBuild)
}
