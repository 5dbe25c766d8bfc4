package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// Finding 6 through the CLI: a file of more rows than one statement could
// bind on either database (40,000 rows; SQLite stopped at 32,766, PostgreSQL
// at 65,535 parameters) is imported whole by `subscriptions import
// --no-verify`, which streams it; a copy whose last row is bad imports nothing.
func TestImportOfALargeFileThroughTheCLI(t *testing.T) {
	const n = 40_000
	// SQLite only: the store's own test imports as many rows into both
	// databases; this one is about the CLI's streaming path.
	importDatabases(t, func(t *testing.T, dbYAML string, open func() *store.Store) {
		if strings.Contains(dbYAML, "postgres") {
			t.Skip("covered by the store's TestImportOfManyRowsGoesInWhole")
		}
		dir := t.TempDir()
		cfg := importConfig(t, dir, dbYAML, "http://127.0.0.1:1")
		anchor := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
		var b strings.Builder
		b.WriteString(csvHeader)
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "big-%06d,c%d@example.com,cus_big%d,pm_big%d,1999,USD,month,1,%s\n", i, i, i, i, anchor)
		}
		code, out, errOut := runMain(t, nil, "migrate", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		bad := writeFile(t, dir, "bad.csv", b.String()+fmt.Sprintf("huge,h@example.com,cus_h,pm_h,99999999999,USD,month,1,%s\n", anchor))
		code, out, errOut = runMain(t, nil, "subscriptions", "import", bad, "--no-verify", "-c", cfg)
		require.Equal(t, exitUsage, code, "stdout %s stderr %s", out, errOut)
		require.Contains(t, errOut, fmt.Sprintf("line %d: amount: must be at most 99999999 minor units", n+2))
		var count int64
		require.NoError(t, open().DB().Raw(`SELECT COUNT(*) FROM subscriptions`).Scan(&count).Error)
		require.Zero(t, count)

		good := writeFile(t, dir, "good.csv", b.String())
		start := time.Now()
		code, out, errOut = runMain(t, nil, "subscriptions", "import", good, "--no-verify", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		t.Logf("%d rows through the CLI in %v", n, time.Since(start))
		require.Contains(t, out, fmt.Sprintf("imported %d subscription(s)", n))
		require.NoError(t, open().DB().Raw(`SELECT COUNT(*) FROM subscriptions`).Scan(&count).Error)
		require.EqualValues(t, n, count)
	})
}

// Finding 7 through the CLI: `9223372036854775807,USD` is refused by line and
// column, and `billingd status` on a database that already holds two paid
// invoices of that amount exits 0 (it exited 1 with "integer overflow") and
// says how many amounts are out of bounds.
func TestUnboundedAmountsThroughTheCLI(t *testing.T) {
	importDatabases(t, func(t *testing.T, dbYAML string, open func() *store.Store) {
		dir := t.TempDir()
		cfg := importConfig(t, dir, dbYAML, "http://127.0.0.1:1")
		anchor := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
		f := writeFile(t, dir, "subs.csv", csvHeader+
			fmt.Sprintf("ok,a@example.com,cus_a,pm_a,1999,USD,month,1,%s\n", anchor)+
			fmt.Sprintf("max,b@example.com,cus_b,pm_b,9223372036854775807,USD,month,1,%s\n", anchor))
		code, out, errOut := runMain(t, nil, "subscriptions", "import", f, "--no-verify", "-c", cfg)
		require.Equal(t, exitUsage, code, "stdout %s stderr %s", out, errOut)
		require.Contains(t, errOut, `line 3: amount: must be at most 99999999 minor units`)

		f = writeFile(t, dir, "ok.csv", csvHeader+fmt.Sprintf("ok,a@example.com,cus_a,pm_a,1999,USD,month,1,%s\n", anchor))
		code, out, errOut = runMain(t, nil, "subscriptions", "import", f, "--no-verify", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		// What an older billingd let in: the subscription and two paid invoices
		// of int64's largest amount.
		st := open()
		now := time.Now().UTC()
		require.NoError(t, st.DB().Exec(`UPDATE subscriptions SET amount = 9223372036854775807`).Error)
		for i := 0; i < 2; i++ {
			require.NoError(t, st.DB().Exec(`INSERT INTO invoices (public_id, subscription_id, period_index, period_start, period_end, amount, currency, status, next_attempt_at, paid_at, created_at, updated_at)
				SELECT ?, id, ?, ?, ?, amount, currency, 'paid', ?, ?, ?, ? FROM subscriptions`, fmt.Sprintf("inv_max_%d", i), i, now.AddDate(0, i-2, 0), now.AddDate(0, i-1, 0), now, now, now, now).Error)
		}
		code, out, errOut = runMain(t, nil, "status", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		require.NotContains(t, out+errOut, "overflow")
		require.Contains(t, out, "0.00 USD (0) + 2 invoice(s) above the amount bound, not summed")
		require.Contains(t, out, "amounts out of bounds")
		require.Contains(t, out, "1 subscription(s), 2 invoice(s)")
	})
}
