package charge_test

import (
	"context"
	"testing"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

// TestReadsOfAnotherAmountAreNotApplied checks the other doors where amounts are checked:
// the reconciler's read of the PaymentIntent (by id and by search) and the
// gateway's answer to the request itself. A succeeded intent of 1.00 USD, or of
// 19.99 in another currency, for a 19.99 USD attempt pays nothing: the attempt
// is needs_review with the reason, the invoice open and held.
func TestReadsOfAnotherAmountAreNotApplied(t *testing.T) {
	short := int64(100)
	wrong := []struct {
		name     string
		amount   int64
		currency string
		received *int64
	}{{"amount", 100, "USD", nil}, {"currency", 1999, "JPY", nil}, {"amount received", 1999, "USD", &short}}
	for _, w := range wrong {
		t.Run("resolve by id: "+w.name, func(t *testing.T) {
			b, a := setup(t, intent("pi_slow", gateway.IntentProcessing))
			_, err := b.eng.Execute(context.Background(), &a)
			require.NoError(t, err)
			got, _ := b.st.AttemptByID(context.Background(), a.ID)
			require.Equal(t, models.AttemptProcessing, got.Status)

			b.gw.intents = map[string]gateway.PaymentIntent{"pi_slow": {ID: "pi_slow", Status: gateway.IntentSucceeded, Amount: w.amount, AmountReceived: w.received, Currency: w.currency}}
			res, err := b.eng.Resolve(context.Background(), got)
			require.NoError(t, err)
			require.True(t, res.Moved)
			require.Equal(t, models.AttemptNeedsReview, res.Status)
			final, _ := b.st.AttemptByID(context.Background(), a.ID)
			require.Equal(t, models.AttemptNeedsReview, final.Status)
			require.Contains(t, final.ErrorMessage, "amount mismatch")
			require.Contains(t, final.ErrorMessage, "asked for 19.99 USD")
			inv := b.invoice(t)
			require.Equal(t, models.InvoiceOpen, inv.Status)
			require.Nil(t, inv.NextAttemptAt)
		})
		t.Run("resolve by search: "+w.name, func(t *testing.T) {
			b, a := setup(t, transient(0, 0))
			_, err := b.eng.Execute(context.Background(), &a)
			require.NoError(t, err)
			got, _ := b.st.AttemptByID(context.Background(), a.ID)
			require.Equal(t, models.AttemptUnknown, got.Status)
			b.gw.search = map[string][]gateway.PaymentIntent{a.MerchantOrderID: {
				{ID: "pi_mine", Status: gateway.IntentSucceeded, Amount: w.amount, AmountReceived: w.received, Currency: w.currency, Metadata: map[string]string{"idempotency_key": a.IdempotencyKey}},
			}}
			res, err := b.eng.Resolve(context.Background(), got)
			require.NoError(t, err)
			require.Equal(t, models.AttemptNeedsReview, res.Status)
			final, _ := b.st.AttemptByID(context.Background(), a.ID)
			require.Equal(t, "pi_mine", final.PaymentIntentID)
			require.Equal(t, models.InvoiceOpen, b.invoice(t).Status)
		})
		t.Run("answer to the request: "+w.name, func(t *testing.T) {
			b, a := setup(t, gateway.ResultFromIntent(&gateway.PaymentIntent{ID: "pi_x", Status: gateway.IntentSucceeded, Amount: w.amount, AmountReceived: w.received, Currency: w.currency}, 200))
			status, err := b.eng.Execute(context.Background(), &a)
			require.NoError(t, err)
			require.Equal(t, models.AttemptNeedsReview, status)
			final, _ := b.st.AttemptByID(context.Background(), a.ID)
			require.Contains(t, final.ErrorMessage, "amount mismatch")
			require.Equal(t, models.InvoiceOpen, b.invoice(t).Status)
		})
	}
}

// TestAmountMismatchReadsWhatWasReceived: a succeeded intent is checked on
// what the gateway says it collected too, when it says so; the currency's case
// on the wire does not matter.
func TestAmountMismatchReadsWhatWasReceived(t *testing.T) {
	a := &models.ChargeAttempt{Amount: 1999, Currency: "USD", IdempotencyKey: "inv_x-a1"}
	n := func(v int64) *int64 { return &v }
	tests := []struct {
		name     string
		pi       gateway.PaymentIntent
		mismatch bool
	}{
		{"all of it", gateway.PaymentIntent{Status: gateway.IntentSucceeded, Amount: 1999, AmountReceived: n(1999), Currency: "USD"}, false},
		{"not said", gateway.PaymentIntent{Status: gateway.IntentSucceeded, Amount: 1999, Currency: "USD"}, false},
		{"lower-case currency", gateway.PaymentIntent{Status: gateway.IntentSucceeded, Amount: 1999, AmountReceived: n(1999), Currency: "usd"}, false},
		{"one cent of it", gateway.PaymentIntent{Status: gateway.IntentSucceeded, Amount: 1999, AmountReceived: n(1), Currency: "USD"}, true},
		{"nothing yet, waiting for 3-D Secure", gateway.PaymentIntent{Status: gateway.IntentRequiresAction, Amount: 1999, AmountReceived: n(0), Currency: "USD"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := charge.AmountMismatch(a, &tc.pi)
			if !tc.mismatch {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, "of which it received 0.01 USD")
		})
	}
}
