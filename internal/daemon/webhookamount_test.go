package daemon_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// postSigned posts body to the daemon's WooshPay webhook route, signed with the
// bundle's webhook secret at the daemon's clock, as the gateway would.
func postSigned(t *testing.T, b *daemontest.Bundle, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL+"/webhooks/wooshpay", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wooshpay.SignatureHeader, wooshpay.Sign(daemontest.WebhookSecret, b.Clock.Now().Unix(), []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestSignedWebhookOfAnotherAmountPaysNothing is finding 11 through the
// assembled daemon: a 1200 JPY invoice waits for 3-D Secure; a correctly
// signed payment_intent.succeeded for its PaymentIntent saying 1.00 USD is
// acknowledged and stored but pays nothing: the attempt is needs_review (counted
// by `billingd status` and /metrics), the event is flagged needs_review, and
// the invoice stays open. A correctly signed event with an empty id is a 400
// and stores nothing.
func TestSignedWebhookOfAnotherAmountPaysNothing(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		cus, pm := b.SaveCard(t, "4462030000000000")
		b.Seed(t, storetest.Subscription{Reference: "yen", Customer: cus, PaymentMethod: pm, Amount: 1200, Currency: "JPY"})
		b.Run(t, 0, time.Hour)
		var a models.ChargeAttempt
		require.NoError(t, b.Store.DB().First(&a).Error)
		require.Equal(t, models.AttemptRequiresAction, a.Status)
		require.NotEmpty(t, a.PaymentIntentID)

		event := func(id string, amount int64, currency string) string {
			return fmt.Sprintf(`{"id":%q,"object":"event","created":%d,"type":"payment_intent.succeeded","data":{"object":`+
				`{"id":%q,"object":"payment_intent","status":"succeeded","amount":%d,"currency":%q,"customer":%q,"payment_method":%q,`+
				`"metadata":{"idempotency_key":%q}}}}`, id, b.Clock.Now().UnixMilli(), a.PaymentIntentID, amount, currency, cus, pm, a.IdempotencyKey)
		}
		require.Equal(t, http.StatusBadRequest, postSigned(t, b, event("", 1200, "jpy")), "an event without an id is refused")
		var stored int64
		require.NoError(t, b.Store.DB().Model(&models.WebhookEvent{}).Where("type = 'payment_intent.succeeded'").Count(&stored).Error)
		require.Zero(t, stored, "nothing stored for the id-less event")

		require.Equal(t, http.StatusOK, postSigned(t, b, event("evt_one_dollar", 100, "usd")))

		got, err := b.Store.AttemptByID(t.Context(), a.ID)
		require.NoError(t, err)
		require.Equal(t, models.AttemptNeedsReview, got.Status)
		require.Contains(t, got.ErrorMessage, "the gateway reports 1.00 USD")
		require.Contains(t, got.ErrorMessage, "asked for 1200 JPY")
		var inv models.Invoice
		require.NoError(t, b.Store.DB().First(&inv, a.InvoiceID).Error)
		require.Equal(t, models.InvoiceOpen, inv.Status, "1 USD does not pay a 1200 JPY invoice")

		var row models.WebhookEvent
		require.NoError(t, b.Store.DB().Where("gateway_event_id = ?", "evt_one_dollar").First(&row).Error)
		require.True(t, row.NeedsReview)
		require.Equal(t, models.WebhookIgnored, row.Result)
		require.Contains(t, row.Detail, "amount mismatch")

		st, err := b.Store.Status(t.Context(), b.Clock.Now())
		require.NoError(t, err)
		require.EqualValues(t, 1, st.NeedsReview, "status: needs a human")
		require.Contains(t, st.Webhooks, store.Count{Status: "needs_review", N: 1})
		m := scrape(t, b)
		require.Equal(t, 1.0, m["billingd_attempts_needing_review"])
		require.Equal(t, 1.0, m[`billingd_webhook_events_total{result="needs_review",type="payment_intent.succeeded"}`])

		// Its dunning case waits for the review, saying why.
		var c models.DunningCase
		require.NoError(t, b.Store.DB().Where("invoice_id = ?", a.InvoiceID).First(&c).Error)
		require.Equal(t, models.CaseOpen, c.Status)
		require.Nil(t, c.NextStepAt, "no further step until a human looked")
		var held int64
		require.NoError(t, b.Store.DB().Model(&models.DunningStep{}).Where("case_id = ? AND action = ?", c.ID, models.StepHeldForReview).Count(&held).Error)
		require.EqualValues(t, 1, held)
		emails := b.SMTP.Count()

		// Days of dunning later nothing has charged the invoice off-session
		// again, no reminder went out, and the gateway holds no success for it.
		b.Run(t, 72*time.Hour, 12*time.Hour)
		require.NoError(t, b.Store.DB().First(&inv, a.InvoiceID).Error)
		require.Equal(t, models.InvoiceOpen, inv.Status)
		require.Equal(t, emails, b.SMTP.Count(), "no reminder for a held case")
		for _, e := range b.Sim.Ledger() {
			require.NotEqual(t, "succeeded", e.Status, "no payment succeeded: %+v", e)
		}
	})
}
