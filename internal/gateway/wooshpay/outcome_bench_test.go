package wooshpay

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway"
)

// Bodies as the gateway (and internal/gateway/sim) writes them for an off-session
// charge: a full PaymentIntent, every field present.
const (
	benchSucceededIntent = `{"id":"pi_3QxR7mK2bC9dLf0a1Zy4Tq8N","object":"payment_intent","created":1772323200123,` +
		`"amount":1999,"amount_received":1999,"currency":"usd","status":"succeeded","customer":"cus_QxR7lW3nE5vB2k",` +
		`"payment_method":"pm_QxR7lX9cV1mA4j","payment_method_types":["card"],"merchant_order_id":"inv_k3j5h7g9f2d4s6a8q1w3",` +
		`"description":"Pro plan, monthly","metadata":{"invoice":"inv_k3j5h7g9f2d4s6a8q1w3","subscription":"sub-1042"},` +
		`"off_session":true,"client_secret":"pi_3QxR7mK2bC9dLf0a1Zy4Tq8N_secret_Vb7nM2qLx9","return_url":null,` +
		`"last_payment_error":null,"next_action":null,"canceled_at":null,"cancellation_reason":null,` +
		`"capture_method":"automatic","confirmation_method":"automatic","livemode":false}`

	benchRequiresActionIntent = `{"id":"pi_3QxR7mK2bC9dLf0a1Zy4Tq8P","object":"payment_intent","created":1772323200456,` +
		`"amount":1999,"amount_received":0,"currency":"usd","status":"requires_action","customer":"cus_QxR7lW3nE5vB2k",` +
		`"payment_method":"pm_QxR7lX9cV1mA4j","payment_method_types":["card"],"merchant_order_id":"inv_p0o9i8u7y6t5r4e3w2q1",` +
		`"description":"Pro plan, monthly","metadata":{"invoice":"inv_p0o9i8u7y6t5r4e3w2q1","subscription":"sub-1043"},` +
		`"off_session":true,"client_secret":"pi_3QxR7mK2bC9dLf0a1Zy4Tq8P_secret_Hj4kL8mN2p","return_url":null,` +
		`"last_payment_error":null,"next_action":{"type":"challenge_redirect","challenge_redirect":` +
		`{"url":"https://api.wooshpay.com/3ds/challenge/pi_3QxR7mK2bC9dLf0a1Zy4Tq8P?token=c2Vzc2lvbl8xMjM","return_url":""}},` +
		`"canceled_at":null,"cancellation_reason":null,"capture_method":"automatic","confirmation_method":"automatic","livemode":false}`

	// A 402 card_error with a hard decline code, the declined intent attached.
	benchHardDecline = `{"error":{"type":"card_error","code":"card_declined","decline_code":"stolen_card",` +
		`"message":"Your card was declined.","param":"payment_method","payment_intent":` +
		`{"id":"pi_3QxR7mK2bC9dLf0a1Zy4Tq8Q","object":"payment_intent","created":1772323200789,"amount":1999,` +
		`"amount_received":0,"currency":"usd","status":"requires_payment_method","customer":"cus_QxR7lW3nE5vB2k",` +
		`"payment_method":null,"payment_method_types":["card"],"merchant_order_id":"inv_z1x2c3v4b5n6m7l8k9j0",` +
		`"description":"Pro plan, monthly","metadata":{"invoice":"inv_z1x2c3v4b5n6m7l8k9j0","subscription":"sub-1044"},` +
		`"off_session":true,"client_secret":"pi_3QxR7mK2bC9dLf0a1Zy4Tq8Q_secret_Qw3eR5tY7u","return_url":null,` +
		`"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"stolen_card",` +
		`"message":"Your card was declined."},"next_action":null,"canceled_at":null,"cancellation_reason":null,` +
		`"capture_method":"automatic","confirmation_method":"automatic","livemode":false}}}`

	benchServerError = `{"error":{"type":"api_error","message":"An unexpected error occurred."}}`
	benchRateLimited = `{"error":{"type":"api_error","code":"rate_limit","message":"Too many requests hit the API too quickly."}}`
)

var benchResult gateway.Result

// BenchmarkDecide measures the classification of one charge answer (decode,
// validate, map, scrub), as exchange runs it after every POST /v1/payment_intents.
func BenchmarkDecide(b *testing.B) {
	c, err := New(Options{BaseURL: "https://api.wooshpay.com", SecretKey: testKey})
	if err != nil {
		b.Fatal(err)
	}
	c.now = func() time.Time { return fixedNow }
	cl := call{method: http.MethodPost, path: "/v1/payment_intents", idempotencyKey: "inv_k3j5h7g9f2d4s6a8q1w3-a1"}
	header := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}, "Request-Id": {"req_8f3a2b1c9d"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name string
		a    answer
		want gateway.Kind
		ok   func(gateway.Result) bool // the detail the case exists for
	}{
		{"succeeded", answer{status: 200, header: header(), body: []byte(benchSucceededIntent)}, gateway.Succeeded,
			func(r gateway.Result) bool { return r.Intent != nil && r.Intent.ID != "" }},
		{"card_declined_hard", answer{status: 402, header: header(), body: []byte(benchHardDecline)}, gateway.Declined,
			func(r gateway.Result) bool { return r.Decline != nil && r.Decline.Hard && r.Intent != nil }},
		{"requires_action", answer{status: 200, header: header(), body: []byte(benchRequiresActionIntent)}, gateway.RequiresAction,
			func(r gateway.Result) bool { return r.Intent != nil && r.Intent.ActionURL != "" }},
		{"500", answer{status: 500, header: header(), body: []byte(benchServerError)}, gateway.Transient,
			func(r gateway.Result) bool { return r.Err != nil }},
		{"429_retry_after", answer{status: 429, header: header("Retry-After", "2"), body: []byte(benchRateLimited)}, gateway.Transient,
			func(r gateway.Result) bool { return r.RetryAfter == 2*time.Second }},
	}
	ctx := context.Background()
	for _, tc := range cases {
		// Measure the path the case is named after.
		r := c.decide(ctx, cl, tc.a, &wireIntent{})
		if r.Kind != tc.want || !tc.ok(r) {
			b.Fatalf("%s: kind %s, want %s; result %+v", tc.name, r.Kind, tc.want, r)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.a.body)))
			for i := 0; i < b.N; i++ {
				benchResult = c.decide(ctx, cl, tc.a, &wireIntent{})
			}
		})
	}
}
