package daemon_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/checkout"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// checkoutOptions are a bundle on Checkout.com.
func checkoutOptions() daemontest.Options {
	return daemontest.Options{Provider: config.ProviderCheckout}
}

// attemptsOf lists a subscription's charge attempts in the order they were made.
func attemptsOf(t *testing.T, b *daemontest.Bundle, subID int64) []models.ChargeAttempt {
	t.Helper()
	var out []models.ChargeAttempt
	require.NoError(t, b.Store.DB().Where("subscription_id = ?", subID).Order("id").Find(&out).Error)
	return out
}

// invoicesOf lists a subscription's invoices by period.
func invoicesOf(t *testing.T, b *daemontest.Bundle, subID int64) []models.Invoice {
	t.Helper()
	var out []models.Invoice
	require.NoError(t, b.Store.DB().Where("subscription_id = ?", subID).Order("period_index").Find(&out).Error)
	return out
}

// ledgerFor lists the simulator's payments for one order.
func ledgerFor(b *daemontest.Bundle, order string) []sim.LedgerEntry {
	var out []sim.LedgerEntry
	for _, e := range b.Sim.Ledger() {
		if e.MerchantOrderID == order {
			out = append(out, e)
		}
	}
	return out
}

// redeliver posts a delivered event again, correctly signed, as Checkout.com
// does when it did not see the first acknowledgement, and returns the status.
func redeliver(t *testing.T, b *daemontest.Bundle, ev sim.Event) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.URL+"/webhooks/checkout", strings.NewReader(string(ev.Body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(checkout.SignatureHeader, checkout.Sign(daemontest.WebhookSecret, ev.Body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// eventsOf lists the simulator's events of a type for one object.
func eventsOf(b *daemontest.Bundle, typ, objectID string) []sim.Event {
	var out []sim.Event
	for _, e := range b.Sim.Events() {
		if e.Type == typ && (objectID == "" || e.ObjectID == objectID) {
			out = append(out, e)
		}
	}
	return out
}

// A payment approved and then declined at capture reopens its paid invoice
// into dunning: the attempt becomes declined (capture_declined), the invoice
// open, a soft-decline case opens and emails the customer, and the case's
// retry a day later pays the invoice with a new payment. Delivering the
// capture-declined event again changes nothing.
func TestCheckoutCaptureDeclinedReopensIntoDunning(t *testing.T) {
	daemontest.Each(t, checkoutOptions(), func(t *testing.T, b *daemontest.Bundle) {
		cus, pm := b.SaveCard(t, "4242424242424242")
		b.Seed(t, storetest.Subscription{Reference: "capture", Customer: cus, PaymentMethod: pm, Amount: 1500, Currency: "USD", Interval: "month", Anchor: b.Clock.Now()})
		b.Run(t, 0, 0)
		sub := subscriptionByRef(t, b, "capture")
		inv := invoicesOf(t, b, sub.ID)[0]
		require.Equal(t, models.InvoicePaid, inv.Status)
		first := attemptsOf(t, b, sub.ID)[0]
		require.Equal(t, models.AttemptSucceeded, first.Status)

		resp, err := http.Post(b.Config.Gateway.BaseURL+"/_sim/payments/"+first.PaymentIntentID+"/capture_decline", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		// The webhook arrives; the mail job's next run sends the case's email.
		b.Run(t, time.Minute, time.Minute)

		a := attemptsOf(t, b, sub.ID)[0]
		require.Equal(t, models.AttemptDeclined, a.Status)
		require.Equal(t, store.DeclineCaptureDeclined, a.DeclineCode)
		require.False(t, a.HardDecline)
		inv = invoicesOf(t, b, sub.ID)[0]
		require.Equal(t, models.InvoiceOpen, inv.Status)
		var c models.DunningCase
		require.NoError(t, b.Store.DB().Where("invoice_id = ?", inv.ID).First(&c).Error)
		require.Equal(t, models.CaseOpen, c.Status)
		require.Equal(t, models.ReasonSoftDecline, c.Reason)
		var emails []models.Email
		require.NoError(t, b.Store.DB().Where("to_address = ?", "capture@example.com").Find(&emails).Error)
		require.Len(t, emails, 1)
		require.Equal(t, models.EmailPaymentFailed, emails[0].Kind)
		require.Equal(t, models.EmailSent, emails[0].Status)

		// The same event delivered again is acknowledged and changes nothing.
		declined := eventsOf(b, checkout.EventPaymentCaptureDeclined, first.PaymentIntentID)
		require.Len(t, declined, 1)
		var rows int64
		require.NoError(t, b.Store.DB().Model(&models.WebhookEvent{}).Count(&rows).Error)
		require.Equal(t, http.StatusOK, redeliver(t, b, declined[0]))
		// So do the approval's and the capture's events arriving late: the
		// payment whose capture was declined pays nothing.
		late := append(eventsOf(b, checkout.EventPaymentApproved, first.PaymentIntentID), eventsOf(b, checkout.EventPaymentCaptured, first.PaymentIntentID)...)
		require.NotEmpty(t, late)
		for _, ev := range late {
			require.Equal(t, http.StatusOK, redeliver(t, b, ev))
		}
		var after int64
		require.NoError(t, b.Store.DB().Model(&models.WebhookEvent{}).Count(&after).Error)
		require.Equal(t, rows, after, "each redelivery has an event id already stored")
		require.Equal(t, a, attemptsOf(t, b, sub.ID)[0])
		var again models.DunningCase
		require.NoError(t, b.Store.DB().First(&again, c.ID).Error)
		require.Equal(t, c, again)
		require.Equal(t, inv, invoicesOf(t, b, sub.ID)[0])

		// The case's first retry, a day later, pays the invoice.
		b.Run(t, 2*24*time.Hour, 6*time.Hour)
		inv = invoicesOf(t, b, sub.ID)[0]
		require.Equal(t, models.InvoicePaid, inv.Status)
		attempts := attemptsOf(t, b, sub.ID)
		require.Len(t, attempts, 2)
		require.Equal(t, models.AttemptSucceeded, attempts[1].Status)
		require.Equal(t, inv.PaymentIntentID, attempts[1].PaymentIntentID)
		require.NoError(t, b.Store.DB().First(&again, c.ID).Error)
		require.Equal(t, models.CaseRecovered, again.Status)
		entries := ledgerFor(b, inv.PublicID)
		require.Len(t, entries, 2)
		statuses := map[string]string{}
		for _, e := range entries {
			statuses[e.ID] = e.Status
		}
		require.Equal(t, map[string]string{first.PaymentIntentID: "capture_declined", attempts[1].PaymentIntentID: "succeeded"}, statuses)
	})
}

// failFirstCharge is a Front that arms Error5xxAfter on the simulator for
// the first charge (POST /payments with an id source, after armed is set)
// and turns it off once that request is answered: the payment is recorded
// and the client sees a 500. It counts the lookups by reference.
type failFirstCharge struct {
	armed, fired atomic.Bool
	lookups      atomic.Int64
}

func (f *failFirstCharge) front(next http.Handler) http.Handler {
	gw := next.(*sim.Server)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/payments" && r.URL.Query().Get("reference") != "" {
			f.lookups.Add(1)
		}
		if r.Method == http.MethodPost && r.URL.Path == "/payments" && f.armed.Load() && f.fired.CompareAndSwap(false, true) {
			gw.SetFaults(sim.Faults{Error5xxAfter: 1})
			defer gw.SetFaults(sim.Faults{})
		}
		next.ServeHTTP(w, r)
	})
}

// A 500 after Checkout.com processed the payment leaves no idempotent replay
// (a resend with the same key would pay again): the client looks the order
// up by its reference, finds the payment its key made, and settles the
// attempt from it. One attempt, one payment.
func TestCheckoutServerErrorAfterPaymentIsSettledByTheLookup(t *testing.T) {
	var f failFirstCharge
	o := checkoutOptions()
	o.Front = f.front
	b := daemontest.New(t, o)
	cus, pm := b.SaveCard(t, "4111111111111111")
	b.Seed(t, storetest.Subscription{Reference: "lookup", Customer: cus, PaymentMethod: pm, Amount: 2500, Currency: "EUR", Interval: "month", Anchor: b.Clock.Now()})
	f.armed.Store(true)
	b.Run(t, 10*time.Minute, time.Minute)

	require.True(t, f.fired.Load())
	require.EqualValues(t, 1, b.Sim.Stats().Faults.Error5xxAfter)
	require.Positive(t, f.lookups.Load(), "the order was looked up by reference")
	sub := subscriptionByRef(t, b, "lookup")
	attempts := attemptsOf(t, b, sub.ID)
	require.Len(t, attempts, 1)
	require.Equal(t, models.AttemptSucceeded, attempts[0].Status)
	inv := invoicesOf(t, b, sub.ID)[0]
	require.Equal(t, models.InvoicePaid, inv.Status)
	entries := ledgerFor(b, inv.PublicID)
	require.Len(t, entries, 1, "exactly one payment for the order")
	require.Equal(t, entries[0].ID, attempts[0].PaymentIntentID)
	require.Equal(t, entries[0].ID, inv.PaymentIntentID)
	require.EqualValues(t, 2500, entries[0].Amount)
}

// noRedirects is an HTTP client that shows each redirect instead of
// following it, as a test reads where a page sends the browser.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func send(t *testing.T, method, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := noRedirects.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// A hard-declined card is replaced on Checkout.com's hosted page from the
// emailed card-update link: the card_verified webhook makes the new card the
// subscription's and the invoice is charged at once, chained to the new
// card's own verification payment (previous_payment_id) — and so is the next
// period's charge, never to the old card's series.
func TestCheckoutHostedPageReplacesHardDeclinedCard(t *testing.T) {
	b := daemontest.New(t, checkoutOptions())
	cus, pm := b.SaveCard(t, "4000000000000069") // expired_card: hard
	b.Seed(t, storetest.Subscription{Reference: "replace", Customer: cus, PaymentMethod: pm, Amount: 1900, Currency: "USD", Interval: "month", Anchor: b.Clock.Now()})
	b.Run(t, 0, 0)
	sub := subscriptionByRef(t, b, "replace")
	oldCard := sub.PaymentMethodID
	first := attemptsOf(t, b, sub.ID)
	require.Len(t, first, 1)
	require.Equal(t, models.AttemptDeclined, first[0].Status)
	require.True(t, first[0].HardDecline)
	oldSeries := first[0].PreviousPaymentID
	require.NotEmpty(t, oldSeries, "the old card's charge was chained to the payment that stored it")

	links := b.PayLinks(t)
	require.Len(t, links, 1, "the card-update email carries a link")
	resp, body := send(t, http.MethodGet, links[0], nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "update_card")
	resp, _ = send(t, http.MethodPost, links[0], url.Values{"action": {"update_card"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	hosted := resp.Header.Get("Location")
	require.Contains(t, hosted, "/hpp/", "Checkout.com's hosted payments page")
	saved := len(eventsOf(b, checkout.EventCardVerified, ""))
	resp, body = send(t, http.MethodGet, hosted, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `name="card_number"`)
	resp, _ = send(t, http.MethodPost, hosted, url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "exp_year": {"2031"}, "cvc": {"123"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Location"), b.URL+"/return/"), resp.Header.Get("Location"))

	verified := eventsOf(b, checkout.EventCardVerified, "")
	require.Len(t, verified, saved+1, "the hosted page verified the new card")
	verification := verified[saved].ObjectID
	require.NotEqual(t, oldSeries, verification)

	// The webhook arrives and the daemon's next tick charges the new card.
	b.Run(t, 0, 0)
	sub = subscriptionByRef(t, b, "replace")
	require.NotEqual(t, oldCard, sub.PaymentMethodID, "the new card is the subscription's")
	attempts := attemptsOf(t, b, sub.ID)
	require.Len(t, attempts, 2)
	retry := attempts[1]
	require.True(t, retry.OffSession)
	require.Equal(t, models.AttemptSucceeded, retry.Status)
	require.NotEqual(t, pm, retry.GatewayPM)
	require.Equal(t, verification, retry.PreviousPaymentID, "chained to the new card's verification")
	require.Equal(t, models.InvoicePaid, invoicesOf(t, b, sub.ID)[0].Status)

	// The next period is charged on the new card's series too.
	b.Run(t, 32*24*time.Hour, 24*time.Hour)
	attempts = attemptsOf(t, b, sub.ID)
	require.Len(t, attempts, 3)
	require.Equal(t, models.AttemptSucceeded, attempts[2].Status)
	require.Equal(t, retry.GatewayPM, attempts[2].GatewayPM)
	require.Equal(t, verification, attempts[2].PreviousPaymentID)
	for _, inv := range invoicesOf(t, b, sub.ID) {
		require.Equal(t, models.InvoicePaid, inv.Status)
	}
}
