package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/cluster"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// The cluster bench on PostgreSQL: two `billingd run` processes (this test
// binary as billingd) bill 200 due subscriptions together, each once, and the
// bench prints every figure and drops its database.
func TestBenchClusterOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	// The server itself, not a schema: the bench creates its own database.
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skipf("PostgreSQL tests skipped: set %s to run the cluster bench", storetest.PostgresEnv)
	}
	simAsTestChild(t)
	code, out, errOut := runMain(t, nil, "bench", "--driver", "postgres", "--dsn", base, "--dir", t.TempDir(),
		"--subscriptions", "200", "--instances", "2", "--concurrency", "8", "--latency", "5ms", "--pgbench-time", "1s", "--pgbench-clients", "2")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)

	require.Contains(t, out, "check: 200 invoices paid, 200 charge attempts for 200 due subscriptions")
	require.Regexp(t, `every instance held its fair share of the limits \S+ after all had started`, out, "the pass starts on a joined cluster")
	require.Contains(t, out, "double charges (orders with more than one succeeded payment in the simulator's ledger): 0")
	require.Regexp(t, `simulator: \d+ API requests during the pass, 0 refused over its rate limit \(429\)`, out)
	require.Equal(t, "200", benchFigure(t, out, "charges"))
	require.Equal(t, "1600", benchFigure(t, out, "bound min(concurrency/latency, rate)"), "the bound is the cluster's: 8 ÷ 5ms")
	rate, err := strconv.ParseFloat(benchFigure(t, out, "charges/s"), 64)
	require.NoError(t, err)
	require.Greater(t, rate, 0.0)
	require.Regexp(t, `attempt latency p50 / p99\s+-\s+\S+ / \S+`, out)

	// Each instance's share, adding up to every charge.
	shares := regexp.MustCompile(`(?m)^  (\d)  \S+:\d+:\S+  charges (\d+) \(\d+\.\d%\)  CPU \d+\.\d\ds  peak RSS \d+\.\d MB`).FindAllStringSubmatch(out, -1)
	require.Len(t, shares, 2, out)
	total := 0
	for _, s := range shares {
		n, _ := strconv.Atoi(s[2])
		total += n
	}
	require.Equal(t, 200, total, "the instances' shares add up to the charges")

	require.Regexp(t, `CPU s per 1,000 charges: billingd \d+\.\d{3} \(user\+system of the 2 processes`, out)
	require.Regexp(t, `PostgreSQL: the bench database's backends \d+\.\d{3}, the whole server \d+\.\d{3}|PostgreSQL not measured: `, out)
	require.Regexp(t, `database transactions: \d+ committed in the bench database during the pass, \d+\.\d\d per charge`, out)
	requireChargeCosts(t, out, false, true)
	require.Contains(t, out, "statements and transactions: the instances' billingd_db_statements_total and billingd_db_transactions_total (/metrics) from T0 to the end, summed\n")
	backends, err := strconv.ParseFloat(benchFigure(t, out, "CPU µs: PostgreSQL, bench database's backends"), 64)
	if err == nil {
		require.Greater(t, backends, 0.0)
	} else {
		require.Contains(t, out, "PostgreSQL not measured: ")
	}
	if _, err := exec.LookPath("pgbench"); err == nil {
		require.Regexp(t, `pgbench -N -c 2 -j 2 -T 1 on a scratch database of the same server: \d+ tps; billingd's charges/s are \d+\.\d% of it`, out)
	} else {
		require.Contains(t, out, "pgbench: pgbench not found in PATH")
	}

	// The bench's databases are gone.
	name := regexp.MustCompile(`database (billingd_bench_\w+)\)`).FindStringSubmatch(out)
	require.NotNil(t, name, out)
	admin, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: base, MaxOpenConns: 1})
	require.NoError(t, err)
	defer admin.Close()
	var left int64
	require.NoError(t, admin.DB().Raw(`SELECT count(*) FROM pg_database WHERE datname LIKE ?`, name[1]+"%").Scan(&left).Error)
	require.Zero(t, left, "databases %s* left on the server", name[1])
}

// The shares printed for each instance are those at the pass's end: a row read
// before an instance left only stands in for the leaver, whose row is gone.
func TestLastKnownRowsPreferTheFinalShares(t *testing.T) {
	before := []models.Instance{
		{Name: "a", RateShare: 25}, {Name: "b", RateShare: 25}, {Name: "leaver", RateShare: 25},
	}
	final := []models.Instance{{Name: "a", RateShare: 50}, {Name: "b", RateShare: 50}}
	got := map[string]float64{}
	for _, r := range lastKnownRows(final, before) {
		_, dup := got[r.Name]
		require.False(t, dup, "one row per instance, %q twice", r.Name)
		got[r.Name] = r.RateShare
	}
	require.Equal(t, map[string]float64{"a": 50, "b": 50, "leaver": 25}, got)
}

// The pass starts once the instances have joined: exactly the expected number
// live, each publishing the fair share of its rank — not while one still
// waits at nothing for the others to lower theirs.
func TestFairSharesWaitForEveryInstance(t *testing.T) {
	now := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	limits := cluster.Limits{Rate: 100, Concurrency: 64}
	row := func(name string, rate float64, conc int, expires time.Duration) models.Instance {
		return models.Instance{Name: name, RateShare: rate, ConcurrencyShare: conc, ExpiresAt: now.Add(expires)}
	}
	third := cluster.Split(limits, 3, 0).Rate
	for _, tc := range []struct {
		name string
		rows []models.Instance
		want bool
	}{
		{"all three at their fair share", []models.Instance{row("a", third, 22, time.Second), row("b", third, 21, time.Second), row("c", third, 21, time.Second)}, true},
		{"the first still holds the whole rate, the others nothing", []models.Instance{row("a", 100, 64, time.Second), row("b", 0, 0, time.Second), row("c", 0, 0, time.Second)}, false},
		{"one lowered, one not yet raised", []models.Instance{row("a", third, 22, time.Second), row("b", third, 21, time.Second), row("c", 0, 0, time.Second)}, false},
		{"only two have registered", []models.Instance{row("a", 50, 32, time.Second), row("b", 50, 32, time.Second)}, false},
		{"a dead row does not count", []models.Instance{row("a", third, 22, time.Second), row("b", third, 21, time.Second), row("c", third, 21, -time.Second)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, fairShares(tc.rows, now, 3, limits))
		})
	}
}

// The cluster bench reads each instance's database counts from its /metrics
// page, and says so when a page lacks them (an instance of an older billingd)
// rather than counting zero.
func TestParseDBCounts(t *testing.T) {
	page := `# HELP billingd_db_statements_total SQL statements this process sent.
# TYPE billingd_db_statements_total counter
billingd_db_statements_total 12345
# TYPE billingd_db_transactions_total counter
billingd_db_transactions_total{outcome="autocommit"} 7
billingd_db_transactions_total{outcome="commit_failed"} 1
billingd_db_transactions_total{outcome="committed"} 1.5e+06
billingd_db_transactions_total{outcome="rolled_back"} 3
billingd_charge_attempts_total{outcome="succeeded"} 99
`
	for _, tc := range []struct {
		name, page string
		want       store.DBCounts
		err        string
	}{
		{"every counter", page, store.DBCounts{Statements: 12345, Committed: 1500000, RolledBack: 3, CommitFailed: 1, Autocommit: 7}, ""},
		{"no database counters", "billingd_charge_attempts_total{outcome=\"succeeded\"} 99\n", store.DBCounts{}, "has no billingd_db_statements_total"},
		{"a counter missing", strings.Replace(page, `billingd_db_transactions_total{outcome="rolled_back"} 3`, "", 1), store.DBCounts{}, "has no billingd_db_statements_total"},
		{"a value that is no number", strings.Replace(page, "12345", "many", 1), store.DBCounts{}, "billingd_db_statements_total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDBCounts(tc.page)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
