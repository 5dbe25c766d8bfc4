package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/billingd/billingd/internal/cluster"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// The cluster run of `billingd bench --driver postgres`: --instances
// `billingd run` processes (this binary) on one fresh PostgreSQL database and
// one simulator, started together by their billing cron, watched from the
// database until every due subscription is charged.

const (
	// benchClusterCron fires every instance's billing pass on the same
	// whole second of the wall clock (robfig/cron's @every rounds to whole
	// seconds), so a pass due at T0 starts on every instance at once.
	benchClusterCron = "@every 1s"
	// benchClusterTimeout and benchClusterMaxElapsed are the instances'
	// gateway.timeout and retry.max_elapsed_time: they set the lease of a
	// claimed attempt (max elapsed + 2 × timeout + 1m), which is how long
	// the attempts a killed instance held wait before a peer replays them.
	benchClusterTimeout    = 5 * time.Second
	benchClusterMaxElapsed = 10 * time.Second
	// benchPoll is how often the bench reads the database's progress and
	// the processes' CPU.
	benchPoll = 200 * time.Millisecond
)

func (o benchOptions) checkCluster() error {
	switch {
	case o.dsn == "":
		return usagef("--driver postgres needs --dsn: a PostgreSQL server where the bench may create a database")
	case o.instances < 1 || o.instances > 32:
		return usagef("--instances must be between 1 and 32, got %d", o.instances)
	case o.killOneAfter < 0:
		return usagef("--kill-one-after must not be negative, got %s", o.killOneAfter)
	case o.killOneAfter > 0 && o.instances < 2:
		return usagef("--kill-one-after needs at least 2 instances: the others finish the pass")
	case o.addOneAfter < 0 || o.removeOneAfter < 0:
		return usagef("--add-one-after and --remove-one-after must not be negative")
	case o.removeOneAfter > 0 && o.instances < 2:
		return usagef("--remove-one-after needs at least 2 instances: the others finish the pass")
	case o.removeOneAfter > 0 && o.killOneAfter > 0 && o.instances < 3:
		return usagef("--remove-one-after with --kill-one-after needs at least 3 instances")
	case o.pgbenchClients < 1:
		return usagef("--pgbench-clients must be at least 1, got %d", o.pgbenchClients)
	case o.pgbenchTime < 0:
		return usagef("--pgbench-time must not be negative, got %s", o.pgbenchTime)
	case o.timeout <= 0:
		return usagef("--timeout must be positive, got %s", o.timeout)
	case o.cpuProfile != "":
		return usagef("--cpuprofile profiles the in-process SQLite pass; with --driver postgres the pass runs in other processes")
	}
	if _, err := store.DSNWithDatabase(o.dsn, "billingd_bench"); err != nil {
		return usagef("--dsn: %v", err)
	}
	return nil
}

// benchInstance is one `billingd run` process of a cluster run.
type benchInstance struct {
	n       int
	cmd     *exec.Cmd
	logPath string
	listen  chan string   // its http.listen address, once it logged "billingd started"
	addr    string        // that address, once the bench read it
	done    chan struct{} // closed when it exited
	// succeeded counts its "charge attempt recorded" log lines with status
	// succeeded: its share of the charges.
	succeeded atomic.Int64
	killed    bool
	removed   bool          // stopped with SIGTERM mid-pass (--remove-one-after)
	added     bool          // started mid-pass (--add-one-after): its CPU counts from its start
	cpu0      time.Duration // CPU at the pass's start
	cpu       time.Duration // CPU at the last sample while it ran
	peakRSS   int64
	// db0 and db are its statement and transaction counts (/metrics) at the
	// pass's start (a joiner: once it listens) and at the pass's end (a
	// killed or stopped one: just before); dbErr says why they are not.
	db0, db store.DBCounts
	dbErr   error
}

// scrapeStart reads the instance's database counts at the pass's start.
func (in *benchInstance) scrapeStart(ctx context.Context) {
	in.db0, in.dbErr = scrapeDBCounts(ctx, in.addr)
	in.db = in.db0
}

// scrapeEnd reads them at its end.
func (in *benchInstance) scrapeEnd(ctx context.Context) {
	if in.dbErr != nil {
		return
	}
	in.db, in.dbErr = scrapeDBCounts(ctx, in.addr)
}

// scrapeDBCounts reads billingd_db_statements_total and
// billingd_db_transactions_total from the /metrics of the instance listening
// on addr.
func scrapeDBCounts(ctx context.Context, addr string) (store.DBCounts, error) {
	var c store.DBCounts
	if addr == "" {
		return c, errors.New("its http.listen address is not known")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return c, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return c, err
	}
	return parseDBCounts(string(body))
}

// parseDBCounts picks the database counters out of a /metrics page (the
// Prometheus text format).
func parseDBCounts(page string) (store.DBCounts, error) {
	var c store.DBCounts
	fields := map[string]*int64{
		"billingd_db_statements_total":                            &c.Statements,
		`billingd_db_transactions_total{outcome="committed"}`:     &c.Committed,
		`billingd_db_transactions_total{outcome="rolled_back"}`:   &c.RolledBack,
		`billingd_db_transactions_total{outcome="commit_failed"}`: &c.CommitFailed,
		`billingd_db_transactions_total{outcome="autocommit"}`:    &c.Autocommit,
	}
	found := 0
	for _, line := range strings.Split(page, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if p := fields[name]; ok && p != nil {
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return c, fmt.Errorf("/metrics: %s: %w", name, err)
			}
			*p = int64(v)
			found++
		}
	}
	if found != len(fields) {
		return c, errors.New("/metrics has no billingd_db_statements_total and billingd_db_transactions_total (an older billingd?)")
	}
	return c, nil
}

func (in *benchInstance) pid() int { return in.cmd.Process.Pid }

func (in *benchInstance) sample() {
	if st, err := loadtest.ReadProcStat(in.pid()); err == nil {
		in.cpu = st.CPU
	}
	if rss, err := loadtest.PeakRSSOf(in.pid()); err == nil {
		in.peakRSS = rss
	}
}

// instanceLimits are the gateway limits written into each instance's
// config: the cluster's, which the live instances split between them
// through the instances table (docs/cluster.md), so every config carries
// the whole values.
func (o benchOptions) instanceLimits() (rateLimit float64, concurrency int) {
	rateLimit, concurrency = o.rate, o.concurrency
	if rateLimit == 0 {
		rateLimit = benchNoLimit
	}
	return rateLimit, concurrency
}

func (o benchOptions) instanceConfig(dsn, simURL string) string {
	rateLimit, concurrency := o.instanceLimits()
	return fmt.Sprintf(`# billingd bench: one instance of a cluster run
database:
  driver: postgres
  dsn: %q
gateway:
  provider: wooshpay
  base_url: %q
  secret_key: %q
  webhook_secret: %q
  concurrency: %d
  rate_limit: %s
  timeout: %s
schedule:
  billing: %q
  page_size: %d
retry:
  max_elapsed_time: %s
http:
  listen: 127.0.0.1:0
  public_base_url: https://billing.example.com
log:
  level: info
  format: json
`, dsn, simURL, benchSecretKey, benchWebhookSecret, concurrency, strconv.FormatFloat(rateLimit, 'g', -1, 64),
		benchClusterTimeout, benchClusterCron, o.pageSize, benchClusterMaxElapsed)
}

// startInstance starts `billingd run -c cfgPath` with its log in DIR/billingd-N.log.
func startInstance(ctx context.Context, dir string, n int, cfgPath string) (*benchInstance, error) {
	cmd, err := benchCommand(ctx, []string{"run", "-c", cfgPath})
	if err != nil {
		return nil, err
	}
	in := &benchInstance{n: n, cmd: cmd, logPath: filepath.Join(dir, fmt.Sprintf("billingd-%d.log", n)),
		listen: make(chan string, 1), done: make(chan struct{})}
	logFile, err := os.Create(in.logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start instance %d: %w", n, err)
	}
	go func() {
		defer close(in.done)
		defer logFile.Close()
		w := bufio.NewWriterSize(logFile, 64<<10)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = w.Write(line)
			_ = w.WriteByte('\n')
			s := string(line)
			switch {
			case strings.Contains(s, `"message":"charge attempt recorded"`):
				if strings.Contains(s, `"status":"succeeded"`) {
					in.succeeded.Add(1)
				}
			case strings.Contains(s, `"message":"billingd started"`):
				var l struct{ Listen string }
				if json.Unmarshal(line, &l) == nil && l.Listen != "" {
					select {
					case in.listen <- l.Listen:
					default:
					}
				}
			}
		}
		_, _ = io.Copy(w, stdout)
		_ = w.Flush()
		_ = cmd.Wait()
	}()
	return in, nil
}

// stop ends the instance: SIGTERM (it drains), SIGKILL after grace.
func (in *benchInstance) stop(grace time.Duration) {
	select {
	case <-in.done:
		return
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(grace):
		_ = in.cmd.Process.Kill()
		<-in.done
	}
}

// pgServer follows the CPU of the PostgreSQL server the bench database is on,
// when that server runs on this host (its backends are in /proc).
type pgServer struct {
	st         *store.Store
	postmaster int
	err        error // why server CPU is not measured
	tree0      time.Duration
	// backends holds the CPU of each backend of the bench database at its
	// first and last sample.
	backends map[int]*[2]time.Duration
	started  bool
}

func newPGServer(ctx context.Context, st *store.Store) *pgServer {
	p := &pgServer{st: st, backends: map[int]*[2]time.Duration{}}
	_, self, err := st.ServerBackends(ctx)
	if err != nil {
		p.err = err
		return p
	}
	me, err := loadtest.ReadProcStat(self)
	if err != nil || me.Comm != "postgres" {
		p.err = errors.New("the server does not run on this host (its backend is not in /proc)")
		return p
	}
	p.postmaster = me.PPID
	return p
}

// start takes the server's CPU at the pass's start.
func (p *pgServer) start(ctx context.Context) {
	if p.err != nil {
		return
	}
	if p.tree0, p.err = loadtest.TreeCPU(p.postmaster); p.err != nil {
		return
	}
	p.sample(ctx)
	p.started = true
}

// sample reads the CPU of the bench database's backends. A backend first seen
// after the start counts from its birth.
func (p *pgServer) sample(ctx context.Context) {
	if p.err != nil {
		return
	}
	pids, _, err := p.st.ServerBackends(ctx)
	if err != nil {
		return
	}
	for _, pid := range pids {
		st, err := loadtest.ReadProcStat(pid)
		if err != nil {
			continue
		}
		if b, ok := p.backends[pid]; ok {
			b[1] = st.CPU
		} else if p.started {
			p.backends[pid] = &[2]time.Duration{0, st.CPU}
		} else {
			p.backends[pid] = &[2]time.Duration{st.CPU, st.CPU}
		}
	}
}

// backendCPU is the bench database's backends' CPU since the start.
func (p *pgServer) backendCPU() time.Duration {
	var total time.Duration
	for _, b := range p.backends {
		total += b[1] - b[0]
	}
	return total
}

func (p *pgServer) treeCPU() (time.Duration, error) {
	if p.err != nil {
		return 0, p.err
	}
	t, err := loadtest.TreeCPU(p.postmaster)
	return t - p.tree0, err
}

func (m *Main) benchCluster(ctx context.Context, o benchOptions) (err error) {
	out := m.Stdout
	// Ctrl-C (or SIGTERM) ends the run: the instances and the simulator are
	// stopped and the bench's databases dropped all the same.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if m.Signals != nil {
		go func() {
			select {
			case <-m.Signals:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
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

	// A database of the bench's own on the server.
	admin, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: o.dsn, MaxOpenConns: 1})
	if err != nil {
		return fmt.Errorf("--dsn: %w", err)
	}
	defer admin.Close()
	dbName := fmt.Sprintf("billingd_bench_%s_%d", time.Now().UTC().Format("20060102_150405"), os.Getpid())
	if err := admin.CreateDatabase(ctx, dbName); err != nil {
		return fmt.Errorf("create database %s: %w", dbName, err)
	}
	if o.keep {
		defer fmt.Fprintf(out, "kept database %s\n", dbName)
	} else {
		defer func() {
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer dcancel()
			if derr := admin.DropDatabase(dctx, dbName); derr != nil {
				fmt.Fprintf(m.Stderr, "billingd bench: could not drop database %s: %v\n", dbName, derr)
			}
		}()
	}
	dsn, err := store.DSNWithDatabase(o.dsn, dbName)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: dsn, MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	serverVersion, _ := st.ServerVersion(ctx)

	simURL, simPID := o.simURL, 0
	if simURL == "" {
		url, pid, stop, err := startSimProcess(ctx, o)
		if err != nil {
			return err
		}
		defer stop()
		simURL, simPID = url, pid
	}
	cards, err := saveBenchCards(ctx, simURL, min(benchCards, o.subscriptions))
	if err != nil {
		return err
	}

	var raw *benchFigures
	if o.raw {
		client, err := wooshpay.New(wooshpay.Options{BaseURL: simURL, SecretKey: benchSecretKey, Timeout: 30 * time.Second})
		if err != nil {
			return err
		}
		if raw, err = runRawCeiling(ctx, client, o, cards, simPID); err != nil {
			return err
		}
	}
	// The simulator's counters before the pass (cards, the raw run).
	stats0, _ := fetchSimStats(ctx, simURL)

	// The instances, started on an empty schedule: their first passes find
	// nothing due.
	cfgText := o.instanceConfig(dsn, simURL)
	instances := make([]*benchInstance, 0, o.instances)
	defer func() {
		var wg sync.WaitGroup
		for _, in := range instances {
			wg.Add(1)
			go func() { defer wg.Done(); in.stop(30 * time.Second) }()
		}
		wg.Wait()
	}()
	for i := 1; i <= o.instances; i++ {
		cfgPath := filepath.Join(o.dir, fmt.Sprintf("billingd-%d.yaml", i))
		if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
			return err
		}
		if i == 1 {
			if _, err := config.LoadAndValidate(cfgPath); err != nil {
				return fmt.Errorf("bench instance config %s:\n%w", cfgPath, err)
			}
		}
		in, err := startInstance(ctx, o.dir, i, cfgPath)
		if err != nil {
			return err
		}
		instances = append(instances, in)
	}
	for _, in := range instances {
		select {
		case in.addr = <-in.listen:
		case <-in.done:
			return fmt.Errorf("instance %d exited before it started; see %s", in.n, in.logPath)
		case <-time.After(60 * time.Second):
			return fmt.Errorf("instance %d did not start within 60s; see %s", in.n, in.logPath)
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	// A pass that starts while the instances are still joining runs at part
	// of the limits for up to a heartbeat (each raises its share only once
	// the others have lowered theirs): wait until every instance holds its
	// fair share, so the pass measures the cluster, not its joining.
	rateLimit0, concurrency0 := o.instanceLimits()
	settleStart := time.Now()
	settled, err := waitForFairShares(ctx, st, o.instances, cluster.Limits{Rate: rateLimit0, Concurrency: concurrency0}, benchSettleTimeout)
	if err != nil {
		return err
	}
	if !settled {
		fmt.Fprintf(out, "warning: the instances did not all publish their fair share of the limits within %s; the pass starts anyway\n", benchSettleTimeout)
	} else if o.instances > 1 {
		fmt.Fprintf(out, "billingd bench: every instance held its fair share of the limits %s after all had started\n", time.Since(settleStart).Round(100*time.Millisecond))
	}

	// Seed the subscriptions due at T0, a whole second by which seeding is
	// done; every instance's cron fires its pass at T0.
	seedStart := time.Now()
	// Seeding takes about 50–150 µs a subscription on a busy 2-core host.
	t0 := seedStart.Add(time.Second + time.Duration(o.subscriptions)*250*time.Microsecond).Truncate(time.Second).Add(time.Second)
	if err := loadtest.SeedDueSubscriptions(ctx, st, cards, o.subscriptions, 1999, "USD", t0, seedStart.UTC()); err != nil {
		return err
	}
	seeded := time.Since(seedStart)
	rateLimit, concurrency := o.instanceLimits()
	fmt.Fprintf(out, "billingd bench: %d due subscriptions seeded in %s (%s, database %s)\n", o.subscriptions, seeded.Round(time.Millisecond), o.dir, dbName)
	if late := time.Since(t0); late > 0 {
		fmt.Fprintf(out, "warning: seeding ended %s after the pass started: its first page saw only part of the subscriptions\n", late.Round(time.Millisecond))
	}
	fmt.Fprintf(out, "gateway: simulator at %s, latency %s, cluster concurrency %d, cluster rate limit %s; PostgreSQL %s, page size %d\n",
		simURL, o.latency, o.concurrency, rateText(o.rate), serverVersion, o.pageSize)
	limitsNote := "the cluster's values, which the instances split between them"
	rateLimitText := "none"
	if rateLimit < benchNoLimit {
		rateLimitText = strconv.FormatFloat(rateLimit, 'g', 4, 64) + "/s"
	}
	fmt.Fprintf(out, "instances: %d `billingd run` processes, cron %q; each config has gateway.rate_limit %s and concurrency %d (%s)\n\n",
		o.instances, benchClusterCron, rateLimitText, concurrency, limitsNote)

	srv := newPGServer(ctx, st)
	// The instances' database counts first, all at once: a scrape runs the
	// gauges' queries, which should not land in the pass's CPU.
	time.Sleep(time.Until(t0.Add(-150 * time.Millisecond)))
	var scrapes sync.WaitGroup
	for _, in := range instances {
		scrapes.Add(1)
		go func() { defer scrapes.Done(); in.scrapeStart(ctx) }()
	}
	scrapes.Wait()
	time.Sleep(time.Until(t0.Add(-50 * time.Millisecond)))
	load0 := loadAverage()
	xact0, _ := st.CommittedTransactions(ctx)
	for _, in := range instances {
		_ = loadtest.ResetPeakRSSOf(in.pid())
		in.sample()
		in.cpu0 = in.cpu
	}
	sim0 := processCPU(simPID)
	srv.start(ctx)

	// Watch until every due subscription is paid.
	var killedAt, addedAt, removedAt time.Time
	var victim, joiner, leaver *benchInstance
	var seen []models.Instance // instances rows read before one left
	deadline := time.Now().Add(o.timeout)
	ticker := time.NewTicker(benchPoll)
	defer ticker.Stop()
	var paid int64
	for {
		for _, in := range instances {
			if !in.killed {
				in.sample()
			}
		}
		srv.sample(ctx)
		if o.killOneAfter > 0 && victim == nil && time.Since(t0) >= o.killOneAfter {
			victim = instances[len(instances)-1]
			victim.scrapeEnd(ctx)
			victim.sample()
			victim.killed = true
			_ = victim.cmd.Process.Kill()
			killedAt = time.Now()
		}
		if o.removeOneAfter > 0 && leaver == nil && time.Since(t0) >= o.removeOneAfter {
			// The first instance, so that a kill still takes the last one.
			leaver = instances[0]
			leaver.scrapeEnd(ctx) // what it sends while it drains is not counted
			leaver.removed = true
			// Its row goes when it stops; keep its name.
			if rows, err := st.Instances(ctx); err == nil {
				seen = append(seen, rows...)
			}
			_ = leaver.cmd.Process.Signal(syscall.SIGTERM)
			removedAt = time.Now()
		}
		if o.addOneAfter > 0 && joiner == nil && time.Since(t0) >= o.addOneAfter {
			n := len(instances) + 1
			cfgPath := filepath.Join(o.dir, fmt.Sprintf("billingd-%d.yaml", n))
			if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
				return err
			}
			if joiner, err = startInstance(ctx, o.dir, n, cfgPath); err != nil {
				return err
			}
			joiner.added = true
			instances = append(instances, joiner)
			addedAt = time.Now()
		}
		if joiner != nil && joiner.addr == "" {
			select {
			case joiner.addr = <-joiner.listen:
				joiner.scrapeStart(ctx)
			default:
			}
		}
		for _, in := range instances {
			if in.killed || in.removed {
				continue
			}
			select {
			case <-in.done:
				return fmt.Errorf("instance %d exited during the pass; see %s", in.n, in.logPath)
			default:
			}
		}
		if paid, err = st.CountInvoices(ctx, models.InvoicePaid); err != nil {
			return err
		}
		if paid >= int64(o.subscriptions) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s, %d of %d due subscriptions are paid; see the logs in %s (--keep keeps them)", o.timeout, paid, o.subscriptions, o.dir)
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, in := range instances {
		if !in.killed {
			in.sample()
		}
	}
	srv.sample(ctx)
	simCPU := processCPU(simPID).since(sim0)
	load1 := loadAverage()
	serverCPU, serverErr := srv.treeCPU()
	backendCPU := srv.backendCPU()
	for _, in := range instances {
		if !in.killed && !in.removed {
			scrapes.Add(1)
			go func() { defer scrapes.Done(); in.scrapeEnd(ctx) }()
		}
	}
	scrapes.Wait()
	final, _ := st.Instances(ctx)
	members := lastKnownRows(final, seen)
	var wg sync.WaitGroup
	for _, in := range instances {
		wg.Add(1)
		go func() { defer wg.Done(); in.stop(30 * time.Second) }()
	}
	wg.Wait()

	times, err := st.AttemptTimes(ctx)
	if err != nil {
		return err
	}
	attempts := int64(len(times))
	fig := benchFigures{charges: int(paid), attemptLat: &loadtest.Histogram{}}
	var last time.Time
	finished := make([]time.Time, 0, len(times))
	for _, a := range times {
		if a.Finished.IsZero() {
			continue
		}
		finished = append(finished, a.Finished)
		fig.attemptLat.Observe(a.Finished.Sub(a.Created))
		if a.Finished.After(last) {
			last = a.Finished
		}
	}
	fig.elapsed = last.Sub(t0)
	for _, in := range instances {
		fig.cpu += in.cpu - in.cpu0
	}
	fig.sim = simCPU
	fig.pgBackends = cpuFigure{d: backendCPU, ok: srv.err == nil}
	fig.pgServer = cpuFigure{d: serverCPU, ok: srv.err == nil && serverErr == nil}
	var db store.DBCounts
	var dbErrs []string
	for _, in := range instances {
		if in.dbErr != nil {
			dbErrs = append(dbErrs, fmt.Sprintf("instance %d: %v", in.n, in.dbErr))
			continue
		}
		d := in.db.Sub(in.db0)
		db.Statements += d.Statements
		db.Committed += d.Committed
		db.RolledBack += d.RolledBack
		db.CommitFailed += d.CommitFailed
		db.Autocommit += d.Autocommit
	}
	if dbErrs == nil {
		fig.db = &db
	}
	// Statistics of the backends that exited with the instances arrive
	// shortly after they exit.
	time.Sleep(700 * time.Millisecond)
	xact1, xactErr := st.CommittedTransactions(ctx)
	dbBytes, _ := st.DatabaseSize(ctx)
	stats, statsErr := fetchSimStats(ctx, simURL)
	ledger, ledgerErr := fetchSimLedger(ctx, simURL)

	var pgb *loadtest.PgbenchResult
	var pgbErr error
	if o.pgbenchTime > 0 {
		r, err := runScratchPgbench(ctx, admin, o, dbName+"_pgbench")
		pgb, pgbErr = &r, err
	}

	bound := benchBound(o)
	writeBenchTable(out, bound, raw, &fig)
	fmt.Fprintf(out, "elapsed: from T0 (the instances' cron firing the pass) to the last outcome recorded; attempt latency: claim to outcome (the attempt's created_at to finished_at)\n\n")
	writeChargeCosts(out, raw, &fig, true)
	if dbErrs != nil {
		fmt.Fprintf(out, "statements and transactions not counted: %s\n", strings.Join(dbErrs, "; "))
	}
	fmt.Fprintf(out, "statements and transactions: the instances' billingd_db_statements_total and billingd_db_transactions_total (/metrics) from T0 to the end, summed%s\n",
		map[bool]string{true: " (an instance killed or stopped during the pass: up to just before)", false: ""}[victim != nil || leaver != nil])

	// Each instance's share.
	fmt.Fprintln(out, "instances:")
	shared := false
	for _, in := range instances {
		name, share := "?", ""
		for _, mb := range members {
			if mb.PID == in.pid() {
				name = mb.Name
				share = fmt.Sprintf("  published share: rate %s, concurrency %d", strconv.FormatFloat(mb.RateShare, 'g', 4, 64), mb.ConcurrencyShare)
				if mb.RateShare > 0 || mb.ConcurrencyShare > 0 {
					shared = true
				}
			}
		}
		note := ""
		switch {
		case in.killed:
			note = fmt.Sprintf("  SIGKILLed at %.1fs", killedAt.Sub(t0).Seconds())
		case in.removed:
			note = fmt.Sprintf("  stopped (SIGTERM) at %.1fs", removedAt.Sub(t0).Seconds())
		case in.added:
			note = fmt.Sprintf("  started at %.1fs (CPU from its start)", addedAt.Sub(t0).Seconds())
		}
		c := in.succeeded.Load()
		fmt.Fprintf(out, "  %d  %s  charges %d (%.1f%%)  CPU %.2fs  peak RSS %.1f MB%s%s\n", in.n, name, c, pct(float64(c), float64(fig.charges)),
			(in.cpu - in.cpu0).Seconds(), float64(in.peakRSS)/(1<<20), share, note)
	}
	if !shared && o.instances > 1 {
		fmt.Fprintf(out, "  (no instance published a share of the limits: each one used its whole gateway.rate_limit and concurrency, so the cluster could send up to %d× the cluster's values)\n", o.instances)
	}

	per1000 := func(d time.Duration) string {
		if fig.charges == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", d.Seconds()*1000/float64(fig.charges))
	}
	fmt.Fprintf(out, "CPU s per 1,000 charges: billingd %s (user+system of the %d processes over the pass, /proc/PID/stat)", per1000(fig.cpu), len(instances))
	if srv.err != nil {
		fmt.Fprintf(out, "; PostgreSQL not measured: %v\n", srv.err)
	} else {
		fmt.Fprintf(out, "; PostgreSQL: the bench database's backends %s", per1000(backendCPU))
		if serverErr == nil {
			fmt.Fprintf(out, ", the whole server %s (postmaster pid %d, its children and the children it reaped: every database's clients, checkpointer, WAL writer, autovacuum)", per1000(serverCPU), srv.postmaster)
		}
		fmt.Fprintln(out)
	}
	if xactErr == nil && fig.charges > 0 {
		fmt.Fprintf(out, "database transactions: %d committed in the bench database during the pass, %.2f per charge (the bench's own progress reads included)\n",
			xact1-xact0, float64(xact1-xact0)/float64(fig.charges))
	}
	fmt.Fprintf(out, "database size: %.1f MB (%s)\n", float64(dbBytes)/(1<<20), dbName)
	if statsErr != nil {
		fmt.Fprintf(out, "simulator stats: %v\n", statsErr)
	} else {
		fmt.Fprintf(out, "simulator: %d API requests during the pass, %d refused over its rate limit (429)\n", stats.Requests-stats0.Requests, stats.RateLimited-stats0.RateLimited)
	}
	doubles := -1
	if ledgerErr != nil {
		fmt.Fprintf(out, "simulator ledger: %v\n", ledgerErr)
	} else {
		doubles = doubleCharges(ledger)
		fmt.Fprintf(out, "double charges (orders with more than one succeeded payment in the simulator's ledger): %d\n", doubles)
	}
	if o.killOneAfter > 0 && victim == nil {
		fmt.Fprintf(out, "kill: none, the pass ended before --kill-one-after %s\n", o.killOneAfter)
	}
	if victim != nil {
		printKill(out, o, bound, t0, killedAt, finished, o.instances-1)
	}
	if o.addOneAfter > 0 && joiner == nil {
		fmt.Fprintf(out, "add: none, the pass ended before --add-one-after %s\n", o.addOneAfter)
	}
	if o.removeOneAfter > 0 && leaver == nil {
		fmt.Fprintf(out, "remove: none, the pass ended before --remove-one-after %s\n", o.removeOneAfter)
	}
	switch {
	case pgb == nil:
	case pgbErr != nil:
		fmt.Fprintf(out, "pgbench: %v\n", pgbErr)
	default:
		fmt.Fprintf(out, "pgbench -N -c %d -j %d -T %d on a scratch database of the same server: %.0f tps; billingd's charges/s are %.1f%% of it",
			pgb.Clients, pgb.Threads, int(pgb.Duration.Seconds()), pgb.TPS, pct(fig.rate(), pgb.TPS))
		if xactErr == nil && fig.elapsed > 0 {
			fmt.Fprintf(out, ", its transactions/s %.1f%%", pct(float64(xact1-xact0)/fig.elapsed.Seconds(), pgb.TPS))
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "load average of this host (1, 5, 15 min): %s at the pass's start, %s at its end, on %d CPUs\n", load0, load1, runtime.NumCPU())
	fmt.Fprintf(out, "check: %d invoices paid, %d charge attempts for %d due subscriptions\n", paid, attempts, o.subscriptions)
	if o.keep {
		fmt.Fprintf(out, "kept %s (billingd-N.yaml, billingd-N.log, sim.log)\n", o.dir)
	}
	if paid != int64(o.subscriptions) || attempts != int64(o.subscriptions) {
		return fmt.Errorf("the pass did not charge every due subscription exactly once: %d paid, %d attempts, want %d", paid, attempts, o.subscriptions)
	}
	if doubles > 0 {
		return fmt.Errorf("%d orders were charged more than once at the simulator", doubles)
	}
	return nil
}

// loadAverage is the host's 1, 5 and 15 minute load averages
// (/proc/loadavg), or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func pct(v, of float64) float64 {
	if of <= 0 {
		return 0
	}
	return 100 * v / of
}

// printKill says how the pass went on after the SIGKILL: throughput second by
// second from the kill, against the bound.
func printKill(out io.Writer, o benchOptions, bound float64, t0, killedAt time.Time, finished []time.Time, survivors int) {
	sort.Slice(finished, func(i, j int) bool { return finished[i].Before(finished[j]) })
	var perSecond []int
	var tail int
	for _, f := range finished {
		if f.Before(killedAt) {
			continue
		}
		i := int(f.Sub(killedAt) / time.Second)
		for len(perSecond) <= i {
			perSecond = append(perSecond, 0)
		}
		perSecond[i]++
		tail++
	}
	fmt.Fprintf(out, "kill: the last instance was SIGKILLed %.1fs into the pass; the other %d finished it (%d outcomes recorded after the kill)\n",
		killedAt.Sub(t0).Seconds(), survivors, tail)
	if len(perSecond) == 0 || math.IsInf(bound, 1) {
		return
	}
	target := bound
	fmt.Fprintf(out, "  charges in the second after the kill: %d (%.1f%% of the bound %s)", perSecond[0], pct(float64(perSecond[0]), target), boundText(target))
	back := -1
	for i, n := range perSecond {
		if float64(n) >= 0.9*target {
			back = i
			break
		}
	}
	if back >= 0 {
		fmt.Fprintf(out, "; first second at ≥ 90%% of the bound: second %d after the kill\n", back+1)
	} else {
		fmt.Fprintf(out, "; no second after the kill reached 90%% of the bound\n")
	}
	show := perSecond
	if len(show) > 20 {
		show = show[:20]
	}
	strs := make([]string, len(show))
	for i, n := range show {
		strs[i] = strconv.Itoa(n)
	}
	lease := benchClusterMaxElapsed + 2*benchClusterTimeout + time.Minute
	fmt.Fprintf(out, "  charges per second from the kill on: %s%s (the killed instance's claimed attempts are replayed once their lease, %s, has run out)\n",
		strings.Join(strs, " "), map[bool]string{true: " …", false: ""}[len(perSecond) > 20], lease)
}

// benchSettleTimeout bounds the wait for the instances' fair shares: a few
// heartbeats (cluster.heartbeat, 5 s by default) at most.
const benchSettleTimeout = 30 * time.Second

// waitForFairShares polls the instances table until n instances are live and
// each one publishes its fair share of limits (cluster.Split by rank), or
// timeout passes (false).
func waitForFairShares(ctx context.Context, st *store.Store, n int, limits cluster.Limits, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		rows, err := st.Instances(ctx)
		if err != nil {
			return false, err
		}
		now, err := st.DBNow(ctx)
		if err != nil {
			return false, err
		}
		if fairShares(rows, now, n, limits) {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-time.After(benchPoll):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// fairShares reports whether exactly n instances are live at now and each one
// publishes the share cluster.Split gives its rank among them.
func fairShares(rows []models.Instance, now time.Time, n int, limits cluster.Limits) bool {
	var live []models.Instance
	for _, r := range rows {
		if cluster.Live(r, now) {
			live = append(live, r)
		}
	}
	if len(live) != n {
		return false
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Name < live[j].Name })
	for rank, r := range live {
		fair := cluster.Split(limits, n, rank)
		if r.ConcurrencyShare != fair.Concurrency || r.RateShare < fair.Rate*(1-1e-6) {
			return false
		}
	}
	return true
}

// lastKnownRows is every instance's newest instances row: the rows read at the
// pass's end, and for an instance that left the cluster during it (its row
// deleted) the row read before it left. An instance's final row wins, so the
// shares printed are those after the cluster re-balanced, not the ones it had
// while the leaver was still a member.
func lastKnownRows(final, before []models.Instance) []models.Instance {
	rows := append([]models.Instance(nil), final...)
	have := make(map[string]bool, len(final))
	for _, r := range final {
		have[r.Name] = true
	}
	for _, r := range before {
		if !have[r.Name] {
			have[r.Name] = true
			rows = append(rows, r)
		}
	}
	return rows
}

func runScratchPgbench(ctx context.Context, admin *store.Store, o benchOptions, name string) (loadtest.PgbenchResult, error) {
	if err := admin.CreateDatabase(ctx, name); err != nil {
		return loadtest.PgbenchResult{}, fmt.Errorf("create database %s: %w", name, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = admin.DropDatabase(dctx, name)
	}()
	dsn, err := store.DSNWithDatabase(o.dsn, name)
	if err != nil {
		return loadtest.PgbenchResult{}, err
	}
	return loadtest.RunPgbench(ctx, dsn, o.pgbenchClients, 2, o.pgbenchTime)
}

// doubleCharges counts the orders (merchant_order_id) with more than one
// succeeded payment in the ledger.
func doubleCharges(ledger []sim.LedgerEntry) int {
	succeeded := map[string]int{}
	n := 0
	for _, e := range ledger {
		if e.Status == "succeeded" {
			succeeded[e.MerchantOrderID]++
			if succeeded[e.MerchantOrderID] == 2 {
				n++
			}
		}
	}
	return n
}

func fetchSimLedger(ctx context.Context, simURL string) ([]sim.LedgerEntry, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(simURL, "/")+"/_sim/ledger", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /_sim/ledger: %s", resp.Status)
	}
	var l []sim.LedgerEntry
	return l, json.NewDecoder(resp.Body).Decode(&l)
}
