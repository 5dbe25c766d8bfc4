package schedule_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// payStack is the daemon's HTTP surface (webhooks + pay pages, its Handler
// served at the bundle's URL) on the stack, with the simulator delivering
// webhooks to it and dunning ending in cancel.
type payStack struct {
	*stack
	base string
	http *http.Client
}

func newPayStack(t *testing.T, st *store.Store, start time.Time) *payStack {
	t.Helper()
	return newPayStackOn(t, st, config.ProviderWooshPay, start)
}

// newPayStackOn is newPayStack on the given gateway.provider.
func newPayStackOn(t *testing.T, st *store.Store, provider string, start time.Time) *payStack {
	t.Helper()
	s := newStackOn(t, st, provider, start, sim.Options{Webhook: sim.WebhookOptions{URL: daemonWebhooks,
		Retry: []time.Duration{5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond}}})
	withDunning(s, dunning.FinalCancel)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &payStack{stack: s, base: s.b.URL, http: noRedirect}
}

// link sends the queued emails through the daemon's mail worker (which mints
// each pay link right before sending) and returns the pay link of the case's
// first email, read from the message the SMTP server received.
func (p *payStack) link(t *testing.T) string {
	t.Helper()
	es := emailsOf(t, p.st)
	require.NotEmpty(t, es)
	sum, err := p.b.D.SendMail(context.Background())
	require.NoError(t, err)
	require.Positive(t, sum.Sent, "the mail worker sent the queued email")
	links := p.b.PayLinks(t)
	require.NotEmpty(t, links, "the first email carries a pay link")
	u := links[0]
	require.True(t, strings.HasPrefix(u, p.base+"/pay/"))
	return u
}

func (p *payStack) do(t *testing.T, method, u string, form url.Values) (*http.Response, string) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := p.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (p *payStack) invoice(t *testing.T) models.Invoice {
	var inv models.Invoice
	require.NoError(t, p.st.DB().First(&inv).Error)
	return inv
}

func (p *payStack) settleWebhooks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, p.gw.WaitWebhooks(ctx))
}

func TestPayLinkThreeDSecure(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		p := newPayStack(t, st, start)
		seedCard(t, p.stack, "4462030000000000", start)
		ctx := context.Background()
		_, err := p.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		p.settleWebhooks(t)
		require.Equal(t, models.EmailActionRequired, emailsOf(t, p.st)[0].Kind)
		link := p.link(t)

		resp, body := p.do(t, http.MethodGet, link, nil)
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, "2.750 KWD", "the amount in the currency's own exponent")
		require.Contains(t, body, "Acme Billing")
		require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))

		resp, _ = p.do(t, http.MethodPost, link, url.Values{"action": {"pay"}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		challenge := resp.Header.Get("Location")
		require.Contains(t, challenge, "/3ds/")

		// The customer passes the challenge on the gateway's page.
		resp, _ = p.do(t, http.MethodPost, challenge, url.Values{"result": {"pass"}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		back := resp.Header.Get("Location")
		require.True(t, strings.HasPrefix(back, p.base+"/return/"), back)
		require.NotContains(t, back, strings.TrimPrefix(link, p.base+"/pay/"), "the return URL carries no token")

		p.settleWebhooks(t)
		inv := p.invoice(t)
		require.Equal(t, models.InvoicePaid, inv.Status, "paid by the webhook")
		resp, body = p.do(t, http.MethodGet, back, nil)
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, "Payment received")

		var attempts []models.ChargeAttempt
		require.NoError(t, p.st.DB().Order("attempt_no").Find(&attempts).Error)
		require.Len(t, attempts, 2)
		require.True(t, attempts[0].OffSession)
		require.Equal(t, models.AttemptCanceled, attempts[0].Status, "the waiting off-session intent was canceled before the on-session one started")
		require.Equal(t, models.CancelSuperseded, attempts[0].CancelReason)
		require.False(t, attempts[1].OffSession, "the pay link charges on-session")
		require.Equal(t, models.AttemptSucceeded, attempts[1].Status)
		var c models.DunningCase
		require.NoError(t, p.st.DB().First(&c).Error)
		require.Equal(t, models.CaseRecovered, c.Status)

		// The link is used up: the invoice is settled.
		resp, body = p.do(t, http.MethodGet, link, nil)
		require.Equal(t, http.StatusGone, resp.StatusCode)
		require.Contains(t, body, "already settled")
		require.NotContains(t, body, inv.PublicID, "reveals nothing about the invoice")
	})
}

func TestPayLinkReplacesHardDeclinedCard(t *testing.T) {
	st := storetest.SQLite(t)
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	p := newPayStack(t, st, start)
	seedCard(t, p.stack, "4000000000000069", start) // expired_card: hard
	ctx := context.Background()
	_, err := p.biller.Pass(ctx, ctx, "test")
	require.NoError(t, err)
	require.Equal(t, models.EmailCardUpdate, emailsOf(t, p.st)[0].Kind)
	link := p.link(t)

	resp, _ := p.do(t, http.MethodPost, link, url.Values{"action": {"update_card"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	hosted := resp.Header.Get("Location")
	require.Contains(t, hosted, "/checkout/setup/")

	resp, body := p.do(t, http.MethodGet, hosted, nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, `name="card_number"`)
	resp, _ = p.do(t, http.MethodPost, hosted, url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "exp_year": {"2031"}, "cvc": {"123"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Location"), p.base+"/return/"))

	// setup_intent.succeeded makes the card the subscription's and schedules an
	// immediate retry; the next pass makes it.
	p.settleWebhooks(t)
	var inv models.Invoice
	require.NoError(t, p.st.DB().First(&inv).Error)
	require.NotNil(t, inv.NextAttemptAt)
	require.False(t, inv.NextAttemptAt.After(p.clk.Now()))
	run, err := p.biller.Pass(ctx, ctx, "retry-now")
	require.NoError(t, err)
	require.Equal(t, 1, run.Succeeded)
	require.Equal(t, models.InvoicePaid, p.invoice(t).Status)
	var a models.ChargeAttempt
	require.NoError(t, p.st.DB().Order("attempt_no DESC").First(&a).Error)
	require.True(t, a.OffSession, "the retry with the new card is off-session")
	require.NotEqual(t, "", a.GatewayPM)
}

func TestPayLinkErrors(t *testing.T) {
	st := storetest.SQLite(t)
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	p := newPayStack(t, st, start)
	seedCard(t, p.stack, "4000000000009995", start)
	ctx := context.Background()
	_, err := p.biller.Pass(ctx, ctx, "test")
	require.NoError(t, err)
	link := p.link(t)

	for _, bad := range []string{p.base + "/pay/not-a-token", p.base + "/pay/" + strings.Repeat("A", 43)} {
		resp, body := p.do(t, http.MethodGet, bad, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		require.Contains(t, body, "not valid")
		resp, _ = p.do(t, http.MethodPost, bad, url.Values{"action": {"pay"}})
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	}
	p.clk.Advance(8 * 24 * time.Hour) // past dunning.link_ttl (7 days)
	resp, body := p.do(t, http.MethodGet, link, nil)
	require.Equal(t, http.StatusGone, resp.StatusCode)
	require.Contains(t, body, "expired")
	var links []models.PayLink
	require.NoError(t, p.st.DB().Find(&links).Error)
	require.Len(t, links, 1)
	require.Len(t, links[0].TokenHash, 64, "only the SHA-256 of the token is stored")
	require.NotContains(t, link, links[0].TokenHash)
}
