package web_test

import (
	"testing"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

// TestWebhookWithAnotherAmountIsStoredNotApplied posts correctly verified
// events about the fixture's 9.00 USD attempt that report another amount or
// currency (finding 11: a signed payment_intent.succeeded for 1 USD paid a
// 1200 JPY invoice). Each is acknowledged and stored, flagged needs_review with
// the reason; the attempt becomes needs_review with the same reason and the
// invoice stays open and held (no automatic charge is scheduled).
func TestWebhookWithAnotherAmountIsStoredNotApplied(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   gateway.IntentStatus
		amount   int64
		currency string
		reported string
	}{
		{"succeeded for 1 USD", gateway.IntentSucceeded, 100, "USD", "1.00 USD"},
		{"succeeded in another currency", gateway.IntentSucceeded, 900, "JPY", "900 JPY"},
		{"succeeded lower-case other currency", gateway.IntentSucceeded, 900, "eur", "9.00 EUR"},
		{"succeeded with no amount", gateway.IntentSucceeded, 0, "", "0 minor units with no currency"},
		{"payment_failed for another amount", gateway.IntentRequiresPaymentMethod, 901, "USD", "9.01 USD"},
		{"processing for another amount", gateway.IntentProcessing, 1, "USD", "0.01 USD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ev := f.intentEvent("evt_amount", gateway.EventPaymentIntentSucceeded, tc.status)
			ev.PaymentIntent.Amount, ev.PaymentIntent.Currency = tc.amount, tc.currency
			require.Equal(t, 200, f.post(t, ev, ""), "stored: the gateway must not retry it")

			status, inv, events := f.state(t)
			require.Equal(t, models.AttemptNeedsReview, status)
			require.Equal(t, models.InvoiceOpen, inv, "not paid by a payment of another amount")
			require.EqualValues(t, 1, events)

			var row models.WebhookEvent
			require.NoError(t, f.st.DB().First(&row).Error)
			require.True(t, row.NeedsReview)
			require.Equal(t, models.WebhookIgnored, row.Result, "not applied")
			require.Contains(t, row.Detail, "amount mismatch")
			require.Contains(t, row.Detail, tc.reported)
			require.Contains(t, row.Detail, "9.00 USD")

			a, err := f.st.AttemptByID(t.Context(), f.attempt.ID)
			require.NoError(t, err)
			require.Contains(t, a.ErrorMessage, "the gateway reports "+tc.reported)
			require.Contains(t, a.ErrorMessage, "asked for 9.00 USD")
			require.Equal(t, "pi_1", a.PaymentIntentID)
			var invoice models.Invoice
			require.NoError(t, f.st.DB().First(&invoice, a.InvoiceID).Error)
			require.Nil(t, invoice.NextAttemptAt, "held: nothing charges it until a human looked")
		})
	}

	// The matching event still pays: the check is about the amount only.
	t.Run("control", func(t *testing.T) {
		f := newFixture(t)
		require.Equal(t, 200, f.post(t, f.intentEvent("evt_ok", gateway.EventPaymentIntentSucceeded, gateway.IntentSucceeded), ""))
		status, inv, _ := f.state(t)
		require.Equal(t, models.AttemptSucceeded, status)
		require.Equal(t, models.InvoicePaid, inv)
	})

	// A mismatching success that arrives after the right one paid the invoice
	// changes nothing that was settled, and is still flagged.
	t.Run("after the invoice was paid", func(t *testing.T) {
		f := newFixture(t)
		require.Equal(t, 200, f.post(t, f.intentEvent("evt_ok", gateway.EventPaymentIntentSucceeded, gateway.IntentSucceeded), ""))
		ev := f.intentEvent("evt_late", gateway.EventPaymentIntentSucceeded, gateway.IntentSucceeded)
		ev.PaymentIntent.Amount = 1
		require.Equal(t, 200, f.post(t, ev, ""))
		status, inv, events := f.state(t)
		require.Equal(t, models.AttemptSucceeded, status)
		require.Equal(t, models.InvoicePaid, inv)
		require.EqualValues(t, 2, events)
		var flagged int64
		require.NoError(t, f.st.DB().Model(&models.WebhookEvent{}).Where("needs_review").Count(&flagged).Error)
		require.EqualValues(t, 1, flagged)
	})
}

// TestWebhookWithoutAnIDIsRefused posts verified events whose id is empty or
// blank: a 400, and nothing is stored or applied (finding 11: an event with an
// empty id was stored).
func TestWebhookWithoutAnIDIsRefused(t *testing.T) {
	for name, id := range map[string]string{"empty": "", "space": " ", "tab": "\t"} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			require.Equal(t, 400, f.post(t, f.intentEvent(id, gateway.EventPaymentIntentSucceeded, gateway.IntentSucceeded), ""))
			status, inv, events := f.state(t)
			require.Equal(t, models.AttemptPending, status)
			require.Equal(t, models.InvoiceOpen, inv)
			require.Zero(t, events, "nothing stored")
		})
	}
}
