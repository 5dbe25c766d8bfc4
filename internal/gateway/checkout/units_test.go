package checkout

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

// TestAmountsTravelInCheckoutUnits checks both directions: the request
// carries Checkout.com's wire amount, and the payment it answers with (the
// same wire amount, as the gateway echoes it) is booked in ISO minor units
// again.
func TestAmountsTravelInCheckoutUnits(t *testing.T) {
	cases := []struct {
		currency string
		minor    int64
		wire     int64
	}{
		{"ISK", 12345, 12345}, // ISO 0 decimals, Checkout.com full units
		{"MGA", 5000, 5000},   // ISO 2, Checkout.com hundredths
		{"HUF", 5000, 5000},   // ISO 2, Checkout.com hundredths
		{"JPY", 100, 100},     // ISO 0, full units
		{"KWD", 1230, 1230},   // ISO 3, thousandths ending in 0
		{"CLP", 1500, 150000}, // ISO 0, but Checkout.com takes hundredths
		{"USD", 1200, 1200},
	}
	for _, tc := range cases {
		t.Run(tc.currency, func(t *testing.T) {
			c, f := newFake(t)
			f.on("POST /payments", reply{status: 201, body: paymentJSON(map[string]any{
				"status": "Captured", "approved": true, "amount": tc.wire, "currency": tc.currency,
				"balances": map[string]any{"total_captured": tc.wire}})})
			req := mitRequest()
			req.Amount, req.Currency = tc.minor, tc.currency
			r := c.CreatePaymentIntent(context.Background(), req)
			require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
			var sent struct {
				Amount   int64  `json:"amount"`
				Currency string `json:"currency"`
			}
			require.NoError(t, json.Unmarshal(f.requests()[0].Body, &sent))
			require.Equal(t, tc.wire, sent.Amount)
			require.Equal(t, tc.currency, sent.Currency)
			require.Equal(t, tc.minor, r.Intent.Amount)
			require.Equal(t, tc.minor, *r.Intent.AmountReceived)

			// A refund converts the same way.
			f.on("POST /payments/pay_1/refunds", reply{status: 202, body: `{"action_id":"act_1"}`})
			rr := c.CreateRefund(context.Background(), gateway.RefundRequest{PaymentIntent: "pay_1", Amount: tc.minor, Currency: tc.currency, IdempotencyKey: "rf-1"})
			require.Equal(t, gateway.Processing, rr.Kind, "%v", rr.Err)
			reqs := f.requests()
			require.NoError(t, json.Unmarshal(reqs[len(reqs)-1].Body, &sent))
			require.Equal(t, tc.wire, sent.Amount)
		})
	}
}

func TestAmountsCheckoutCannotTakeAreRefusedWithoutSending(t *testing.T) {
	cases := []struct {
		currency string
		minor    int64
	}{
		{"KWD", 1234}, // 1.234 KWD: Checkout.com's last digit must be 0
		{"UYW", 100},  // a wage index unit, not a card currency
		{"XXX", 100},  // not a currency
		{"", 100},
	}
	for _, tc := range cases {
		t.Run(tc.currency, func(t *testing.T) {
			c, f := newFake(t)
			req := mitRequest()
			req.Amount, req.Currency = tc.minor, tc.currency
			r := c.CreatePaymentIntent(context.Background(), req)
			require.Equal(t, gateway.Invalid, r.Kind)
			require.Zero(t, r.HTTPStatus)
			require.Empty(t, f.requests())

			rr := c.CreateRefund(context.Background(), gateway.RefundRequest{PaymentIntent: "pay_1", Amount: tc.minor, Currency: tc.currency, IdempotencyKey: "rf-1"})
			require.Equal(t, gateway.Invalid, rr.Kind)
			require.Empty(t, f.requests())
		})
	}
}

func TestWebhookAmountsAreConverted(t *testing.T) {
	body := []byte(`{"id":"evt_1","type":"payment_captured","created_on":"2026-01-01T00:00:00Z",
		"data":{"id":"pay_1","amount":150000,"currency":"CLP","reference":"ord-1"}}`)
	ev, err := DecodeEvent(body)
	require.NoError(t, err)
	require.Equal(t, int64(1500), ev.PaymentIntent.Amount)

	_, err = DecodeEvent([]byte(`{"id":"evt_1","type":"payment_captured","data":{"id":"pay_1","amount":150001,"currency":"CLP"}}`))
	require.ErrorIs(t, err, gateway.ErrWebhookMalformed)
}
