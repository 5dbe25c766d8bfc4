package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store/storetest"
)

// books are one currency's money: what came in, what went back, how often.
type books struct {
	Collected, Refunded int64
	Payments, Refunds   int
}

// booksOfRevenue reads report revenue's rows.
func booksOfRevenue(rows []ops.RevenueRow) map[string]books {
	out := map[string]books{}
	for _, r := range rows {
		out[r.Currency] = books{r.Collected.Amount, r.Refunded.Amount, r.Payments, r.Refunds}
	}
	return out
}

// invoiceOf returns the first invoice of the subscription reference.
func invoiceOf(t *testing.T, b *daemontest.Bundle, reference string) models.Invoice {
	t.Helper()
	var inv models.Invoice
	require.NoError(t, b.Store.DB().Raw(`SELECT i.* FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
		WHERE s.reference = ? ORDER BY i.period_index LIMIT 1`, reference).Scan(&inv).Error)
	require.NotZero(t, inv.ID, "no invoice for %s", reference)
	return inv
}

// A month with refunds, exported: weekly and monthly subscriptions in USD,
// JPY (zero-decimal) and EUR, a declining card, a partial and a full
// operator refund, a second payment the gateway took for one invoice
// (refunded automatically) and a charge that succeeded after its invoice
// was voided (refunded automatically). The CSV parses with its documented
// header, one row per movement in time order, and per currency its sums are
// report revenue's for the same range — and the simulator's ledger (every
// payment that succeeded, every refund that did).
func TestExportOfAMonthWithRefunds(t *testing.T) {
	// The slow card (…0259) stays processing for a minute of the simulated
	// clock: long enough to void its invoice first.
	o := daemontest.Options{Sim: sim.Options{ProcessingDelay: time.Minute}}
	daemontest.Each(t, o, exportAMonth)
	t.Run("checkout", func(t *testing.T) {
		o := o
		o.Provider = config.ProviderCheckout
		exportAMonth(t, daemontest.New(t, o))
	})
}

// exportAMonth is TestExportOfAMonthWithRefunds on one bundle.
func exportAMonth(t *testing.T, b *daemontest.Bundle) {
	ctx := context.Background()
	start := b.Clock.Now() // 2026-03-02 09:00 UTC
	type plan struct {
		ref, card, currency, interval string
		amount                        int64
	}
	var subs []storetest.Subscription
	for _, p := range []plan{
		{"usd-monthly-partial", "4242424242424242", "USD", "month", 1000},
		{"usd-weekly", "4111111111111111", "USD", "week", 2599},
		{"jpy-monthly-full", "4242424242424242", "JPY", "month", 5000},
		{"jpy-weekly", "4761344136141390", "JPY", "week", 980},
		{"eur-monthly-duplicate", "4242424242424242", "EUR", "month", 1250},
		{"usd-voided-late", "4000000000000259", "USD", "month", 700},
		{"gbp-declining", "4000000000009995", "GBP", "week", 990},
	} {
		cus, pm := b.SaveCard(t, p.card)
		subs = append(subs, storetest.Subscription{Reference: p.ref, Customer: cus, PaymentMethod: pm, Amount: p.amount,
			Currency: p.currency, Interval: p.interval, IntervalCount: 1, Anchor: start})
	}
	b.Seed(t, subs...)
	b.Run(t, time.Second, time.Second)

	op := b.Operator(t)
	actor := ops.Actor{Name: "finance-test", Via: models.ViaCLI}
	late := invoiceOf(t, b, "usd-voided-late")
	require.Equal(t, models.InvoiceOpen, late.Status, "the slow charge is still processing")
	_, err := op.VoidInvoice(ctx, actor, late.PublicID, "billed in error")
	require.NoError(t, err)
	partial := invoiceOf(t, b, "usd-monthly-partial")
	_, err = op.RefundInvoice(ctx, actor, partial.PublicID, "goodwill", ops.RefundOptions{Amount: 300})
	require.NoError(t, err)
	full := invoiceOf(t, b, "jpy-monthly-full")
	_, err = op.RefundInvoice(ctx, actor, full.PublicID, "customer left", ops.RefundOptions{})
	require.NoError(t, err)
	dup := invoiceOf(t, b, "eur-monthly-duplicate")
	require.Equal(t, models.InvoicePaid, dup.Status)
	second, err := b.Sim.DuplicateSuccess(dup.PaymentIntentID)
	require.NoError(t, err)

	// The rest of March, in 12-hour steps: the weekly charges of the 9th,
	// 16th, 23rd and 30th, the declining card's dunning, the refund job.
	end := time.Date(2026, 3, 31, 23, 0, 0, 0, time.UTC)
	b.Run(t, end.Sub(b.Clock.Now()), 12*time.Hour)

	var refunds []models.Refund
	require.NoError(t, b.Store.DB().Order("id").Find(&refunds).Error)
	require.Len(t, refunds, 4, "partial, full, the duplicate's and the late success's")
	for _, rf := range refunds {
		require.Equal(t, models.RefundSucceeded, rf.Status, "%s: %s", rf.IdempotencyKey, rf.ErrorMessage)
	}

	// The gateway's books, per currency: every payment that succeeded
	// and every refund that did. All of it happened in March.
	ledger := map[string]books{}
	for _, e := range b.Sim.Ledger() {
		if e.Status == "succeeded" {
			l := ledger[e.Currency]
			l.Collected += e.Amount
			l.Payments++
			l.Refunded += e.AmountRefunded
			ledger[e.Currency] = l
		}
	}
	for _, r := range b.Sim.Refunds() {
		if r.Status == "succeeded" {
			l := ledger[r.Currency]
			l.Refunds++
			ledger[r.Currency] = l
		}
	}
	require.Equal(t, map[string]books{
		"EUR": {Collected: 2500, Refunded: 1250, Payments: 2, Refunds: 1},
		"JPY": {Collected: 5000 + 5*980, Refunded: 5000, Payments: 6, Refunds: 1},
		"USD": {Collected: 1000 + 5*2599 + 700, Refunded: 300 + 700, Payments: 7, Refunds: 2},
	}, ledger, "the month as the gateway saw it")

	cfg := bundleConfig(t, b)
	rng := []string{"--from", "2026-03-01", "--to", "2026-04-01", "-c", cfg}

	// The CSV: the documented header, one row per movement.
	code, out, errOut := runMain(t, nil, append([]string{"report", "export", "--csv"}, rng...)...)
	require.Equal(t, exitOK, code, errOut)
	records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"kind", "at", "invoice", "subscription", "customer", "email", "payment", "refund", "amount", "display", "currency"}, records[0])
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	rows := records[1:]
	require.Len(t, rows, 6+7+2+4, "15 charges and 4 refunds")
	fromCSV := map[string]books{}
	kinds := map[string]int{}
	var ats []string
	for _, r := range rows {
		amount, err := strconv.ParseInt(r[col["amount"]], 10, 64)
		require.NoError(t, err)
		at, err := time.Parse(time.RFC3339, r[col["at"]])
		require.NoError(t, err, "at is RFC 3339")
		require.Equal(t, time.UTC, at.Location())
		ats = append(ats, r[col["at"]])
		kind, cur := r[col["kind"]], r[col["currency"]]
		kinds[kind]++
		require.NotEmpty(t, r[col["invoice"]])
		require.NotEmpty(t, r[col["subscription"]])
		require.NotEmpty(t, r[col["customer"]])
		require.NotEmpty(t, r[col["email"]])
		require.NotEmpty(t, r[col["payment"]])
		bk := fromCSV[cur]
		if kind == ops.ExportCharge {
			require.Positive(t, amount)
			require.Empty(t, r[col["refund"]], "a charge has no refund id")
			bk.Collected += amount
			bk.Payments++
		} else {
			require.Negative(t, amount, "money out is negative")
			require.NotEmpty(t, r[col["refund"]], "a refund names the gateway's refund")
			require.True(t, strings.HasPrefix(r[col["display"]], "-"), r[col["display"]])
			bk.Refunded -= amount
			bk.Refunds++
		}
		fromCSV[cur] = bk
		require.NotEqual(t, "gbp-declining", r[col["subscription"]], "a declined charge moved no money")
	}
	require.True(t, sort.StringsAreSorted(ats), "in time order")
	require.Equal(t, map[string]int{ops.ExportCharge: 15, ops.ExportRefund: 3, ops.ExportDuplicateRefund: 1}, kinds)
	require.Equal(t, ledger, fromCSV, "the export's sums are the gateway's")

	// The second payment and its refund: two rows on the same payment.
	var dupRows [][]string
	for _, r := range rows {
		if r[col["payment"]] == second {
			dupRows = append(dupRows, r)
		}
	}
	require.Len(t, dupRows, 2)
	require.Equal(t, []string{ops.ExportCharge, ops.ExportDuplicateRefund}, []string{dupRows[0][col["kind"]], dupRows[1][col["kind"]]})
	require.Equal(t, []string{"1250", "12.50 EUR", "EUR"}, dupRows[0][col["amount"]:])
	require.Equal(t, []string{"-1250", "-12.50 EUR", "EUR"}, dupRows[1][col["amount"]:])
	require.Equal(t, dup.PublicID, dupRows[1][col["invoice"]])
	require.Equal(t, "eur-monthly-duplicate", dupRows[1][col["subscription"]])

	// report revenue over the same range says the same, and so do the
	// export's own totals (JSON) and the operator functions.
	code, out, errOut = runMain(t, nil, append([]string{"report", "revenue", "--json"}, rng...)...)
	require.Equal(t, exitOK, code, errOut)
	var revenue struct{ Currencies []ops.RevenueRow }
	require.NoError(t, json.Unmarshal([]byte(out), &revenue))
	require.Equal(t, ledger, booksOfRevenue(revenue.Currencies), "report revenue is the gateway's books")

	code, out, errOut = runMain(t, nil, append([]string{"report", "export", "--format", "json"}, rng...)...)
	require.Equal(t, exitOK, code, errOut)
	var exported struct {
		From   time.Time
		To     time.Time
		Rows   []ops.ExportRow
		Totals []ops.RevenueRow
	}
	require.NoError(t, json.Unmarshal([]byte(out), &exported))
	require.Len(t, exported.Rows, len(rows))
	require.Equal(t, revenue.Currencies, exported.Totals, "the export's totals are report revenue's rows")
	require.Equal(t, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), exported.From.UTC())
	for i, r := range exported.Rows {
		require.Equal(t, rows[i][col["payment"]], r.Payment, "row %d: JSON and CSV list the same rows in the same order", i)
		require.Equal(t, rows[i][col["amount"]], strconv.FormatInt(r.Amount, 10))
	}

	from, to := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	viaOps, err := op.Revenue(ctx, from, to)
	require.NoError(t, err)
	require.Equal(t, revenue.Currencies, viaOps)

	// The table: rows, then the totals per currency.
	code, out, errOut = runMain(t, nil, append([]string{"report", "export"}, rng...)...)
	require.Equal(t, exitOK, code, errOut)
	require.Regexp(t, `(?m)^duplicate_refund\s+\S+\s+`+dup.PublicID+`\s+eur-monthly-duplicate\s.*-12\.50 EUR\s*$`, out)
	require.Regexp(t, `(?m)^refund\s+.*-5000 JPY\s*$`, out)
	require.Contains(t, out, "\nTotals 2026-03-01T00:00:00Z to 2026-04-01T00:00:00Z:\n")
	require.Regexp(t, `(?m)^JPY\s+9900 JPY\s+6\s+5000 JPY\s+1\s+4900 JPY\s*$`, out)
	require.Regexp(t, `(?m)^USD\s+146\.95 USD\s+7\s+10\.00 USD\s+2\s+136\.95 USD\s*$`, out)

	// A range that holds part of the month holds part of the money:
	// the week of the 9th has one USD and one JPY weekly charge.
	code, out, errOut = runMain(t, nil, "report", "export", "--csv", "--from", "2026-03-09", "--to", "2026-03-10", "-c", cfg)
	require.Equal(t, exitOK, code, errOut)
	records, err = csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, records, 3, out)
}

// Bad input names its flag and exits 2, before any database is opened.
func TestExportBadInput(t *testing.T) {
	cfg := writeFile(t, t.TempDir(), "config.yaml", "database: { driver: sqlite, dsn: "+t.TempDir()+"/billingd.db }\n")
	for _, tc := range []struct {
		name string
		args []string
		flag string
	}{
		{"to before from", []string{"--from", "2026-03-02", "--to", "2026-03-01"}, "--to"},
		{"empty range", []string{"--from", "2026-03-01", "--to", "2026-03-01"}, "--to"},
		{"bad from", []string{"--from", "March 1", "--to", "2026-04-01"}, "--from"},
		{"bad to", []string{"--from", "2026-03-01", "--to", "2026-04-31"}, "--to"},
		{"from alone", []string{"--from", "2026-03-01"}, "--to"},
		{"bad month", []string{"--month", "2026-13"}, "--month"},
		{"unknown format", []string{"--format", "xlsx"}, "--format"},
		{"format against --json", []string{"--format", "csv", "--json"}, "--format"},
		{"json and csv", []string{"--json", "--csv"}, "--json"},
		{"bad zone", []string{"--tz", "Mars/Olympus"}, "--tz"},
		{"stray argument", []string{"2026-03"}, "2026-03"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runMain(t, nil, append(append([]string{"report", "export"}, tc.args...), "-c", cfg)...)
			require.Equal(t, exitUsage, code, "%s%s", out, errOut)
			require.Contains(t, errOut, tc.flag)
			require.Empty(t, out)
		})
	}
}
