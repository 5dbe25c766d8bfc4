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
	"syscall"
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
		if len(rest) == 0 || rest[0] != "import" {
			err = usagef("usage: billingd subscriptions import FILE [--backfill] [-c FILE]")
		} else {
			err = m.cmdImport(ctx, rest[1:])
		}
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
	if name == "subscriptions" {
		name = "subscriptions import"
	}
	fmt.Fprintf(m.Stderr, "billingd %s: %v\n", name, err)
	var ue usageError
	if errors.As(err, &ue) {
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
