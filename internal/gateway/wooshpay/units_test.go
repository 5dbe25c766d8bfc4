package wooshpay

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

// billingd books ISO 4217 minor units; WooshPay, Stripe-shaped, takes some
// currencies in other units (units.WooshPay). The client converts both ways,
// so 12345 ISK is charged as 1234500 and read back as 12345, and refuses,
// sending nothing, an amount or currency it cannot express.
func TestAmountsCrossTheWireInWooshPayUnits(t *testing.T) {
	cases := []struct {
		currency  string
		iso, wire int64
	}{
		{"ISK", 12345, 1234500},
		{"MGA", 5000, 50},
		{"HUF", 5000, 5000},
		{"JPY", 1200, 1200},
		{"KWD", 1230, 1230},
		{"USD", 1999, 1999},
	}
	for _, c := range cases {
		t.Run(c.currency, func(t *testing.T) {
			body := `{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":` + itoa(c.wire) +
				`,"amount_received":` + itoa(c.wire) + `,"currency":"` + lower(c.currency) + `","created":1732406400}`
			f := newFake(t, reply(200, body))
			r := f.client().CreatePaymentIntent(context.Background(), gateway.PaymentIntentRequest{
				Amount: c.iso, Currency: c.currency, Customer: "cus_1", PaymentMethod: "pm_1", OffSession: true,
				MerchantOrderID: "inv_1", IdempotencyKey: "inv_1-a1"})
			require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
			require.Equal(t, float64(c.wire), f.last().BodyMap["amount"], "sent in wire units")
			require.Equal(t, c.iso, r.Intent.Amount, "read back in ISO minor units")
			require.Equal(t, c.iso, *r.Intent.AmountReceived)
		})
	}
	t.Run("refused locally", func(t *testing.T) {
		f := newFake(t, reply(500, `{}`))
		for _, req := range []gateway.PaymentIntentRequest{
			{Amount: 5050, Currency: "MGA"}, // half an ariary is not chargeable
			{Amount: 1231, Currency: "KWD"}, // thousandths must end in 0
			{Amount: 1000, Currency: "IQD"}, // not a WooshPay currency
		} {
			req.IdempotencyKey, req.MerchantOrderID = "inv_1-a1", "inv_1"
			r := f.client().CreatePaymentIntent(context.Background(), req)
			require.Equal(t, gateway.OurDataError, r.Kind, req.Currency)
		}
		require.Empty(t, f.requests(), "nothing may be sent")
	})
	t.Run("a wire amount that is no whole ISO unit is never booked", func(t *testing.T) {
		f := newFake(t, reply(200, `{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":1234501,"currency":"isk","created":1732406400}`))
		r := f.client().RetrievePaymentIntent(context.Background(), "pi_1")
		require.Equal(t, int64(unconvertible), r.Intent.Amount)
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func lower(s string) string { return strings.ToLower(s) }
