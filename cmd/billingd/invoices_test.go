package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store/storetest"
)

// bundleConfig writes a config file for the CLI that points at the bundle's
// database and simulator, as an operator's /etc/billingd/config.yaml would.
func bundleConfig(t *testing.T, b *daemontest.Bundle) string {
	t.Helper()
	c := b.Config
	body := fmt.Sprintf(`
database: { driver: %q, dsn: %q }
gateway:  { provider: %q, base_url: %q, secret_key: %q, webhook_secret: %q, timeout: 5s }
retry:    { initial_interval: 10ms, max_interval: 200ms, max_elapsed_time: 5s }
http:     { public_base_url: %q }
`, c.Database.Driver, c.Database.DSN, c.Gateway.Provider, c.Gateway.BaseURL, daemontest.SecretKey, daemontest.WebhookSecret, c.HTTP.PublicBaseURL)
	return writeFile(t, t.TempDir(), "config.yaml", body)
}

// cliCharged seeds a 10.00 USD subscription on a card and runs the daemon
// until its first invoice had an attempt.
func cliCharged(t *testing.T, b *daemontest.Bundle, ref, number string) models.Invoice {
	t.Helper()
	cus, pm := b.SaveCard(t, number)
	b.Seed(t, storetest.Subscription{Reference: ref, Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
	for i := 0; i < 10; i++ {
		b.Run(t, time.Second, time.Second)
		var inv models.Invoice
		require.NoError(t, b.Store.DB().Raw(`SELECT i.* FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id WHERE s.reference = ?`, ref).Scan(&inv).Error)
		if inv.ID != 0 && inv.AttemptCount > 0 {
			return inv
		}
		b.Clock.Advance(time.Minute)
	}
	t.Fatalf("subscription %s was not charged", ref)
	return models.Invoice{}
}

func auditCount(t *testing.T, b *daemontest.Bundle, action string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.Store.DB().Model(&models.AuditEntry{}).Where("action = ?", action).Count(&n).Error)
	return n
}

// The invoice, attempt and dunning commands against a live system: void
// (case stopped, link 410), partial then full refund (ledger and refunds
// agree, a third refused with exit 2), resolve of a needs_review attempt the
// gateway says succeeded (paid once), and the listings in every format.
func TestInvoiceCommandsEndToEnd(t *testing.T) {
	start := time.Now().UTC().Truncate(time.Second)
	daemontest.Each(t, daemontest.Options{Start: start}, func(t *testing.T, b *daemontest.Bundle) {
		cfg := bundleConfig(t, b)
		run := func(args ...string) (int, string, string) {
			return runMain(t, nil, append(args, "-c", cfg)...)
		}

		// Void an invoice in dunning.
		open := cliCharged(t, b, "cli-void", "4000000000009995")
		links := b.PayLinks(t)
		require.NotEmpty(t, links)
		code, out, errOut := run("invoices", "list", "--status", "open", "--json")
		require.Equal(t, exitOK, code, errOut)
		var listed []ops.Invoice
		require.NoError(t, json.Unmarshal([]byte(out), &listed))
		require.Len(t, listed, 1)
		require.Equal(t, open.PublicID, listed[0].Number)
		require.Equal(t, "10.00 USD", listed[0].Total.Display)
		code, out, _ = run("invoices", "show", open.PublicID)
		require.Equal(t, exitOK, code)
		require.Contains(t, out, "insufficient_funds")
		require.Contains(t, out, "Dunning steps:")
		code, out, _ = run("dunning", "list", "--csv")
		require.Equal(t, exitOK, code)
		require.Contains(t, out, "id,invoice,subscription,reason,status")
		require.Contains(t, out, open.PublicID)

		code, _, errOut = run("invoices", "void", open.PublicID)
		require.Equal(t, exitUsage, code, "a void needs a reason")
		require.Contains(t, errOut, "reason")
		code, out, errOut = run("invoices", "void", open.PublicID, "--reason", "billed in error", "--actor", "alice")
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "voided")
		res, err := http.Get(links[0])
		require.NoError(t, err)
		_ = res.Body.Close()
		require.Equal(t, http.StatusGone, res.StatusCode)
		var c models.DunningCase
		require.NoError(t, b.Store.DB().Where("invoice_id = ?", open.ID).First(&c).Error)
		require.Equal(t, models.CaseStopped, c.Status)
		code, out, _ = run("dunning", "show", strconv.FormatInt(c.ID, 10))
		require.Equal(t, exitOK, code)
		require.Contains(t, out, "stopped")
		require.Contains(t, out, "alice")
		require.EqualValues(t, 1, auditCount(t, b, ops.ActionInvoiceVoid))

		// Partial, then full, then one too many.
		paid := cliCharged(t, b, "cli-paid", "4242424242424242")
		require.Equal(t, models.InvoicePaid, paid.Status)
		code, out, errOut = run("invoices", "refund", paid.PublicID, "--amount", "400", "--reason", "partial credit")
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "4.00 USD, succeeded")
		code, out, errOut = run("invoices", "refund", paid.PublicID, "--reason", "the rest")
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "6.00 USD, succeeded")
		code, _, errOut = run("invoices", "refund", paid.PublicID, "--reason", "more")
		require.Equal(t, exitRuntime, code, "the invoice's state refuses it")
		require.Contains(t, errOut, "nothing is left to refund")
		code, _, errOut = run("invoices", "refund", paid.PublicID, "--amount", "0", "--reason", "zero")
		require.Equal(t, exitUsage, code, "an explicit 0 is never a full refund")
		require.Contains(t, errOut, "--amount 0")
		var refunded, gateway int64
		var rows []models.Refund
		require.NoError(t, b.Store.DB().Find(&rows).Error)
		for _, rf := range rows {
			require.Equal(t, models.RefundSucceeded, rf.Status)
			refunded += rf.Amount
		}
		for _, e := range b.Sim.Ledger() {
			if e.MerchantOrderID == paid.PublicID {
				gateway += e.AmountRefunded
			}
		}
		require.EqualValues(t, 1000, refunded)
		require.Equal(t, refunded, gateway)
		require.EqualValues(t, 2, auditCount(t, b, ops.ActionInvoiceRefund))
		code, _, _ = run("invoices", "retry", paid.PublicID)
		require.Equal(t, exitRuntime, code, "a paid invoice is not retried")

		// Resolve an attempt flagged needs_review that the gateway paid.
		review := cliCharged(t, b, "cli-review", "4242424242424242")
		var a models.ChargeAttempt
		require.NoError(t, b.Store.DB().Where("invoice_id = ?", review.ID).First(&a).Error)
		require.NoError(t, b.Store.DB().Exec(`UPDATE charge_attempts SET status = 'needs_review' WHERE id = ?`, a.ID).Error)
		require.NoError(t, b.Store.DB().Exec(`UPDATE invoices SET status = 'open', paid_at = NULL, payment_intent_id = '' WHERE id = ?`, review.ID).Error)
		code, out, _ = run("attempts", "list", "--status", "needs_review")
		require.Equal(t, exitOK, code)
		require.Contains(t, out, review.PublicID)
		code, out, errOut = run("attempts", "resolve", strconv.FormatInt(a.ID, 10), "--reason", "checked")
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "succeeded")
		var after models.Invoice
		require.NoError(t, b.Store.DB().First(&after, review.ID).Error)
		require.Equal(t, models.InvoicePaid, after.Status)
		succeeded := 0
		for _, e := range b.Sim.Ledger() {
			if e.MerchantOrderID == review.PublicID && e.Status == "succeeded" {
				succeeded++
			}
		}
		require.Equal(t, 1, succeeded)
		require.EqualValues(t, 1, auditCount(t, b, ops.ActionAttemptResolve))

		code, _, errOut = run("attempts", "list", "--status", "bogus")
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "status")
		code, _, _ = run("invoices", "show", "no-such-invoice")
		require.Equal(t, exitRuntime, code)
	})
}
