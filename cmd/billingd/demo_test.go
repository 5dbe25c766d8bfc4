package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

// TestDemoOnePass runs the plain demo (one pass on the wall clock) against
// each provider's simulator and checks that every card ended as the test-card
// table says, and that the ledger the demo saved in DIR agrees with the
// database it left there: one succeeded payment per paid invoice, for the
// invoice's amount, and the same paid totals per currency as the SQL the demo
// prints.
func TestDemoOnePass(t *testing.T) {
	for _, tc := range []struct {
		provider   string
		cardID     string
		previousID bool
	}{
		{config.ProviderWooshPay, `^pm_`, false},
		{config.ProviderCheckout, `^src_`, true},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			code, out, errOut := runMain(t, nil, "demo", "--provider", tc.provider, "--dir", dir, "--processing-delay", "50ms")
			require.Equal(t, exitOK, code, "stderr: %s\nstdout: %s", errOut, out)
			require.Contains(t, out, providerName(tc.provider)+" simulator on ")
			require.Contains(t, out, "(webhooks to /webhooks/"+tc.provider+")")
			require.Contains(t, out, "AS EXPECTED")
			require.NotContains(t, out, "NO (expected")
			require.Contains(t, out, "4. billing run 1 finished")
			for i, c := range demoCards {
				require.Regexp(t, `(?m)^`+regexp.QuoteMeta(spaced(c.Number))+`\s.*\syes$`, out, "row %d", i)
			}
			require.FileExists(t, filepath.Join(dir, "billingd.db"))
			emls, err := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
			require.NoError(t, err)
			require.NotEmpty(t, emls)

			// The subscriptions the demo imported name the provider's card ids.
			subs := readCSV(t, filepath.Join(dir, "subscriptions.csv"))
			require.Len(t, subs, len(demoCards)+1)
			require.Equal(t, tc.previousID, slices.Contains(subs[0], "previous_payment_id"), "header %v", subs[0])
			for _, row := range subs[1:] {
				require.Regexp(t, tc.cardID, row[3])
				if tc.previousID {
					require.Regexp(t, `^pay_`, row[len(row)-1])
				}
			}

			ledger := checkSavedLedger(t, dir, out)
			require.Len(t, ledger, len(demoCards), "one payment per card; card verifications move no money and are not listed")
		})
	}
}

// checkSavedLedger reads the ledger a demo saved in dir (ledger.json and
// ledger.csv, which must say the same) and checks it against the database
// there: one succeeded payment per paid invoice, for its amount and currency,
// none for an unpaid one, and the paid totals per currency of the SQL the demo
// prints (in out) equal the ledger's succeeded payments.
func checkSavedLedger(t *testing.T, dir, out string) []sim.LedgerEntry {
	t.Helper()
	var ledger []sim.LedgerEntry
	raw, err := os.ReadFile(filepath.Join(dir, "ledger.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &ledger))
	ledgerCSV := readCSV(t, filepath.Join(dir, "ledger.csv"))
	require.Equal(t, ledgerColumns, ledgerCSV[0])
	require.Len(t, ledgerCSV, len(ledger)+1)

	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(dir, "billingd.db")
	st, err := openStore(context.Background(), cfg, false)
	require.NoError(t, err)
	defer st.Close()

	type total struct {
		Currency string
		N        int64
		Sum      int64
	}
	printed := regexp.MustCompile(`(?m)^  sqlite3 ` + regexp.QuoteMeta(cfg.Database.DSN) + ` "(SELECT currency[^"]*)"$`).FindStringSubmatch(out)
	require.NotNil(t, printed, "the demo prints the SQL that sums paid invoices per currency:\n%s", out)
	rows, err := st.DB().Raw(printed[1]).Rows()
	require.NoError(t, err)
	var books []total
	for rows.Next() {
		var b total
		require.NoError(t, rows.Scan(&b.Currency, &b.N, &b.Sum))
		books = append(books, b)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.NotEmpty(t, books)
	gateway := map[string]total{}
	succeeded := map[string]sim.LedgerEntry{}
	for i, e := range ledger {
		require.Equal(t, ledgerCSV[i+1][0], e.MerchantOrderID, "ledger.csv row %d", i+1)
		require.Equal(t, e.Status, ledgerCSV[i+1][2], "ledger.csv row %d", i+1)
		require.Equal(t, strconv.FormatInt(e.Amount, 10), ledgerCSV[i+1][5], "ledger.csv row %d", i+1)
		if e.Status != "succeeded" {
			continue
		}
		_, dup := succeeded[e.MerchantOrderID]
		require.False(t, dup, "two succeeded payments for %s", e.MerchantOrderID)
		succeeded[e.MerchantOrderID] = e
		g := gateway[e.Currency]
		g.Currency, g.N, g.Sum = e.Currency, g.N+1, g.Sum+e.Amount
		gateway[e.Currency] = g
	}
	require.Len(t, gateway, len(books))
	for _, b := range books {
		require.Equal(t, b, gateway[b.Currency], "paid %s: database and ledger", b.Currency)
	}
	outcomes, err := st.InvoiceOutcomes(context.Background())
	require.NoError(t, err)
	paid := 0
	for _, o := range outcomes {
		e, ok := succeeded[o.Invoice]
		require.Equal(t, o.InvStatus == models.InvoicePaid, ok, "invoice %s is %s", o.Invoice, o.InvStatus)
		if ok {
			paid++
			require.Equal(t, o.Amount, e.Amount, o.Invoice)
			require.Equal(t, o.Currency, e.Currency, o.Invoice)
		}
	}
	require.Equal(t, len(succeeded), paid)
	return ledger
}

// readCSV reads a whole CSV file.
func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	return rows
}

// timelineLine matches one timeline row: date, subscription, event, text.
var timelineLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d)\s+(demo-\d\d-\d{4})\s+(\S+(?: \S+)?)\s{2,}(.*)$`)

// TestDemoMonths runs `billingd demo --months 3` end to end: the assembled
// daemon and the simulator on one simulated clock, driven by the daemon's own
// ticks. Its timeline shows each kind of event, in time order, and its summary
// agrees with the database it leaves in --dir, as does the ledger it saves
// there; on each provider.
func TestDemoMonths(t *testing.T) {
	for _, provider := range []string{config.ProviderWooshPay, config.ProviderCheckout} {
		t.Run(provider, func(t *testing.T) { runDemoMonths(t, provider) })
	}
}

func runDemoMonths(t *testing.T, provider string) {
	dir := filepath.Join(t.TempDir(), "demo")
	began := time.Now()
	code, out, errOut := runMain(t, nil, "demo", "--provider", provider, "--months", "3", "--dir", dir)
	require.Equal(t, exitOK, code, "stderr: %s\nstdout: %s", errOut, out)
	t.Logf("demo --provider %s --months 3 took %s", provider, time.Since(began))
	require.Contains(t, out, providerName(provider)+" simulator on ")

	type event struct {
		at        time.Time
		ref, kind string
		what      string
	}
	var events []event
	for _, l := range strings.Split(out, "\n") {
		m := timelineLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		at, err := time.Parse("2006-01-02 15:04", m[1])
		require.NoError(t, err)
		events = append(events, event{at, m[2], m[3], m[4]})
	}
	require.NotEmpty(t, events, out)
	first, last := events[0].at, events[len(events)-1].at
	for i := 1; i < len(events); i++ {
		require.False(t, events[i].at.Before(events[i-1].at), "timeline out of order at %v", events[i])
	}
	require.GreaterOrEqual(t, last.Sub(first), 80*24*time.Hour, "three months of events, from %s to %s", first, last)

	has := func(what string, match func(e event) bool) {
		t.Helper()
		for _, e := range events {
			if match(e) {
				return
			}
		}
		require.Failf(t, "no "+what+" in the timeline", "%s", out)
	}
	refOf := func(number string) string {
		for i, c := range demoCards {
			if c.Number == number {
				return demoReference(i)
			}
		}
		t.Fatalf("no demo card %s", number)
		return ""
	}
	has("renewal", func(e event) bool { return e.kind == "renewal" && strings.HasPrefix(e.what, "paid ") })
	has("weekly renewal", func(e event) bool {
		return e.kind == "renewal" && e.ref == refOf("4242424242424242") && strings.Contains(e.what, "period 5,")
	})
	has("soft-decline retry", func(e event) bool {
		return e.kind == "retry" && strings.Contains(e.what, "declined") && strings.Contains(e.what, "(soft)")
	})
	has("hard-decline reminder", func(e event) bool { return e.kind == "reminder" && strings.HasPrefix(e.what, "hard decline") })
	has("exhaustion", func(e event) bool {
		return e.kind == "exhausted" && strings.Contains(e.what, "uncollectible") && strings.Contains(e.what, "subscription canceled")
	})
	topUp := refOf(demoTopUpCard)
	has("top-up", func(e event) bool { return e.kind == "top-up" && e.ref == topUp })
	has("recovering retry", func(e event) bool { return e.kind == "retry" && e.ref == topUp && strings.HasPrefix(e.what, "paid ") })
	has("recovery", func(e event) bool { return e.kind == "recovered" && e.ref == topUp })
	has("processing charge settled later", func(e event) bool {
		return e.ref == refOf("4000000000000259") && strings.Contains(e.what, "settled by the gateway")
	})
	for _, subject := range []string{
		`"Payment received: 9.90 GBP, thank you"`,
		`"Your payment of 15.00 USD didn't go through"`,
		`"Please update your card to keep Plan for card ending 0069 active"`,
		`"Your bank needs you to confirm your payment of 25.00 USD"`,
		`"Your subscription has been canceled"`,
	} {
		has("email "+subject, func(e event) bool { return e.kind == "email" && strings.HasPrefix(e.what, subject+" to customer") })
	}
	// The recovery comes after the top-up, and its receipt with it.
	var toppedUp, recovered time.Time
	for _, e := range events {
		switch {
		case e.kind == "top-up":
			toppedUp = e.at
		case e.kind == "recovered" && e.ref == topUp:
			recovered = e.at
		}
	}
	require.True(t, recovered.After(toppedUp), "recovered %s, topped up %s", recovered, toppedUp)

	// The database in --dir agrees with what was printed.
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(dir, "billingd.db")
	st, err := openStore(context.Background(), cfg, false)
	require.NoError(t, err)
	defer st.Close()
	r, err := st.Status(context.Background(), time.Now())
	require.NoError(t, err)
	parts := make([]string, 0, len(r.Invoices))
	var invoices int64
	for _, c := range r.Invoices {
		parts = append(parts, fmt.Sprintf("%s %d", c.Status, c.N))
		invoices += c.N
	}
	require.Regexp(t, `(?m)^  invoices\s+`+regexp.QuoteMeta(strings.Join(parts, ", "))+`$`, out)
	renewals, attempts := 0, 0
	for _, e := range events {
		if e.kind == "renewal" || e.kind == "charge" || e.kind == "retry" {
			attempts++
		}
		if e.kind == "renewal" {
			renewals++
		}
	}
	n, err := st.CountAttempts(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, n, attempts, "one timeline line per charge attempt")
	require.Less(t, int64(renewals), invoices, "every renewal has its own invoice")

	sent, err := st.CountEmails(context.Background(), models.EmailSent)
	require.NoError(t, err)
	emails := 0
	for _, e := range events {
		if e.kind == "email" {
			emails++
		}
	}
	require.EqualValues(t, sent, emails, "one timeline line per sent email")
	emls, err := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	require.NoError(t, err)
	require.Len(t, emls, int(sent), "every sent email was captured in DIR/mail")
	require.Contains(t, out, fmt.Sprintf("emails sent     %d (", sent))
	require.Contains(t, out, "books and gateway agree")
	checkSavedLedger(t, dir, out)
}

func TestDemoMonthsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"zero", []string{"--months", "0"}, "--months must be between 1 and 36, got 0"},
		{"too many", []string{"--months", "37"}, "--months must be between 1 and 36, got 37"},
		{"negative", []string{"--months=-1"}, "--months must be between 1 and 36, got -1"},
		{"not a number", []string{"--months", "three"}, "-months"},
		{"with serve", []string{"--months", "1", "--serve"}, "--serve cannot be combined with --months"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			code, out, errOut := runMain(t, nil, append([]string{"demo", "--dir", dir}, tc.args...)...)
			require.Equal(t, exitUsage, code, "stdout: %s", out)
			require.Contains(t, errOut, tc.want)
			require.NoDirExists(t, dir, "a usage error starts nothing")
		})
	}
}

// TestDemoMonthsStopsOnSignal: Ctrl-C during a long simulated run stops it
// (exit 1) instead of running the remaining months.
func TestDemoMonthsStopsOnSignal(t *testing.T) {
	signals := make(chan os.Signal, 1)
	signals <- syscall.SIGINT
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb, Signals: signals, Getenv: func(string) string { return "" }}
	code := m.Run(context.Background(), []string{"demo", "--months", "36", "--dir", filepath.Join(t.TempDir(), "demo")})
	require.Equal(t, exitRuntime, code, "stdout: %s", out.String())
	require.Contains(t, errb.String(), "context canceled")
	require.NotContains(t, out.String(), "Summary:")
}
