package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/ops"
)

// cmdReconcile is `billingd reconcile --since T`: compare the gateway's
// payments since T with the database and repair every difference (the first
// step after a database restore, before the daemon charges again).
func (m *Main) cmdReconcile(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("reconcile")
	since := fs.String("since", "", "compare the payments created at or after `T`: RFC 3339, YYYY-MM-DD (midnight UTC), or a duration back from now (72h)")
	dryRun := fs.Bool("dry-run", false, "report the differences; change nothing")
	out := addOutputFlags(fs)
	act := addActionFlags(fs)
	if err := flagsOnly(fs, args, out); err != nil {
		return err
	}
	if strings.TrimSpace(*since) == "" {
		return usagef("--since is required: the time of the backup the database was restored from (RFC 3339, YYYY-MM-DD or a duration such as 72h)")
	}
	t, err := sinceFlag(*since, time.Now())
	if err != nil {
		return err
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), needOps)
	if err != nil {
		return err
	}
	svc, done, err := m.actOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	return reconcileWith(ctx, svc, ops.ReconcileRequest{Since: t, DryRun: *dryRun, Reason: act.reason}, act.who(), out, m.Stdout, m.Stderr)
}

// sinceFlag reads --since: an RFC 3339 instant, a date (midnight UTC), or a
// positive duration meaning that long before now.
func sinceFlag(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return time.Time{}, usagef("--since %q: a duration must be positive (how long ago)", v)
		}
		return now.Add(-d).UTC(), nil
	}
	t, err := dateFlag("--since", v, time.UTC)
	if err != nil {
		return time.Time{}, usagef("--since %q: want an RFC 3339 time (2026-11-01T00:00:00Z), YYYY-MM-DD, or a duration such as 72h", v)
	}
	if t.After(now) {
		return time.Time{}, usagef("--since %q is in the future", v)
	}
	return t.UTC(), nil
}

// errFlaggedForReview ends a reconcile that left something for a person
// (exit 1); the report above it says what.
var errFlaggedForReview = errors.New("flagged for review")

// reconcileWith runs the reconcile on svc and prints its differences (a
// table, JSON or CSV on stdout) and its summary line (under the table, or on
// stderr beside JSON and CSV). It fails when something was flagged for
// review, so the exit code tells a script whether the books now agree.
func reconcileWith(ctx context.Context, svc *ops.Service, req ops.ReconcileRequest, actor ops.Actor, out *outputFormat, stdout, stderr io.Writer) error {
	rep, err := svc.Reconcile(ctx, actor, req)
	if err != nil {
		return err
	}
	t := table{header: []string{"kind", "invoice", "subscription", "payment", "amount", "currency", "done"}}
	for _, d := range rep.Differences {
		amount := money.Format(d.Amount, d.Currency)
		amount = strings.TrimSuffix(amount, " "+d.Currency)
		t.add(d.Kind, dash(d.Invoice), dash(d.Subscription), dash(d.Payment), amount, d.Currency, d.Done)
	}
	if err := out.emit(stdout, t, rep); err != nil {
		return err
	}
	summary := reconcileSummary(rep)
	if out.json || out.csv {
		fmt.Fprintln(stderr, summary)
	} else {
		fmt.Fprintln(stdout, summary)
	}
	if rep.Flagged > 0 {
		return fmt.Errorf("%w: %d difference(s) need a person: billingd attempts list --status needs_review, and the audit log's %s rows",
			errFlaggedForReview, rep.Flagged, ops.ActionReconcileFlag)
	}
	if rep.DryRun && len(rep.Differences) > 0 {
		return fmt.Errorf("%d difference(s) found; nothing changed (dry run)", len(rep.Differences))
	}
	return nil
}

func reconcileSummary(rep *ops.ReconcileReport) string {
	verb, fixed := "repaired", rep.Repaired
	if rep.DryRun {
		verb, fixed = "to repair", len(rep.Differences)-rep.Flagged
	}
	state := "the books agree"
	switch {
	case rep.Flagged > 0:
		state = "NEEDS REVIEW"
	case rep.DryRun && len(rep.Differences) > 0:
		state = "the books differ (dry run: nothing changed)"
	case rep.Repaired > 0:
		state = "the books agree after the repairs"
	}
	return fmt.Sprintf("since %s: %d payment(s) read, %d agreeing, %d %s, %d flagged for review, %d not billingd's, %d not succeeded: %s",
		rep.Since.Format(time.RFC3339), rep.Payments, rep.Agreeing, fixed, verb, rep.Flagged, rep.NotOurs, rep.NotSucceeded, state)
}
