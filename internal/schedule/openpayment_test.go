package schedule_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// linkBundle drives the assembled daemon the way a customer does: from the
// links in the emails the SMTP server received, over HTTP, without following
// redirects.
type linkBundle struct {
	*daemontest.Bundle
	http *http.Client
	// dropCancels, when set, makes the proxy in front of the simulator drop
	// every cancel request without passing it on: the gateway never answers.
	dropCancels *atomic.Bool
}

func newLinkBundle(t *testing.T, o daemontest.Options) *linkBundle {
	t.Helper()
	drop := &atomic.Bool{}
	o.Front = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if drop.Load() && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/cancel") {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					_ = conn.Close()
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	b := daemontest.New(t, o)
	return &linkBundle{Bundle: b, dropCancels: drop,
		http: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func eachLinkBundle(t *testing.T, o daemontest.Options, fn func(t *testing.T, b *linkBundle)) {
	t.Run("sqlite", func(t *testing.T) { o := o; o.Postgres = false; fn(t, newLinkBundle(t, o)) })
	t.Run("postgres", func(t *testing.T) { o := o; o.Postgres = true; storetest.PostgresDSN(t); fn(t, newLinkBundle(t, o)) })
}

// subscribe saves a card at the gateway and imports a subscription on it, then
// runs the daemon's jobs once: the first charge and its email.
func (b *linkBundle) subscribe(t *testing.T, ref, number string) (cus, pm string) {
	t.Helper()
	cus, pm = b.SaveCard(t, number)
	b.Seed(t, storetest.Subscription{Reference: ref, Customer: cus, PaymentMethod: pm, Amount: 2750, Currency: "KWD"})
	b.Run(t, 0, 0)
	return cus, pm
}

func (b *linkBundle) do(t *testing.T, method, u string, form url.Values) (*http.Response, string) {
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
	resp, err := b.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func (b *linkBundle) pay(t *testing.T, link string) (*http.Response, string) {
	t.Helper()
	return b.do(t, http.MethodPost, link, url.Values{"action": {"pay"}})
}

// passChallenge answers the bank's page as the customer does.
func (b *linkBundle) passChallenge(t *testing.T, challenge string) *http.Response {
	t.Helper()
	resp, _ := b.do(t, http.MethodPost, challenge, url.Values{"result": {"pass"}})
	return resp
}

func (b *linkBundle) invoice(t *testing.T, ref string) models.Invoice {
	t.Helper()
	var inv models.Invoice
	require.NoError(t, b.Store.DB().Raw(`SELECT i.* FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id WHERE s.reference = ? ORDER BY i.period_index LIMIT 1`, ref).Scan(&inv).Error)
	require.NotZero(t, inv.ID)
	return inv
}

func (b *linkBundle) attempts(t *testing.T, invoiceID int64) []models.ChargeAttempt {
	t.Helper()
	var as []models.ChargeAttempt
	require.NoError(t, b.Store.DB().Where("invoice_id = ?", invoiceID).Order("attempt_no").Find(&as).Error)
	return as
}

// intents is the simulator's ledger for one invoice: every PaymentIntent
// created for it, by status.
func (b *linkBundle) intents(publicID string) map[string]int {
	out := map[string]int{}
	for _, e := range b.Sim.Ledger() {
		if e.MerchantOrderID == publicID {
			out[e.Status]++
		}
	}
	return out
}

func (b *linkBundle) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b.Sim.SettleDue()
	require.NoError(t, b.Sim.WaitWebhooks(ctx))
}

const threeDSCard = "4462030000000000"

// Two tabs on one 3-D Secure link, and the first email's link beside a
// reminder's: every press while the on-session intent waits goes back to that
// one challenge; the customer passes it (twice, from two tabs) and the
// gateway's ledger has one succeeded charge for the invoice.
func TestPressesShareTheOpenChallenge(t *testing.T) {
	eachLinkBundle(t, daemontest.Options{}, func(t *testing.T, b *linkBundle) {
		b.subscribe(t, "tabs", threeDSCard)
		inv := b.invoice(t, "tabs")
		first := b.PayLinks(t)
		require.Len(t, first, 1)
		// A day later the reminder carries a link of its own.
		b.Run(t, 25*time.Hour, time.Hour)
		links := b.PayLinks(t)
		require.Len(t, links, 2, "the reminder's link")
		require.Equal(t, models.InvoiceOpen, b.invoice(t, "tabs").Status)

		resp, _ := b.pay(t, links[0])
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		challenge := resp.Header.Get("Location")
		require.Contains(t, challenge, "/3ds/")
		for i, link := range []string{links[0], links[1], links[0]} {
			resp, _ := b.pay(t, link)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode, "press %d", i)
			require.Equal(t, challenge, resp.Header.Get("Location"), "press %d goes back to the open intent's challenge", i)
		}
		resp = b.passChallenge(t, challenge)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Contains(t, resp.Header.Get("Location"), "/return/")
		resp = b.passChallenge(t, challenge)
		require.Equal(t, http.StatusConflict, resp.StatusCode, "the second tab's pass finds nothing to authenticate")
		b.settle(t)

		require.Equal(t, models.InvoicePaid, b.invoice(t, "tabs").Status)
		got := b.intents(inv.PublicID)
		require.Equal(t, 1, got["succeeded"], "one succeeded charge in the gateway's ledger: %v", got)
		require.Zero(t, got["requires_action"], "no intent is left waiting: %v", got)
		onSession := 0
		for _, a := range b.attempts(t, inv.ID) {
			if !a.OffSession {
				onSession++
			}
		}
		require.Equal(t, 1, onSession, "four presses started one customer charge")
		// Pressing again after the payment starts nothing.
		resp, body := b.pay(t, links[1])
		require.Equal(t, http.StatusGone, resp.StatusCode)
		require.NotContains(t, body, inv.PublicID)
	})
}

// A link's Pay while the off-session intent waits for authentication cancels
// that intent at the gateway first (recorded), then starts the on-session one;
// the off-session intent's own challenge, passed afterwards, takes nothing.
func TestPayCancelsTheWaitingOffSessionIntentFirst(t *testing.T) {
	eachLinkBundle(t, daemontest.Options{}, func(t *testing.T, b *linkBundle) {
		b.subscribe(t, "offsession", threeDSCard)
		inv := b.invoice(t, "offsession")
		as := b.attempts(t, inv.ID)
		require.Len(t, as, 1)
		require.Equal(t, models.AttemptRequiresAction, as[0].Status)
		offChallenge := as[0].ActionURL
		require.Contains(t, offChallenge, "/3ds/")
		link := b.PayLinks(t)[0]

		resp, _ := b.pay(t, link)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		challenge := resp.Header.Get("Location")
		require.NotEqual(t, offChallenge, challenge)
		as = b.attempts(t, inv.ID)
		require.Len(t, as, 2)
		require.Equal(t, models.AttemptCanceled, as[0].Status)
		require.Equal(t, models.CancelSuperseded, as[0].CancelReason)
		require.NotNil(t, as[0].CancelRequestedAt)

		resp = b.passChallenge(t, offChallenge)
		require.Equal(t, http.StatusConflict, resp.StatusCode, "the canceled intent cannot be authenticated")
		resp = b.passChallenge(t, challenge)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		b.settle(t)
		require.Equal(t, models.InvoicePaid, b.invoice(t, "offsession").Status)
		got := b.intents(inv.PublicID)
		require.Equal(t, map[string]int{"succeeded": 1, "canceled": 1}, got)
	})
}

// A challenge abandoned past dunning.challenge_timeout is canceled at the
// gateway by the running daemon's intents job and the invoice is free again;
// a cancel that gets no answer starts nothing new — not from a press, not from
// a dunning retry — and after the bounded tries the attempt needs review.
func TestAbandonedChallengeIsCanceledAfterTheTimeout(t *testing.T) {
	eachLinkBundle(t, daemontest.Options{}, func(t *testing.T, b *linkBundle) {
		ctx := context.Background()
		b.subscribe(t, "abandoned", threeDSCard)
		inv := b.invoice(t, "abandoned")
		link := b.PayLinks(t)[0]

		b.Run(t, 29*time.Minute, time.Minute)
		as := b.attempts(t, inv.ID)
		require.Equal(t, models.AttemptRequiresAction, as[0].Status, "within the timeout the intent keeps waiting")
		b.Run(t, 2*time.Minute, 30*time.Second)
		as = b.attempts(t, inv.ID)
		require.Equal(t, models.AttemptCanceled, as[0].Status, "abandoned past dunning.challenge_timeout")
		require.Equal(t, models.CancelChallengeTimeout, as[0].CancelReason)
		require.Equal(t, map[string]int{"canceled": 1}, b.intents(inv.PublicID), "canceled at the gateway")

		// The invoice is free: a press starts a new intent at once.
		resp, _ := b.pay(t, link)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Contains(t, resp.Header.Get("Location"), "/3ds/")
		require.Equal(t, map[string]int{"canceled": 1, "requires_action": 1}, b.intents(inv.PublicID))

		// This one is abandoned too, and the gateway never answers its cancel.
		b.dropCancels.Store(true)
		b.Run(t, 31*time.Minute, 30*time.Second)
		as = b.attempts(t, inv.ID)
		require.Len(t, as, 2)
		require.Equal(t, models.AttemptRequiresAction, as[1].Status, "a cancel without an answer is not definite")
		require.NotNil(t, as[1].CancelRequestedAt)
		require.Positive(t, as[1].CancelTries)
		resp, body := b.pay(t, link)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Contains(t, body, "Closing an earlier payment")
		// A dunning retry due now waits too.
		require.NoError(t, b.Store.DB().Exec(`UPDATE invoices SET next_attempt_at = ? WHERE id = ?`, b.Clock.Now(), inv.ID).Error)
		b.Run(t, 0, 0)
		require.Len(t, b.attempts(t, inv.ID), 2, "nothing new starts while the cancel is not definite")
		require.Equal(t, map[string]int{"canceled": 1, "requires_action": 1}, b.intents(inv.PublicID))

		// The tries are bounded: then a human looks, and still nothing starts.
		b.Run(t, 20*time.Minute, 30*time.Second)
		as = b.attempts(t, inv.ID)
		require.Len(t, as, 2)
		require.Equal(t, models.AttemptNeedsReview, as[1].Status)
		require.Equal(t, 5, as[1].CancelTries)
		require.Contains(t, as[1].ErrorMessage, "cancel of "+as[1].PaymentIntentID)
		n, err := b.Store.CountAttempts(ctx, models.AttentionAttemptStatuses...)
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "surfaced where status and /metrics count attempts needing review")
		resp, body = b.pay(t, link)
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		require.Contains(t, body, "being checked")
		require.NoError(t, b.Store.DB().Exec(`UPDATE invoices SET next_attempt_at = ? WHERE id = ?`, b.Clock.Now(), inv.ID).Error)
		b.Run(t, 0, 0)
		require.Len(t, b.attempts(t, inv.ID), 2)
		require.Equal(t, map[string]int{"canceled": 1, "requires_action": 1}, b.intents(inv.PublicID))
	})
}

// The customer passed the challenge but billingd never heard (no webhook):
// the timeout's cancel is refused because the intent succeeded, and the
// attempt is settled as paid from the gateway's read — no new intent.
func TestCancelAnsweredAlreadySucceededSettlesThePayment(t *testing.T) {
	eachLinkBundle(t, daemontest.Options{NoWebhooks: true}, func(t *testing.T, b *linkBundle) {
		b.subscribe(t, "late", threeDSCard)
		inv := b.invoice(t, "late")
		link := b.PayLinks(t)[0]
		resp, _ := b.pay(t, link)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		challenge := resp.Header.Get("Location")
		require.NoError(t, b.Sim.PassChallenge(challenge[strings.LastIndex(challenge, "/")+1:]))
		require.Equal(t, models.AttemptRequiresAction, b.attempts(t, inv.ID)[1].Status, "billingd has not heard yet")

		b.Run(t, 31*time.Minute, 30*time.Second)
		as := b.attempts(t, inv.ID)
		require.Len(t, as, 2)
		require.Equal(t, models.AttemptSucceeded, as[1].Status)
		require.Equal(t, models.InvoicePaid, b.invoice(t, "late").Status)
		require.Equal(t, 1, b.intents(inv.PublicID)["succeeded"])
	})
}

// dunning.link_charges_per_hour caps the customer charges per invoice and per
// card, whatever link was used: 20 presses on one link, presses spread over two
// links of one invoice, and presses on two invoices of one card start no more
// charges than the cap; an hour later the customer may try again.
func TestPayLinksCapCustomerCharges(t *testing.T) {
	const softDecline = "4000000000009995"
	onSession := func(t *testing.T, b *linkBundle, invoiceIDs ...int64) int {
		n := 0
		for _, id := range invoiceIDs {
			for _, a := range b.attempts(t, id) {
				if !a.OffSession {
					n++
				}
			}
		}
		return n
	}
	eachLinkBundle(t, daemontest.Options{}, func(t *testing.T, b *linkBundle) {
		b.subscribe(t, "hammer", softDecline)
		inv := b.invoice(t, "hammer")
		link := b.PayLinks(t)[0]
		resp, body := b.do(t, http.MethodGet, link, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, body, "at most 3 payments per hour for this invoice and for your card", "the page explains the limit")
		require.Contains(t, body, "never charge a card again", "and the dead-card rule")
		refused := 0
		for i := 0; i < 20; i++ {
			resp, body := b.pay(t, link)
			if resp.StatusCode == http.StatusTooManyRequests {
				refused++
				require.Contains(t, body, "at most 3 payments per hour for an invoice and for a card")
			}
		}
		require.Equal(t, 3, onSession(t, b, inv.ID), "20 presses, 3 charges")
		require.Equal(t, 17, refused)
		require.Equal(t, 4, b.intents(inv.PublicID)["requires_payment_method"], "the gateway saw the first charge and three presses")

		// An hour later the customer may try again.
		b.Clock.Advance(time.Hour)
		resp, _ = b.pay(t, link)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, 4, onSession(t, b, inv.ID))

		// The cap is reloadable.
		cfg := b.D.Config().Clone()
		cfg.Dunning.LinkChargesPerHour = 1
		_, err := b.D.Reload(cfg)
		require.NoError(t, err)
		resp, body = b.pay(t, link)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		require.Contains(t, body, "at most 1 payments per hour")
	})
	t.Run("two links of one invoice", func(t *testing.T) {
		b := newLinkBundle(t, daemontest.Options{})
		b.subscribe(t, "two-links", softDecline)
		inv := b.invoice(t, "two-links")
		b.Run(t, 25*time.Hour, time.Hour) // the retry declines again: a second email
		links := b.PayLinks(t)
		require.Len(t, links, 2)
		for i := 0; i < 10; i++ {
			b.pay(t, links[i%2])
		}
		require.Equal(t, 3, onSession(t, b, inv.ID))
	})
	t.Run("two invoices of one card", func(t *testing.T) {
		b := newLinkBundle(t, daemontest.Options{})
		cus, pm := b.SaveCard(t, softDecline)
		b.Seed(t, storetest.Subscription{Reference: "one", Customer: cus, PaymentMethod: pm},
			storetest.Subscription{Reference: "two", Customer: cus, PaymentMethod: pm})
		b.Run(t, 0, 0)
		links := b.PayLinks(t)
		require.Len(t, links, 2)
		for i := 0; i < 10; i++ {
			b.pay(t, links[i%2])
		}
		require.Equal(t, 3, onSession(t, b, b.invoice(t, "one").ID, b.invoice(t, "two").ID), "per card, across invoices")
	})
}

// Pay on an update-card link never charges the saved card (the card is dead:
// the gateway declined it hard); the customer is sent to the card form. A pay
// link of a card the gateway called dead since says so and offers only a new
// card.
func TestDeadCardsAreNeverChargedFromALink(t *testing.T) {
	b := newLinkBundle(t, daemontest.Options{})
	cusHard, pmHard := b.SaveCard(t, "4000000000000069") // expired_card: hard
	cusSoft, pmSoft := b.SaveCard(t, "4000000000009995") // insufficient_funds: soft
	b.Seed(t, storetest.Subscription{Reference: "expired", Customer: cusHard, PaymentMethod: pmHard},
		storetest.Subscription{Reference: "soft", Customer: cusSoft, PaymentMethod: pmSoft})
	b.Run(t, 0, 0)
	inv, soft := b.invoice(t, "expired"), b.invoice(t, "soft")
	links := b.PayLinks(t)
	require.Len(t, links, 2)
	linkOf := map[int64]string{}
	for _, l := range links {
		var pl models.PayLink
		require.NoError(t, b.Store.DB().Where("token_hash = ?", dunning.HashToken(l[strings.LastIndex(l, "/")+1:])).First(&pl).Error)
		linkOf[*pl.InvoiceID] = l
		if *pl.InvoiceID == inv.ID {
			require.Equal(t, models.LinkUpdateCard, pl.Purpose)
		}
	}

	before := b.intents(inv.PublicID)
	resp, _ := b.pay(t, linkOf[inv.ID])
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Location"), "/checkout/setup/", "to the card form, not a charge")
	require.Len(t, b.attempts(t, inv.ID), 1, "nothing charged")
	require.Equal(t, before, b.intents(inv.PublicID))

	// The soft decline's pay link, after the gateway called its card dead
	// (another subscription's hard decline, say).
	require.NoError(t, b.Store.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.MarkPaymentMethodDead(b.Clock.Now(), pmSoft, "lost_card")
		return err
	}))
	resp, body := b.pay(t, linkOf[soft.ID])
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "can no longer be charged")
	require.NotContains(t, body, `id="pay"`, "no Pay button for a dead card")
	require.Len(t, b.attempts(t, soft.ID), 1)
}

var invoiceIDRE = regexp.MustCompile(`in_[A-Za-z0-9]+`)

// Unknown and expired links and their return pages reveal nothing about any
// invoice; the return URL handed to the gateway carries a return id that
// shows only the payment's state and cannot open the pay page.
func TestReturnPagesRevealNothing(t *testing.T) {
	b := newLinkBundle(t, daemontest.Options{})
	b.subscribe(t, "quiet", threeDSCard)
	inv := b.invoice(t, "quiet")
	link := b.PayLinks(t)[0]
	token := strings.TrimPrefix(link, b.Config.HTTP.PublicBaseURL+"/pay/")
	resp, _ := b.pay(t, link)
	challenge := resp.Header.Get("Location")
	resp, _ = b.do(t, http.MethodPost, challenge, url.Values{"result": {"fail"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	back := resp.Header.Get("Location")
	require.NotContains(t, back, token)
	b.settle(t)
	returnPage, _, _ := strings.Cut(back, "?")
	rid := returnPage[strings.LastIndex(returnPage, "/")+1:]

	resp, body := b.do(t, http.MethodGet, back, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Payment not completed")
	require.NotContains(t, body, inv.PublicID, "the return page shows a state, not the invoice")
	require.NotContains(t, body, "2.750")
	require.NotContains(t, body, "<form", "no button: the return id cannot pay")
	// The return id does not open the pay page.
	resp, _ = b.do(t, http.MethodGet, b.Config.HTTP.PublicBaseURL+"/pay/"+rid, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = b.pay(t, b.Config.HTTP.PublicBaseURL+"/pay/"+rid)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	b.Clock.Advance(8 * 24 * time.Hour) // past dunning.link_ttl; the invoice is still open
	for _, u := range []string{back, link + "/return", link} {
		resp, body := b.do(t, http.MethodGet, u, nil)
		require.Equal(t, http.StatusGone, resp.StatusCode, u)
		require.Contains(t, body, "expired")
		require.NotContains(t, body, inv.PublicID, u)
		require.Empty(t, invoiceIDRE.FindString(body), u)
		require.NotContains(t, body, "2.750", u)
		require.NotContains(t, body, "Try again", u)
	}
	for _, u := range []string{b.Config.HTTP.PublicBaseURL + "/return/" + strings.Repeat("x", 32), b.Config.HTTP.PublicBaseURL + "/pay/" + strings.Repeat("A", 43) + "/return"} {
		resp, body := b.do(t, http.MethodGet, u, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, u)
		require.Empty(t, invoiceIDRE.FindString(body), u)
	}
}

// With http.public_base_url under a path (https://example.com/billing) every
// link and form works: billingd serves the pay pages under the prefix (a
// proxy passing the path on) and at the root (a proxy stripping it), and its
// forms and return URLs carry the prefix.
func TestPayLinksBehindAPathPrefix(t *testing.T) {
	b := newLinkBundle(t, daemontest.Options{Configure: func(c *config.Config) { c.HTTP.PublicBaseURL += "/billing" }})
	root := strings.TrimSuffix(b.Config.HTTP.PublicBaseURL, "/billing")
	b.subscribe(t, "prefixed", threeDSCard)
	link := b.PayLinks(t)[0]
	require.True(t, strings.HasPrefix(link, root+"/billing/pay/"), link)
	token := strings.TrimPrefix(link, root+"/billing/pay/")

	resp, body := b.do(t, http.MethodGet, link, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `action="`+link+`"`, "the form posts under the prefix")
	require.NotContains(t, body, `action="/pay/`)
	resp, _ = b.do(t, http.MethodGet, root+"/pay/"+token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "a proxy that strips the prefix reaches the same page")

	resp, _ = b.pay(t, link)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp = b.passChallenge(t, resp.Header.Get("Location"))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	back := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(back, root+"/billing/return/"), back)
	b.settle(t)
	resp, body = b.do(t, http.MethodGet, back, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Payment received")
}
