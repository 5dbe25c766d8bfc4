package charge_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// An approved payment pays its invoice; a capture declined later reopens it
// (the one recorded exception to forward-only), in one transaction with the
// attempt. A repeated or misdirected delivery changes nothing.
func TestCaptureDeclinedReopensThePaidInvoice(t *testing.T) {
	b, a := setup(t, intent("pay_ok", gateway.IntentSucceeded))
	status, err := b.eng.Execute(context.Background(), &a)
	require.NoError(t, err)
	require.Equal(t, models.AttemptSucceeded, status)
	require.Equal(t, models.InvoicePaid, b.invoice(t).Status)

	apply := func(id string) (out struct {
		result models.WebhookResult
	}) {
		ev := &gateway.Event{ID: "evt_" + id, Type: gateway.EventPaymentCaptureDeclined, PaymentIntent: &gateway.PaymentIntent{
			ID: id, Status: gateway.IntentCanceled, Amount: 1999, Currency: "USD",
			Metadata: map[string]string{"idempotency_key": a.IdempotencyKey}}}
		require.NoError(t, b.st.InTx(context.Background(), func(tx *store.Tx) error {
			o, err := b.eng.ApplyEvent(tx, b.clk.Now(), ev)
			out.result = o.Result
			return err
		}))
		return out
	}

	require.Equal(t, models.WebhookIgnored, apply("pay_other").result, "a payment that did not pay the invoice reopens nothing")
	require.Equal(t, models.InvoicePaid, b.invoice(t).Status)

	require.Equal(t, models.WebhookApplied, apply("pay_ok").result)
	inv := b.invoice(t)
	require.Equal(t, models.InvoiceOpen, inv.Status)
	require.Nil(t, inv.PaidAt)
	got, err := b.st.AttemptByID(context.Background(), a.ID)
	require.NoError(t, err)
	require.Equal(t, models.AttemptDeclined, got.Status)
	require.Equal(t, store.DeclineCaptureDeclined, got.DeclineCode)
	require.False(t, got.HardDecline, "a capture decline is not the card's death")
	require.Equal(t, models.SubscriptionPastDue, b.subscription(t).Status)

	require.Equal(t, models.WebhookIgnored, apply("pay_ok").result, "a second delivery is a no-op")
	require.Equal(t, models.InvoiceOpen, b.invoice(t).Status)

	// The approval's or capture's own event, delivered late (webhooks come in
	// any order), is older news: a payment whose capture was declined never
	// moves money, so it pays nothing again.
	for i := range 2 {
		late := &gateway.Event{ID: fmt.Sprintf("evt_late_%d", i), Type: gateway.EventPaymentIntentSucceeded, PaymentIntent: &gateway.PaymentIntent{
			ID: "pay_ok", Status: gateway.IntentSucceeded, Amount: 1999, Currency: "USD",
			Metadata: map[string]string{"idempotency_key": a.IdempotencyKey}}}
		require.NoError(t, b.st.InTx(context.Background(), func(tx *store.Tx) error {
			o, err := b.eng.ApplyEvent(tx, b.clk.Now(), late)
			require.Equal(t, models.WebhookIgnored, o.Result)
			return err
		}))
	}
	got, err = b.st.AttemptByID(context.Background(), a.ID)
	require.NoError(t, err)
	require.Equal(t, models.AttemptDeclined, got.Status, "a late success of the capture-declined payment")
	require.Equal(t, models.InvoiceOpen, b.invoice(t).Status)
}

// A request that may have reached the gateway before is sent with Replay set,
// so a provider that keeps no result for a request it answered with an error
// (Checkout.com) looks for the payment before paying again; a fresh attempt's
// first try is not.
func TestRetriesAreMarkedAsReplays(t *testing.T) {
	b, a := setup(t, transient(500, 0), transient(0, 0), intent("pay_ok", gateway.IntentSucceeded))
	_, err := b.eng.Execute(context.Background(), &a)
	require.NoError(t, err)
	require.Len(t, b.gw.sent, 3)
	require.False(t, b.gw.sent[0].Replay, "the first try of a fresh attempt")
	require.True(t, b.gw.sent[1].Replay)
	require.True(t, b.gw.sent[2].Replay)

	taken := a
	taken.Status, taken.LeaseVersion, taken.Tries = models.AttemptPending, 2, 0
	require.True(t, charge.MaySentBefore(&taken), "an attempt taken over from another worker")
	unknown := a
	unknown.Status, unknown.LeaseVersion = models.AttemptUnknown, 1
	require.True(t, charge.MaySentBefore(&unknown))
	fresh := a
	fresh.Status, fresh.LeaseVersion, fresh.Tries = models.AttemptPending, 1, 0
	require.False(t, charge.MaySentBefore(&fresh))
}
