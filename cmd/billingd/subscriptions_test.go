package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store/storetest"
)

// subsConfigFile writes the bundle's config as a user's config.yaml: the
// CLI then acts on the bundle's database and simulator beside its daemon.
func subsConfigFile(t *testing.T, b *daemontest.Bundle) string {
	t.Helper()
	c := b.Config
	return writeFile(t, t.TempDir(), "config.yaml", fmt.Sprintf(`
database: { driver: %s, dsn: %q }
gateway:  { provider: %s, base_url: %q, secret_key: %q, webhook_secret: %q, timeout: 5s }
http:     { public_base_url: %q }
`, c.Database.Driver, c.Database.DSN, c.Gateway.Provider, c.Gateway.BaseURL, daemontest.SecretKey, daemontest.WebhookSecret, c.HTTP.PublicBaseURL))
}

func subsRow(t *testing.T, b *daemontest.Bundle, ref string) models.Subscription {
	t.Helper()
	var s models.Subscription
	require.NoError(t, b.Store.DB().Where("reference = ?", ref).First(&s).Error)
	return s
}

func subsInvoiceRows(t *testing.T, b *daemontest.Bundle, ref string) []models.Invoice {
	t.Helper()
	var invs []models.Invoice
	require.NoError(t, b.Store.DB().Where("subscription_id = ?", subsRow(t, b, ref).ID).Order("period_index").Find(&invs).Error)
	return invs
}

func subsAuditRows(t *testing.T, b *daemontest.Bundle, action string) []models.AuditEntry {
	t.Helper()
	var rows []models.AuditEntry
	require.NoError(t, b.Store.DB().Where("action = ?", action).Order("id").Find(&rows).Error)
	return rows
}

// Through the CLI: a subscription in dunning canceled now → its case is
// stopped, its pay link answers 410, no invoice follows; list and show tell
// it; bad input exits 2 naming the flag or field.
func TestSubscriptionsCancelThroughTheCLI(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		cfg := subsConfigFile(t, b)
		cus, pm := b.SaveCard(t, "4000000000009995") // soft decline: dunning
		b.Seed(t, storetest.Subscription{Reference: "acme-1", Customer: cus, PaymentMethod: pm, Amount: 1250, Currency: "USD", Anchor: b.Clock.Now()})
		b.Run(t, time.Minute, time.Minute)
		links := b.PayLinks(t)
		require.NotEmpty(t, links)

		code, out, errOut := runMain(t, nil, "subscriptions", "list", "-c", cfg)
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "acme-1")
		require.Contains(t, out, "12.50 USD")
		require.Contains(t, out, "past_due")

		code, out, errOut = runMain(t, nil, "subscriptions", "cancel", "acme-1", "-c", cfg)
		require.Equal(t, exitUsage, code, "a cancel needs a reason: %s", out)
		require.Contains(t, errOut, "reason")

		code, _, errOut = runMain(t, nil, "subscriptions", "cancel", "nope", "--reason", "x", "-c", cfg)
		require.Equal(t, exitRuntime, code)
		require.Contains(t, errOut, "not found")

		code, out, errOut = runMain(t, nil, "subscriptions", "cancel", "acme-1", "--reason", "customer asked", "--actor", "ada", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		require.Contains(t, out, "status canceled")
		require.Contains(t, out, "voided")
		require.Contains(t, out, "dunning case")

		var c models.DunningCase
		require.NoError(t, b.Store.DB().First(&c).Error)
		require.Equal(t, models.CaseStopped, c.Status)
		res, err := http.Get(links[0])
		require.NoError(t, err)
		_ = res.Body.Close()
		require.Equal(t, http.StatusGone, res.StatusCode)
		rows := subsAuditRows(t, b, ops.ActionSubscriptionCancel)
		require.Len(t, rows, 1)
		require.Equal(t, "ada", rows[0].Actor)
		require.Equal(t, "customer asked", rows[0].Reason)
		require.NotEmpty(t, rows[0].BeforeJSON)
		require.NotEmpty(t, rows[0].AfterJSON)

		b.Run(t, 40*24*time.Hour, 12*time.Hour)
		require.Len(t, subsInvoiceRows(t, b, "acme-1"), 1, "no invoice after the cancel")

		code, out, errOut = runMain(t, nil, "subscriptions", "list", "--status", "canceled", "--json", "-c", cfg)
		require.Equal(t, exitOK, code, errOut)
		var listed []ops.Subscription
		require.NoError(t, json.Unmarshal([]byte(out), &listed))
		require.Len(t, listed, 1)
		require.Equal(t, int64(1250), listed[0].Price.Amount)
		code, out, errOut = runMain(t, nil, "subscriptions", "list", "--csv", "-c", cfg)
		require.Equal(t, exitOK, code, errOut)
		require.True(t, strings.HasPrefix(out, "reference,status,"), out)
		code, _, errOut = runMain(t, nil, "subscriptions", "list", "--status", "bogus", "-c", cfg)
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "status")

		code, out, errOut = runMain(t, nil, "subscriptions", "show", "acme-1", "-c", cfg)
		require.Equal(t, exitOK, code, errOut)
		for _, section := range []string{"Subscription acme-1", "Invoices", "Attempts", "insufficient_funds", "Dunning cases", "stopped", "Emails", "Links", "revoked", "Audit log", "subscription.cancel"} {
			require.Contains(t, out, section)
		}
		code, out, errOut = runMain(t, nil, "subscriptions", "show", "acme-1", "--json", "-c", cfg)
		require.Equal(t, exitOK, code, errOut)
		var story ops.SubscriptionStory
		require.NoError(t, json.Unmarshal([]byte(out), &story))
		require.Equal(t, "canceled", story.Subscription.Status)
		require.Len(t, story.Audit, 1)
		require.NotContains(t, out, "token")

		code, _, errOut = runMain(t, nil, "subscriptions", "resume", "acme-1", "-c", cfg)
		require.Equal(t, exitRuntime, code, "resuming a canceled subscription is a conflict")
		require.Contains(t, errOut, "conflict")
	})
}

// Through the CLI (which acts on the real clock): a subscription paused
// earlier and resumed now skips the periods that started while paused and is
// billed next on its anchor day at the amount updated meanwhile; one paused
// now is billed no further; a card of another customer is refused naming
// payment_method.
func TestSubscriptionsPauseResumeUpdateThroughTheCLI(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	start := now.Add(-65 * 24 * time.Hour) // periods 1 and 2 start before now, period 3 after
	daemontest.Each(t, daemontest.Options{Start: start}, func(t *testing.T, b *daemontest.Bundle) {
		cfg := subsConfigFile(t, b)
		cusP, pmP := b.SaveCard(t, "4242424242424242")
		cusQ, pmQ := b.SaveCard(t, "4242424242424242")
		b.Seed(t, storetest.Subscription{Reference: "sub-p", Customer: cusP, PaymentMethod: pmP, Amount: 1000, Currency: "USD", Anchor: start},
			storetest.Subscription{Reference: "sub-q", Customer: cusQ, PaymentMethod: pmQ, Amount: 1000, Currency: "USD", Anchor: start})
		b.Run(t, time.Second, time.Second)
		b.Clock.Advance(10 * 24 * time.Hour)
		_, err := b.Operator(t).PauseSubscription(t.Context(), ops.Actor{Name: "ada"}, "sub-p", "seasonal break")
		require.NoError(t, err)
		b.Run(t, 54*24*time.Hour, 24*time.Hour) // to now - 1 day: past periods 1 and 2
		require.Len(t, subsInvoiceRows(t, b, "sub-p"), 1, "nothing invoiced while paused")
		require.Len(t, subsInvoiceRows(t, b, "sub-q"), 3)

		code, out, errOut := runMain(t, nil, "subscriptions", "update", "sub-p", "--amount", "2500", "--reason", "new plan", "--actor", "ada", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		require.Contains(t, out, "10.00 USD -> 25.00 USD")
		cardBefore := subsRow(t, b, "sub-p").PaymentMethodID
		code, _, errOut = runMain(t, nil, "subscriptions", "update", "sub-p", "--payment-method", pmQ, "-c", cfg)
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "payment_method")
		require.Equal(t, cardBefore, subsRow(t, b, "sub-p").PaymentMethodID, "nothing changed")
		code, _, errOut = runMain(t, nil, "subscriptions", "update", "sub-p", "--amount", "ten", "-c", cfg)
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "--amount")

		code, out, errOut = runMain(t, nil, "subscriptions", "resume", "sub-p", "--actor", "ada", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		require.Contains(t, out, "status active")
		require.Contains(t, out, "2 period(s) that started while paused")
		next := start.AddDate(0, 3, 0)
		require.True(t, subsRow(t, b, "sub-p").NextBillingAt.Equal(next))

		code, out, errOut = runMain(t, nil, "subscriptions", "pause", "sub-q", "--reason", "asked by phone", "--actor", "ada", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		require.Contains(t, out, "status paused")

		b.Clock.Set(next.Add(-time.Hour))
		b.Run(t, 2*time.Hour, time.Hour)
		invs := subsInvoiceRows(t, b, "sub-p")
		require.Len(t, invs, 2)
		require.Equal(t, 3, invs[1].PeriodIndex)
		require.True(t, invs[1].PeriodStart.Equal(next), "on its anchor day: %s", invs[1].PeriodStart)
		require.Equal(t, int64(2500), invs[1].Amount)
		require.Equal(t, models.InvoicePaid, invs[1].Status)
		require.Len(t, subsInvoiceRows(t, b, "sub-q"), 3, "a subscription paused through the CLI is billed no further")
		for _, action := range []string{ops.ActionSubscriptionPause, ops.ActionSubscriptionResume, ops.ActionSubscriptionUpdate} {
			require.NotEmpty(t, subsAuditRows(t, b, action), action)
		}
		require.Len(t, subsAuditRows(t, b, ops.ActionSubscriptionUpdate), 1, "refused updates write no audit row")
	})
}
