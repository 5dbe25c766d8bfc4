package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// dirFiles lists the names in dir, sorted.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// runWithTimeout runs billingd in-process; a bad config must make even `run`
// return at once, so a daemon that starts anyway is cut off and reported.
func runWithTimeout(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, errb := &daemontest.LogBuffer{}, &daemontest.LogBuffer{}
	m := &Main{Stdout: out, Stderr: errb, Getenv: func(k string) string { return "" }}
	code := m.Run(ctx, args)
	require.NoError(t, ctx.Err(), "billingd %v ran until the timeout; stderr: %s", args, errb.String())
	return code, out.String(), errb.String()
}

// badConfigBase is a valid config; each case below breaks one thing in it. The
// database lives next to the config, so a test can see whether anything was
// written there.
const badConfigBase = `
database:  { driver: sqlite, dsn: %DIR%/billingd.db, busy_timeout: 1s }
gateway:   { base_url: "http://127.0.0.1:1", secret_key: sk_test_badcfg_secret, webhook_secret: whsec_badcfg_secret, timeout: 2s }
http:      { listen: "127.0.0.1:0", public_base_url: "https://billing.example.com" }
`

// TestBadConfigsThroughTheCLI runs check-config and run on each broken config:
// exit 2, an error naming the key (or, for a YAML syntax error, the line), no
// secret in the output, and nothing written next to the config — no database,
// no lock file, no WAL.
func TestBadConfigsThroughTheCLI(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(badConfigBase, old, new, 1) }
	tests := []struct {
		name  string
		body  string
		files map[string]string // extra files written next to the config (%DIR%-relative)
		want  []string          // substrings of stderr; the first is the key
	}{
		// parse errors
		{"yaml syntax: unclosed flow mapping", "database: { driver: sqlite\n", nil, []string{"line"}},
		{"yaml syntax: tab indentation", "database:\n\tdriver: sqlite\n", nil, []string{"line"}},
		{"not a mapping at the top", "- just\n- a list\n", nil, []string{"mapping"}},
		{"duplicate section", badConfigBase + "gateway: { timeout: 5s }\n", nil, []string{"gateway"}},
		{"unknown top-level key", badConfigBase + "gatway: { timeout: 5s }\n", nil, []string{"gatway", "unknown key"}},
		{"unknown nested key", replace("timeout: 2s", "timout: 2s"), nil, []string{"gateway.timout"}},
		{"section is a scalar", badConfigBase + "log: debug\n", nil, []string{"log", "mapping"}},
		// types
		{"concurrency not a number", badConfigBase + "schedule: { page_size: lots }\n", nil, []string{"schedule.page_size"}},
		{"rate_limit quoted", replace("timeout: 2s", `timeout: 2s, rate_limit: "20"`), nil, []string{"gateway.rate_limit"}},
		{"secret_key a list", replace("secret_key: sk_test_badcfg_secret", "secret_key: [sk_test_badcfg_secret]"), nil, []string{"gateway.secret_key"}},
		{"mail.port a string", badConfigBase + "mail: { host: smtp.example.com, port: smtp, from: billing@example.com }\n", nil, []string{"mail.port"}},
		// durations
		{"duration not a duration", replace("timeout: 2s", "timeout: banana"), nil, []string{"gateway.timeout", "banana"}},
		{"duration bare number", replace("busy_timeout: 1s", "busy_timeout: 5"), nil, []string{"database.busy_timeout"}},
		{"duration zero", badConfigBase + "retry: { max_elapsed_time: 0s }\n", nil, []string{"retry.max_elapsed_time"}},
		{"duration negative", badConfigBase + "dunning: { link_ttl: -1h }\n", nil, []string{"dunning.link_ttl"}},
		{"max_interval below initial_interval", badConfigBase + "retry: { initial_interval: 10s, max_interval: 5s }\n", nil, []string{"retry.max_interval"}},
		// enums
		{"driver", replace("driver: sqlite", "driver: mysql"), nil, []string{"database.driver", "mysql"}},
		{"synchronous", replace("busy_timeout: 1s", "busy_timeout: 1s, synchronous: off"), nil, []string{"database.synchronous"}},
		{"provider", replace("timeout: 2s", "timeout: 2s, provider: stripe"), nil, []string{"gateway.provider"}},
		{"final_action", badConfigBase + "dunning: { final_action: refund }\n", nil, []string{"dunning.final_action", "refund"}},
		{"log level and format at once", badConfigBase + "log: { level: loud, format: xml }\n", nil, []string{"log.level", "log.format"}},
		// URLs
		{"gateway over plain http", replace("http://127.0.0.1:1", "http://api.wooshpay.com"), nil, []string{"gateway.base_url", "https"}},
		{"gateway without scheme", replace("http://127.0.0.1:1", "api.wooshpay.com"), nil, []string{"gateway.base_url"}},
		{"gateway url with credentials", replace("http://127.0.0.1:1", "https://user:pw@api.wooshpay.com"), nil, []string{"gateway.base_url"}},
		{"public url relative", replace("https://billing.example.com", "/billing"), nil, []string{"http.public_base_url"}},
		{"public url over http", replace("https://billing.example.com", "http://billing.example.com"), nil, []string{"http.public_base_url"}},
		// secrets
		{"secret_key missing", replace("secret_key: sk_test_badcfg_secret, ", ""), nil, []string{"gateway.secret_key", "required"}},
		{"webhook_secret missing", replace("webhook_secret: whsec_badcfg_secret, ", ""), nil, []string{"gateway.webhook_secret", "required"}},
		{"secret from an unset variable", replace("secret_key: sk_test_badcfg_secret", `secret_key: "${BILLINGD_TEST_UNSET_SECRET}"`), nil, []string{"gateway.secret_key"}},
		{"secret_key and secret_key_file", replace("timeout: 2s", "timeout: 2s, secret_key_file: key.txt"), map[string]string{"key.txt": "sk_test_other"}, []string{"gateway.secret_key", "not both"}},
		{"secret_key_file missing", replace("secret_key: sk_test_badcfg_secret", "secret_key_file: nope.txt"), nil, []string{"gateway.secret_key_file", "no such file"}},
		{"secret_key_file is a directory", replace("secret_key: sk_test_badcfg_secret", "secret_key_file: ."), nil, []string{"gateway.secret_key_file"}},
		{"webhook_secret_file empty", replace("webhook_secret: whsec_badcfg_secret", "webhook_secret_file: empty.txt"), map[string]string{"empty.txt": ""}, []string{"gateway.webhook_secret"}},
		{"password and password_file", badConfigBase + "mail: { host: smtp.example.com, from: billing@example.com, password: pw, password_file: pw.txt }\n", map[string]string{"pw.txt": "pw2"}, []string{"mail.password", "not both"}},
		// cron and time zone
		{"cron out of range", badConfigBase + "schedule: { billing: '61 * * * *' }\n", nil, []string{"schedule.billing"}},
		{"cron descriptor", badConfigBase + "schedule: { billing: '@fortnightly' }\n", nil, []string{"schedule.billing"}},
		{"timezone unknown", badConfigBase + "schedule: { timezone: Mars/Olympus_Mons }\n", nil, []string{"schedule.timezone"}},
		{"timezone Local", badConfigBase + "schedule: { timezone: Local }\n", nil, []string{"schedule.timezone"}},
		// mail
		{"mail from not an address", badConfigBase + "mail: { host: smtp.example.com, from: not an address }\n", nil, []string{"mail.from"}},
		{"mail host with a port", badConfigBase + "mail: { host: 'smtp.example.com:587', from: billing@example.com }\n", nil, []string{"mail.host"}},
		{"mail tls", badConfigBase + "mail: { host: smtp.example.com, from: billing@example.com, tls: ssl }\n", nil, []string{"mail.tls"}},
		{"mail templates_dir missing", badConfigBase + "mail: { templates_dir: /nonexistent/billingd/templates }\n", nil, []string{"mail.templates_dir"}},
		// http
		{"listen without port", replace(`listen: "127.0.0.1:0"`, "listen: localhost"), nil, []string{"http.listen"}},
		{"listen port out of range", replace(`listen: "127.0.0.1:0"`, `listen: "127.0.0.1:99999"`), nil, []string{"http.listen"}},
		// reconcile
		{"reconcile backoff empty", badConfigBase + "reconcile: { backoff: [] }\n", nil, []string{"reconcile.backoff"}},
		{"reconcile backoff entry", badConfigBase + "reconcile: { backoff: [5m, soon] }\n", nil, []string{"reconcile.backoff[1]"}},
		{"reconcile after zero", badConfigBase + "reconcile: { after: 0s }\n", nil, []string{"reconcile.after"}},
		// dunning
		{"dunning schedule empty", badConfigBase + "dunning: { retry_schedule: [] }\n", nil, []string{"dunning.retry_schedule"}},
		{"dunning schedule entry", badConfigBase + "dunning: { retry_schedule: [24h, 0s] }\n", nil, []string{"dunning.retry_schedule[1]"}},
		// database
		{"postgres without a dsn", replace("driver: sqlite, dsn: %DIR%/billingd.db", "driver: postgres"), nil, []string{"database.dsn"}},
		// finding 12: what the drivers and the gateway would refuse later
		{"postgres dsn with sslmode=nope", replace("driver: sqlite, dsn: %DIR%/billingd.db", "driver: postgres, dsn: 'postgres://billingd:pw_badcfg_secret@127.0.0.1:5432/billingd?sslmode=nope'"), nil, []string{"database.dsn", "sslmode is invalid"}},
		{"postgres key=value dsn with a bad port", replace("driver: sqlite, dsn: %DIR%/billingd.db", "driver: postgres, dsn: 'host=127.0.0.1 port=fivefourthreetwo dbname=billingd'"), nil, []string{"database.dsn", "port"}},
		{"sqlite in memory", replace("dsn: %DIR%/billingd.db", "dsn: ':memory:'"), nil, []string{"database.dsn", "file path"}},
		{"sqlite dsn with a broken query", replace("dsn: %DIR%/billingd.db", "dsn: '%DIR%/billingd.db?_busy_timeout=%zz'"), nil, []string{"database.dsn", "query"}},
		{"publishable key as secret_key", replace("secret_key: sk_test_badcfg_secret", "secret_key: pk_test_badcfg_secret"), nil, []string{"gateway.secret_key", "publishable"}},
		{"malformed secret_key", replace("secret_key: sk_test_badcfg_secret", "secret_key: wooshpay-badcfg_secret"), nil, []string{"gateway.secret_key", "does not look like"}},
		{"publishable key in secret_key_file", replace("secret_key: sk_test_badcfg_secret", "secret_key_file: key.txt"), map[string]string{"key.txt": "pk_live_badcfg_secret\n"}, []string{"gateway.secret_key_file", "publishable", "key.txt"}},
	}
	require.GreaterOrEqual(t, len(tests), 30)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeFile(t, dir, "config.yaml", strings.ReplaceAll(tc.body, "%DIR%", dir))
			for name, body := range tc.files {
				writeFile(t, dir, name, body)
			}
			before := dirFiles(t, dir)
			cmds := []string{"check-config", "run", "once"}
			// migrate reads only the database and log sections (and the file's
			// shape): a bad value elsewhere is not its business, and it needs no
			// gateway or SMTP secret. A problem in those sections it must refuse.
			_, err := config.LoadFor(p, config.NeedDatabase)
			if err != nil || strings.HasPrefix(tc.want[0], "database.") || strings.HasPrefix(tc.want[0], "log.") {
				cmds = append(cmds, "migrate")
			}
			for _, cmd := range cmds {
				code, out, errOut := runWithTimeout(t, cmd, "-c", p)
				require.Equal(t, exitUsage, code, "%s: stdout %s stderr %s", cmd, out, errOut)
				for _, w := range tc.want {
					require.Contains(t, errOut, w, "%s", cmd)
				}
				require.Contains(t, errOut, p, "%s: the error names the file", cmd)
				for _, secret := range []string{"badcfg_secret", "sk_test_other", "pw2"} {
					require.NotContains(t, out+errOut, secret, "%s: secrets are never printed", cmd)
				}
				require.Equal(t, before, dirFiles(t, dir), "%s wrote next to the config (database, lock or WAL file)", cmd)
			}
		})
	}
}

// ---- subscription CSVs ----

const csvHeader = "reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor\n"

// dbDigest summarises what an import can touch: row counts and the rows
// themselves (a rolled-back import may have updated an email in its
// transaction).
func dbDigest(t *testing.T, dbPath string) (map[string]int64, string) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: dbPath})
	require.NoError(t, err)
	defer st.Close()
	counts := map[string]int64{}
	for _, table := range []string{"subscriptions", "customers", "payment_methods", "invoices", "charge_attempts"} {
		var n int64
		require.NoError(t, st.DB().Raw("SELECT COUNT(*) FROM "+table).Scan(&n).Error)
		counts[table] = n
	}
	var rows []string
	require.NoError(t, st.DB().Raw(`SELECT s.reference || '|' || c.gateway_customer_id || '|' || c.email || '|' || p.gateway_payment_method_id || '|' || s.amount || '|' || s.currency
		FROM subscriptions s JOIN customers c ON c.id = s.customer_id JOIN payment_methods p ON p.id = s.payment_method_id ORDER BY s.reference`).Scan(&rows).Error)
	var emails []string
	require.NoError(t, st.DB().Raw(`SELECT gateway_customer_id || '|' || email FROM customers ORDER BY id`).Scan(&emails).Error)
	sum := sha256.Sum256([]byte(strings.Join(rows, "\n") + "\n--\n" + strings.Join(emails, "\n")))
	return counts, hex.EncodeToString(sum[:])
}

// TestImportBadCSVs feeds broken files to `billingd subscriptions import`: each
// exits 2, names every bad line, and leaves the database exactly as it was —
// including a file whose rows are each valid but conflict with the database
// half-way through.
func TestImportBadCSVs(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "billingd.db")
	cfg := writeFile(t, dir, "config.yaml", strings.ReplaceAll(badConfigBase, "%DIR%", dir))
	anchor := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
	row := func(ref, email, cus, pm string) string {
		return fmt.Sprintf("%s,%s,%s,%s,1999,USD,month,1,%s\n", ref, email, cus, pm, anchor)
	}
	good := writeFile(t, dir, "good.csv", csvHeader+row("existing-1", "a@example.com", "cus_a", "pm_a")+row("existing-2", "b@example.com", "cus_b", "pm_b"))
	code, out, errOut := runMain(t, nil, "subscriptions", "import", good, "-c", cfg, "--no-verify")
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
	require.Contains(t, out, "imported 2 subscription(s)")
	counts, digest := dbDigest(t, dbPath)
	require.EqualValues(t, 2, counts["subscriptions"])

	tests := []struct {
		name  string
		body  string
		lines []int    // every line stderr must name
		want  []string // more substrings of stderr
	}{
		{"empty file", "", []int{1}, []string{"empty"}},
		{"header only", csvHeader, []int{2}, []string{"no subscriptions"}},
		{"no header", row("new-1", "n@example.com", "cus_n", "pm_n"), []int{1}, nil},
		{"missing column", strings.Replace(csvHeader, ",anchor", "", 1) + "new-1,n@example.com,cus_n,pm_n,1999,USD,month,1\n", []int{1}, []string{"anchor"}},
		{"unknown column", strings.TrimSuffix(csvHeader, "\n") + ",plan\n" + strings.TrimSuffix(row("new-1", "n@example.com", "cus_n", "pm_n"), "\n") + ",gold\n", []int{1}, []string{"plan"}},
		{"column twice", strings.TrimSuffix(csvHeader, "\n") + ",amount\n" + strings.TrimSuffix(row("new-1", "n@example.com", "cus_n", "pm_n"), "\n") + ",5\n", []int{1}, []string{"amount"}},
		{"every bad line named", csvHeader +
			row("new-1", "n@example.com", "cus_n", "pm_n") + // 2 fine
			"new-3,n@example.com,cus_n,pm_n,12.50,USD,month,1," + anchor + "\n" + // 3 amount
			"new-4,n@example.com,cus_n,pm_n,1999,usd,month,1," + anchor + "\n" + // 4 currency
			"new-5,n@example.com,cus_n,pm_n,1999,USD,fortnight,1," + anchor + "\n" + // 5 interval
			"new-6,n@example.com,cus_n,pm_n,1999,USD,month,0," + anchor + "\n" + // 6 interval_count
			"new-7,n@example.com,cus_n,pm_n,1999,USD,month,1,next tuesday\n" + // 7 anchor
			"new-8,not-an-email,cus_n,pm_n,1999,USD,month,1," + anchor + "\n" + // 8 email
			"new-9,n@example.com,1234,pm_n,1999,USD,month,1," + anchor + "\n" + // 9 customer
			"new-10,n@example.com,cus_n,card_1,1999,USD,month,1," + anchor + "\n" + // 10 payment_method
			row("new-1", "n@example.com", "cus_n", "pm_n") + // 11 duplicate reference
			"new-12,n@example.com,cus_n\n", // 12 field count
			[]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, []string{"amount", "currency", "interval", "interval_count", "anchor", "email", "customer", "payment_method", "reference"}},
		{"bare quote", csvHeader + row("new-1", "n@example.com", "cus_n", "pm_n") + `new-"2,n@example.com,cus_n,pm_n,1999,USD,month,1,` + anchor + "\n", []int{3}, nil},
		{"binary garbage", csvHeader + "\x00\x01\x02\xff\xfe,\x00\n", []int{2}, nil},
		{"negative amount", csvHeader + "new-1,n@example.com,cus_n,pm_n,-5,USD,month,1," + anchor + "\n", []int{2}, []string{"amount"}},
		{"amount overflows", csvHeader + "new-1,n@example.com,cus_n,pm_n,99999999999999999999999,USD,month,1," + anchor + "\n", []int{2}, []string{"amount"}},
		{"anchor far in the past", csvHeader + "new-1,n@example.com,cus_n,pm_n,1999,USD,month,1,2020-01-01T00:00:00Z\n", []int{2}, []string{"anchor", "--backfill"}},
		// Each row is valid on its own; lines 3 and 5 conflict with the database.
		// Lines 2 and 4 must not be imported either, and the email change of
		// line 3's customer must not stick.
		{"conflicts with the database mid-file", csvHeader +
			row("new-1", "n@example.com", "cus_n", "pm_n") +
			row("existing-1", "changed@example.com", "cus_a", "pm_a") +
			row("new-2", "m@example.com", "cus_m", "pm_m") +
			row("new-3", "z@example.com", "cus_z", "pm_b"), // pm_b belongs to cus_b
			[]int{3, 5}, []string{"already exists", "different customer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, t.TempDir(), "subs.csv", tc.body)
			code, out, errOut := runMain(t, nil, "subscriptions", "import", f, "-c", cfg, "--no-verify")
			require.Equal(t, exitUsage, code, "stdout %s stderr %s", out, errOut)
			require.Contains(t, errOut, f, "the error names the file")
			for _, l := range tc.lines {
				require.Contains(t, errOut, fmt.Sprintf("line %d", l))
			}
			for _, w := range tc.want {
				require.Contains(t, errOut, w)
			}
			require.NotContains(t, out, "imported")
			gotCounts, gotDigest := dbDigest(t, dbPath)
			require.Equal(t, counts, gotCounts, "row counts changed")
			require.Equal(t, digest, gotDigest, "rows changed")
		})
	}
	t.Run("missing file", func(t *testing.T) {
		code, _, errOut := runMain(t, nil, "subscriptions", "import", filepath.Join(dir, "nope.csv"), "-c", cfg, "--no-verify")
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "nope.csv")
	})
}

// ---- database trouble ----

// billingEnv is a simulator with saved cards, a seeded SQLite database and a
// config for `billingd once` against both.
type billingEnv struct {
	gw     *sim.Server
	dbPath string
	cfg    string
	subs   int
}

// newBillingEnv seeds n due subscriptions in dir/db/billingd.db. dsnQuery is
// appended to the configured DSN (for example "?mode=ro").
func newBillingEnv(t *testing.T, dir string, n int, dsnQuery string) *billingEnv {
	t.Helper()
	gw := sim.New(sim.Options{SecretKey: "sk_test_dbtrouble", Seed: 11, ProcessingDelay: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	gw.Start(ctx)
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); cancel(); gw.Close() })
	client, err := wooshpay.New(wooshpay.Options{BaseURL: srv.URL, SecretKey: "sk_test_dbtrouble"})
	require.NoError(t, err)
	type ids struct{ cus, pm string }
	var saved []ids
	for i, number := range []string{"4242424242424242", "4111111111111111", "4000000000009995", "4000000000000069"} {
		c, err := client.CreateCustomer(ctx, wooshpay.CustomerParams{Email: fmt.Sprintf("db%d@example.com", i)}, "")
		require.NoError(t, err)
		s, err := client.CreateSetupIntent(ctx, wooshpay.SetupIntentParams{Customer: c.ID, Card: wooshpay.CardData{Number: number, ExpMonth: "01", ExpYear: "2034", CVC: "999"}}, "")
		require.NoError(t, err)
		saved = append(saved, ids{c.ID, s.PaymentMethod})
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "db"), 0o755))
	dbPath := filepath.Join(dir, "db", "billingd.db")
	st := storetest.SQLiteAt(t, dbPath)
	anchor := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var subs []storetest.Subscription
	for i := 0; i < n; i++ {
		id := saved[i%len(saved)]
		subs = append(subs, storetest.Subscription{Reference: fmt.Sprintf("db-%03d", i), Customer: id.cus, PaymentMethod: id.pm, Amount: int64(700 + i), Anchor: anchor})
	}
	storetest.Seed(t, st, anchor, subs...)
	require.NoError(t, st.Close())
	cfg := writeFile(t, dir, "config.yaml", fmt.Sprintf(`
database: { driver: sqlite, dsn: "%s%s", busy_timeout: 300ms }
gateway:  { base_url: %q, secret_key: sk_test_dbtrouble, webhook_secret: whsec_x, concurrency: 4, rate_limit: 1000, timeout: 5s }
retry:    { initial_interval: 10ms, max_interval: 50ms, max_elapsed_time: 1s }
http:     { public_base_url: "https://billing.example.com" }
`, dbPath, dsnQuery, srv.URL))
	return &billingEnv{gw: gw, dbPath: dbPath, cfg: cfg, subs: n}
}

// check runs the invariant checker against the simulator's ledger.
func (e *billingEnv) check(t *testing.T, allowUnresolved bool) *invariant.Report {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: e.dbPath})
	require.NoError(t, err)
	defer st.Close()
	rep, err := invariant.Check(context.Background(), st, e.gw.Ledger(), invariant.Options{Now: time.Now().UTC(), AllowUnresolved: allowUnresolved})
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	require.Zero(t, rep.DoubleCharges, rep.String())
	return rep
}

// once runs `billingd once` in-process.
func (e *billingEnv) once(t *testing.T) (int, string, string) {
	t.Helper()
	return runWithTimeout(t, "once", "-c", e.cfg)
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestOnceWhileAnotherConnectionHoldsTheWriteLock holds a write transaction on
// the SQLite file from a separate connection for longer than busy_timeout while
// `billingd once` runs: the run fails with an error naming the database and
// charges nobody; once the lock is released the next run bills everything
// exactly once.
func TestOnceWhileAnotherConnectionHoldsTheWriteLock(t *testing.T) {
	e := newBillingEnv(t, t.TempDir(), 12, "")
	// Migrate first, so the held lock meets the run's first write, not goose.
	code, out, errOut := runWithTimeout(t, "migrate", "-c", e.cfg)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)

	db, err := sql.Open("sqlite3", "file:"+e.dbPath+"?_busy_timeout=100")
	require.NoError(t, err)
	defer db.Close()
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	require.NoError(t, err)
	_, err = conn.ExecContext(context.Background(), "UPDATE subscriptions SET updated_at = updated_at")
	require.NoError(t, err)

	for i := 0; i < 2; i++ { // twice: a retry by systemd fails the same clean way
		code, out, errOut = e.once(t)
		require.Equal(t, exitRuntime, code, "stdout %s stderr %s", out, errOut)
		require.Contains(t, errOut, e.dbPath, "the error names the database")
		require.Contains(t, errOut, "locked")
	}
	require.Empty(t, e.gw.Ledger(), "nothing was charged while the database was locked")

	_, err = conn.ExecContext(context.Background(), "ROLLBACK")
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	code, out, errOut = e.once(t)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
	rep := e.check(t, false)
	require.Equal(t, e.subs, rep.Invoices)
	require.Zero(t, rep.Unresolved)
	require.Equal(t, e.subs/2, rep.Succeeded)
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, or skips the test
// where mounting is not allowed (not root, no CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func remount(t *testing.T, dir, opts string) {
	t.Helper()
	out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// TestOnceOnAReadOnlyDatabase runs `billingd once` three times (as a restart
// loop would) against a database it cannot write: opened with mode=ro, and on a
// file system remounted read-only (root ignores chmod 0444, so the read-only
// mount is what a chmod does for a non-root daemon). Each run fails with an error
// naming the database; the file is byte-for-byte unchanged and nobody is charged.
func TestOnceOnAReadOnlyDatabase(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dir      func(t *testing.T) string
		query    string
		readOnly func(t *testing.T, dir string)
	}{
		{"mode=ro", func(t *testing.T) string { return t.TempDir() }, "?mode=ro", func(*testing.T, string) {}},
		{"read-only file system", func(t *testing.T) string { return mountTmpfs(t, 16<<20) }, "",
			func(t *testing.T, dir string) { remount(t, dir, "ro") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			e := newBillingEnv(t, dir, 8, tc.query)
			tc.readOnly(t, dir)
			digest := fileDigest(t, e.dbPath)
			for i := 0; i < 3; i++ {
				code, out, errOut := e.once(t)
				require.Equal(t, exitRuntime, code, "stdout %s stderr %s", out, errOut)
				require.Contains(t, errOut, e.dbPath, "the error names the database")
				require.Contains(t, strings.ToLower(errOut), "read", "the error says the database is read-only: %s", errOut)
				require.NotContains(t, errOut, "panic")
			}
			require.Equal(t, digest, fileDigest(t, e.dbPath), "the database file is unchanged")
			require.Empty(t, e.gw.Ledger(), "nobody was charged")
		})
	}
}

// TestOnceOnAFullDisk puts the SQLite file on a small tmpfs and fills it, so a
// pass runs into SQLITE_FULL part-way: the run fails with a clear error, what it
// committed before is consistent with the gateway, and once space is freed the
// next run completes every charge without charging anyone twice. (SQLite's
// max_page_count pragma would need a hook on every pooled connection, which
// go-sqlite3 has no DSN parameter for; a full file system is the real thing.)
func TestOnceOnAFullDisk(t *testing.T) {
	dir := mountTmpfs(t, 8<<20)
	e := newBillingEnv(t, dir, 40, "")
	code, out, errOut := runWithTimeout(t, "migrate", "-c", e.cfg)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)

	// Leave room for a few transactions only.
	var fs syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &fs))
	free := int64(fs.Bavail) * int64(fs.Bsize)
	filler := filepath.Join(dir, "filler")
	require.NoError(t, os.WriteFile(filler, make([]byte, free-fullDiskHeadroom), 0o600))

	code, out, errOut = e.once(t)
	t.Logf("full disk run: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	require.Equal(t, exitRuntime, code, "stdout %s stderr %s", out, errOut)
	require.Contains(t, errOut, "database or disk is full")
	require.Contains(t, errOut, e.dbPath, "the error names the database")
	// What was committed before the disk filled agrees with the gateway: no
	// double charge, nothing paid that was not charged, every charge the
	// database has not recorded as paid belongs to an attempt left unresolved
	// (to be replayed with its key). Invoices the interrupted run never got to
	// are due and unattempted, which the next run fixes.
	st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: e.dbPath})
	require.NoError(t, err)
	rep, err := invariant.Check(context.Background(), st, e.gw.Ledger(), invariant.Options{Now: time.Now().UTC(), AllowUnresolved: true})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	t.Logf("after the full-disk run: %s", rep)
	require.Zero(t, rep.DoubleCharges, rep.String())
	require.Zero(t, rep.PaidNotCharged, rep.String())
	require.Zero(t, rep.ChargedNotPaid, rep.String())
	require.Zero(t, rep.MissedPeriods, rep.String())
	require.NotZero(t, rep.Succeeded, "some charges went through before the disk filled")
	require.Less(t, rep.Succeeded, e.subs/2, "the disk filled part-way through the pass")

	require.NoError(t, os.Remove(filler))
	// Attempts the full run left unknown are replayed once their retry time
	// (retry.max_interval) has come: allow a pass or two more, as the daemon's
	// next ticks would.
	for i := 0; i < 5; i++ {
		code, out, errOut = e.once(t)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		if unresolvedAttempts(t, e.dbPath) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep = e.check(t, false)
	require.Equal(t, e.subs, rep.Invoices)
	require.Zero(t, rep.Unresolved)
	require.Equal(t, e.subs/2, rep.Succeeded, "every good card charged exactly once")
}

const fullDiskHeadroom = 400 << 10

func unresolvedAttempts(t *testing.T, dbPath string) int64 {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: dbPath})
	require.NoError(t, err)
	defer st.Close()
	var n int64
	require.NoError(t, st.DB().Raw(`SELECT COUNT(*) FROM charge_attempts WHERE status IN ('pending','unknown','processing')`).Scan(&n).Error)
	return n
}
