package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// cardCase is one subscription of the lifecycle test and what 40 days of the
// default dunning schedule must make of it.
type cardCase struct {
	name   string
	number string
	// topUp makes the card accept charges after its first decline.
	topUp bool
	// offSession is the number of off-session attempts over the 40 days.
	offSession int
	// paid invoices; the rest are uncollectible.
	paid int
	// emails by kind.
	emails map[models.EmailKind]int
	sub    models.SubscriptionStatus
	reason models.DunningReason
	final  models.CaseStatus
}

// Weekly subscriptions over 40 days: periods start on days 0, 7, 14, 21, 28
// and 35. The default schedule retries a soft decline after 1, 4, 9 and 16
// days and exhausts the case at the fourth step; final_action cancel ends the
// subscription, so a declined card's later periods are written off with it.
var lifecycleCards = []cardCase{
	{name: "visa", number: "4111111111111111", offSession: 6, paid: 6, sub: models.SubscriptionActive},
	{name: "visa-debit", number: "4761344136141390", offSession: 6, paid: 6, sub: models.SubscriptionActive},
	{name: "visa-classic", number: "4242424242424242", offSession: 6, paid: 6, sub: models.SubscriptionActive},
	{name: "processing", number: "4000000000000259", offSession: 6, paid: 6, sub: models.SubscriptionActive},
	{name: "3ds", number: "4462030000000000", offSession: 1, sub: models.SubscriptionCanceled, reason: models.ReasonActionRequired, final: models.CaseExhausted,
		emails: map[models.EmailKind]int{models.EmailActionRequired: 4, models.EmailSubscriptionEnded: 1}},
	{name: "insufficient-funds", number: "4000000000009995", offSession: 5, sub: models.SubscriptionCanceled, reason: models.ReasonSoftDecline, final: models.CaseExhausted,
		emails: map[models.EmailKind]int{models.EmailPaymentFailed: 4, models.EmailSubscriptionEnded: 1}},
	{name: "generic-decline", number: "4000000000000002", offSession: 5, sub: models.SubscriptionCanceled, reason: models.ReasonSoftDecline, final: models.CaseExhausted,
		emails: map[models.EmailKind]int{models.EmailPaymentFailed: 4, models.EmailSubscriptionEnded: 1}},
	{name: "processing-error", number: "4000000000000119", offSession: 5, sub: models.SubscriptionCanceled, reason: models.ReasonSoftDecline, final: models.CaseExhausted,
		emails: map[models.EmailKind]int{models.EmailPaymentFailed: 4, models.EmailSubscriptionEnded: 1}},
	{name: "expired", number: "4000000000000069", offSession: 1, sub: models.SubscriptionCanceled, reason: models.ReasonHardDecline, final: models.CaseExhausted,
		emails: map[models.EmailKind]int{models.EmailCardUpdate: 4, models.EmailSubscriptionEnded: 1}},
	{name: "lost", number: "4000000000009987", offSession: 1, sub: models.SubscriptionCanceled, reason: models.ReasonHardDecline, final: models.CaseExhausted,
		emails: map[models.EmailKind]int{models.EmailCardUpdate: 4, models.EmailSubscriptionEnded: 1}},
	{name: "stolen", number: "4000000000009979", offSession: 1, sub: models.SubscriptionCanceled, reason: models.ReasonHardDecline, final: models.CaseExhausted,
		emails: map[models.EmailKind]int{models.EmailCardUpdate: 4, models.EmailSubscriptionEnded: 1}},
	// Declined once, topped up, paid by the first retry a day later; then
	// renews every week.
	{name: "topped-up", number: "4000000000009995", topUp: true, offSession: 7, paid: 6, sub: models.SubscriptionActive, reason: models.ReasonSoftDecline, final: models.CaseRecovered,
		emails: map[models.EmailKind]int{models.EmailPaymentFailed: 1, models.EmailRecovered: 1}},
}

// TestDunningLifecycleInTheAssembledDaemon runs one subscription per test card
// for 40 simulated days through daemon.New and its own jobs (Tick), with the
// default config: every case reaches its end, every step sends its email, and
// the books agree with the gateway's ledger. It runs on both providers: the
// same cards behave the same way in each one's own codes.
func TestDunningLifecycleInTheAssembledDaemon(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{}, func(t *testing.T, o daemontest.Options) {
		daemontest.Each(t, o, func(t *testing.T, b *daemontest.Bundle) { lifecycle(t, b) })
	})
}

func lifecycle(t *testing.T, b *daemontest.Bundle) {
	{
		ctx := context.Background()
		pms := map[string]string{}
		var subs []storetest.Subscription
		for _, c := range lifecycleCards {
			cus, pm := b.SaveCard(t, c.number)
			pms[c.name] = pm
			subs = append(subs, storetest.Subscription{Reference: c.name, Customer: cus, PaymentMethod: pm,
				Amount: 1500, Currency: "USD", Interval: "week", Anchor: b.Clock.Now()})
		}
		b.Seed(t, subs...)

		// The first pass declines the card that is then topped up.
		b.Run(t, 0, 0)
		require.NoError(t, b.Sim.SetCardBehaviour(pms["topped-up"], "4242424242424242"))
		b.Run(t, 40*24*time.Hour, 6*time.Hour)

		for _, c := range lifecycleCards {
			t.Run(c.name, func(t *testing.T) {
				sub := subscriptionByRef(t, b, c.name)
				require.Equal(t, c.sub, sub.Status)

				var invoices []models.Invoice
				require.NoError(t, b.Store.DB().Where("subscription_id = ?", sub.ID).Order("period_index").Find(&invoices).Error)
				paid := 0
				for _, inv := range invoices {
					switch inv.Status {
					case models.InvoicePaid:
						paid++
					case models.InvoiceUncollectible:
					default:
						t.Fatalf("invoice %s (period %d) ended %s: every period ends paid or written off", inv.PublicID, inv.PeriodIndex, inv.Status)
					}
				}
				require.Equal(t, c.paid, paid, "paid invoices")

				var attempts []models.ChargeAttempt
				require.NoError(t, b.Store.DB().Where("subscription_id = ? AND off_session", sub.ID).Order("id").Find(&attempts).Error)
				require.Len(t, attempts, c.offSession, "off-session attempts")
				succeeded := 0
				for _, a := range attempts {
					if a.Status == models.AttemptSucceeded {
						succeeded++
					}
				}
				require.Equal(t, c.paid, succeeded, "one succeeded attempt per paid invoice")

				var cases []models.DunningCase
				require.NoError(t, b.Store.DB().Where("subscription_id = ?", sub.ID).Find(&cases).Error)
				if c.reason == "" {
					require.Empty(t, cases)
				} else {
					require.Len(t, cases, 1)
					require.Equal(t, c.reason, cases[0].Reason)
					require.Equal(t, c.final, cases[0].Status)
				}

				got := map[models.EmailKind]int{}
				var emails []models.Email
				require.NoError(t, b.Store.DB().Where("to_address = ?", c.name+"@example.com").Find(&emails).Error)
				for _, e := range emails {
					require.Equal(t, models.EmailSent, e.Status, "email %s %s", e.Kind, e.DedupeKey)
					got[e.Kind]++
				}
				want := c.emails
				if want == nil {
					want = map[models.EmailKind]int{}
				}
				require.Equal(t, want, got, "emails")
			})
		}

		// Every email went through the SMTP server once.
		var sent int64
		require.NoError(t, b.Store.DB().Model(&models.Email{}).Where("status = ?", models.EmailSent).Count(&sent).Error)
		require.EqualValues(t, sent, b.SMTP.Count())

		// Paid totals equal the simulator's ledger.
		var paidTotal int64
		require.NoError(t, b.Store.DB().Model(&models.Invoice{}).Where("status = ?", models.InvoicePaid).Select("COALESCE(SUM(amount), 0)").Scan(&paidTotal).Error)
		var ledgerTotal int64
		for _, e := range b.Sim.Ledger() {
			if e.Status == "succeeded" {
				ledgerTotal += e.Amount
			}
		}
		require.Equal(t, ledgerTotal, paidTotal)

		// /metrics counts each outcome once, whichever path settled it (the
		// processing card's success arrived by webhook; the 3-D Secure card's
		// intent, never authenticated, was canceled after
		// dunning.challenge_timeout).
		metrics := scrape(t, b)
		for _, status := range []models.AttemptStatus{models.AttemptSucceeded, models.AttemptDeclined, models.AttemptCanceled} {
			var n int64
			require.NoError(t, b.Store.DB().WithContext(ctx).Model(&models.ChargeAttempt{}).Where("status = ?", status).Count(&n).Error)
			require.Positive(t, n)
			require.Equal(t, float64(n), metrics[`billingd_charge_attempts_total{outcome="`+string(status)+`"}`], "metric for %s", status)
		}
	}
}

// scrape reads the daemon's /metrics into name{labels} → value.
func scrape(t *testing.T, b *daemontest.Bundle) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	b.D.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	out := map[string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}

func subscriptionByRef(t *testing.T, b *daemontest.Bundle, ref string) models.Subscription {
	t.Helper()
	var s models.Subscription
	require.NoError(t, b.Store.DB().Where("reference = ?", ref).First(&s).Error, "subscription %s", ref)
	return s
}

// emailSubjects lists the subjects the SMTP server received, for messages.
func emailSubjects(b *daemontest.Bundle) string {
	var out []string
	for _, m := range b.SMTP.Messages() {
		out = append(out, fmt.Sprintf("%v: %s", m.To, m.Subject))
	}
	return strings.Join(out, "\n")
}

// A queue nothing will charge without a person is counted where ops look: a
// customer's second subscription on a card that the first one's decline
// killed has no case of its own, so it waits — and /metrics says so.
func TestHeldQueuesAreCounted(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		cus, pm := b.SaveCard(t, "4000000000009987") // lost card
		b.Seed(t, storetest.Subscription{Reference: "first", Customer: cus, PaymentMethod: pm})
		b.Run(t, 0, 0)
		require.Zero(t, scrape(t, b)["billingd_invoices_held"], "the first subscription's invoice is in dunning")

		b.Clock.Advance(time.Hour)
		b.Seed(t, storetest.Subscription{Reference: "second", Customer: cus, PaymentMethod: pm})
		b.Run(t, 0, 0)
		var n int64
		require.NoError(t, b.Store.DB().Model(&models.ChargeAttempt{}).Count(&n).Error)
		require.EqualValues(t, 1, n, "the dead card is not charged for the second subscription")
		require.Equal(t, 1.0, scrape(t, b)["billingd_invoices_held"])
		rep, err := b.Store.Status(context.Background(), b.Clock.Now())
		require.NoError(t, err)
		require.EqualValues(t, 1, rep.Held)
	})
}
