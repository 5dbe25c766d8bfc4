package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"golang.org/x/time/rate"
)

const (
	benchSecretKey     = "sk_test_bench"
	benchWebhookSecret = "whsec_bench_unused"
	// benchCards is how many customers with a saved card the seeded
	// subscriptions are spread over.
	benchCards = 20
	// benchNoLimit stands for "no rate limit" where the config needs a number.
	benchNoLimit = 1e9
)

// benchOptions are the knobs of one `billingd bench` run.
type benchOptions struct {
	subscriptions int
	latency       time.Duration
	concurrency   int
	rate          float64 // requests/s; 0 = no limit
	raw           bool
	dir           string
	keep          bool
	synchronous   string
	pageSize      int
	simURL        string
	cpuProfile    string
	// The PostgreSQL cluster run (bench_cluster.go).
	driver         string
	dsn            string
	instances      int
	killOneAfter   time.Duration
	addOneAfter    time.Duration
	removeOneAfter time.Duration
	pgbenchClients int
	pgbenchTime    time.Duration
	timeout        time.Duration
}

// benchFigures is what one run (raw or billingd) measured.
type benchFigures struct {
	charges    int
	elapsed    time.Duration
	cpu        time.Duration
	gatewayLat *loadtest.Histogram
	attemptLat *loadtest.Histogram
	// sim is the simulator process's CPU over the run, when the bench
	// started it (not with --sim).
	sim cpuFigure
	// db is what billingd sent to its database over the run (nil: the raw
	// client, which sends nothing; or not counted).
	db *store.DBCounts
	// pgBackends and pgServer are PostgreSQL's CPU over the run: the bench
	// database's backends and the whole server (the cluster run only).
	pgBackends, pgServer cpuFigure
}

// cpuFigure is a CPU time that may not have been measured.
type cpuFigure struct {
	d  time.Duration
	ok bool
}

// processCPU is the user+system CPU of process pid so far (/proc/PID/stat);
// not measured for pid 0 (a process the bench did not start).
func processCPU(pid int) cpuFigure {
	if pid <= 0 {
		return cpuFigure{}
	}
	st, err := loadtest.ReadProcStat(pid)
	if err != nil {
		return cpuFigure{}
	}
	return cpuFigure{d: st.CPU, ok: true}
}

// since is f minus an earlier reading of the same process.
func (f cpuFigure) since(earlier cpuFigure) cpuFigure {
	return cpuFigure{d: f.d - earlier.d, ok: f.ok && earlier.ok}
}

func (f benchFigures) rate() float64 {
	if f.elapsed <= 0 {
		return 0
	}
	return float64(f.charges) / f.elapsed.Seconds()
}

// cmdBench seeds due subscriptions, runs one billing pass against the simulator
// (in its own process) with a set latency, concurrency and rate limit, and
// prints throughput against the bound, CPU, memory and latency figures; --raw
// first measures the same requests without billingd's database work.
func (m *Main) cmdBench(ctx context.Context, args []string) error {
	// No -c: the bench builds its own config (printed in its output) around a
	// fresh database and the simulator it starts.
	fs := flag.NewFlagSet("billingd bench", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = usageFor(fs, "bench")
	var o benchOptions
	fs.IntVar(&o.subscriptions, "subscriptions", 10000, "due subscriptions to seed and bill")
	fs.DurationVar(&o.latency, "latency", 0, "the simulator answers each API request no sooner than this")
	fs.IntVar(&o.concurrency, "concurrency", 64, "charges in flight (gateway.concurrency)")
	fs.Float64Var(&o.rate, "rate", 0, "requests per second, billingd's gateway.rate_limit and the simulator's own limit (0: no limit)")
	fs.BoolVar(&o.raw, "raw", false, "first send the same requests with the same client and no database work: the loopback ceiling")
	fs.StringVar(&o.dir, "dir", "", "work directory for the database and logs (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (database, billingd.log, sim.log) afterwards; with postgres, its database too")
	fs.StringVar(&o.synchronous, "synchronous", config.SynchronousFull, "SQLite synchronous: full or normal")
	fs.IntVar(&o.pageSize, "page-size", 500, "schedule.page_size: due subscriptions per keyset page")
	fs.StringVar(&o.simURL, "sim", "", "base `URL` of a simulator already running (default: start `billingd sim` as a child process)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the billing pass to `file` (sqlite)")
	fs.StringVar(&o.driver, "driver", config.DriverSQLite, "database: sqlite (one pass in this process) or postgres (--instances billingd run processes)")
	fs.StringVar(&o.dsn, "dsn", "", "postgres: `DSN` of a server where the bench creates (and afterwards drops) a database of its own")
	fs.IntVar(&o.instances, "instances", 1, "postgres: billingd run processes sharing the database and the simulator")
	fs.DurationVar(&o.killOneAfter, "kill-one-after", 0, "postgres: SIGKILL the last instance this long after the pass started (0: never)")
	fs.DurationVar(&o.addOneAfter, "add-one-after", 0, "postgres: start one more instance this long after the pass started (0: never)")
	fs.DurationVar(&o.removeOneAfter, "remove-one-after", 0, "postgres: stop the first instance (SIGTERM: it drains) this long after the pass started (0: never)")
	fs.IntVar(&o.pgbenchClients, "pgbench-clients", 16, "postgres: clients of the pgbench -N run on a scratch database of the same server")
	fs.DurationVar(&o.pgbenchTime, "pgbench-time", 10*time.Second, "postgres: how long pgbench -N runs (0: no pgbench run)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "postgres: give up when not every due subscription is charged after this long")
	if rest, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	switch {
	case o.subscriptions < 1:
		return usagef("--subscriptions must be at least 1, got %d", o.subscriptions)
	case o.concurrency < 1 || o.concurrency > config.MaxConcurrency:
		return usagef("--concurrency must be between 1 and %d, got %d", config.MaxConcurrency, o.concurrency)
	case o.latency < 0:
		return usagef("--latency must not be negative, got %s", o.latency)
	case o.synchronous != config.SynchronousFull && o.synchronous != config.SynchronousNormal:
		return usagef("--synchronous must be full or normal (database.synchronous), got %q", o.synchronous)
	case o.rate < 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate):
		return usagef("--rate must be 0 (no limit) or a positive number of requests per second, got %v", o.rate)
	}
	if o.driver == config.DriverPostgres {
		if err := o.checkCluster(); err != nil {
			return err
		}
		return m.benchCluster(ctx, o)
	}
	if o.driver != config.DriverSQLite {
		return usagef("--driver must be sqlite or postgres, got %q", o.driver)
	}
	if o.dsn != "" || o.instances != 1 || o.killOneAfter != 0 || o.addOneAfter != 0 || o.removeOneAfter != 0 {
		return usagef("--dsn, --instances, --kill-one-after, --add-one-after and --remove-one-after need --driver postgres")
	}
	return m.bench(ctx, o)
}

func (m *Main) bench(ctx context.Context, o benchOptions) error {
	out := m.Stdout
	if o.dir == "" {
		d, err := os.MkdirTemp("", "billingd-bench-")
		if err != nil {
			return err
		}
		o.dir = d
		if !o.keep {
			defer os.RemoveAll(d)
		}
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	dbPath := filepath.Join(o.dir, "bench.db")
	if _, err := os.Stat(dbPath); err == nil {
		return usagef("%s already exists: give --dir a new or empty directory", dbPath)
	}

	simURL, simPID := o.simURL, 0
	if simURL == "" {
		url, pid, stop, err := startSimProcess(ctx, o)
		if err != nil {
			return err
		}
		defer stop()
		simURL, simPID = url, pid
	}
	client, err := wooshpay.New(wooshpay.Options{BaseURL: simURL, SecretKey: benchSecretKey, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	cards, err := saveBenchCards(ctx, simURL, min(benchCards, o.subscriptions))
	if err != nil {
		return err
	}

	cfg := config.Default()
	cfg.Database.DSN = dbPath
	cfg.Database.Synchronous = o.synchronous
	cfg.Gateway.BaseURL = simURL
	cfg.Gateway.SecretKey = config.Secret(benchSecretKey)
	cfg.Gateway.WebhookSecret = config.Secret(benchWebhookSecret)
	cfg.Gateway.Concurrency = o.concurrency
	cfg.Gateway.RateLimit = o.rate
	if o.rate == 0 {
		cfg.Gateway.RateLimit = benchNoLimit
	}
	cfg.Gateway.Timeout = config.Duration(30 * time.Second)
	cfg.Schedule.PageSize = o.pageSize
	cfg.HTTP.PublicBaseURL = "https://billing.example.com" // links in emails; nothing is served
	if err := cfg.Validate(); err != nil {
		return usageError{fmt.Errorf("bench settings:\n%w", indentErr(err))}
	}
	logFile, err := os.Create(filepath.Join(o.dir, "billingd.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	// The pass's gateway requests are timed by a wrapper that changes no answer.
	fig := benchFigures{gatewayLat: &loadtest.Histogram{}, attemptLat: &loadtest.Histogram{}}
	d, err := daemon.New(ctx, cfg, daemon.Options{
		Log: logFile,
		WrapGateway: func(g gateway.Gateway) gateway.Gateway {
			return loadtest.TimedGateway{Gateway: g, Latency: fig.gatewayLat}
		},
		ObserveAttempt: fig.attemptLat.Observe,
	})
	if err != nil {
		return err
	}
	defer d.Close()
	now := time.Now().UTC()
	seedStart := time.Now()
	if err := loadtest.SeedDueSubscriptions(ctx, d.Store(), cards, o.subscriptions, 1999, "USD", now.Add(-time.Hour), now); err != nil {
		return err
	}
	fmt.Fprintf(out, "billingd bench: %d due subscriptions seeded in %s (%s)\n", o.subscriptions, time.Since(seedStart).Round(time.Millisecond), o.dir)
	fmt.Fprintf(out, "gateway: simulator at %s, latency %s, concurrency %d, rate limit %s; SQLite synchronous=%s, page size %d\n\n",
		simURL, o.latency, o.concurrency, rateText(o.rate), o.synchronous, o.pageSize)

	var raw *benchFigures
	if o.raw {
		if raw, err = runRawCeiling(ctx, client, o, cards, simPID); err != nil {
			return err
		}
	}

	// billingd: the same requests through a real billing pass.
	runtime.GC()
	seedPeak, _ := loadtest.PeakRSS()
	rssNote := ""
	if err := loadtest.ResetPeakRSS(); err != nil {
		rssNote = " (peak of the whole process: " + err.Error() + ")"
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	db0, sim0 := d.Store().DBCounts(), processCPU(simPID)
	cpu0, start := loadtest.CPUTime(), time.Now()
	run, passErr := d.Pass(ctx, ctx, "bench")
	fig.elapsed, fig.cpu = time.Since(start), loadtest.CPUTime()-cpu0
	fig.sim = processCPU(simPID).since(sim0)
	db := d.Store().DBCounts().Sub(db0)
	fig.db = &db
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	peak, _ := loadtest.PeakRSS()
	if passErr != nil {
		return fmt.Errorf("billing pass: %w", passErr)
	}
	fig.charges = run.AttemptsStarted + run.AttemptsReplayed

	paid, err := d.Store().CountInvoices(ctx, models.InvoicePaid)
	if err != nil {
		return err
	}
	attempts, err := d.Store().CountAttempts(ctx)
	if err != nil {
		return err
	}
	stats, statsErr := fetchSimStats(ctx, simURL)

	bound := benchBound(o)
	writeBenchTable(out, bound, raw, &fig)
	writeChargeCosts(out, raw, &fig, false)
	fmt.Fprintf(out, "peak RSS during the pass: %.1f MB%s (before it, seeding and the raw run: %.1f MB)\n", float64(peak)/(1<<20), rssNote, float64(seedPeak)/(1<<20))
	fmt.Fprintf(out, "database size: %.1f MB (%s with its WAL)\n", float64(dbSize(dbPath))/(1<<20), dbPath)
	if statsErr != nil {
		fmt.Fprintf(out, "simulator stats: %v\n", statsErr)
	} else {
		fmt.Fprintf(out, "simulator: %d API requests, %d refused over its rate limit (429)\n", stats.Requests, stats.RateLimited)
	}
	fmt.Fprintln(out, runSummary(run))
	fmt.Fprintf(out, "check: %d invoices paid, %d charge attempts for %d due subscriptions\n", paid, attempts, o.subscriptions)
	if o.keep {
		fmt.Fprintf(out, "kept %s (bench.db, billingd.log, sim.log)\n", o.dir)
	}
	if paid != int64(o.subscriptions) || attempts != int64(o.subscriptions) {
		return fmt.Errorf("the pass did not charge every due subscription exactly once: %d paid, %d attempts, want %d", paid, attempts, o.subscriptions)
	}
	return nil
}

// benchBound is the best throughput the run's settings allow:
// min(concurrency ÷ latency, rate limit), +Inf when neither bounds it.
func benchBound(o benchOptions) float64 {
	bound := math.Inf(1)
	if o.latency > 0 {
		bound = float64(o.concurrency) / o.latency.Seconds()
	}
	if o.rate > 0 && o.rate < bound {
		bound = o.rate
	}
	return bound
}

func rateText(r float64) string {
	if r == 0 {
		return "none"
	}
	return strconv.FormatFloat(r, 'g', -1, 64) + "/s"
}

func boundText(b float64) string {
	if math.IsInf(b, 1) {
		return "none"
	}
	return fmt.Sprintf("%.0f", b)
}

func ratioText(v, bound float64) string {
	if math.IsInf(bound, 1) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*v/bound)
}

func cpuPer1000(f *benchFigures) string {
	if f.charges == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", f.cpu.Seconds()*1000/float64(f.charges))
}

// runRawCeiling sends the bench's requests with the client alone, no
// database work (--raw): the loopback ceiling billingd is compared with, in
// the SQLite and the cluster bench alike. Every request must succeed, or the
// ceiling would be wrong.
//
// simPID is the simulator's process (0: not started by the bench), whose CPU
// over the run is measured too.
func runRawCeiling(ctx context.Context, client gateway.Gateway, o benchOptions, cards []loadtest.Card, simPID int) (*benchFigures, error) {
	var limiter *rate.Limiter
	if o.rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(o.rate), 1)
	}
	sim0 := processCPU(simPID)
	r, err := loadtest.RunRaw(ctx, client, limiter, o.concurrency, o.subscriptions, cards, 1999, "USD")
	if err != nil {
		return nil, fmt.Errorf("raw run: %w", err)
	}
	sim := processCPU(simPID).since(sim0)
	if bad := o.subscriptions - r.Outcomes[gateway.Succeeded]; bad > 0 {
		return nil, fmt.Errorf("raw run: %d of %d requests did not succeed (%v): the ceiling would be wrong", bad, o.subscriptions, r.Outcomes)
	}
	return &benchFigures{charges: r.Requests, elapsed: r.Elapsed, cpu: r.CPU, gatewayLat: r.Latency, sim: sim}, nil
}

// writeBenchTable prints the figures of a run beside the raw client's (raw
// nil: no raw run), one table for the SQLite and the cluster bench.
func writeBenchTable(out io.Writer, bound float64, raw, fig *benchFigures) {
	w := tabwriter.NewWriter(out, 0, 2, 2, ' ', tabwriter.AlignRight)
	col := func(label string, rawV, billV string) { fmt.Fprintf(w, "%s\t%s\t%s\t\n", label, rawV, billV) }
	rawCol := func(f func(*benchFigures) string) string {
		if raw == nil {
			return "-"
		}
		return f(raw)
	}
	col("", "raw client", "billingd")
	col("charges", rawCol(func(r *benchFigures) string { return strconv.Itoa(r.charges) }), strconv.Itoa(fig.charges))
	col("elapsed", rawCol(func(r *benchFigures) string { return r.elapsed.Round(time.Millisecond).String() }), fig.elapsed.Round(time.Millisecond).String())
	col("charges/s", rawCol(func(r *benchFigures) string { return fmt.Sprintf("%.0f", r.rate()) }), fmt.Sprintf("%.0f", fig.rate()))
	col("bound min(concurrency/latency, rate)", boundText(bound), boundText(bound))
	col("of the bound", rawCol(func(r *benchFigures) string { return ratioText(r.rate(), bound) }), ratioText(fig.rate(), bound))
	col("CPU s per 1,000 charges", rawCol(func(r *benchFigures) string { return cpuPer1000(r) }), cpuPer1000(fig))
	col("gateway latency p50 / p99", rawCol(func(r *benchFigures) string { return latText(r.gatewayLat) }), latText(fig.gatewayLat))
	col("attempt latency p50 / p99", "-", latText(fig.attemptLat))
	w.Flush()
	fmt.Fprintln(out)
	if raw != nil {
		fmt.Fprintf(out, "billingd / raw: %.1f%%\n", 100*fig.rate()/raw.rate())
	}
}

// writeChargeCosts prints what one charge cost, for the raw client (raw nil:
// no raw run) and for billingd: the statements and transactions billingd sent
// its database, and the CPU of each process involved, in µs per charge. The
// cluster run adds PostgreSQL's rows, and counts the server in the total.
func writeChargeCosts(out io.Writer, raw, fig *benchFigures, cluster bool) {
	w := tabwriter.NewWriter(out, 0, 2, 2, ' ', tabwriter.AlignRight)
	col := func(label string, f func(*benchFigures) string) {
		rawV := "-"
		if raw != nil {
			rawV = f(raw)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t\n", label, rawV, f(fig))
	}
	perCharge := func(f *benchFigures, n int64) string {
		if f.db == nil || f.charges == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(n)/float64(f.charges))
	}
	micros := func(f *benchFigures, c cpuFigure) string {
		if !c.ok || f.charges == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(c.d.Microseconds())/float64(f.charges))
	}
	fmt.Fprintf(w, "per charge\traw client\tbillingd\t\n")
	col("SQL statements", func(f *benchFigures) string {
		if f.db == nil {
			return "-"
		}
		return perCharge(f, f.db.Statements)
	})
	col("transactions committed / rolled back", func(f *benchFigures) string {
		if f.db == nil {
			return "-"
		}
		return perCharge(f, f.db.Committed) + " / " + perCharge(f, f.db.RolledBack+f.db.CommitFailed)
	})
	col("statements outside a transaction", func(f *benchFigures) string {
		if f.db == nil {
			return "-"
		}
		return perCharge(f, f.db.Autocommit)
	})
	col("CPU µs: billingd (raw: the client)", func(f *benchFigures) string { return micros(f, cpuFigure{d: f.cpu, ok: true}) })
	col("CPU µs: simulator", func(f *benchFigures) string { return micros(f, f.sim) })
	if cluster {
		col("CPU µs: PostgreSQL, bench database's backends", func(f *benchFigures) string { return micros(f, f.pgBackends) })
		col("CPU µs: PostgreSQL, whole server", func(f *benchFigures) string { return micros(f, f.pgServer) })
	}
	col("CPU µs: total", func(f *benchFigures) string {
		total := cpuFigure{d: f.cpu + f.sim.d, ok: f.sim.ok}
		if cluster && f != raw {
			total.d += f.pgServer.d
			total.ok = total.ok && f.pgServer.ok
		}
		return micros(f, total)
	})
	w.Flush()
	fmt.Fprintln(out)
}

func latText(h *loadtest.Histogram) string {
	if h == nil || h.Count() == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s", roundLat(h.Quantile(0.50)), roundLat(h.Quantile(0.99)))
}

func roundLat(d time.Duration) time.Duration {
	if d >= 10*time.Millisecond {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func dbSize(path string) int64 {
	var total int64
	for _, p := range []string{path, path + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			total += st.Size()
		}
	}
	return total
}

// saveBenchCards creates n customers with a saved 4242 card through the
// signup flow (internal/gateway/signup), as the demo does. The bench runs on
// WooshPay only: its seeding (internal/loadtest) and its --raw ceiling speak
// WooshPay's API.
func saveBenchCards(ctx context.Context, simURL string, n int) ([]loadtest.Card, error) {
	saver, err := signup.New(signup.Gateway{Provider: signup.WooshPay, BaseURL: simURL, SecretKey: benchSecretKey, Timeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	cards := make([]loadtest.Card, 0, n)
	for i := 0; i < n; i++ {
		email := fmt.Sprintf("bench%02d@example.com", i+1)
		saved, err := saver.Save(ctx, signup.Card{Number: "4242424242424242", ExpMonth: 12, ExpYear: time.Now().Year() + 3, CVC: "123",
			Email: email, Name: fmt.Sprintf("Bench Customer %d", i+1), Key: fmt.Sprintf("bench-%d", i)})
		if err != nil {
			return nil, fmt.Errorf("save card at the simulator: %w", err)
		}
		cards = append(cards, loadtest.Card{Customer: saved.Customer, PaymentMethod: saved.PaymentMethod, Email: email})
	}
	return cards, nil
}

// benchCommand builds the command that runs `billingd args…` (the simulator,
// the instances of a cluster run): this same binary. Tests replace it, since
// their binary is the test binary.
var benchCommand = func(ctx context.Context, args []string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, exe, args...), nil
}

// startSimProcess runs `billingd sim` as a child process, so that its CPU and
// memory are not billingd's, and returns its URL once it listens. Its output
// goes to DIR/sim.log.
func startSimProcess(ctx context.Context, o benchOptions) (url string, pid int, stop func(), err error) {
	args := []string{"sim", "--listen", "127.0.0.1:0", "--secret-key", benchSecretKey, "--seed", "1",
		"--latency", o.latency.String()}
	if o.rate > 0 {
		args = append(args, "--rate-limit", strconv.FormatFloat(o.rate, 'g', -1, 64))
	}
	cmd, err := benchCommand(ctx, args)
	if err != nil {
		return "", 0, nil, err
	}
	logFile, err := os.Create(filepath.Join(o.dir, "sim.log"))
	if err != nil {
		return "", 0, nil, err
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return "", 0, nil, fmt.Errorf("start the simulator: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if !sent {
				if _, rest, ok := strings.Cut(line, "listening on "); ok {
					found <- strings.Fields(rest)[0]
					sent = true
				}
			}
		}
		_, _ = io.Copy(logFile, stdout)
		if !sent {
			close(found)
		}
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			stop()
			return "", 0, nil, fmt.Errorf("the simulator exited before listening; see %s", filepath.Join(o.dir, "sim.log"))
		}
		return addr, cmd.Process.Pid, stop, nil
	case <-time.After(15 * time.Second):
		stop()
		return "", 0, nil, fmt.Errorf("the simulator did not start listening within 15s; see %s", filepath.Join(o.dir, "sim.log"))
	}
}

type simStats struct {
	Requests    int64 `json:"requests"`
	RateLimited int64 `json:"rate_limited"`
}

func fetchSimStats(ctx context.Context, simURL string) (simStats, error) {
	var s simStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(simURL, "/")+"/_sim/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /_sim/stats: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}
