package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/gateway/checkout"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// TestBlackBoxCheckout runs the built binary against Checkout.com the way an
// operator does: `billingd sim --provider checkout` and `billingd run` with
// gateway.provider checkout as child processes, subscriptions on stored cards
// (src_…) with their previous_payment_id loaded by `billingd subscriptions
// import`. A success and a webhook-settled processing charge end paid, a soft
// decline waits in dunning, and the gateway's webhooks arrive at
// /webhooks/checkout. A CSV with a WooshPay card id, or without
// previous_payment_id, is refused with exit 2 naming the line and the column.
func TestBlackBoxCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the billingd binary and runs it and the simulator as child processes")
	}
	ctx := context.Background()
	bin := buildBillingd(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	const key, whsec = "sk_sbox_blackbox", "whsec_blackbox_checkout"

	simLog := filepath.Join(dir, "sim.log")
	simProc := bbStart(t, bin, simLog, "sim", "--provider", "checkout", "--listen", "127.0.0.1:0", "--secret-key", key, "--seed", "20261202",
		"--processing-delay", "500ms", "--webhook-url", "http://"+listen+"/webhooks/checkout", "--webhook-secret", whsec,
		"--webhook-retry", "200ms,500ms,1s,2s,3s,5s,5s")
	simURL := bbSimURL(t, simProc, simLog)
	require.Contains(t, readFile(simLog), "Checkout.com simulator listening on ")
	// No webhooks while customers save their cards: billingd is not up yet.
	bbControl(t, http.MethodPut, simURL+"/_sim/webhooks", `{"enabled":false}`)

	cards := []struct {
		ref, number string
		invoice     models.InvoiceStatus
		sub         models.SubscriptionStatus
		attempt     models.AttemptStatus
	}{
		{"cko-ok", "4242424242424242", models.InvoicePaid, models.SubscriptionActive, models.AttemptSucceeded},
		{"cko-processing", "4000000000000259", models.InvoicePaid, models.SubscriptionActive, models.AttemptSucceeded},
		{"cko-soft", "4000000000009995", models.InvoiceOpen, models.SubscriptionPastDue, models.AttemptDeclined},
	}
	numbers := make([]string, len(cards))
	for i, c := range cards {
		numbers[i] = c.number
	}
	saved := saveTestCards(t, config.ProviderCheckout, simURL, key, "cko", numbers)
	anchor := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	header := "reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor,previous_payment_id\n"
	row := func(i int, pm, previous string) string {
		return fmt.Sprintf("%s,cko%d@example.com,%s,%s,%d,EUR,month,1,%s,%s\n", cards[i].ref, i, saved[i].Customer, pm, 1000+i, anchor.Format(time.RFC3339), previous)
	}
	var good strings.Builder
	good.WriteString(header)
	for i, s := range saved {
		require.Regexp(t, `^src_`, s.PaymentMethod)
		require.Regexp(t, `^pay_`, s.PreviousPaymentID)
		good.WriteString(row(i, s.PaymentMethod, s.PreviousPaymentID))
	}

	dbPath := filepath.Join(dir, "billingd.db")
	cfgPath := writeFile(t, dir, "config.yaml", fmt.Sprintf(`
database:  { driver: sqlite, dsn: %q }
gateway:   { provider: checkout, base_url: %q, secret_key: %s, webhook_secret: %s, timeout: 5s, concurrency: 4, rate_limit: 100 }
schedule:  { billing: "@every 1s", drain_timeout: 10s }
retry:     { initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 5s }
dunning:   { retry_schedule: [1h], final_action: cancel, wake_every: 1s }
reconcile: { every: 1s, after: 30s, backoff: [10s] }
http:      { listen: %q, public_base_url: "http://%s" }
log:       { level: info }
`, dbPath, simURL, key, whsec, listen, listen))

	t.Run("bad CSVs exit 2 naming line and column", func(t *testing.T) {
		for _, tc := range []struct {
			name, body, want string
		}{
			{"WooshPay card id", header + row(0, "pm_1234", saved[0].PreviousPaymentID), "line 2: payment_method"},
			{"previous_payment_id empty", header + row(0, saved[0].PaymentMethod, ""), "line 2: previous_payment_id"},
			{"no previous_payment_id column", strings.Replace(header, ",previous_payment_id", "", 1) +
				strings.TrimSuffix(row(0, saved[0].PaymentMethod, ""), ",\n") + "\n", "line 2: previous_payment_id"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				path := writeFile(t, t.TempDir(), "subscriptions.csv", tc.body)
				out, err := exec.Command(bin, "subscriptions", "import", path, "-c", cfgPath).CombinedOutput()
				var exit *exec.ExitError
				require.True(t, errors.As(err, &exit), "import must fail: %v\n%s", err, out)
				require.Equal(t, exitUsage, exit.ExitCode(), "%s", out)
				require.Contains(t, string(out), tc.want)
			})
		}
		_, err := os.Stat(dbPath)
		if err == nil {
			st, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: dbPath})
			require.NoError(t, err)
			var n int64
			require.NoError(t, st.DB().Model(&models.Subscription{}).Count(&n).Error)
			require.NoError(t, st.Close())
			require.Zero(t, n, "a refused CSV imports nothing")
		}
	})

	csvPath := writeFile(t, dir, "subscriptions.csv", good.String())
	out, err := exec.Command(bin, "subscriptions", "import", csvPath, "-c", cfgPath).CombinedOutput()
	require.NoError(t, err, "import: %s", out)
	require.Contains(t, string(out), fmt.Sprintf("imported %d subscription(s)", len(cards)))

	runLog := filepath.Join(dir, "billingd.log")
	daemonProc := bbStart(t, bin, runLog, "run", "-c", cfgPath)
	waitHTTP(t, "http://"+listen+"/healthz", daemonProc, runLog)
	bbControl(t, http.MethodPut, simURL+"/_sim/webhooks", `{"enabled":true}`)

	ro, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: dbPath})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ro.Close() })
	settled := func() string {
		for _, c := range cards {
			s := bbRead(t, ro, c.ref)
			if len(s.invoices) != 1 || s.invoices[0].Status != c.invoice || s.sub.Status != c.sub ||
				len(s.attempts) != 1 || s.attempts[0].Status != c.attempt {
				return s.String()
			}
		}
		return ""
	}
	deadline := time.Now().Add(40 * time.Second)
	for why := settled(); why != ""; why = settled() {
		if time.Now().After(deadline) {
			t.Fatalf("not settled after 40 s:\n%s\n--- billingd log:\n%s\n--- sim log:\n%s", why, readFile(runLog), readFile(simLog))
		}
		time.Sleep(200 * time.Millisecond)
	}

	soft := bbRead(t, ro, "cko-soft")
	require.Equal(t, "insufficient_funds", soft.attempts[0].DeclineCode)
	require.Len(t, soft.cases, 1)
	require.Equal(t, models.CaseOpen, soft.cases[0].Status, "the declined invoice waits in dunning for its retry")
	require.Equal(t, models.ReasonSoftDecline, soft.cases[0].Reason)

	// The charges name the stored card and the payment that stored it, and
	// the ledger agrees with the books.
	ledger := bbLedger(t, simURL)
	for i, c := range cards {
		s := bbRead(t, ro, c.ref)
		a := s.attempts[0]
		require.Equal(t, saved[i].PaymentMethod, a.GatewayPM, c.ref)
		require.Equal(t, saved[i].PreviousPaymentID, a.PreviousPaymentID, c.ref)
		succeeded := 0
		for _, e := range ledger {
			if e.MerchantOrderID == s.invoices[0].PublicID && e.Status == "succeeded" {
				succeeded++
				require.Equal(t, s.invoices[0].Amount, e.Amount)
				require.Equal(t, "EUR", e.Currency)
			}
		}
		require.Equal(t, map[bool]int{true: 1, false: 0}[c.invoice == models.InvoicePaid], succeeded, "%s: succeeded payments for its invoice", c.ref)
	}

	// Webhooks arrived at /webhooks/checkout, signed, in Checkout.com's
	// envelope (its event names), and were stored under billingd's own.
	var events []models.WebhookEvent
	require.NoError(t, ro.DB().Find(&events).Error)
	types, wire := map[string]int{}, map[string]int{}
	for _, e := range events {
		types[e.Type]++
		for _, name := range []string{"payment_captured", "payment_declined", "payment_pending"} {
			if strings.Contains(e.Payload, `"type":"`+name+`"`) {
				wire[name]++
			}
		}
	}
	require.Positive(t, types["payment_intent.succeeded"], "webhooks received: %v", types)
	require.Positive(t, types["payment_intent.payment_failed"], "webhooks received: %v", types)
	require.Positive(t, wire["payment_captured"], "Checkout.com events received: %v", wire)
	require.Positive(t, wire["payment_declined"], "Checkout.com events received: %v", wire)
	forged := []byte(`{"id":"evt_forged","type":"payment_captured","data":{}}`)
	req, err := http.NewRequest(http.MethodPost, "http://"+listen+"/webhooks/checkout", bytes.NewReader(forged))
	require.NoError(t, err)
	req.Header.Set(checkout.SignatureHeader, checkout.Sign("whsec_someone_else", forged))
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode, "an event signed with another key is refused")

	require.NoError(t, daemonProc.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-daemonProc.done:
		require.NoError(t, daemonProc.err, "SIGTERM ends the daemon with exit 0")
	case <-time.After(20 * time.Second):
		t.Fatal("billingd did not stop on SIGTERM")
	}
}
