package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/importcheck"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/subscriptioncsv"
	"golang.org/x/time/rate"
)

// parseConfigOnly parses a command that takes -c and no positional arguments and
// loads its whole config. extra registers more flags before parsing.
func (m *Main) parseConfigOnly(name string, args []string, extra func(*flag.FlagSet)) (*config.Config, string, error) {
	return m.parseConfigFor(name, args, config.NeedAll, extra)
}

func (m *Main) cmdCheckConfig(args []string) error {
	_, p, err := m.parseConfigOnly("check-config", args, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "%s: ok\n", p)
	return nil
}

func (m *Main) cmdMigrate(ctx context.Context, args []string) error {
	// schedule.timezone is read too: the migration that gives subscriptions
	// their own zone gives existing ones the configured zone.
	cfg, _, err := m.parseConfigFor("migrate", args, config.Need{Schedule: true}, nil)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	for _, a := range applied {
		fmt.Fprintf(m.Stdout, "applied %s\n", a)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(m.Stdout, upToDate(ctx, st))
	}
	return nil
}

func (m *Main) cmdOnce(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("once")
	dryRun := fs.Bool("dry-run", false, "list what would be charged; change nothing")
	if rest, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	// A dry run only reads the database: it needs no gateway, webhook or SMTP
	// secret.
	need := config.NeedAll
	if *dryRun {
		need = config.Need{Schedule: true, Billing: true}
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), need)
	if err != nil {
		return err
	}
	if *dryRun {
		return m.dryRun(ctx, cfg)
	}
	d, err := daemon.New(ctx, cfg, daemon.Options{Log: m.Stderr})
	if err != nil {
		return err
	}
	defer d.Close()
	stop, abort := m.shutdownContexts(ctx, d.Log(), func() time.Duration { return cfg.Schedule.DrainTimeout.D() }, nil)
	run, err := d.Pass(stop, abort, "once")
	if run != nil {
		fmt.Fprintln(m.Stdout, runSummary(run))
	}
	if err != nil {
		return err
	}
	// The emails the pass queued go out now; a broken SMTP server leaves them
	// in the outbox for the next run, never drops them.
	sum, err := d.SendMail(stop)
	if err != nil {
		fmt.Fprintf(m.Stderr, "billingd once: emails wait in the outbox for the next run: %v\n", err)
		return nil
	}
	if sum.Sent+sum.Retried+sum.Failed > 0 {
		fmt.Fprintf(m.Stdout, "emails: %d sent, %d to retry, %d failed\n", sum.Sent, sum.Retried, sum.Failed)
	}
	return nil
}

// dryRun prints what a pass would charge, reading the database without the
// instance lock and writing nothing.
func (m *Main) dryRun(ctx context.Context, cfg *config.Config) error {
	plan, err := daemon.Plan(ctx, cfg, nil, 0)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(m.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tSUBSCRIPTION\tINVOICE\tPERIOD START\tAMOUNT")
	for _, p := range plan {
		start := ""
		if !p.PeriodStart.IsZero() {
			start = p.PeriodStart.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Kind, p.Reference, p.Invoice, start, money.Format(p.Amount, p.Currency))
	}
	_ = w.Flush()
	now, follow := 0, 0
	for _, p := range plan {
		if p.Kind == schedule.PlanFollow {
			follow++
		} else {
			now++
		}
	}
	fmt.Fprintf(m.Stdout, "%d charge(s) would start now and %d more follow, one at a time in period order, as the ones before them succeed; nothing was changed (dry run)\n", now, follow)
	return nil
}

func (m *Main) cmdStatus(ctx context.Context, args []string) error {
	cfg, _, err := m.parseConfigFor("status", args, config.NeedDatabase, nil)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer st.Close()
	if ok, err := st.MigrationsCurrent(ctx); err != nil {
		return err
	} else if !ok {
		return errors.New("the database schema is not current: run `billingd migrate`")
	}
	if err := printStatus(ctx, m.Stdout, st, time.Now().UTC()); err != nil {
		return err
	}
	return printSchemaStatus(ctx, m.Stdout, st, time.Now().UTC())
}

func printStatus(ctx context.Context, out io.Writer, st *store.Store, now time.Time) error {
	r, err := st.Status(ctx, now)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	line := func(name string, cs []store.Count) {
		parts := make([]string, 0, len(cs))
		for _, c := range cs {
			parts = append(parts, fmt.Sprintf("%s %d", c.Status, c.N))
		}
		if len(parts) == 0 {
			parts = append(parts, "none")
		}
		fmt.Fprintf(w, "%s\t%s\n", name, strings.Join(parts, ", "))
	}
	line("subscriptions", r.Subscriptions)
	line("invoices", r.Invoices)
	line("charge attempts", r.Attempts)
	line("dunning cases", r.DunningCases)
	line("emails", r.Emails)
	line("webhook events", r.Webhooks)
	line("events to your app", r.Events)
	fmt.Fprintf(w, "due now\t%d subscription(s)\n", r.DueNow)
	fmt.Fprintf(w, "unresolved attempts\t%d (pending/unknown/processing)\n", r.Unresolved)
	fmt.Fprintf(w, "needs a human\t%d (needs_review/failed attempts)\n", r.NeedsReview)
	fmt.Fprintf(w, "queues held\t%d (invoices nothing will charge: an attempt to resolve, or a dead card with no case asking for a new one)\n", r.Held)
	paid := make([]string, 0, len(r.PaidToday))
	for _, t := range r.PaidToday {
		p := fmt.Sprintf("%s (%d)", money.Format(t.Amount, t.Currency), t.N-t.Unbounded)
		if t.Unbounded > 0 {
			p += fmt.Sprintf(" + %d invoice(s) above the amount bound, not summed", t.Unbounded)
		}
		paid = append(paid, p)
	}
	if len(paid) == 0 {
		paid = append(paid, "nothing")
	}
	fmt.Fprintf(w, "collected today (UTC)\t%s\n", strings.Join(paid, ", "))
	line("refunds", r.Refunds)
	line("duplicate payments", r.DuplicateRefunds)
	refunded := make([]string, 0, len(r.Refunded))
	for _, t := range r.Refunded {
		refunded = append(refunded, fmt.Sprintf("%s (%d)", money.Format(t.Amount, t.Currency), t.N))
	}
	if len(refunded) == 0 {
		refunded = append(refunded, "nothing")
	}
	fmt.Fprintf(w, "refunded (all time)\t%s\n", strings.Join(refunded, ", "))
	if r.UnboundedSubscriptions > 0 || r.UnboundedInvoices > 0 {
		fmt.Fprintf(w, "amounts out of bounds\t%d subscription(s), %d invoice(s) (written before amounts were bounded; not invoiced, not summed: see docs/amounts.md)\n",
			r.UnboundedSubscriptions, r.UnboundedInvoices)
	}
	_ = w.Flush()
	if err := printInstances(ctx, out, st, now); err != nil {
		return err
	}
	if len(r.LastRuns) > 0 {
		fmt.Fprintln(out, "\nlast billing runs:")
		w = tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tSTARTED\tSTATUS\tTRIGGER\tDUE\tINVOICED\tATTEMPTS\tOK\tDECLINED\tACTION\tPROCESSING\tUNKNOWN\tMS")
		for _, run := range r.LastRuns {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", run.ID, run.StartedAt.Format(time.RFC3339), run.Status, run.Trigger,
				run.SubscriptionsDue, run.InvoicesCreated, run.AttemptsStarted+run.AttemptsReplayed, run.Succeeded, run.Declined,
				run.RequiresAction, run.Processing, run.Unknown, run.DurationMS)
		}
		_ = w.Flush()
	}
	return nil
}

func (m *Main) cmdImport(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("subscriptions import")
	backfill := fs.Bool("backfill", false, "allow anchors more than one period in the past (every missed period is billed)")
	noVerify := fs.Bool("no-verify", false, "do not check the customer and payment method ids with the gateway")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("usage: billingd subscriptions import FILE [--backfill] [--no-verify] [-c FILE]")
	}
	// Verifying ids needs the gateway's key, and nothing else secret; an
	// import without verification needs no secret at all.
	need := config.NeedDatabaseAndGatewayKey
	if *noVerify {
		need = config.Need{Schedule: true}
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), need)
	if err != nil {
		return err
	}
	n, err := importFile(ctx, cfg, rest[0], *backfill, time.Now().UTC(), importOptions{NoVerify: *noVerify, Progress: m.Stderr})
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "imported %d subscription(s) from %s\n", n, rest[0])
	return nil
}

// importOptions tune importFile; the zero value verifies with the gateway
// and prints progress on os.Stderr.
type importOptions struct {
	// NoVerify skips the gateway check: the import makes no gateway call.
	NoVerify bool
	// Progress receives verification progress and warnings (default os.Stderr).
	Progress io.Writer
	// Accounts replaces the gateway client built from cfg.Gateway (tests).
	Accounts importcheck.Gateway
}

// importFile checks the whole CSV, verifies its new gateway ids with the
// gateway (unless opts says not to), then imports it in one transaction. Bad
// rows and ids the gateway does not know are a usage error (exit 2): nothing
// was written. A gateway that cannot be asked is a runtime failure (exit 1),
// and nothing was written either.
func importFile(ctx context.Context, cfg *config.Config, file string, backfill bool, now time.Time, options ...importOptions) (int, error) {
	var opts importOptions
	if len(options) > 0 {
		opts = options[0]
	}
	if opts.Progress == nil {
		opts.Progress = os.Stderr
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, usageError{err}
	}
	defer f.Close()
	loc, err := cfg.Schedule.Location()
	if err != nil {
		return 0, usageError{err}
	}
	csvOpts := subscriptioncsv.Options{Location: loc, Now: now, Backfill: backfill, Provider: cfg.Gateway.Provider}
	// The first pass checks the whole file before anything is written; with
	// verification it keeps the rows (the gateway check needs them), without
	// it it keeps nothing, and the second pass streams the file again into
	// the one import transaction, so memory stays bounded however long the
	// file is.
	var rows []store.ImportRow
	if opts.NoVerify {
		err = subscriptioncsv.Scan(f, csvOpts, func(store.ImportRow) error { return nil })
	} else {
		rows, err = subscriptioncsv.Parse(f, csvOpts)
	}
	if err != nil {
		return 0, usageError{fmt.Errorf("%s: %w", file, err)}
	}
	st, err := openStore(ctx, cfg, false)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return 0, err
	}
	var verified importcheck.Result
	if !opts.NoVerify {
		verified, err = verifyImport(ctx, cfg, st, rows, opts)
		var ie store.ImportErrors
		if errors.As(err, &ie) {
			return 0, usageError{fmt.Errorf("%s: %w", file, err)}
		}
		if err != nil {
			return 0, err
		}
	}
	var n int
	if opts.NoVerify {
		n, err = st.ImportStream(ctx, now, func(yield func(store.ImportRow) error) error {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			return subscriptioncsv.Scan(f, csvOpts, yield)
		})
	} else {
		n, err = st.ImportSubscriptions(ctx, rows, now)
	}
	var ie store.ImportErrors
	if errors.As(err, &ie) {
		return 0, usageError{fmt.Errorf("%s: %w", file, err)}
	}
	if err != nil {
		return 0, err
	}
	if err := st.MarkVerified(ctx, now, verified.Customers, verified.PaymentMethods); err != nil {
		// The subscriptions are in; only the memory that their ids were
		// checked is missing. A card that disappears later then reads as a
		// data error for a human instead of a card-update email: safe.
		fmt.Fprintf(opts.Progress, "warning: imported, but could not record that the gateway verified the ids: %v\n", err)
	}
	if err := st.RecordCardDetails(ctx, now, verified.Cards); err != nil {
		// Only the cards' brand, last 4 and expiry are missing; the daemon
		// reads cards it never read before on its own.
		fmt.Fprintf(opts.Progress, "warning: imported, but could not record the cards' details: %v\n", err)
	}
	return n, nil
}

// verifyImport checks the rows' not yet verified ids with the gateway, within
// gateway.rate_limit and gateway.concurrency.
func verifyImport(ctx context.Context, cfg *config.Config, st *store.Store, rows []store.ImportRow, opts importOptions) (importcheck.Result, error) {
	customers := make([]string, 0, len(rows))
	methods := make([]string, 0, len(rows))
	for _, r := range rows {
		customers = append(customers, r.Customer)
		methods = append(methods, r.PaymentMethod)
	}
	known, err := st.VerifiedIDs(ctx, customers, methods)
	if err != nil {
		return importcheck.Result{}, err
	}
	gw := opts.Accounts
	if gw == nil {
		client, err := daemon.NewGatewayClient(cfg)
		if err != nil {
			return importcheck.Result{}, usageError{fmt.Errorf("gateway: %w", err)}
		}
		gw = client
	}
	var limiter *rate.Limiter
	if cfg.Gateway.RateLimit > 0 {
		limiter = rate.NewLimiter(rate.Limit(cfg.Gateway.RateLimit), 1)
	}
	return importcheck.Check(ctx, gw, rows, importcheck.Options{
		Verified: known, Limiter: limiter, Workers: cfg.Gateway.Concurrency, Progress: opts.Progress,
	})
}

func (m *Main) cmdSim(ctx context.Context, args []string) error {
	cfg, err := sim.ParseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(m.Stdout, strings.TrimPrefix(err.Error(), flag.ErrHelp.Error()+"\n"))
			return nil
		}
		return usageError{err}
	}
	srv := sim.New(cfg.Options)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv.Start(runCtx)
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	provider := "WooshPay"
	if cfg.Options.Provider == sim.ProviderCheckout {
		provider = "Checkout.com"
	}
	fmt.Fprintf(m.Stdout, "%s simulator listening on http://%s (ledger: /_sim/ledger)\n", provider, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-m.Signals:
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	return hs.Shutdown(sctx)
}
