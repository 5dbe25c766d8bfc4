package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
)

// paidInvoice seeds one 10.00 USD subscription on a card that succeeds and
// runs the daemon until its first invoice is paid.
func paidInvoice(t *testing.T, b *daemontest.Bundle) models.Invoice {
	t.Helper()
	cus, pm := b.SaveCard(t, "4242424242424242")
	b.Seed(t, storetest.Subscription{Reference: "sub-1", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
	b.Run(t, time.Second, time.Second)
	var inv models.Invoice
	require.NoError(t, b.Store.DB().Where("status = ?", models.InvoicePaid).First(&inv).Error)
	return inv
}

func refundRows(t *testing.T, b *daemontest.Bundle) []models.Refund {
	t.Helper()
	var rows []models.Refund
	require.NoError(t, b.Store.DB().Order("id").Find(&rows).Error)
	return rows
}

func metricsText(t *testing.T, b *daemontest.Bundle) string {
	t.Helper()
	res, err := http.Get(b.URL + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(body)
}

// postEvent delivers an event body to the daemon's webhook endpoint, signed
// as the gateway signs it.
func postEvent(t *testing.T, b *daemontest.Bundle, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.URL+"/webhooks/wooshpay", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Wooshpay-Signature", sim.Sign(daemontest.WebhookSecret, b.Clock.Now().Unix(), body))
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	return res.StatusCode
}

// A second payment the gateway takes for a paid invoice is recorded, read back
// from the gateway, refunded in full (reason duplicate) and surfaced; the
// invoice stays paid once, net, and a duplicate refund webhook changes nothing.
func TestSecondSuccessIsRefundedAutomatically(t *testing.T) {
	log := &daemontest.LogBuffer{}
	daemontest.Each(t, daemontest.Options{Log: log}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		inv := paidInvoice(t, b)
		kept := inv.PaymentIntentID
		require.NotEmpty(t, kept)

		second, err := b.Sim.DuplicateSuccess(kept)
		require.NoError(t, err)
		b.Run(t, 30*time.Second, 10*time.Second)

		rows := refundRows(t, b)
		require.Len(t, rows, 1)
		rf := rows[0]
		require.Equal(t, models.RefundSucceeded, rf.Status, "error: %s", rf.ErrorMessage)
		require.Equal(t, models.RefundReasonDuplicate, rf.Reason)
		require.Equal(t, second, rf.PaymentIntentID)
		require.Equal(t, kept, rf.OriginalPaymentIntentID)
		require.EqualValues(t, 1000, rf.Amount)
		require.Equal(t, "USD", rf.Currency)
		require.NotNil(t, rf.AttemptID)

		refunds := b.Sim.Refunds()
		require.Len(t, refunds, 1, "exactly one refund at the gateway")
		require.Equal(t, rf.GatewayRefundID, refunds[0].ID)
		require.Equal(t, second, refunds[0].PaymentIntent)
		require.Equal(t, "duplicate", refunds[0].Reason)
		require.EqualValues(t, 1000, refunds[0].Amount)

		// Paid once, net: what the gateway took minus what it gave back.
		var net int64
		for _, e := range b.Sim.Ledger() {
			if e.Status == "succeeded" && e.MerchantOrderID == inv.PublicID {
				net += e.Amount - e.AmountRefunded
			}
		}
		require.EqualValues(t, inv.Amount, net)
		var after models.Invoice
		require.NoError(t, b.Store.DB().First(&after, inv.ID).Error)
		require.Equal(t, models.InvoicePaid, after.Status)
		require.Equal(t, kept, after.PaymentIntentID)
		refunded, err := b.Store.InvoiceRefunded(ctx, inv.ID)
		require.NoError(t, err)
		require.EqualValues(t, 1000, refunded)

		// Surfaced: status, metrics, the log at error level.
		rep, err := b.Store.Status(ctx, b.Clock.Now())
		require.NoError(t, err)
		require.Equal(t, []store.Count{{Status: "succeeded", N: 1}}, rep.DuplicateRefunds)
		require.Equal(t, []store.CurrencyTotal{{Currency: "USD", Amount: 1000, N: 1}}, rep.Refunded)
		m := metricsText(t, b)
		require.Contains(t, m, `billingd_refunds_total{reason="duplicate",status="succeeded"} 1`)
		require.Contains(t, m, "billingd_refunds_open 0")
		require.Regexp(t, `"level":"error"[^\n]*SECOND SUCCESSFUL CHARGE`, log.String())

		// The refund webhook again (same event id) and a late, contradicting
		// one (a new id saying failed) change nothing.
		var refundEvent []byte
		for _, ev := range b.Sim.Events() {
			if ev.Type == "charge.refund.updated" {
				refundEvent = ev.Body
			}
		}
		require.NotNil(t, refundEvent)
		require.Equal(t, http.StatusOK, postEvent(t, b, refundEvent))
		late := bytes.Replace(bytes.Replace(refundEvent, []byte(`"status":"succeeded"`), []byte(`"status":"failed"`), 1),
			[]byte(`"id":"evt_`), []byte(`"id":"evt_9`), 1)
		require.Equal(t, http.StatusOK, postEvent(t, b, late))
		// The duplicate payment's own webhook again changes nothing either.
		for _, ev := range b.Sim.Events() {
			if ev.Type == "payment_intent.succeeded" && ev.ObjectID == second {
				require.Equal(t, http.StatusOK, postEvent(t, b, bytes.Replace(ev.Body, []byte(`"id":"evt_`), []byte(`"id":"evt_8`), 1)))
			}
		}
		b.Run(t, 20*time.Second, 10*time.Second)
		require.Equal(t, rows, refundRows(t, b))
		require.Len(t, b.Sim.Refunds(), 1)
		require.Contains(t, metricsText(t, b), `billingd_refunds_total{reason="duplicate",status="succeeded"} 1`)
	})
}

// A second payment that does not read back as succeeded is not refunded.
func TestUnconfirmedSecondPaymentIsNotRefunded(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		inv := paidInvoice(t, b)
		// The gateway reports a second success that it has no record of:
		// reading it back finds nothing, so nothing is sent.
		var body []byte
		for _, ev := range b.Sim.Events() {
			if ev.Type == "payment_intent.succeeded" && ev.ObjectID == inv.PaymentIntentID {
				body = ev.Body
			}
		}
		require.NotNil(t, body)
		forged := bytes.ReplaceAll(body, []byte(inv.PaymentIntentID), []byte("pi_9999999999999999999"))
		forged = bytes.Replace(forged, []byte(`"id":"evt_`), []byte(`"id":"evt_7`), 1)
		require.Equal(t, http.StatusOK, postEvent(t, b, forged))
		b.Run(t, 30*time.Second, 10*time.Second)
		rows := refundRows(t, b)
		require.Len(t, rows, 1)
		require.Equal(t, models.RefundCanceled, rows[0].Status)
		require.Contains(t, rows[0].ErrorMessage, "nothing to refund")
		require.Empty(t, b.Sim.Refunds())
		require.Contains(t, metricsText(t, b), `billingd_refunds_total{reason="duplicate",status="canceled"} 1`)
	})
}

// A refund answered 5xx after the gateway recorded it is retried with the
// same key, by the transient backoff and then by the refund job: one refund in
// the gateway's ledger, on both providers (WooshPay replays the key;
// Checkout.com keeps no replay of a 5xx, so the refund is looked up before
// it is resent).
func TestRefund5xxAfterRecordedIsReplayedWithTheSameKey(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{NoWebhooks: true}, func(t *testing.T, o daemontest.Options) {
		daemontest.Each(t, o, func(t *testing.T, b *daemontest.Bundle) { refund5xxAfterRecorded(t, b) })
	})
}

func refund5xxAfterRecorded(t *testing.T, b *daemontest.Bundle) {
	{
		ctx := context.Background()
		inv := paidInvoice(t, b)
		b.Sim.SetFaults(sim.Faults{Error5xxAfter: 1})
		rf, err := b.D.Refund(ctx, inv.ID, 0, models.RefundReasonRequestedByCustomer, "op-"+inv.PublicID+"-1")
		require.NoError(t, err)
		require.Equal(t, models.RefundUnknown, rf.Status)
		require.Len(t, b.Sim.Refunds(), 1, "the gateway recorded the refund behind its 500")
		tries := rf.Tries
		var row models.Refund
		require.NoError(t, b.Store.DB().First(&row, rf.ID).Error)
		require.Greater(t, row.Tries, 1, "retried by backoff")
		_ = tries

		b.Sim.SetFaults(sim.Faults{})
		b.Run(t, 30*time.Second, 10*time.Second)
		require.NoError(t, b.Store.DB().First(&row, rf.ID).Error)
		require.Equal(t, models.RefundSucceeded, row.Status, "error: %s", row.ErrorMessage)
		refunds := b.Sim.Refunds()
		require.Len(t, refunds, 1, "exactly one refund at the gateway")
		require.Equal(t, refunds[0].ID, row.GatewayRefundID)
		require.EqualValues(t, 1000, refunds[0].Amount)
		if b.Provider == config.ProviderWooshPay {
			require.GreaterOrEqual(t, b.Sim.Stats().Replays, int64(1), "the job replayed the key")
		} else {
			// Checkout.com keeps no replay of a 5xx: the one refund above was
			// found among the payment's actions by its reference, not resent.
			require.Zero(t, b.Sim.Stats().Replays)
		}
		require.Len(t, refundRows(t, b), 1, "no new key, no new row")

		// The same call again returns the same refund and sends nothing.
		again, err := b.D.Refund(ctx, inv.ID, 0, models.RefundReasonRequestedByCustomer, "op-"+inv.PublicID+"-1")
		require.NoError(t, err)
		require.Equal(t, rf.ID, again.ID)
		require.Len(t, b.Sim.Refunds(), 1)
	}
}

// Concurrent refunds of one payment never reserve more than it took.
func TestConcurrentRefundsNeverExceedThePayment(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		inv := paidInvoice(t, b)
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				_, errs[i] = b.D.Refund(ctx, inv.ID, 400, models.RefundReasonRequestedByCustomer, fmt.Sprintf("op-%s-%d", inv.PublicID, i))
			}(i)
		}
		close(start)
		wg.Wait()
		ok, refused := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			default:
				require.ErrorIs(t, err, store.ErrRefundExceedsPayment)
				refused++
			}
		}
		require.Equal(t, 2, ok, "two refunds of 400 fit in 1000")
		require.Equal(t, n-2, refused)
		var total int64
		for _, rf := range refundRows(t, b) {
			require.Equal(t, models.RefundSucceeded, rf.Status)
			total += rf.Amount
		}
		require.EqualValues(t, 800, total)
		var gw int64
		for _, r := range b.Sim.Refunds() {
			gw += r.Amount
		}
		require.EqualValues(t, 800, gw)

		// What is left can still be refunded, and not a unit more.
		_, err := b.D.Refund(ctx, inv.ID, 201, models.RefundReasonRequestedByCustomer, "op-rest-too-much")
		require.ErrorIs(t, err, store.ErrRefundExceedsPayment)
		rest, err := b.D.Refund(ctx, inv.ID, 0, models.RefundReasonRequestedByCustomer, "op-rest")
		require.NoError(t, err)
		require.EqualValues(t, 200, rest.Amount)
		require.Equal(t, models.RefundSucceeded, rest.Status)
		_, err = b.D.Refund(ctx, inv.ID, 0, models.RefundReasonRequestedByCustomer, "op-nothing-left")
		require.ErrorIs(t, err, store.ErrRefundExceedsPayment)
		require.True(t, strings.Contains(metricsText(t, b),
			`billingd_refunds_total{reason="requested_by_customer",status="succeeded"} `+strconv.Itoa(3)))
	})
}

// Two attempts of one invoice whose intents both succeed: the second success
// is refunded automatically through the attempt's own outcome
// (charge.ApplyToInvoice), not only through a gateway's copy. Under one open
// payment per invoice this can only happen to an intent that waited beside a
// newer one before the rule existed: migration 00008 set such an attempt aside
// as needs_review while its intent may still be open at the gateway, which is
// the state this test starts from.
func TestSecondAttemptSuccessIsRefunded(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		cus, pm := b.SaveCard(t, "4462030000000000")
		b.Seed(t, storetest.Subscription{Reference: "sub-3ds", Customer: cus, PaymentMethod: pm, Amount: 1500, Currency: "EUR", Anchor: b.Clock.Now()})
		b.Run(t, time.Second, time.Second)
		var first models.ChargeAttempt
		require.NoError(t, b.Store.DB().Where("status = ?", models.AttemptRequiresAction).First(&first).Error)

		// What migration 00008 leaves of a waiting intent that had a newer
		// attempt beside it.
		require.NoError(t, b.Store.DB().Exec(`UPDATE charge_attempts SET status = 'needs_review', error_message = 'waited beside a newer attempt' WHERE id = ?`, first.ID).Error)

		// The customer starts a second, on-session payment, as a pay page does.
		var second *models.ChargeAttempt
		require.NoError(t, b.Store.InTx(ctx, func(tx *store.Tx) error {
			ic, err := tx.InvoiceContact(first.InvoiceID)
			if err != nil {
				return err
			}
			press, err := tx.StartOnSessionAttempt(b.Clock.Now(), ic, "test", b.Clock.Now().Add(time.Hour), 0)
			second = press.Attempt
			return err
		}))
		require.NotNil(t, second)
		req := charge.Request(second)
		req.ReturnURL = b.URL + "/return"
		res := b.Gateway.CreatePaymentIntent(ctx, req)
		require.Equal(t, gateway.RequiresAction, res.Kind, "%v", res.Err)

		// Both challenges pass: the gateway took two payments.
		require.NoError(t, b.Sim.PassChallenge(first.PaymentIntentID))
		require.NoError(t, b.Sim.PassChallenge(res.Intent.ID))
		b.Run(t, 30*time.Second, 10*time.Second)

		// The two successes reach billingd in either order: whichever paid the
		// invoice is kept, the other is refunded.
		var inv models.Invoice
		require.NoError(t, b.Store.DB().First(&inv, first.InvoiceID).Error)
		require.Equal(t, models.InvoicePaid, inv.Status)
		kept, refunded, refundedAttempt := first.PaymentIntentID, res.Intent.ID, second.ID
		if inv.PaymentIntentID == res.Intent.ID {
			kept, refunded, refundedAttempt = res.Intent.ID, first.PaymentIntentID, first.ID
		}
		require.Equal(t, kept, inv.PaymentIntentID)
		rows := refundRows(t, b)
		require.Len(t, rows, 1)
		require.Equal(t, models.RefundSucceeded, rows[0].Status, "error: %s", rows[0].ErrorMessage)
		require.Equal(t, refunded, rows[0].PaymentIntentID)
		require.Equal(t, kept, rows[0].OriginalPaymentIntentID)
		require.Equal(t, refundedAttempt, *rows[0].AttemptID)
		require.EqualValues(t, 1500, rows[0].Amount)
		require.Equal(t, "EUR", rows[0].Currency)
		refunds := b.Sim.Refunds()
		require.Len(t, refunds, 1)
		require.Equal(t, refunded, refunds[0].PaymentIntent)
	})
}

// A recorded second payment whose reads the gateway keeps failing is not left
// confirming unseen: after a day it needs a human, and nothing was refunded.
func TestUnreadableSecondPaymentNeedsReviewAfterADay(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		inv := paidInvoice(t, b)
		_, err := b.Sim.DuplicateSuccess(inv.PaymentIntentID)
		require.NoError(t, err)
		b.Sim.SetFaults(sim.Faults{Error5xxBefore: 1})
		b.Run(t, time.Hour, 10*time.Minute)
		rows := refundRows(t, b)
		require.Len(t, rows, 1)
		require.Equal(t, models.RefundConfirming, rows[0].Status, "an hour of failed reads: still waiting for the gateway")

		b.Run(t, 24*time.Hour, time.Hour)
		rows = refundRows(t, b)
		require.Equal(t, models.RefundNeedsReview, rows[0].Status)
		require.Contains(t, rows[0].ErrorMessage, "did not answer reads of both payments")
		require.Empty(t, b.Sim.Refunds())
		require.Contains(t, metricsText(t, b), "billingd_refunds_needing_review 1")
	})
}
