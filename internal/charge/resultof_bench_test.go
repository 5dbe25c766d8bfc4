package charge_test

import (
	"errors"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

var benchAttemptResult store.AttemptResult

// BenchmarkResultOf measures the mapping of a classified gateway answer to the
// attempt row's new state, run once per exchange.
func BenchmarkResultOf(b *testing.B) {
	intent := func(status gateway.IntentStatus) *gateway.PaymentIntent {
		return &gateway.PaymentIntent{ID: "pi_3QxR7mK2bC9dLf0a1Zy4Tq8N", Status: status, Amount: 1999, Currency: "USD",
			Customer: "cus_QxR7lW3nE5vB2k", PaymentMethod: "pm_QxR7lX9cV1mA4j", MerchantOrderID: "inv_k3j5h7g9f2d4s6a8q1w3",
			Metadata: map[string]string{"invoice": "inv_k3j5h7g9f2d4s6a8q1w3"}, Created: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	}
	declined := intent(gateway.IntentRequiresPaymentMethod)
	declined.LastError = gateway.NewDecline("card_error", "card_declined", "insufficient_funds", "", "Your card has insufficient funds.")
	cases := []struct {
		name string
		res  gateway.Result
		want models.AttemptStatus
	}{
		{"succeeded", gateway.Result{Kind: gateway.Succeeded, Intent: intent(gateway.IntentSucceeded), HTTPStatus: 200},
			models.AttemptSucceeded},
		{"declined", gateway.Result{Kind: gateway.Declined, Intent: declined, Decline: declined.LastError, HTTPStatus: 402},
			models.AttemptDeclined},
		{"unknown", gateway.Result{Kind: gateway.Transient, HTTPStatus: 503, RetryAfter: 5 * time.Second,
			Err: errors.New("wooshpay: POST /v1/payment_intents: 503 api_error: Service unavailable. [request req_8f3a2b1c9d]")},
			models.AttemptUnknown},
	}
	for _, tc := range cases {
		if got := charge.ResultOf(tc.res).Status; got != tc.want {
			b.Fatalf("%s: status %s, want %s", tc.name, got, tc.want)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				benchAttemptResult = charge.ResultOf(tc.res)
			}
		})
	}
}
