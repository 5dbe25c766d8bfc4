package checkout

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

func mitRequest() gateway.PaymentIntentRequest {
	return gateway.PaymentIntentRequest{
		Amount: 1200, Currency: "USD", Customer: "cus_1", PaymentMethod: "src_card1",
		OffSession: true, MerchantOrderID: "ord-1", Description: "Plan", IdempotencyKey: "ord-1-a1",
		PreviousPaymentID: "pay_series1", Metadata: map[string]string{"attempt": "1"},
	}
}

// TestOutcomeOfEveryHTTPClass drives one POST /payments per answer and checks
// the Kind (and what else the charge path reads) decide gives it.
func TestOutcomeOfEveryHTTPClass(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		body       string
		header     map[string]string
		kind       gateway.Kind
		intent     gateway.IntentStatus
		decline    string // DeclineCode
		hard       bool
		param      string
		retryAfter time.Duration
		notFound   bool
		actionURL  string
	}{
		{name: "201 approved authorized", status: 201, body: paymentJSON(map[string]any{"approved": true, "status": "Authorized", "response_code": "10000"}), kind: gateway.Succeeded, intent: gateway.IntentSucceeded},
		{name: "201 approved captured", status: 201, body: paymentJSON(map[string]any{"approved": true, "status": "Captured", "response_code": "10000"}), kind: gateway.Succeeded, intent: gateway.IntentSucceeded},
		{name: "201 card verified", status: 201, body: paymentJSON(map[string]any{"approved": true, "status": "Card Verified", "amount": 0}), kind: gateway.Succeeded, intent: gateway.IntentSucceeded},
		{name: "201 risk flagged but approved", status: 201, body: paymentJSON(map[string]any{"approved": true, "status": "Authorized", "response_code": "10100"}), kind: gateway.Succeeded, intent: gateway.IntentSucceeded},
		{name: "201 insufficient funds", status: 201, body: paymentJSON(map[string]any{"approved": false, "status": "Declined", "response_code": "20051", "response_summary": "Insufficient Funds"}), kind: gateway.Declined, intent: gateway.IntentRequiresPaymentMethod, decline: "insufficient_funds"},
		{name: "201 do not honour", status: 201, body: paymentJSON(map[string]any{"approved": false, "status": "Declined", "response_code": "20005"}), kind: gateway.Declined, intent: gateway.IntentRequiresPaymentMethod, decline: "generic_decline"},
		{name: "201 expired is hard", status: 201, body: paymentJSON(map[string]any{"approved": false, "status": "Declined", "response_code": "20054"}), kind: gateway.Declined, intent: gateway.IntentRequiresPaymentMethod, decline: "expired_card", hard: true},
		{name: "201 lost card", status: 201, body: paymentJSON(map[string]any{"approved": false, "status": "Declined", "response_code": "30041"}), kind: gateway.Declined, intent: gateway.IntentRequiresPaymentMethod, decline: "lost_card", hard: true},
		{name: "201 unknown hard family", status: 201, body: paymentJSON(map[string]any{"approved": false, "status": "Declined", "response_code": "30099"}), kind: gateway.Declined, intent: gateway.IntentRequiresPaymentMethod, decline: "do_not_try_again", hard: true},
		{name: "201 risk block", status: 201, body: paymentJSON(map[string]any{"approved": false, "status": "Declined", "response_code": "40101"}), kind: gateway.Declined, intent: gateway.IntentRequiresPaymentMethod, decline: "fraudulent", hard: true},
		{name: "201 3DS required", status: 201, body: paymentJSON(map[string]any{"approved": false, "status": "Declined", "response_code": "20154"}), kind: gateway.RequiresAction, intent: gateway.IntentRequiresAction, decline: "authentication_required"},
		{name: "201 declined without code", status: 201, body: paymentJSON(map[string]any{"approved": false, "status": "Declined"}), kind: gateway.Declined, intent: gateway.IntentRequiresPaymentMethod, decline: "generic_decline"},
		{name: "202 pending with redirect", status: 202, body: paymentJSON(map[string]any{"status": "Pending", "amount": nil, "_links": redirectLinks("https://acs.example/3ds/1")}), kind: gateway.RequiresAction, intent: gateway.IntentRequiresAction, actionURL: "https://acs.example/3ds/1"},
		{name: "202 pending asynchronous", status: 202, body: paymentJSON(map[string]any{"status": "Pending", "amount": nil}), kind: gateway.Processing, intent: gateway.IntentProcessing},
		{name: "201 unknown status", status: 201, body: paymentJSON(map[string]any{"status": "Active"}), kind: gateway.Transient},
		{name: "201 empty body", status: 201, kind: gateway.Transient},
		{name: "201 not JSON", status: 201, body: "<html>ok</html>", kind: gateway.Transient},
		{name: "201 without id", status: 201, body: paymentJSON(map[string]any{"id": nil, "status": "Authorized"}), kind: gateway.Transient},
		{name: "201 amount in a currency it cannot book", status: 201, body: paymentJSON(map[string]any{"status": "Authorized", "currency": "CLP", "amount": 150001}), kind: gateway.Transient},
		{name: "401 empty", status: 401, kind: gateway.Invalid},
		{name: "403", status: 403, kind: gateway.Invalid},
		{name: "404", status: 404, kind: gateway.Invalid, notFound: true},
		{name: "409 same key in flight", status: 409, body: fixture(t, "error_429_oas.json"), header: map[string]string{"Retry-After": "30"}, kind: gateway.Transient, retryAfter: 30 * time.Second},
		{name: "422 unknown source is our data", status: 422, body: fixture(t, "error_422_oas.json"), kind: gateway.OurDataError, param: "source"},
		{name: "422 unknown customer is our data", status: 422, body: `{"request_id":"r","error_type":"request_invalid","error_codes":["customer_not_found"]}`, kind: gateway.OurDataError, param: "customer"},
		{name: "422 previous payment", status: 422, body: `{"request_id":"r","error_type":"request_invalid","error_codes":["previous_payment_id_invalid"]}`, kind: gateway.OurDataError, param: "previous_payment_id"},
		{name: "422 amount is invalid", status: 422, body: `{"request_id":"r","error_type":"request_invalid","error_codes":["amount_invalid"]}`, kind: gateway.Invalid, param: "amount"},
		{name: "422 without body", status: 422, kind: gateway.Invalid},
		{name: "429 seconds", status: 429, body: fixture(t, "error_429_oas.json"), header: map[string]string{"Retry-After": "7"}, kind: gateway.Transient, retryAfter: 7 * time.Second},
		{name: "429 HTTP date", status: 429, header: map[string]string{"Retry-After": "Sun, 01 Nov 2026 12:01:00 GMT"}, kind: gateway.Transient, retryAfter: time.Minute},
		{name: "429 absurd Retry-After is capped", status: 429, header: map[string]string{"Retry-After": "99999999999"}, kind: gateway.Transient, retryAfter: maxRetryAfter},
		{name: "500", status: 500, body: "oops", kind: gateway.Transient},
		{name: "502", status: 502, kind: gateway.Transient},
		{name: "503 with Retry-After", status: 503, header: map[string]string{"Retry-After": "2"}, kind: gateway.Transient, retryAfter: 2 * time.Second},
		{name: "302 redirect", status: 302, header: map[string]string{"Location": "https://elsewhere/"}, kind: gateway.Transient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFake(t)
			f.on("POST /payments", reply{status: tc.status, body: tc.body, header: tc.header})
			r := c.CreatePaymentIntent(context.Background(), mitRequest())
			require.Equal(t, tc.kind, r.Kind, "err: %v", r.Err)
			require.Equal(t, tc.status, r.HTTPStatus)
			require.Equal(t, tc.param, r.Param)
			require.Equal(t, tc.retryAfter, r.RetryAfter)
			require.Equal(t, tc.notFound, errors.Is(r.Err, gateway.ErrNotFound))
			if tc.kind == gateway.Transient || tc.kind == gateway.Invalid || tc.kind == gateway.OurDataError {
				require.Error(t, r.Err)
			}
			if tc.intent != "" {
				require.NotNil(t, r.Intent)
				require.Equal(t, tc.intent, r.Intent.Status)
				require.Equal(t, tc.actionURL, r.Intent.ActionURL)
			}
			if tc.decline != "" {
				require.NotNil(t, r.Decline)
				require.Equal(t, tc.decline, r.Decline.DeclineCode)
				require.Equal(t, tc.hard, r.Decline.Hard)
				require.Equal(t, r.Decline, r.Intent.LastError)
			} else {
				require.Nil(t, r.Decline)
			}
			require.Equal(t, 1, f.count("POST", "/payments"))
		})
	}
}

func TestTransportFailuresAreTransient(t *testing.T) {
	t.Run("connection closed without answer", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				buf := make([]byte, 4096)
				_, _ = conn.Read(buf)
				_ = conn.Close()
			}
		}()
		c, err := New(Options{BaseURL: "http://" + ln.Addr().String(), SecretKey: testKey})
		require.NoError(t, err)
		r := c.CreatePaymentIntent(context.Background(), mitRequest())
		require.Equal(t, gateway.Transient, r.Kind)
		require.Zero(t, r.HTTPStatus)
		require.NotContains(t, r.Err.Error(), testKey)
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := newBlockingServer(t, release)
		c, err := New(Options{BaseURL: srv, SecretKey: testKey, Timeout: 50 * time.Millisecond})
		require.NoError(t, err)
		r := c.CreatePaymentIntent(context.Background(), mitRequest())
		close(release)
		require.Equal(t, gateway.Transient, r.Kind)
		require.ErrorIs(t, r.Err, context.DeadlineExceeded)
	})
	t.Run("caller's context canceled", func(t *testing.T) {
		c, _ := newFake(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := c.CreatePaymentIntent(ctx, mitRequest())
		require.Equal(t, gateway.Transient, r.Kind)
		require.ErrorIs(t, r.Err, context.Canceled)
	})
}

func newBlockingServer(t *testing.T, release chan struct{}) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestResponseCodeTable(t *testing.T) {
	cases := []struct {
		code   string
		word   string
		hard   bool
		action bool
	}{
		{"20001", "generic_decline", false, false},
		{"20005", "generic_decline", false, false},
		{"20012", "card_not_supported", true, false},
		{"20014", "invalid_number", true, false},
		{"20015", "invalid_account", true, false},
		{"20046", "invalid_account", true, false},
		{"20051", "insufficient_funds", false, false},
		{"20054", "expired_card", true, false},
		{"20057", "card_not_supported", true, false},
		{"20059", "fraudulent", true, false},
		{"20062", "restricted_card", true, false},
		{"20065", "try_again_later", false, false},
		{"20096", "processing_error", false, false},
		{"20154", "authentication_required", false, true},
		{"20999", "generic_decline", false, false},
		{"30004", "pickup_card", true, false},
		{"30041", "lost_card", true, false},
		{"30043", "stolen_card", true, false},
		{"30999", "do_not_try_again", true, false},
		{"40101", "fraudulent", true, false},
		{"41999", "fraudulent", true, false},
		{"", "generic_decline", false, false},
		{"garbage", "generic_decline", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			d, action := declineFor(tc.code, "")
			require.Equal(t, tc.word, d.DeclineCode)
			require.Equal(t, tc.code, d.Code)
			require.Equal(t, tc.hard, d.Hard)
			require.Equal(t, tc.action, action)
			// The catalogue knows every word the table uses, so mail and the
			// pay pages have words for it and agree on hard/soft.
			info, ok := gateway.LookupDecline(tc.word)
			require.True(t, ok, "word %q not in the decline catalogue", tc.word)
			require.Equal(t, tc.hard, info.Hard, "catalogue disagrees on %q", tc.word)
		})
	}
	for code, info := range responseCodes {
		require.NotEmpty(t, info.summary, code)
		_, ok := gateway.LookupDecline(info.word)
		require.True(t, ok, "code %s maps to unknown word %q", code, info.word)
	}
	require.True(t, approvedCode("10000"))
	require.False(t, approvedCode("20000"))
}

func TestSummaryDefaultsToTheDocumentedOne(t *testing.T) {
	d, _ := declineFor("20051", "")
	require.Equal(t, "Insufficient funds", d.Message)
	d, _ = declineFor("20051", "Insufficient Funds (issuer)")
	require.Equal(t, "Insufficient Funds (issuer)", d.Message)
}

func TestErrorsNeverCarrySecretsOrCardNumbers(t *testing.T) {
	c, f := newFake(t)
	f.on("POST /payments", reply{status: 422, body: `{"request_id":"` + testKey + `","error_type":"4242 4242 4242 4242","error_codes":["sk_test_0123456789abcdef"]}`})
	r := c.CreatePaymentIntent(context.Background(), mitRequest())
	require.Equal(t, gateway.Invalid, r.Kind)
	msg := r.Err.Error()
	require.NotContains(t, msg, testKey)
	require.NotContains(t, msg, "4242 4242")
	require.NotContains(t, msg, "sk_test_0123")
	require.Contains(t, msg, redacted)
}

func TestParamOfCode(t *testing.T) {
	for code, want := range map[string]string{
		"amount_invalid":                   "amount",
		"billing_descriptor_city_required": "billing_descriptor_city",
		"customer_not_found":               "customer",
		"duplicate_request":                "",
		"_invalid":                         "",
	} {
		require.Equal(t, want, paramOfCode(code), code)
	}
}

func TestMetadataKeepsPrimitivesAsText(t *testing.T) {
	var m stringMap
	require.NoError(t, m.UnmarshalJSON([]byte(`{"a":"x","n":123989,"f":1.5,"b":true,"z":null,"o":{"k":1},"l":[1]}`)))
	require.Equal(t, stringMap{"a": "x", "n": "123989", "f": "1.5", "b": "true"}, m)
	require.Error(t, m.UnmarshalJSON([]byte(`[1]`)))
}
