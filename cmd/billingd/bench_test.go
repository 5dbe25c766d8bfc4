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

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway/budget"
)

// simAsTestChild makes bench start its simulator as this test binary
// re-executed through TestMain, which then behaves like `billingd sim`.
func simAsTestChild(t *testing.T) {
	t.Helper()
	orig := benchCommand
	t.Cleanup(func() { benchCommand = orig })
	benchCommand = func(ctx context.Context, args []string) (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), "BILLINGD_TEST_MAIN=1", "BILLINGD_TEST_ARGS="+strings.Join(args, "\x1f"))
		return cmd, nil
	}
}

// benchFigure reads the billingd column of a row of the bench table.
func benchFigure(t *testing.T, out, row string) string {
	t.Helper()
	_, billingd := benchColumns(t, out, row)
	return billingd
}

// benchColumns reads both columns of a row of a bench table: the raw
// client's and billingd's.
func benchColumns(t *testing.T, out, row string) (raw, billingd string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(row) + `\s+(\S+(?: / \S+)?)\s+(\S+(?: / \S+)?)\s*$`).FindStringSubmatch(out)
	require.NotNil(t, m, "row %q in:\n%s", row, out)
	return m[1], m[2]
}

// benchNumber parses a figure of a bench table.
func benchNumber(t *testing.T, row, v string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(v, 64)
	require.NoError(t, err, "%s: %q", row, v)
	return f
}

// requireChargeCosts checks the shape and plausibility of the "per charge"
// table: billingd sends statements and commits transactions for every
// charge, at most a few of each (the group commit puts many charges in one
// transaction), and each process's CPU adds up to the total. withRaw says a
// raw run measured the client and the simulator alone; postgres that the
// server's rows are printed.
func requireChargeCosts(t *testing.T, out string, withRaw, postgres bool) {
	t.Helper()
	statements := benchNumber(t, "SQL statements", benchFigure(t, out, "SQL statements"))
	require.Greater(t, statements, 1.0, "a charge is at least its attempt's write and its outcome's")
	require.Less(t, statements, 100.0)
	committed, rolledBack, ok := strings.Cut(benchFigure(t, out, "transactions committed / rolled back"), " / ")
	require.True(t, ok)
	tx := benchNumber(t, "transactions committed", committed)
	require.Greater(t, tx, 0.0)
	require.Less(t, tx, 10.0)
	require.Zero(t, benchNumber(t, "transactions rolled back", rolledBack), "nothing failed")
	autocommit := benchNumber(t, "statements outside a transaction", benchFigure(t, out, "statements outside a transaction"))
	require.GreaterOrEqual(t, autocommit, 0.0)
	require.Less(t, autocommit, statements)

	rows := []string{"CPU µs: billingd (raw: the client)", "CPU µs: simulator"}
	if postgres {
		rows = append(rows, "CPU µs: PostgreSQL, whole server")
	}
	rawSum, sum := 0.0, 0.0
	for _, row := range rows {
		raw, billingd := benchColumns(t, out, row)
		if postgres && billingd == "-" && strings.Contains(out, "PostgreSQL not measured: ") {
			return // the server is on another host: no total
		}
		// /proc/PID/stat counts in clock ticks (10 ms): a short run's
		// simulator or server may show none. billingd's is getrusage's.
		v := benchNumber(t, row, billingd)
		require.GreaterOrEqual(t, v, 0.0, row)
		if row == rows[0] {
			require.Greater(t, v, 0.0, row)
		}
		sum += v
		if withRaw && row != "CPU µs: PostgreSQL, whole server" {
			rv := benchNumber(t, row+" (raw)", raw)
			require.GreaterOrEqual(t, rv, 0.0, row+" (raw)")
			rawSum += rv
		} else {
			require.Equal(t, "-", raw, row+" (raw)")
		}
	}
	rawTotal, total := benchColumns(t, out, "CPU µs: total")
	require.InDelta(t, sum, benchNumber(t, "CPU µs: total", total), float64(len(rows)), "the total is the processes' sum, up to rounding")
	if withRaw {
		require.InDelta(t, rawSum, benchNumber(t, "CPU µs: total (raw)", rawTotal), 2)
	}
}

// benchArg is the number after flag in args, 0 if absent.
func benchArg(args []string, flag string) float64 {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			v, _ := strconv.ParseFloat(args[i+1], 64)
			return v
		}
	}
	return 0
}

func TestBenchChargesEveryDueSubscriptionOnce(t *testing.T) {
	simAsTestChild(t)
	for _, tc := range []struct {
		name string
		args []string
		n    int
	}{
		{"raw ceiling and latency bound", []string{"--subscriptions", "400", "--concurrency", "16", "--latency", "5ms", "--raw"}, 400},
		{"rate bound with the simulator enforcing the same limit", []string{"--subscriptions", "60", "--concurrency", "8", "--rate", "200"}, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			code, out, errOut := runMain(t, nil, append([]string{"bench", "--dir", dir}, tc.args...)...)
			require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			require.Contains(t, out, "check: "+strconv.Itoa(tc.n)+" invoices paid, "+strconv.Itoa(tc.n)+" charge attempts for "+strconv.Itoa(tc.n)+" due subscriptions")
			require.Regexp(t, `simulator: \d+ API requests, 0 refused over its rate limit`, out)
			require.Equal(t, strconv.Itoa(tc.n), benchFigure(t, out, "charges"))
			rate, err := strconv.ParseFloat(benchFigure(t, out, "charges/s"), 64)
			require.NoError(t, err)
			require.Greater(t, rate, 0.0)
			ratio := strings.TrimSuffix(benchFigure(t, out, "of the bound"), "%")
			pct, err := strconv.ParseFloat(ratio, 64)
			require.NoError(t, err, "of the bound: %q", ratio)
			require.Greater(t, pct, 0.0)
			if rateLimit := benchArg(tc.args, "--rate"); rateLimit > 0 {
				// The limiter's buckets fill while the bench seeds, so a pass may
				// open with their bursts: a short pass can beat rate × elapsed
				// by those tokens, never by more.
				elapsed, err := time.ParseDuration(benchFigure(t, out, "elapsed"))
				require.NoError(t, err)
				burst := rateLimit*budget.BurstWindow.Seconds() + 2
				require.LessOrEqual(t, float64(tc.n), rateLimit*elapsed.Seconds()+burst+1,
					"%d charges in %s at %g/s: more than the rate and the limiter's bursts allow", tc.n, elapsed, rateLimit)
			} else {
				require.LessOrEqual(t, pct, 101.0, "a run cannot beat its own bound by more than rounding")
			}
			require.Regexp(t, `peak RSS during the pass: \d+\.\d MB`, out)
			require.Regexp(t, `database size: \d+\.\d MB`, out)
			require.FileExists(t, dir+"/bench.db")
			withRaw := strings.Contains(strings.Join(tc.args, " "), "--raw")
			if withRaw {
				require.Regexp(t, `billingd / raw: \d+\.\d%`, out)
			}
			requireChargeCosts(t, out, withRaw, false)
		})
	}
}

func TestBenchRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--subscriptions", "0"}, "--subscriptions must be at least 1, got 0"},
		{[]string{"--concurrency", "0"}, "--concurrency must be between 1 and"},
		{[]string{"--latency", "-1s"}, "--latency must not be negative, got -1s"},
		{[]string{"--rate", "-5"}, "--rate must be 0 (no limit) or a positive number"},
		{[]string{"--synchronous", "sometimes"}, "database.synchronous"},
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"--driver", "mysql"}, "--driver must be sqlite or postgres"},
		{[]string{"--instances", "3"}, "need --driver postgres"},
		{[]string{"--driver", "postgres"}, "--driver postgres needs --dsn"},
		{[]string{"--driver", "postgres", "--dsn", "postgres://x@127.0.0.1/db", "--instances", "1", "--kill-one-after", "5s"}, "--kill-one-after needs at least 2 instances"},
		{[]string{"--driver", "postgres", "--dsn", "postgres://x@127.0.0.1/db", "--instances", "0"}, "--instances must be between 1 and 32"},
		{[]string{"--driver", "postgres", "--dsn", "postgres://x@127.0.0.1:99999/db"}, "--dsn:"},
		{[]string{"--driver", "postgres", "--dsn", "postgres://x@127.0.0.1/db", "--instances", "1", "--remove-one-after", "5s"}, "--remove-one-after needs at least 2 instances"},
		{[]string{"--driver", "postgres", "--dsn", "postgres://x@127.0.0.1/db", "--instances", "3", "--limits-per-instance"}, "flag provided but not defined: -limits-per-instance"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			simAsTestChild(t)
			code, _, errOut := runMain(t, nil, append([]string{"bench", "--dir", t.TempDir()}, tc.args...)...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, tc.want)
		})
	}
}
