package wooshpay

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway"
)

// FuzzDecide feeds arbitrary status codes, bodies and Retry-After values to the
// response decoder. It must never panic, must always classify, and must never put
// the secret key into an error or a decline.
func FuzzDecide(f *testing.F) {
	seeds := []struct {
		status int
		body   string
		ra     string
	}{
		{200, intentJSON("pi_1", "succeeded", ""), ""},
		{200, intentJSON("pi_1", "requires_action", `"next_action":{"type":"challenge_redirect","challenge_redirect":{"url":"https://x/3ds"}}`), ""},
		{200, `{"id":"pi_1","object":"payment_intent","status":"succeeded","created":"1e400","metadata":{"a":[1]}}`, ""},
		{402, cardErrorJSON("insufficient_funds", "", "Your card has insufficient funds.", true), ""},
		{402, `{"error":{"payment_intent":{"id":1}}}`, ""},
		{404, apiErrorJSON("invalid_request_error", "resource_missing", "No such payment_intent"), ""},
		{409, apiErrorJSON("idempotency_error", "idempotency_key_in_use", "busy"), ""},
		{429, apiErrorJSON("api_error", "rate_limit", "slow"), "2"},
		{503, "<html>unavailable</html>", "Wed, 21 Oct 2015 07:28:00 GMT"},
		{500, `{"error":null}`, "-1"},
		{401, `{"error":{"message":"Invalid API Key provided: ` + testKey + `"}}`, ""},
		{200, `{"object":"search_result","data":[null]}`, ""},
		{200, "\xff\xfe", ""},
		{0, "", ""},
		{999, "{", "99999999999999999999"},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body), s.ra)
	}
	c, err := New(Options{BaseURL: "https://api.wooshpay.com", SecretKey: testKey})
	if err != nil {
		f.Fatal(err)
	}
	c.now = func() time.Time { return fixedNow }
	cl := call{method: http.MethodPost, path: "/v1/payment_intents"}
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		a := answer{status: status, header: h, body: body}
		for _, into := range []wireObject{nil, &wireIntent{}, &wireSearch{}, &wireCustomer{}, &wireSetupIntent{}, &wirePaymentMethod{}} {
			r := c.decide(context.Background(), cl, a, into)
			if r.Kind == "" {
				t.Fatalf("no kind for status %d", status)
			}
			if r.HTTPStatus != status {
				t.Fatalf("HTTPStatus %d, want %d", r.HTTPStatus, status)
			}
			if r.RetryAfter < 0 || r.RetryAfter > maxRetryAfter {
				t.Fatalf("RetryAfter out of range: %v", r.RetryAfter)
			}
			if (r.Kind == gateway.Transient || r.Kind == gateway.Invalid) && r.Err == nil {
				t.Fatalf("%s without Err", r.Kind)
			}
			if r.Kind == gateway.Declined && r.Decline == nil {
				t.Fatal("Declined without Decline")
			}
			if status >= 200 && status < 300 && into != nil && r.Kind != gateway.Transient && r.Kind != gateway.Succeeded {
				if _, ok := into.(*wireIntent); !ok {
					t.Fatalf("non-intent object classified %s", r.Kind)
				}
			}
			if r.Err != nil && strings.Contains(r.Err.Error(), testKey) {
				t.Fatalf("secret key in error: %v", r.Err)
			}
			if d := r.Decline; d != nil && strings.Contains(d.Message+d.Code+d.DeclineCode+d.Type, testKey) {
				t.Fatal("secret key in decline")
			}
		}
	})
}

// FuzzScrub checks that scrubbing never panics and always removes the key and
// long digit runs.
func FuzzScrub(f *testing.F) {
	for _, s := range []string{"", "4242424242424242", "x " + testKey + " y", "1-2-3-4-5-6-7-8-9-0-1-2", "\x00\n\xff", "sk_live_"} {
		f.Add(s)
	}
	c := &Client{secret: testKey}
	f.Fuzz(func(t *testing.T, s string) {
		out := c.scrub(s)
		if strings.Contains(out, testKey) {
			t.Fatalf("key survived: %q", out)
		}
		if len(out) > maxMessageLen+len("…") {
			t.Fatalf("too long: %d", len(out))
		}
		run := 0
		for i := 0; i < len(out); i++ {
			if isDigit(out[i]) {
				run++
				if run >= 12 {
					t.Fatalf("digit run survived: %q", out)
				}
			} else {
				run = 0
			}
		}
	})
}
