package daemon_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// cardNoticeStart is a Monday; a card valid through March 2026 fails the
// April charge of a subscription anchored now.
var (
	cardNoticeStart = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	nextCharge      = time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC)
)

// cardEmails lists the card_expiring rows of the outbox.
func cardEmails(t *testing.T, b *daemontest.Bundle) []models.Email {
	t.Helper()
	var out []models.Email
	require.NoError(t, b.Store.DB().Where("kind = ?", models.EmailCardExpiring).Order("id").Find(&out).Error)
	return out
}

// cardMessages are the received card-expiry emails, decoded.
func cardMessages(t *testing.T, b *daemontest.Bundle) [][]string {
	t.Helper()
	var out [][]string
	for _, m := range b.SMTP.Messages() {
		if strings.Contains(m.Subject, "card expires") {
			out = append(out, daemontest.MessageTexts(t, m.Raw))
		}
	}
	return out
}

func paymentMethodRow(t *testing.T, b *daemontest.Bundle, id int64) models.PaymentMethod {
	t.Helper()
	var pm models.PaymentMethod
	require.NoError(t, b.Store.DB().First(&pm, id).Error)
	return pm
}

// runTo ticks the daemon every step until the clock reads until.
func runTo(t *testing.T, b *daemontest.Bundle, until time.Time, step time.Duration) {
	t.Helper()
	for b.Clock.Now().Before(until) {
		d := min(step, until.Sub(b.Clock.Now()))
		b.Run(t, d, d)
	}
	require.Equal(t, until, b.Clock.Now())
}

// A subscription whose card expires before its next charge gets exactly one
// card_expiring email, dunning.card_expiry_notice (7 days) before that charge
// — not 8 days, not twice — naming the card, with a link scoped to the
// subscription whose page shows the card and can only replace it; the card
// saved there becomes the subscription's.
func TestExpiringCardNoticeOnceSevenDaysAhead(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{Start: cardNoticeStart}, func(t *testing.T, o daemontest.Options) {
		daemontest.Each(t, o, func(t *testing.T, b *daemontest.Bundle) {
			cus, pm := b.SaveCardExpiring(t, "4242424242424242", 3, 2026)
			b.Seed(t, storetest.Subscription{Reference: "expiring", Customer: cus, PaymentMethod: pm, Amount: 1900, Currency: "USD",
				Interval: "month", Anchor: b.Clock.Now()})
			b.Run(t, 0, 0)
			sub := subscriptionByRef(t, b, "expiring")
			require.Equal(t, nextCharge, sub.NextBillingAt.UTC())
			card := paymentMethodRow(t, b, sub.PaymentMethodID)
			require.Equal(t, 3, card.ExpMonth, "the card's expiry was read from the gateway")
			require.Equal(t, 2026, card.ExpYear)
			require.Equal(t, "4242", card.Last4)
			require.NotNil(t, card.DetailsReadAt)

			// Eight days before the charge: nothing yet.
			runTo(t, b, nextCharge.Add(-8*24*time.Hour), 24*time.Hour)
			require.Empty(t, cardEmails(t, b))
			runTo(t, b, nextCharge.Add(-7*24*time.Hour-time.Hour), time.Hour)
			require.Empty(t, cardEmails(t, b), "not before 7 days ahead")
			runTo(t, b, nextCharge.Add(-7*24*time.Hour), time.Hour)
			emails := cardEmails(t, b)
			require.Len(t, emails, 1, "one notice exactly 7 days ahead")
			require.Equal(t, nextCharge.Add(-7*24*time.Hour), emails[0].CreatedAt.UTC())
			require.Nil(t, emails[0].InvoiceID, "the notice belongs to no invoice")
			require.Equal(t, sub.ID, *emails[0].SubscriptionID)
			require.Equal(t, models.EmailSent, emails[0].Status)
			msgs := cardMessages(t, b)
			require.Len(t, msgs, 1)
			for _, part := range msgs[0] {
				require.Contains(t, part, "Visa ending in 4242")
				require.Contains(t, part, "03/2026")
				require.Contains(t, part, "19.00 USD")
			}
			links := b.PayLinks(t)
			require.Len(t, links, 1, "the notice carries a link")
			var link models.PayLink
			require.NoError(t, b.Store.DB().Where("email_id = ?", emails[0].ID).First(&link).Error)
			require.Nil(t, link.InvoiceID)
			require.Equal(t, sub.ID, *link.SubscriptionID)
			require.Equal(t, models.LinkUpdateCard, link.Purpose)

			// Ticking on: never a second notice for this card and period.
			b.Run(t, 3*24*time.Hour, time.Hour)
			require.Len(t, cardEmails(t, b), 1)

			// The page shows the card and only a replace button.
			resp, body := send(t, http.MethodGet, links[0], nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Contains(t, body, "Visa ending in 4242")
			require.Contains(t, body, "03/2026")
			require.Contains(t, body, `id="update-card"`)
			require.NotContains(t, body, `id="pay"`)
			require.NotContains(t, body, `value="pay"`)
			require.Equal(t, 1, strings.Count(body, "<button"), "one button")

			// Even a forged pay action only opens the hosted card page.
			before := len(attemptsOf(t, b, sub.ID))
			resp, _ = send(t, http.MethodPost, links[0], url.Values{"action": {"pay"}})
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			hosted := resp.Header.Get("Location")
			require.Regexp(t, regexp.MustCompile(`/(checkout/setup|hpp)/`), hosted)
			require.Len(t, attemptsOf(t, b, sub.ID), before, "a subscription link never charges")

			resp, _ = send(t, http.MethodPost, hosted, url.Values{"card_number": {"5555555555554444"}, "exp_month": {"11"}, "exp_year": {"2031"}, "cvc": {"123"}})
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			back := resp.Header.Get("Location")
			require.True(t, strings.HasPrefix(back, b.URL+"/return/"), back)
			b.Run(t, time.Hour, time.Hour)
			replaced := subscriptionByRef(t, b, "expiring")
			require.NotEqual(t, sub.PaymentMethodID, replaced.PaymentMethodID, "the new card is the subscription's")
			newCard := paymentMethodRow(t, b, replaced.PaymentMethodID)
			require.Equal(t, "4444", newCard.Last4)
			require.Equal(t, 11, newCard.ExpMonth)
			require.Equal(t, 2031, newCard.ExpYear)
			resp, body = send(t, http.MethodGet, back, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Contains(t, body, "Card saved")
			require.Len(t, attemptsOf(t, b, sub.ID), before, "saving the card charged nothing")

			// The next charge goes to the new card; no more notices.
			runTo(t, b, nextCharge.Add(time.Hour), time.Hour)
			attempts := attemptsOf(t, b, sub.ID)
			require.Len(t, attempts, before+1)
			require.Equal(t, models.AttemptSucceeded, attempts[before].Status)
			require.Len(t, cardEmails(t, b), 1)
		})
	})
}

// A card the gateway renewed (an account updater: the simulator's renew
// route) gets no notice, and its new expiry is recorded; paused, canceled and
// canceling-before-the-charge subscriptions get none either.
func TestExpiringCardNoticeSkipsRenewedAndStoppedSubscriptions(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{Start: cardNoticeStart}, func(t *testing.T, o daemontest.Options) {
		daemontest.Each(t, o, func(t *testing.T, b *daemontest.Bundle) {
			refs := []string{"renewed", "paused", "canceled", "canceling"}
			pms := map[string]string{}
			for _, ref := range refs {
				cus, pm := b.SaveCardExpiring(t, "4242424242424242", 3, 2026)
				pms[ref] = pm
				b.Seed(t, storetest.Subscription{Reference: ref, Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "EUR",
					Interval: "month", Anchor: b.Clock.Now()})
			}
			b.Run(t, 0, 0)
			db := b.Store.DB()
			now := b.Clock.Now()
			require.NoError(t, db.Exec(`UPDATE subscriptions SET status = 'paused', paused_at = ? WHERE reference = 'paused'`, now).Error)
			require.NoError(t, db.Exec(`UPDATE subscriptions SET status = 'canceled', canceled_at = ? WHERE reference = 'canceled'`, now).Error)
			require.NoError(t, db.Exec(`UPDATE subscriptions SET cancel_at = ? WHERE reference = 'canceling'`, nextCharge.Add(-time.Hour)).Error)

			// The bank renewed one card before the notice is due.
			body, err := json.Marshal(map[string]int{"exp_month": 3, "exp_year": 2029})
			require.NoError(t, err)
			resp, err := http.Post(b.Config.Gateway.BaseURL+"/_sim/payment_methods/"+pms["renewed"]+"/renew", "application/json", bytes.NewReader(body))
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)

			runTo(t, b, nextCharge.Add(-7*24*time.Hour), 24*time.Hour)
			b.Run(t, 24*time.Hour, time.Hour)
			require.Empty(t, cardEmails(t, b), "no notice for a renewed card or a stopped subscription")
			require.Empty(t, cardMessages(t, b))
			renewed := paymentMethodRow(t, b, subscriptionByRef(t, b, "renewed").PaymentMethodID)
			require.Equal(t, 2029, renewed.ExpYear, "the renewed expiry is recorded")
			require.Equal(t, 3, renewed.ExpMonth)
		})
	})
}

// dunning.card_expiry_notice 0 turns the notice off.
func TestExpiringCardNoticeOff(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{Start: cardNoticeStart, Configure: func(c *config.Config) { c.Dunning.CardExpiryNotice = 0 }})
	cus, pm := b.SaveCardExpiring(t, "4242424242424242", 3, 2026)
	b.Seed(t, storetest.Subscription{Reference: "off", Customer: cus, PaymentMethod: pm, Amount: 1900, Currency: "USD", Interval: "month", Anchor: b.Clock.Now()})
	runTo(t, b, nextCharge.Add(-time.Hour), 12*time.Hour)
	require.Empty(t, cardEmails(t, b))
}

// A card saved through the notice's subscription link while the subscription
// has an open dunning case lets that case proceed as a card saved through the
// invoice's own link does: the invoice is retried at once on the new card.
func TestExpiringCardLinkProceedsOpenDunningCase(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{Start: cardNoticeStart, Configure: func(c *config.Config) {
		c.Dunning.RetrySchedule = []config.Duration{config.Duration(30 * 24 * time.Hour)}
	}}, func(t *testing.T, o daemontest.Options) {
		daemontest.Each(t, o, func(t *testing.T, b *daemontest.Bundle) {
			cus, pm := b.SaveCardExpiring(t, "4000000000009995", 3, 2026) // insufficient_funds: soft
			b.Seed(t, storetest.Subscription{Reference: "dunned", Customer: cus, PaymentMethod: pm, Amount: 1900, Currency: "USD",
				Interval: "month", Anchor: b.Clock.Now()})
			b.Run(t, 0, 0)
			sub := subscriptionByRef(t, b, "dunned")
			invs := invoicesOf(t, b, sub.ID)
			require.Len(t, invs, 1)
			require.Equal(t, models.InvoiceOpen, invs[0].Status)

			runTo(t, b, nextCharge.Add(-7*24*time.Hour), 24*time.Hour)
			require.Len(t, cardEmails(t, b), 1)
			var link string
			for _, l := range b.PayLinks(t) {
				var pl models.PayLink
				require.NoError(t, b.Store.DB().Where("token_hash = ?", dunningHash(l)).First(&pl).Error)
				if pl.InvoiceID == nil {
					link = l
				}
			}
			require.NotEmpty(t, link, "the notice's subscription link")
			resp, _ := send(t, http.MethodPost, link, url.Values{"action": {"update_card"}})
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			resp, _ = send(t, http.MethodPost, resp.Header.Get("Location"), url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "exp_year": {"2031"}, "cvc": {"123"}})
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			b.Run(t, 0, 0)
			require.NotEqual(t, sub.PaymentMethodID, subscriptionByRef(t, b, "dunned").PaymentMethodID)
			require.Equal(t, models.InvoicePaid, invoicesOf(t, b, sub.ID)[0].Status, "the open case retried the invoice on the new card")
		})
	})
}

func dunningHash(link string) string { return dunning.HashToken(link[strings.LastIndex(link, "/")+1:]) }
