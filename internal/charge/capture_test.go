package charge_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

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

// Webhooks come in any order: an approval of a payment whose capture was
// declined, delivered after the decline, pays nothing — before or after the
// approval was first recorded.
func TestALateApprovalOfACaptureDeclinedPaymentPaysNothing(t *testing.T) {
	event := func(typ, id string, a models.ChargeAttempt, status gateway.IntentStatus) *gateway.Event {
		return &gateway.Event{ID: "evt_" + typ + id, Type: typ, PaymentIntent: &gateway.PaymentIntent{
			ID: id, Status: status, Amount: 1999, Currency: "USD",
			Metadata: map[string]string{"idempotency_key": a.IdempotencyKey}}}
	}
	apply := func(t *testing.T, b *bundle, ev *gateway.Event) {
		require.NoError(t, b.st.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := b.eng.ApplyEvent(tx, b.clk.Now(), ev)
			return err
		}))
	}
	t.Run("approval recorded, capture declined, approval again", func(t *testing.T) {
		b, a := setup(t, intent("pay_ok", gateway.IntentSucceeded))
		_, err := b.eng.Execute(context.Background(), &a)
		require.NoError(t, err)
		apply(t, b, event(gateway.EventPaymentCaptureDeclined, "pay_ok", a, gateway.IntentRequiresPaymentMethod))
		apply(t, b, event(gateway.EventPaymentIntentSucceeded, "pay_ok", a, gateway.IntentSucceeded))
		require.Equal(t, models.InvoiceOpen, b.invoice(t).Status)
		got, err := b.st.AttemptByID(context.Background(), a.ID)
		require.NoError(t, err)
		require.Equal(t, models.AttemptDeclined, got.Status)
	})
	t.Run("capture declined before the approval was recorded", func(t *testing.T) {
		b, a := setup(t, transient(500, 0))
		_, err := b.eng.Execute(context.Background(), &a)
		require.NoError(t, err)
		got, err := b.st.AttemptByID(context.Background(), a.ID)
		require.NoError(t, err)
		require.Equal(t, models.AttemptUnknown, got.Status)
		apply(t, b, event(gateway.EventPaymentCaptureDeclined, "pay_ok", *got, gateway.IntentRequiresPaymentMethod))
		apply(t, b, event(gateway.EventPaymentIntentSucceeded, "pay_ok", *got, gateway.IntentSucceeded))
		require.Equal(t, models.InvoiceOpen, b.invoice(t).Status)
		got, err = b.st.AttemptByID(context.Background(), a.ID)
		require.NoError(t, err)
		require.Equal(t, models.AttemptDeclined, got.Status)
		require.Equal(t, store.DeclineCaptureDeclined, got.DeclineCode)
	})
}

// On the pay page, "authentication required" after a decline with no
// challenge to go to means the challenge is over: a soft decline the customer
// may retry at once. A challenge still waiting, and every off-session answer,
// keep their meaning.
func TestOnSessionOutcomeEndsAFinishedChallenge(t *testing.T) {
	declined3DS := gateway.NewDecline("card_error", "20154", "authentication_required", "", "3DS authentication required")
	cases := []struct {
		name       string
		offSession bool
		intent     gateway.PaymentIntent
		want       gateway.Kind
	}{
		{"on-session challenge over", false, gateway.PaymentIntent{ID: "pay_1", Status: gateway.IntentRequiresAction, LastError: declined3DS}, gateway.Declined},
		{"on-session challenge waiting", false, gateway.PaymentIntent{ID: "pay_1", Status: gateway.IntentRequiresAction, ActionURL: "https://3ds.example/x"}, gateway.RequiresAction},
		{"on-session pending, address not known yet", false, gateway.PaymentIntent{ID: "pay_1", Status: gateway.IntentRequiresAction}, gateway.RequiresAction},
		{"off-session 20154", true, gateway.PaymentIntent{ID: "pay_1", Status: gateway.IntentRequiresAction, LastError: declined3DS}, gateway.RequiresAction},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := &models.ChargeAttempt{OffSession: c.offSession}
			intent := c.intent
			res := charge.OnSessionOutcome(a, gateway.Result{Kind: gateway.RequiresAction, Intent: &intent})
			require.Equal(t, c.want, res.Kind)
			if c.want == gateway.Declined {
				require.Equal(t, gateway.DeclineAuthenticationFailed, res.Decline.DeclineCode)
				require.False(t, res.Decline.Hard)
				require.Equal(t, "authentication_required", declined3DS.DeclineCode, "the intent's own decline is not changed")
			}
		})
	}
}

// A 401 is billingd's key, not the customer's card: the attempt is not
// consumed as failed but waits unknown, and is replayed with its own key once
// the key is accepted.
func TestARefusedKeyLeavesTheAttemptToReplay(t *testing.T) {
	b, a := setup(t, gateway.Result{Kind: gateway.Invalid, HTTPStatus: 401, Err: errors.New("checkout: POST /payments: 401 unauthorized (check gateway.secret_key)")},
		intent("pay_ok", gateway.IntentSucceeded))
	status, err := b.eng.Execute(context.Background(), &a)
	require.NoError(t, err)
	require.Equal(t, models.AttemptUnknown, status)
	got, err := b.st.AttemptByID(context.Background(), a.ID)
	require.NoError(t, err)
	require.NotNil(t, got.NextTryAt, "it is replayed")
	require.Equal(t, models.InvoiceOpen, b.invoice(t).Status)
	require.Equal(t, models.SubscriptionActive, b.subscription(t).Status, "the customer is not past due for billingd's key")

	b.clk.Advance(10 * time.Minute)
	replays, err := b.st.ClaimReplayAttempts(context.Background(), "test", b.clk.Now(), b.clk.Now(), b.clk.Now().Add(time.Hour), t0.Add(-time.Hour), 1)
	require.NoError(t, err)
	require.Len(t, replays, 1)
	status, err = b.eng.Execute(context.Background(), &replays[0])
	require.NoError(t, err)
	require.Equal(t, models.AttemptSucceeded, status)
	require.Len(t, b.gw.sent, 2)
	require.Equal(t, b.gw.sent[0].IdempotencyKey, b.gw.sent[1].IdempotencyKey, "the same key")
}
