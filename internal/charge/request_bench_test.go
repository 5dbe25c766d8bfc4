package charge_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/models"
)

var (
	benchRequest gateway.PaymentIntentRequest
	benchAnswer  gateway.Result
)

// cannedTransport answers every request with one succeeded PaymentIntent, in
// memory: what is left of a request is billingd's side of it.
type cannedTransport struct{ body string }

func (t cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}, "Request-Id": {"req_8f3a2b1c9d"}},
		Body:   io.NopCloser(strings.NewReader(t.body)), ContentLength: int64(len(t.body)), Request: r}, nil
}

// BenchmarkRequest measures the engine's side of one gateway exchange, per
// charge: build, the attempt's frozen request (charge.Request); wooshpay, that
// request sent through the WooshPay client — JSON encoding, headers, the
// HTTP client, decoding and classifying the answer — to an in-memory
// transport that answers a succeeded intent at once (no socket).
func BenchmarkRequest(b *testing.B) {
	a := &models.ChargeAttempt{ID: 1042, InvoiceID: 1042, AttemptNo: 1, Status: models.AttemptPending, Amount: 1999, Currency: "USD",
		GatewayCustomer: "cus_QxR7lW3nE5vB2k", GatewayPM: "pm_QxR7lX9cV1mA4j", OffSession: true, LeaseVersion: 1,
		MerchantOrderID: "inv_k3j5h7g9f2d4s6a8q1w3", IdempotencyKey: "inv_k3j5h7g9f2d4s6a8q1w3-a1"}
	b.Run("build", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			benchRequest = charge.Request(a)
		}
	})
	b.Run("wooshpay", func(b *testing.B) {
		const body = `{"id":"pi_3QxR7mK2bC9dLf0a1Zy4Tq8N","object":"payment_intent","created":1772323200123,` +
			`"amount":1999,"amount_received":1999,"currency":"usd","status":"succeeded","customer":"cus_QxR7lW3nE5vB2k",` +
			`"payment_method":"pm_QxR7lX9cV1mA4j","payment_method_types":["card"],"merchant_order_id":"inv_k3j5h7g9f2d4s6a8q1w3",` +
			`"description":"Invoice inv_k3j5h7g9f2d4s6a8q1w3","metadata":{"invoice":"inv_k3j5h7g9f2d4s6a8q1w3","attempt":"1",` +
			`"idempotency_key":"inv_k3j5h7g9f2d4s6a8q1w3-a1"},"off_session":true,"client_secret":"pi_3QxR7mK2bC9dLf0a1Zy4Tq8N_secret_Vb7nM2qLx9",` +
			`"return_url":null,"last_payment_error":null,"next_action":null,"canceled_at":null,"cancellation_reason":null,` +
			`"capture_method":"automatic","confirmation_method":"automatic","livemode":false}`
		client, err := wooshpay.New(wooshpay.Options{BaseURL: "https://api.wooshpay.com", SecretKey: "sk_test_bench",
			HTTPClient: &http.Client{Transport: cannedTransport{body}}})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if res := client.CreatePaymentIntent(ctx, charge.Request(a)); res.Kind != gateway.Succeeded {
			b.Fatalf("answer classified %v (%v), want succeeded", res.Kind, res.Err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			benchAnswer = client.CreatePaymentIntent(ctx, charge.Request(a))
		}
	})
}
