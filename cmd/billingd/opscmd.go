package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/ops"
)

// groups are the commands that take a subcommand (`billingd invoices
// refund …`); an error names both words.
var groups = map[string]bool{
	"subscriptions": true, "invoices": true, "attempts": true, "dunning": true,
	"report": true, "admin-tokens": true, "events": true,
}

// subcommand runs one subcommand of a group with the rest of the arguments.
type subcommand func(ctx context.Context, args []string) error

// group dispatches `billingd GROUP SUB args…`.
func (m *Main) group(ctx context.Context, name string, args []string, subs map[string]subcommand) error {
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(m.Stdout, "usage: billingd %s %s …  (billingd %s SUBCOMMAND -h for each)\n", name, strings.Join(names, "|"), name)
			return flag.ErrHelp
		}
		return usagef("usage: billingd %s %s …", name, strings.Join(names, "|"))
	}
	sub, ok := subs[args[0]]
	if !ok {
		return usagef("unknown subcommand %q: billingd %s %s …", args[0], name, strings.Join(names, "|"))
	}
	return sub(ctx, args[1:])
}

// outputFormat is how a listing or report prints: a table for a person,
// JSON or CSV for a script.
type outputFormat struct{ json, csv bool }

// addOutputFlags registers --json and --csv.
func addOutputFlags(fs *flag.FlagSet) *outputFormat {
	f := &outputFormat{}
	fs.BoolVar(&f.json, "json", false, "print JSON (for scripts)")
	fs.BoolVar(&f.csv, "csv", false, "print CSV with a header row (for scripts)")
	return f
}

func (f *outputFormat) check() error {
	if f.json && f.csv {
		return usagef("--json and --csv exclude each other")
	}
	return nil
}

// setFormat applies --format (table, csv or json) beside --csv and --json;
// a value it does not know, or one that contradicts them, is a usage error
// naming --format.
func (f *outputFormat) setFormat(format string) error {
	switch format {
	case "":
		return nil
	case "table":
		if f.json || f.csv {
			return usagef("--format table: contradicts --json/--csv")
		}
	case "csv":
		if f.json {
			return usagef("--format csv: contradicts --json")
		}
		f.csv = true
	case "json":
		if f.csv {
			return usagef("--format json: contradicts --csv")
		}
		f.json = true
	default:
		return usagef("--format %q: want table, csv or json", format)
	}
	return nil
}

// table is a listing: a header and rows of cells, printed aligned, as CSV,
// or (with --json) replaced by the views themselves.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// emit prints v as JSON, or t as CSV or an aligned table.
func (f *outputFormat) emit(w io.Writer, t table, v any) error {
	switch {
	case f.json:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case f.csv:
		cw := csv.NewWriter(w)
		if err := cw.Write(t.header); err != nil {
			return err
		}
		if err := cw.WriteAll(t.rows); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	default:
		return printTable(w, t)
	}
}

func printTable(w io.Writer, t table) error {
	if len(t.rows) == 0 {
		_, err := fmt.Fprintln(w, "(none)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(t.header, "\t")))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// when prints a time for a table: UTC, to the minute; "-" for none.
func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

// actionFlags are the flags every audited action takes.
type actionFlags struct {
	actor, reason string
}

func addActionFlags(fs *flag.FlagSet) *actionFlags {
	a := &actionFlags{}
	fs.StringVar(&a.actor, "actor", "", "who acts, for the audit log (default: the login user)")
	fs.StringVar(&a.reason, "reason", "", "why, for the audit log (required for destructive actions)")
	return a
}

func (a *actionFlags) who() ops.Actor { return ops.CLIActor(a.actor) }

// readOps opens the database for a command that only reads (lists, stories,
// reports): no instance lock, no gateway or SMTP secret.
func (m *Main) readOps(ctx context.Context, cfg *config.Config) (*ops.Service, func(), error) {
	svc, st, err := daemon.OpenOps(ctx, cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	return svc, func() { _ = st.Close() }, nil
}

// actOps builds the system for an operator action through the daemon's
// assembly (daemon.Options.Operator): the same engine, claims and leases as
// the running daemon, beside it.
func (m *Main) actOps(ctx context.Context, cfg *config.Config) (*ops.Service, func(), error) {
	d, err := daemon.New(ctx, cfg, daemon.Options{Log: m.Stderr, Operator: true})
	if err != nil {
		return nil, nil, err
	}
	return d.Ops(), func() { _ = d.Close() }, nil
}

// needOps is what an operator action reads of the config: the database, the
// gateway API (its secret key), the schedule and the billing sections.
var needOps = config.Need{Gateway: true, Schedule: true, Billing: true}

// dateFlag reads a YYYY-MM-DD (midnight in loc) or RFC 3339 instant.
func dateFlag(name, v string, loc *time.Location) (time.Time, error) {
	if t, err := time.ParseInLocation(time.DateOnly, v, loc); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("%s %q: want YYYY-MM-DD or an RFC 3339 time (2026-11-01T00:00:00Z)", name, v)
}

// listFlags are the filters every listing takes (--status, --customer,
// --reference, --from, --to, --limit).
type listFlags struct {
	status, customer, reference, from, to string
	limit                                 int
}

// addListFlags registers the listing filters; statusHelp names the statuses
// and referenceHelp says what --reference matches for this listing.
func addListFlags(fs *flag.FlagSet, statusHelp, referenceHelp, dateHelp string) *listFlags {
	l := &listFlags{}
	fs.StringVar(&l.status, "status", "", "only these statuses, comma-separated ("+statusHelp+")")
	fs.StringVar(&l.customer, "customer", "", "only this customer (gateway customer id or email)")
	fs.StringVar(&l.reference, "reference", "", referenceHelp)
	fs.StringVar(&l.from, "from", "", dateHelp+" at or after `DATE` (YYYY-MM-DD, midnight UTC, or RFC 3339)")
	fs.StringVar(&l.to, "to", "", dateHelp+" before `DATE` (YYYY-MM-DD, midnight UTC, or RFC 3339)")
	fs.IntVar(&l.limit, "limit", 100, "at most `N` rows")
	return l
}

// filter turns the flags into an ops.Filter; a bad value is a usage error
// naming its flag.
func (l *listFlags) filter() (ops.Filter, error) {
	f := ops.Filter{Customer: strings.TrimSpace(l.customer), Reference: strings.TrimSpace(l.reference), Limit: l.limit}
	if l.limit <= 0 {
		return f, usagef("--limit %d: must be at least 1", l.limit)
	}
	for _, s := range strings.Split(l.status, ",") {
		if s = strings.TrimSpace(s); s != "" {
			f.Status = append(f.Status, s)
		}
	}
	for _, d := range []struct {
		name, v string
		into    **time.Time
	}{{"--from", l.from, &f.From}, {"--to", l.to, &f.To}} {
		if v := strings.TrimSpace(d.v); v != "" {
			t, err := dateFlag(d.name, v, time.UTC)
			if err != nil {
				return f, err
			}
			t = t.UTC()
			*d.into = &t
		}
	}
	return f, nil
}

// runListing is every `billingd … list`: the filters and output flags, the
// database alone (no gateway or SMTP secret), read-only ops, and the table,
// JSON or CSV of what list returns.
func runListing[T any](ctx context.Context, m *Main, name string, args []string, statusHelp, referenceHelp, dateHelp string,
	list func(*ops.Service, context.Context, ops.Filter) ([]T, error), tab func([]T) table) error {
	fs, path := m.newFlagSet(name)
	lf := addListFlags(fs, statusHelp, referenceHelp, dateHelp)
	out := addOutputFlags(fs)
	if err := flagsOnly(fs, args, out); err != nil {
		return err
	}
	f, err := lf.filter()
	if err != nil {
		return err
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), config.NeedDatabase)
	if err != nil {
		return err
	}
	svc, done, err := m.readOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	rows, err := list(svc, ctx, f)
	if err != nil {
		return err
	}
	return out.emit(m.Stdout, tab(rows), rows)
}

// runShow is the body of a `… show ID` command: one argument (checked by
// check, when set, before anything is opened), --json or --csv, the
// read-only operator actions, then either the object as JSON (--csv: the
// table tab makes of it) or its printout for a person.
func runShow[V any](ctx context.Context, m *Main, name, argHelp string, args []string, check func(arg string) error,
	fetch func(svc *ops.Service, ctx context.Context, arg string) (V, error), tab func(V) table, print func(io.Writer, V) error) error {
	fs, path := m.newFlagSet(name)
	out := addOutputFlags(fs)
	cfg, arg, err := m.invOneArg(name, argHelp, args, config.NeedDatabase, fs, path)
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	if check != nil {
		if err := check(arg); err != nil {
			return err
		}
	}
	svc, done, err := m.readOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	v, err := fetch(svc, ctx, arg)
	if err != nil {
		return err
	}
	if out.json || out.csv {
		return out.emit(m.Stdout, tab(v), v)
	}
	return print(m.Stdout, v)
}

// flagsOnly parses the flags of a command that takes no argument and checks
// its output flags (--json, --csv).
func flagsOnly(fs *flag.FlagSet, args []string, out *outputFormat) error {
	if rest, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	return out.check()
}
