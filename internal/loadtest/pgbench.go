package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// PgbenchResult is one `pgbench -N` run: the database server's own ceiling
// of short write transactions, measured with PostgreSQL's tool.
type PgbenchResult struct {
	Clients, Threads int
	Duration         time.Duration
	// TPS is pgbench's "tps = …" figure (without the initial connection time).
	TPS float64
}

// RunPgbench initializes pgbench's tables (scale 1) in the database dsn
// points at, an empty scratch database, and runs the simple-update script
// (-N: no updates of the few branch and teller rows, so clients do not queue
// on them) with clients connections over threads threads for d. The DSN is
// given to pgbench (libpq) as it is.
func RunPgbench(ctx context.Context, dsn string, clients, threads int, d time.Duration) (PgbenchResult, error) {
	r := PgbenchResult{Clients: clients, Threads: threads, Duration: d}
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		return r, fmt.Errorf("pgbench not found in PATH (Debian: postgresql-client): %w", err)
	}
	var out bytes.Buffer
	init := exec.CommandContext(ctx, bin, "-i", "-q", dsn)
	init.Stdout, init.Stderr = &out, &out
	if err := init.Run(); err != nil {
		return r, fmt.Errorf("pgbench -i: %w\n%s", err, out.Bytes())
	}
	out.Reset()
	secs := max(1, int(d.Round(time.Second)/time.Second))
	run := exec.CommandContext(ctx, bin, "-N", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(secs), dsn)
	run.Stdout, run.Stderr = &out, &out
	if err := run.Run(); err != nil {
		return r, fmt.Errorf("pgbench -N: %w\n%s", err, out.Bytes())
	}
	tps, err := ParsePgbenchTPS(out.String())
	r.TPS = tps
	return r, err
}

var pgbenchTPS = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)`)

// ParsePgbenchTPS reads the tps figure of pgbench's report (the one without
// connection set-up: "without initial connection time" since PostgreSQL 14,
// "excluding connections establishing" before).
func ParsePgbenchTPS(report string) (float64, error) {
	m := pgbenchTPS.FindStringSubmatch(report)
	if m == nil {
		return 0, fmt.Errorf("no tps line in pgbench's report:\n%s", report)
	}
	return strconv.ParseFloat(m[1], 64)
}
