package schedule_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// browser starts headless Chromium (Debian's package; .ci/run installs it) or
// skips the test saying why.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("browser test skipped: headless Chromium is not installed (apt-get install chromium; .ci/run installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first call starts the browser; it must not carry a timeout.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "start Chromium")
	return ctx
}

// do runs browser steps with a deadline.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(c, steps...))
}

// get runs one browser action that returns a value, with a deadline.
func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	require.NoError(t, err)
	return v
}

// screenshot keeps a picture of the page for a human to look at when
// BILLINGD_SCREENSHOTS names a directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("BILLINGD_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := get(t, ctx, chromedp.FullScreenshot(100))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// The customer opens the link from the 3-D Secure email, presses pay, passes the
// challenge on the gateway's page, lands on the return page, and the invoice is
// paid in the database after the webhook — on each provider (on Checkout.com
// the off-session charge is declined 20154 and the link's payment is a
// customer-initiated one with 3ds.enabled).
func TestBrowserPaysThroughThreeDSecure(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{}, func(t *testing.T, o daemontest.Options) {
		browserPaysThroughThreeDSecure(t, o.Provider)
	})
}

func browserPaysThroughThreeDSecure(t *testing.T, provider string) {
	ctx := browser(t)
	st := storetest.SQLite(t)
	start := time.Now().UTC().Truncate(time.Second)
	p := newPayStackOn(t, st, provider, start)
	seedCard(t, p.stack, "4462030000000000", start)
	_, err := p.biller.Pass(context.Background(), context.Background(), "test")
	require.NoError(t, err)
	p.settleWebhooks(t)
	require.Equal(t, models.EmailActionRequired, emailsOf(t, p.st)[0].Kind)
	link := p.link(t)

	do(t, ctx, chromedp.Navigate(link))
	require.Equal(t, "2.750 KWD", strings.TrimSpace(get(t, ctx, chromedp.Text(chromedp.CSS("#amount")))))
	screenshot(t, ctx, "1-pay-page")
	do(t, ctx, chromedp.Click(chromedp.CSS("#pay")), chromedp.WaitVisible(chromedp.CSS("#pass")))
	require.Contains(t, get(t, ctx, chromedp.Text(chromedp.CSS("#amount"))), "2.750 KWD")
	screenshot(t, ctx, "2-challenge")
	do(t, ctx, chromedp.Click(chromedp.CSS("#pass")), chromedp.WaitVisible(chromedp.CSS("#title")))
	url := get(t, ctx, chromedp.Location())
	require.True(t, strings.HasPrefix(url, p.base+"/return/"), url)
	p.settleWebhooks(t)
	// The return page shows what the database says, now that the webhook came.
	do(t, ctx, chromedp.Navigate(url))
	require.Equal(t, "Payment received", get(t, ctx, chromedp.Text(chromedp.CSS("#title"))))
	screenshot(t, ctx, "3-return")
	require.Equal(t, models.InvoicePaid, p.invoice(t).Status)
}

// The customer replaces a hard-declined card on the gateway's hosted page, and the
// immediate retry with the new card succeeds, on each provider (WooshPay's
// setup-mode checkout session, Checkout.com's hosted payments page).
func TestBrowserReplacesHardDeclinedCard(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{}, func(t *testing.T, o daemontest.Options) {
		browserReplacesHardDeclinedCard(t, o.Provider)
	})
}

func browserReplacesHardDeclinedCard(t *testing.T, provider string) {
	ctx := browser(t)
	st := storetest.SQLite(t)
	start := time.Now().UTC().Truncate(time.Second)
	p := newPayStackOn(t, st, provider, start)
	seedCard(t, p.stack, "4000000000009979", start) // stolen_card: hard
	_, err := p.biller.Pass(context.Background(), context.Background(), "test")
	require.NoError(t, err)
	require.Equal(t, models.EmailCardUpdate, emailsOf(t, p.st)[0].Kind)
	link := p.link(t)

	do(t, ctx, chromedp.Navigate(link), chromedp.Click(chromedp.CSS("#update-card")), chromedp.WaitVisible(chromedp.CSS("#card_number")))
	screenshot(t, ctx, "4-hosted-card-page")
	do(t, ctx,
		chromedp.SendKeys(chromedp.CSS("#card_number"), "4242424242424242"),
		chromedp.SetValue(chromedp.CSS("#exp_month"), "12"),
		chromedp.SetValue(chromedp.CSS("#exp_year"), "2031"),
		chromedp.SendKeys(chromedp.CSS("#cvc"), "123"),
		chromedp.Click(chromedp.CSS("#save")),
		chromedp.WaitVisible(chromedp.CSS("#title")),
	)
	require.Equal(t, "Card saved", get(t, ctx, chromedp.Text(chromedp.CSS("#title"))))
	p.settleWebhooks(t)
	// setup_intent.succeeded scheduled the retry for now; the daemon's pass makes it.
	run, err := p.biller.Pass(context.Background(), context.Background(), "retry-now")
	require.NoError(t, err)
	require.Equal(t, 1, run.Succeeded)
	do(t, ctx, chromedp.Reload())
	require.Equal(t, "Payment received", get(t, ctx, chromedp.Text(chromedp.CSS("#title"))))
	screenshot(t, ctx, "5-paid")
	require.Equal(t, models.InvoicePaid, p.invoice(t).Status)
}

// tab opens a second tab of the browser (its own page, same cookies).
func tab(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	c, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(c, chromedp.Navigate("about:blank")), "open a tab")
	return c
}

// succeededFor counts the simulator's succeeded charges for an invoice.
func succeededFor(p *payStack, publicID string) int {
	n := 0
	for _, e := range p.gw.Ledger() {
		if e.MerchantOrderID == publicID && e.Status == "succeeded" {
			n++
		}
	}
	return n
}

// Two tabs on 3-D Secure links of one invoice both press Pay and both pass the
// bank's challenge: the second press went back to the first one's challenge,
// so the gateway's ledger has one succeeded charge for the invoice. Once with
// one link open twice, once with the first email's link beside a reminder's.
func TestBrowserTwoTabsPassTheChallenge(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reminder bool
	}{{"one link in two tabs", false}, {"the first email's link and a reminder's", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := browser(t)
			st := storetest.SQLite(t)
			start := time.Now().UTC().Truncate(time.Second)
			p := newPayStack(t, st, start)
			seedCard(t, p.stack, "4462030000000000", start)
			_, err := p.biller.Pass(context.Background(), context.Background(), "test")
			require.NoError(t, err)
			p.settleWebhooks(t)
			first := p.link(t)
			second := first
			if tc.reminder {
				p.b.Run(t, 25*time.Hour, time.Hour)
				links := p.b.PayLinks(t)
				require.Len(t, links, 2, "the reminder carries a link of its own")
				second = links[1]
			}
			inv := p.invoice(t)
			one, two := ctx, tab(t, ctx)
			do(t, one, chromedp.Navigate(first), chromedp.Click(chromedp.CSS("#pay")), chromedp.WaitVisible(chromedp.CSS("#pass")))
			do(t, two, chromedp.Navigate(second), chromedp.Click(chromedp.CSS("#pay")), chromedp.WaitVisible(chromedp.CSS("#pass")))
			require.Equal(t, get(t, one, chromedp.Location()), get(t, two, chromedp.Location()), "both tabs are on the same challenge")
			do(t, one, chromedp.Click(chromedp.CSS("#pass")), chromedp.WaitVisible(chromedp.CSS("#title")))
			do(t, two, chromedp.Click(chromedp.CSS("#pass")), chromedp.WaitReady(chromedp.CSS("body")))
			screenshot(t, two, "6-second-tab")
			p.settleWebhooks(t)
			require.Equal(t, models.InvoicePaid, p.invoice(t).Status)
			require.Equal(t, 1, succeededFor(p, inv.PublicID), "one succeeded charge in the gateway's ledger")
			do(t, one, chromedp.Reload())
			require.Equal(t, "Payment received", get(t, one, chromedp.Text(chromedp.CSS("#title"))))
		})
	}
}

// After a link's Pay, the off-session intent's own challenge URL (begun by
// the billing pass) is opened and passed in another tab: that intent was
// canceled before the on-session one started, so it takes nothing; the
// customer passes the link's challenge and is charged once.
func TestBrowserOffSessionChallengeAfterPay(t *testing.T) {
	ctx := browser(t)
	st := storetest.SQLite(t)
	start := time.Now().UTC().Truncate(time.Second)
	p := newPayStack(t, st, start)
	seedCard(t, p.stack, "4462030000000000", start)
	_, err := p.biller.Pass(context.Background(), context.Background(), "test")
	require.NoError(t, err)
	p.settleWebhooks(t)
	link := p.link(t)
	offSession := attemptsOf(t, p.st)[0]
	require.True(t, offSession.OffSession)
	require.Contains(t, offSession.ActionURL, "/3ds/")
	inv := p.invoice(t)

	one, two := ctx, tab(t, ctx)
	do(t, one, chromedp.Navigate(link), chromedp.Click(chromedp.CSS("#pay")), chromedp.WaitVisible(chromedp.CSS("#pass")))
	require.NotEqual(t, offSession.ActionURL, get(t, one, chromedp.Location()))
	do(t, two, chromedp.Navigate(offSession.ActionURL), chromedp.WaitReady(chromedp.CSS("body")))
	require.Contains(t, get(t, two, chromedp.Text(chromedp.CSS("body"))), "Nothing to authenticate", "the off-session intent was canceled")
	screenshot(t, two, "7-off-session-challenge")
	do(t, one, chromedp.Click(chromedp.CSS("#pass")), chromedp.WaitVisible(chromedp.CSS("#title")))
	p.settleWebhooks(t)
	require.Equal(t, models.InvoicePaid, p.invoice(t).Status)
	require.Equal(t, 1, succeededFor(p, inv.PublicID))
}
