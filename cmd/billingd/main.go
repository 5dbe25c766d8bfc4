// Command billingd bills recurring subscriptions off-session through a payment
// gateway and recovers failed payments through a dunning queue.
//
// Signals are handled here and nowhere else: the first SIGTERM/SIGINT asks the
// daemon to drain, a second aborts in-flight requests, SIGHUP reloads the config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/billingd/billingd/internal/ops"
)

// Exit codes are part of the public contract: scripts and systemd's
// RestartPreventExitStatus= rely on them, so they never change meaning.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// DefaultConfigPath is used when neither -c nor BILLINGD_CONFIG says otherwise.
const DefaultConfigPath = "/etc/billingd/config.yaml"

// gcPercent and memoryLimit tune the Go runtime for a billing pass, unless the
// operator set GOGC or GOMEMLIMIT: a pass allocates briskly but keeps little
// (tens of MB live however many subscriptions are due), so collecting at 4×
// the live heap instead of 2× cut billingd's CPU per charge by a fifth in
// `billingd bench`; the soft limit makes the collector work harder instead of
// letting the heap pass 96 MiB. The simulator (`billingd sim`) keeps every
// PaymentIntent in memory and is left to the runtime's defaults.
const (
	gcPercent   = 400
	memoryLimit = 96 << 20
)

func tuneRuntime(args []string) {
	if len(args) > 0 && args[0] == "sim" {
		return
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

func main() {
	tuneRuntime(os.Args[1:])
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr, Signals: signals, Getenv: os.Getenv}
	os.Exit(m.Run(context.Background(), os.Args[1:]))
}

// Main is the testable program: everything main() does except reading the real
// process's arguments and signals.
type Main struct {
	Stdout, Stderr io.Writer
	// Signals delivers SIGTERM/SIGINT/SIGHUP to the daemon.
	Signals <-chan os.Signal
	Getenv  func(string) string
}

// usageError marks errors that exit with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

const usage = `billingd — recurring off-session billing with dunning

Usage:
  billingd run                 [-c FILE]   run the daemon (cron sweeps, HTTP)
  billingd once [--dry-run]    [-c FILE]   one billing pass, then exit
  billingd migrate             [-c FILE]   apply database migrations
  billingd check-config        [-c FILE]   validate the config; every error names its key
  billingd status              [-c FILE]   counts by state, on one screen
  billingd subscriptions import FILE [--backfill] [-c FILE]
                                           import subscriptions from CSV (all or nothing)
  billingd subscriptions list|show|cancel|pause|resume|update
                                           list them, tell one's story, or act on one (audited)
  billingd invoices list|show|retry|void|refund
                                           list them, tell one's story, charge now, void, refund
  billingd attempts list|resolve           charge attempts; settle one that needs review from
                                           the gateway's records
  billingd dunning list|show|stop          dunning cases; stop one
  billingd events list|show|redeliver      events sent to events.url; send failed ones again
  billingd report revenue [--month YYYY-MM | --from D --to D] [--tz ZONE]
                                           collected, refunded and net per currency
  billingd report export [--month YYYY-MM | --from D --to D] [--format table|csv|json]
                                           every charge and refund, one row each, with totals
  billingd forecast [--days N]             new-period charges to come, per day and currency
  billingd reconcile [--dry-run] --since T
                                           repair the database from the gateway's payments since T
                                           (after a restore, before the daemon starts)
  billingd admin-tokens add|list|revoke    bearer tokens of the admin API (admin.tokens_file)
  billingd demo [--dir DIR] [--months N]   the whole flow on SQLite + the bundled simulator
                                           (--months: N months on a simulated clock;
                                           --provider checkout: on Checkout.com's)
  billingd sim  [flags]                    the gateway simulator as a server (WooshPay, or
                                           Checkout.com with --provider checkout; sim -h)
  billingd bench [flags]                   load test: one pass over N due subscriptions (bench -h)

Run "billingd COMMAND -h" for what a command is for, an example and its flags.
The config is read from -c/--config, else $BILLINGD_CONFIG, else ` + DefaultConfigPath + `.
Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
`

// Run dispatches a subcommand and returns the process exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if m.Getenv == nil {
		m.Getenv = os.Getenv
	}
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = m.cmdRun(ctx, rest)
	case "once":
		err = m.cmdOnce(ctx, rest)
	case "migrate":
		err = m.cmdMigrate(ctx, rest)
	case "check-config":
		err = m.cmdCheckConfig(rest)
	case "status":
		err = m.cmdStatus(ctx, rest)
	case "subscriptions":
		if len(rest) > 0 && rest[0] == "import" {
			err = m.cmdImport(ctx, rest[1:])
		} else {
			err = m.group(ctx, cmd, rest, m.subscriptionCommands())
		}
	case "invoices":
		err = m.group(ctx, cmd, rest, m.invoiceCommands())
	case "attempts":
		err = m.group(ctx, cmd, rest, m.attemptCommands())
	case "dunning":
		err = m.group(ctx, cmd, rest, m.dunningCommands())
	case "events":
		err = m.group(ctx, cmd, rest, m.eventCommands())
	case "report":
		err = m.group(ctx, cmd, rest, m.reportCommands())
	case "forecast":
		err = m.cmdForecast(ctx, rest)
	case "reconcile":
		err = m.cmdReconcile(ctx, rest)
	case "admin-tokens":
		err = m.group(ctx, cmd, rest, m.adminTokenCommands())
	case "demo":
		err = m.cmdDemo(ctx, rest)
	case "sim":
		err = m.cmdSim(ctx, rest)
	case "bench":
		err = m.cmdBench(ctx, rest)
	case "help", "-h", "--help":
		fmt.Fprint(m.Stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(m.Stderr, "billingd: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	name := args[0]
	if _, grouped := groups[name]; grouped && len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		name += " " + args[1]
	}
	fmt.Fprintf(m.Stderr, "billingd %s: %v\n", name, err)
	var ue usageError
	var fe *ops.FieldError
	if errors.As(err, &ue) || errors.As(err, &fe) {
		return exitUsage
	}
	return exitRuntime
}

// commandHelp is each subcommand's `-h` header: what it is for, in one line,
// its synopsis and an example to copy. An operator reaching for -h on a box in
// an incident wants the command line, not only the flag list. Every command in
// usage has an entry (a test checks it).
var commandHelp = map[string]struct{ purpose, synopsis, example string }{
	"run": {
		"run the daemon: billing passes on schedule.billing, the reconciler, dunning, webhooks and pay pages over HTTP",
		"billingd run [-c FILE]",
		"billingd run -c /etc/billingd/config.yaml",
	},
	"once": {
		"run one billing pass, then exit (--dry-run lists what it would charge and changes nothing)",
		"billingd once [--dry-run] [-c FILE]",
		"billingd once --dry-run -c /etc/billingd/config.yaml",
	},
	"migrate": {
		"apply the embedded database migrations (needs only the database settings, no gateway or SMTP secret)",
		"billingd migrate [-c FILE]",
		"billingd migrate -c /etc/billingd/config.yaml",
	},
	"check-config": {
		"validate the config file: every problem is printed at once, each naming its key (exit 2 if there is any)",
		"billingd check-config [-c FILE]",
		"CREDENTIALS_DIRECTORY=/etc/billingd/credentials billingd check-config -c /etc/billingd/config.yaml",
	},
	"status": {
		"print counts by state on one screen; safe while the daemon runs, needs no gateway or SMTP secret",
		"billingd status [-c FILE]",
		"billingd status -c /etc/billingd/config.yaml",
	},
	"subscriptions import": {
		"import subscriptions from a CSV file, all or nothing (columns: reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor; on Checkout.com also previous_payment_id)",
		"billingd subscriptions import FILE [--backfill] [-c FILE]",
		"billingd subscriptions import subscriptions.csv -c /etc/billingd/config.yaml",
	},
	"subscriptions list": {
		"list subscriptions, filtered by status, customer, reference or creation date; amounts formatted by currency",
		"billingd subscriptions list [--status S[,S]] [--customer ID|EMAIL] [--reference REF] [--from DATE] [--to DATE] [--limit N] [--json|--csv] [-c FILE]",
		"billingd subscriptions list --status past_due,unpaid -c /etc/billingd/config.yaml",
	},
	"subscriptions show": {
		"print one subscription's whole story: its card, periods, attempts with decline codes, dunning, emails, links and audit entries",
		"billingd subscriptions show REFERENCE [--json] [-c FILE]",
		"billingd subscriptions show acme-42 -c /etc/billingd/config.yaml",
	},
	"subscriptions cancel": {
		"cancel a subscription now (its open intents canceled, dunning closed, links dead) or at the end of its period (--at-period-end)",
		"billingd subscriptions cancel REFERENCE --reason TEXT [--at-period-end] [--actor NAME] [-c FILE]",
		"billingd subscriptions cancel acme-42 --reason \"customer asked\" --at-period-end -c /etc/billingd/config.yaml",
	},
	"subscriptions pause": {
		"pause a subscription: no period is invoiced while it is paused",
		"billingd subscriptions pause REFERENCE --reason TEXT [--actor NAME] [-c FILE]",
		"billingd subscriptions pause acme-42 --reason \"seasonal break\" -c /etc/billingd/config.yaml",
	},
	"subscriptions resume": {
		"resume a paused subscription: billing starts again at the next period start, never for the paused periods",
		"billingd subscriptions resume REFERENCE [--reason TEXT] [--actor NAME] [-c FILE]",
		"billingd subscriptions resume acme-42 -c /etc/billingd/config.yaml",
	},
	"subscriptions update": {
		"change a subscription's amount or description (from the next period), its card (checked with the gateway) or its email",
		"billingd subscriptions update REFERENCE [--amount N] [--description TEXT] [--payment-method ID [--previous-payment-id ID]] [--email ADDR] [--reason TEXT] [--actor NAME] [-c FILE]",
		"billingd subscriptions update acme-42 --amount 2900 --reason \"new plan\" -c /etc/billingd/config.yaml",
	},
	"invoices list": {
		"list invoices, filtered by status, customer, subscription or period start; totals and refunds formatted by currency",
		"billingd invoices list [--status S[,S]] [--customer ID|EMAIL] [--reference SUB] [--from DATE] [--to DATE] [--limit N] [--json|--csv] [-c FILE]",
		"billingd invoices list --status open --from 2026-11-01 -c /etc/billingd/config.yaml",
	},
	"invoices show": {
		"print one invoice's whole story: attempts with decline codes, dunning steps, refunds, emails, links and audit entries",
		"billingd invoices show NUMBER [--json] [-c FILE]",
		"billingd invoices show in_2Qm8x1 -c /etc/billingd/config.yaml",
	},
	"invoices retry": {
		"charge an open invoice now, through the one-open-payment rule (a card the gateway called dead only after the card changed)",
		"billingd invoices retry NUMBER [--reason TEXT] [--actor NAME] [-c FILE]",
		"billingd invoices retry in_2Qm8x1 -c /etc/billingd/config.yaml",
	},
	"invoices void": {
		"void an open invoice: its open intents canceled, its dunning case closed, its links dead, nothing more queued",
		"billingd invoices void NUMBER --reason TEXT [--actor NAME] [-c FILE]",
		"billingd invoices void in_2Qm8x1 --reason \"billed in error\" -c /etc/billingd/config.yaml",
	},
	"invoices refund": {
		"refund a paid invoice, fully or partly (--amount in minor units); the refund is recorded before the gateway is called",
		"billingd invoices refund NUMBER --reason TEXT [--amount N] [--fraudulent] [--key KEY] [--actor NAME] [-c FILE]",
		"billingd invoices refund in_2Qm8x1 --amount 500 --reason \"partial credit\" -c /etc/billingd/config.yaml",
	},
	"attempts list": {
		"list charge attempts, filtered by status (needs_review, failed, …), customer, subscription or date",
		"billingd attempts list [--status S[,S]] [--customer ID|EMAIL] [--reference SUB] [--from DATE] [--to DATE] [--limit N] [--json|--csv] [-c FILE]",
		"billingd attempts list --status needs_review -c /etc/billingd/config.yaml",
	},
	"attempts resolve": {
		"settle an attempt that needs review from the gateway's records (never a blind replay); --mark-failed only when the gateway shows no success",
		"billingd attempts resolve ID --reason TEXT [--mark-failed] [--actor NAME] [-c FILE]",
		"billingd attempts resolve 812 --reason \"checked after the outage\" -c /etc/billingd/config.yaml",
	},
	"dunning list": {
		"list dunning cases, filtered by status, customer, subscription or opening date",
		"billingd dunning list [--status S[,S]] [--customer ID|EMAIL] [--reference SUB] [--from DATE] [--to DATE] [--limit N] [--json|--csv] [-c FILE]",
		"billingd dunning list --status open -c /etc/billingd/config.yaml",
	},
	"dunning show": {
		"print one dunning case: its invoice, steps, emails, links and audit entries",
		"billingd dunning show ID [--json] [-c FILE]",
		"billingd dunning show 31 -c /etc/billingd/config.yaml",
	},
	"dunning stop": {
		"stop an open dunning case: no more retries or emails; its links die; the invoice stays open",
		"billingd dunning stop ID --reason TEXT [--actor NAME] [-c FILE]",
		"billingd dunning stop 31 --reason \"handled by phone\" -c /etc/billingd/config.yaml",
	},
	"events list": {
		"list the events sent (or to send) to events.url, oldest first, with their delivery: status, attempts, last answer",
		"billingd events list [--type T]... [--status pending|delivered|failed] [--failed] [--subscription REF] [--object REF] [--from DATE] [--to DATE] [--limit N] [--json|--csv] [-c FILE]",
		"billingd events list --failed -c /etc/billingd/config.yaml",
	},
	"events show": {
		"print one event's delivery and the exact body its receiver gets",
		"billingd events show EVT_ID [--json] [-c FILE]",
		"billingd events show evt_2Qm8x1 -c /etc/billingd/config.yaml",
	},
	"events redeliver": {
		"POST events to events.url again now (same id and body, freshly signed) and record the answers; exit 1 if any was not accepted",
		"billingd events redeliver EVT_ID... | --failed [--type T]... [--from DATE] [--to DATE] [--reason TEXT] [--actor NAME] [--json|--csv] [-c FILE]",
		"billingd events redeliver --failed --from 2026-11-01 --reason \"receiver fixed\" -c /etc/billingd/config.yaml",
	},
	"report revenue": {
		"collected, refunded and net per currency over a month or a range (UTC unless --tz)",
		"billingd report revenue [--month YYYY-MM | --from DATE --to DATE] [--tz ZONE] [--json|--csv] [-c FILE]",
		"billingd report revenue --month 2026-11 --tz Europe/Berlin -c /etc/billingd/config.yaml",
	},
	"report export": {
		"the accounting export: one row per charge and refund in a month or a range (amounts signed, refunds negative), totals equal to report revenue",
		"billingd report export [--month YYYY-MM | --from DATE --to DATE] [--tz ZONE] [--format table|csv|json | --json | --csv] [-c FILE]",
		"billingd report export --from 2026-11-01 --to 2026-12-01 --csv -c /etc/billingd/config.yaml > 2026-11.csv",
	},
	"forecast": {
		"the new-period charges of the next days (default 30, at most 366), per day and currency, from the period math: paused and canceled subscriptions and periods from cancel_at on left out; past_due subscriptions counted and shown apart, as their dunning may end first",
		"billingd forecast [--days N] [--tz ZONE] [--json|--csv] [-c FILE]",
		"billingd forecast --days 31 -c /etc/billingd/config.yaml",
	},
	"reconcile": {
		"compare the gateway's payments since T with the database and repair every difference the way the payment's webhook would (a lost invoice is re-created for its period); what must not be repaired blindly is flagged for review (exit 1). The first step after a database restore, before the daemon starts",
		"billingd reconcile --since T [--dry-run] [--json|--csv] [--actor NAME] [--reason TEXT] [-c FILE]",
		"billingd reconcile --since 2026-11-30T02:00:00Z --dry-run -c /etc/billingd/config.yaml",
	},
	"admin-tokens add": {
		"mint a named bearer token for the admin API; it is printed once and stored hashed in admin.tokens_file",
		"billingd admin-tokens add NAME [-c FILE]",
		"billingd admin-tokens add signup-app -c /etc/billingd/config.yaml",
	},
	"admin-tokens list": {
		"list the admin API's tokens by name, with when each was minted and revoked (never the tokens)",
		"billingd admin-tokens list [--json|--csv] [-c FILE]",
		"billingd admin-tokens list -c /etc/billingd/config.yaml",
	},
	"admin-tokens revoke": {
		"revoke an admin API token by name: its next request gets 401",
		"billingd admin-tokens revoke NAME [-c FILE]",
		"billingd admin-tokens revoke signup-app -c /etc/billingd/config.yaml",
	},
	"demo": {
		"run the whole flow on SQLite and the bundled simulator of WooshPay or Checkout.com, and print what the database and the gateway's ledger say",
		"billingd demo [--provider wooshpay|checkout] [--dir DIR] [--serve | --months N]",
		"billingd demo --provider checkout --dir /tmp/billingd-demo --serve",
	},
	"bench": {
		"load test: seed N due subscriptions, run one pass against the simulator, print throughput against the bound",
		"billingd bench [flags]",
		"billingd bench --subscriptions 20000 --latency 50ms --concurrency 64 --raw",
	},
}

// usageFor returns a FlagSet.Usage that prints the command's purpose, synopsis
// and example (from commandHelp) above its flags.
func usageFor(fs *flag.FlagSet, name string) func() {
	return func() {
		w := fs.Output()
		if h, ok := commandHelp[name]; ok {
			fmt.Fprintf(w, "billingd %s — %s\n\nUsage:\n  %s\n\nExample:\n  %s\n\nFlags:\n", name, h.purpose, h.synopsis, h.example)
		} else {
			fmt.Fprintf(w, "Usage of billingd %s:\n", name)
		}
		fs.PrintDefaults()
	}
}

// newFlagSet returns a flag set whose errors come back as usage errors, whose
// -c/--config flag is registered and whose -h prints the command's purpose and
// an example.
func (m *Main) newFlagSet(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("billingd "+name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = usageFor(fs, name)
	path := new(string)
	fs.StringVar(path, "c", "", "config `file` (default $BILLINGD_CONFIG or "+DefaultConfigPath+")")
	fs.StringVar(path, "config", "", "config `file` (same as -c)")
	return fs, path
}

// parseArgs parses flags anywhere among the arguments (Go's flag package stops at
// the first positional one) and returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func (m *Main) configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := m.Getenv("BILLINGD_CONFIG"); env != "" {
		return env
	}
	return DefaultConfigPath
}
