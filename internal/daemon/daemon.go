// Package daemon is billingd's assembly: New builds the whole running system
// from a config — store, gateway client, charge engine, billing passes,
// reconciler, dunning, mail worker, web routes, metrics, scheduler and
// watchdog health — and Run, Tick and Reload drive it.
//
// Every way billingd runs goes through New: `billingd run`, `once`, `demo`,
// `bench`, and every end-to-end test. A caller may swap the clock (Options) and,
// through the config, the gateway URL and the SMTP server — nothing else — so
// that what the tests prove is what the daemon does.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/events"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/budget"
	"github.com/billingd/billingd/internal/mail"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Options are what a caller may change about the assembled daemon besides its
// config.
type Options struct {
	// Clock is the time every component reads; nil is the wall clock. Tests
	// and `billingd demo --months` pass a clock.Fake and drive the daemon with
	// Tick.
	Clock clock.Clock
	// Log is where the JSON (or console) log goes; nil is stdout.
	Log io.Writer
	// Listener, when set, is served instead of listening on http.listen: a
	// caller that must know the address first (the demo hands it to the
	// simulator as its webhook URL) listens on port 0 itself.
	Listener net.Listener
	// WrapGateway, when set, wraps the configured gateway client; the load
	// tool uses it to time each request. It must not change any answer.
	WrapGateway func(gateway.Gateway) gateway.Gateway
	// ObserveAttempt, when set, receives each recorded attempt's duration (the
	// load tool's percentiles).
	ObserveAttempt func(time.Duration)
	// Operator builds the system for one operator action (`billingd invoices
	// refund …`) beside a running daemon: the database is opened without the
	// SQLite instance lock and must be migrated already, nothing a dead
	// predecessor leased is taken back, and no webhook verifier, pay pages
	// or mail sender are built (the daemon's outbox worker sends what an
	// action queues). The action's gateway calls go through the same engine,
	// claims and leases as the daemon's, so the two never send at once.
	Operator bool
	// Name, when set, names this instance (its instances row and lease
	// owner) instead of host:pid:start: several daemons in one process — a
	// test's cluster — are several instances.
	Name string
}

// Daemon is the running system. Its long-lived parts (store, gateway client,
// engine, metrics) live as long as the process; the parts a reload rebuilds
// (dunning policy, reconciler, biller, mail worker, customer routes) are
// swapped whole, so a request or job always sees one consistent config.
type Daemon struct {
	opts   Options
	log    zerolog.Logger
	sink   *logSink
	clock  clock.Clock
	store  *store.Store
	gw     gateway.Gateway
	client GatewayClient
	// shares is this process's part of the cluster's gateway limits: the
	// budget that client and gw take every call from.
	shares  *shares
	engine  *charge.Engine
	metrics *metrics.Metrics
	owner   string

	ops *ops.Service
	// cluster is this process's instances row; nil for an operator action.
	cluster *cluster
	// schema stops claiming while the database's schema is newer than this
	// binary (schemagate.go).
	schema *schemaGate

	cur   atomic.Pointer[parts]
	sched *scheduler
	// handler serves http.listen: health, readiness, metrics and the current
	// parts' customer routes.
	handler http.Handler
}

// New opens the database (taking the SQLite instance lock), applies
// migrations, rescues the leases of a dead predecessor and builds every
// component from cfg. It starts nothing: Run serves and schedules; Tick runs
// what is due once.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = os.Stdout
	}
	sink := &logSink{out: opts.Log}
	sink.setFormat(cfg.Log.Format)
	setLogLevel(cfg.Log.Level)
	d := &Daemon{
		opts:    opts,
		sink:    sink,
		log:     zerolog.New(sink).With().Timestamp().Logger(),
		clock:   opts.Clock,
		metrics: metrics.New(),
		owner:   InstanceName(),
	}
	if opts.Name != "" {
		d.owner = opts.Name
	}
	st, err := OpenStore(ctx, cfg, !opts.Operator, func(s models.AttemptStatus) { d.metrics.AttemptSettled(string(s)) })
	if err != nil {
		return nil, err
	}
	d.store = st
	if err := d.alignClock(ctx); err != nil {
		_ = st.Close()
		return nil, NamedDBError(cfg, err)
	}
	st.SetEventClock(d.clock)
	st.SetOnRefundSettled(func(r models.RefundReason, s models.RefundStatus) { d.metrics.RefundSettled(string(r), string(s)) })
	d.metrics.CountDatabase(func() metrics.DatabaseCounts {
		c := st.DBCounts()
		return metrics.DatabaseCounts{Statements: c.Statements, Committed: c.Committed, RolledBack: c.RolledBack, CommitFailed: c.CommitFailed,
			Autocommit: c.Autocommit}
	})
	for _, n := range st.FileNotices() {
		d.log.Warn().Msg(n)
	}
	if err := d.prepareDatabase(ctx, cfg); err != nil {
		_ = st.Close()
		return nil, err
	}
	client, err := NewGatewayClient(cfg)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	// Every gateway call of the process takes from one budget (its share
	// of gateway.rate_limit and gateway.concurrency): nothing holds the
	// unwrapped client.
	d.shares = d.newShares(cfg)
	d.client = budget.Wrap(client, d.shares.budget)
	d.gw = d.client
	if opts.WrapGateway != nil {
		d.gw = opts.WrapGateway(d.client)
	}
	d.engine = charge.New(charge.Options{
		Store:   st,
		Gateway: d.gw,
		Clock:   d.clock,
		// gateway.concurrency caps requests at the gateway; the biller runs
		// more workers than this so that recording outcomes does not leave
		// the gateway idle.
		MaxInFlight:       cfg.Gateway.Concurrency,
		Retry:             retryPolicy(cfg),
		UnknownRetryDelay: cfg.Retry.MaxInterval.D(),
		Log:               d.log,
		Metrics:           d.metrics,
		RecheckAfter:      cfg.Reconcile.Backoff[0].D(),
		Hook:              dunningHook{d},
		Observe:           opts.ObserveAttempt,
		Refunds:           d.client,
		RefundOwner:       d.owner,
		LeaseMargin:       charge.LeaseMargin(cfg.Gateway.Timeout.D()),
	})
	p, err := d.build(cfg)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	d.cur.Store(p)
	d.ops = newOps(cfg, st, d.clock, d.engine, d.client, dunningHook{d}, d.owner, d.log, d.gw, nil,
		func() events.Settings { return EventSettings(d.Config()) })
	if !opts.Operator {
		d.cluster = d.newCluster()
		d.expireGonePredecessors(ctx)
		if err := d.heartbeat(ctx); err != nil {
			if store.ConnectionLost(err) {
				_ = st.Close()
				return nil, NamedDBError(cfg, err)
			}
			// A database that answers but refuses the row (read-only, full)
			// is what /readyz reports; the process starts with a share of
			// nothing, sends nothing, and the instances job tries again.
			d.log.Error().Err(err).Msg("could not register this instance in the instances table; it sends nothing to the gateway until it has")
		}
	}
	d.sched = newScheduler(d)
	d.handler = d.newHandler()
	d.registerGauges()
	d.registerClusterGauges()
	if !cfg.Mail.Enabled() {
		d.log.Warn().Msg("mail.host is empty: dunning emails are queued in the outbox and sent once mail is configured")
	}
	return d, nil
}

// prepareDatabase migrates and, when this process holds the SQLite instance
// lock, takes back what a dead predecessor left leased.
func (d *Daemon) prepareDatabase(ctx context.Context, cfg *config.Config) error {
	st := d.store
	if newer, err := d.checkSchemaAtStart(ctx, cfg); err != nil || newer {
		return err
	}
	if d.opts.Operator {
		return schemaCurrent(ctx, cfg, st)
	}
	if applied, err := st.Migrate(ctx); err != nil {
		return NamedDBError(cfg, err)
	} else if len(applied) > 0 {
		d.log.Info().Strs("migrations", applied).Msg("database migrated")
	}
	if !st.Exclusive() {
		return nil
	}
	now := d.clock.Now()
	n, err := st.ReleaseAllLeases(ctx, now)
	if err != nil {
		return NamedDBError(cfg, err)
	}
	if n > 0 {
		d.log.Warn().Int64("attempts", n).Msg("reclaimed attempts leased by a previous process that did not stop cleanly; they will be replayed with their own idempotency keys")
	}
	return NamedDBError(cfg, st.InterruptStaleRuns(ctx, now, d.owner))
}

// schemaCurrent refuses a database whose migrations are behind this build's:
// a process working beside a running daemon does not migrate under it.
func schemaCurrent(ctx context.Context, cfg *config.Config, st *store.Store) error {
	ok, err := st.MigrationsCurrent(ctx)
	if err != nil {
		return NamedDBError(cfg, err)
	}
	if !ok {
		return errors.New("the database schema is not current: run `billingd migrate`")
	}
	return nil
}

// Ops is the operator actions of this assembly: the CLI's subscription,
// invoice, attempt and dunning commands and the admin API call them.
func (d *Daemon) Ops() *ops.Service { return d.ops }

// newOps builds the operator actions around a store and, when the process
// has a gateway client, the charge engine and the account reads. hook is the
// engine's dunning hook (the dunning service in force), through which an
// operator's new card lets an open case proceed as a pay-page card does.
func newOps(cfg *config.Config, st *store.Store, clk clock.Clock, engine *charge.Engine, accounts gateway.Accounts, hook charge.Hook, owner string, log zerolog.Logger,
	gw gateway.Gateway, limiter *rate.Limiter, eventSettings func() events.Settings) *ops.Service {
	o := ops.Options{Store: st, Clock: clk, Provider: cfg.Gateway.Provider, Owner: owner, Dunning: hook,
		Location: location(cfg), Log: log.With().Str("component", "ops").Logger(), Gateway: gw, Limiter: limiter, Events: eventSettings}
	if engine != nil {
		o.Engine = engine
	}
	if accounts != nil {
		o.Accounts = accounts
	}
	return ops.New(o)
}

// OpenOps opens the database beside a running daemon, without the instance
// lock and without a gateway client, for the commands that only read what
// ops look at (lists, stories, reports) and for `billingd events redeliver`
// (which POSTs to events.url with cfg's secrets, loaded only when the
// command's config.Need asks for them). Close the returned store when done.
func OpenOps(ctx context.Context, cfg *config.Config, clk clock.Clock) (*ops.Service, *store.Store, error) {
	if clk == nil {
		clk = clock.Real{}
	}
	st, err := OpenStore(ctx, cfg, false, nil)
	if err != nil {
		return nil, nil, err
	}
	st.SetEventClock(clk)
	if err := schemaCurrent(ctx, cfg, st); err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	set := EventSettings(cfg)
	return newOps(cfg, st, clk, nil, nil, nil, "", zerolog.Nop(), nil, nil, func() events.Settings { return set }), st, nil
}

// Close removes this instance's row from the instances table and releases
// the database (and the SQLite instance lock).
func (d *Daemon) Close() error {
	d.leaveCluster()
	return d.store.Close()
}

// Config is the config in force (after the last successful Reload). Keys that
// need a restart keep the values the process started with.
func (d *Daemon) Config() *config.Config { return d.cur.Load().cfg }

// Store is the daemon's database, for the callers that report on it (the
// demo's summary, tests' assertions).
func (d *Daemon) Store() *store.Store { return d.store }

// Log is the daemon's logger.
func (d *Daemon) Log() zerolog.Logger { return d.log }

// Clock is the daemon's clock.
func (d *Daemon) Clock() clock.Clock { return d.clock }

// Handler serves everything on http.listen: /healthz, /readyz, /metrics, the
// gateway's webhooks and the customers' pay pages.
func (d *Daemon) Handler() http.Handler { return d.handler }

// Pass runs one billing pass (reconciler, due dunning steps, invoicing,
// charging) and records it in billing_runs. stop ends it at a safe point;
// abort cuts in-flight requests (their attempts are replayed with the same
// key later).
func (d *Daemon) Pass(stop, abort context.Context, trigger string) (*models.BillingRun, error) {
	if err := d.notClaiming(); err != nil {
		return nil, err
	}
	run, err := d.cur.Load().biller.Pass(stop, abort, trigger)
	if err != nil && !errors.Is(err, context.Canceled) {
		err = NamedDBError(d.Config(), err)
	}
	return run, err
}

// WakeDunning runs the steps of dunning cases whose time has come.
func (d *Daemon) WakeDunning(ctx context.Context) (int, error) {
	return d.cur.Load().dunning.Wake(ctx, d.clock.Now())
}

// SendMail runs the outbox worker once. With mail disabled it sends nothing.
func (d *Daemon) SendMail(ctx context.Context) (mail.Summary, error) {
	if err := d.notClaiming(); err != nil {
		return mail.Summary{}, err
	}
	return d.sendMail(ctx, context.Background())
}

// sendMail runs the outbox worker once under the daemon's two-step shutdown:
// stop ends sending, abort also ends the retries of a "sent" write after the
// SMTP server accepted an email (mail.Worker.RunOnceUntil).
func (d *Daemon) sendMail(stop, abort context.Context) (mail.Summary, error) {
	m := d.cur.Load().mailer
	if m == nil {
		return mail.Summary{}, nil
	}
	return m.RunOnceUntil(stop, abort)
}

// DeliverEvents runs the events worker once: every due event POSTed to
// events.url. With events off it sends nothing.
func (d *Daemon) DeliverEvents(ctx context.Context) (events.Summary, error) {
	w := d.cur.Load().eventer
	if w == nil {
		return events.Summary{}, nil
	}
	return w.RunOnce(ctx)
}

// RunRefunds runs the refund job once: duplicates read back and refunded,
// pending and unknown refunds sent or replayed with their own keys,
// processing ones read.
func (d *Daemon) RunRefunds(ctx context.Context) (int, error) {
	return d.engine.RunRefunds(ctx, 100)
}

// Refund reserves and sends a refund of an invoice's payment (the machinery
// the operator's `invoices refund` builds on): amount minor units (0: what is
// left) for reason, under key.
func (d *Daemon) Refund(ctx context.Context, invoiceID, amount int64, reason models.RefundReason, key string) (*models.Refund, error) {
	return d.engine.Refund(ctx, invoiceID, amount, reason, key)
}

// Reconcile runs the reconciler once over attempts left unresolved.
func (d *Daemon) Reconcile(ctx context.Context) error {
	_, err := d.cur.Load().recon.Run(ctx)
	return err
}

// CancelWaitingIntents is the intents job: it marks the intents that have
// waited for the customer's 3-D Secure check longer than
// dunning.challenge_timeout for cancel, then cancels at the gateway every
// waiting intent whose cancel was decided (abandoned challenges, invoices paid
// by another intent, written off or voided) and records each answer. It
// returns how many cancels it sent.
func (d *Daemon) CancelWaitingIntents(ctx context.Context) (int, error) {
	cfg := d.Config()
	now := d.clock.Now()
	if _, err := d.store.RequestAbandonedCancels(ctx, now, now.Add(-cfg.Dunning.ChallengeTimeout.D())); err != nil {
		return 0, err
	}
	sent := 0
	for ctx.Err() == nil {
		due, err := d.store.CancelsDue(ctx, d.clock.Now(), 100)
		if err != nil || len(due) == 0 {
			return sent, err
		}
		for i := range due {
			sent++
			if _, err := d.engine.CancelWaiting(ctx, &due[i]); err != nil {
				return sent, err
			}
		}
		if len(due) < 100 {
			return sent, nil
		}
	}
	return sent, ctx.Err()
}

// ResolveUnsettled reads the gateway's record of every unresolved attempt now,
// without the reconciler's waiting period (the demo uses it when a webhook is
// slow). It changes only attempts the gateway has an answer for.
func (d *Daemon) ResolveUnsettled(ctx context.Context) error {
	pending, err := d.store.AttemptsByStatus(ctx, 1000, models.UnresolvedAttemptStatuses...)
	if err != nil {
		return err
	}
	for i := range pending {
		if _, err := d.Resolve(ctx, &pending[i]); err != nil {
			return err
		}
	}
	return nil
}

func retryPolicy(cfg *config.Config) charge.RetryPolicy {
	return charge.RetryPolicy{
		InitialInterval: cfg.Retry.InitialInterval.D(),
		MaxInterval:     cfg.Retry.MaxInterval.D(),
		MaxElapsedTime:  cfg.Retry.MaxElapsedTime.D(),
	}
}

// OpenStore opens cfg's database. exclusive takes the SQLite instance lock
// (commands that only read leave it, so they run beside the daemon).
// onSettled receives every attempt outcome after its commit (the metrics).
func OpenStore(ctx context.Context, cfg *config.Config, exclusive bool, onSettled func(models.AttemptStatus)) (*store.Store, error) {
	st, err := store.Open(ctx, store.Options{
		Driver:           cfg.Database.Driver,
		DSN:              cfg.Database.DSN,
		Synchronous:      cfg.Database.Synchronous,
		BusyTimeout:      cfg.Database.BusyTimeout.D(),
		MaxOpenConns:     cfg.Database.MaxOpenConns,
		PgBouncer:        cfg.Database.PgBouncer,
		Exclusive:        exclusive,
		OnAttemptSettled: onSettled,
		DefaultTimezone:  cfg.Schedule.Timezone,
		Events:           eventOptions(cfg),
	})
	return st, NamedDBError(cfg, err)
}

// eventOptions turns the outbox to the merchant's systems on when
// events.url is set: every process that changes state (the daemon, an
// operator's command, an import) then records the events of its changes,
// whichever of them delivers them.
func eventOptions(cfg *config.Config) *store.EventOptions {
	if !cfg.Events.Enabled() {
		return nil
	}
	return &store.EventOptions{Renderer: ops.EventRenderer{}}
}

// NamedDBError prefixes err with the database it came from (the SQLite path, or
// the PostgreSQL DSN without its password) unless the error names it already:
// "database is locked" alone does not say which database.
func NamedDBError(cfg *config.Config, err error) error {
	if err == nil {
		return nil
	}
	name := cfg.Database.DSN
	if cfg.Database.Driver == config.DriverPostgres {
		name = config.RedactDSN(name)
	} else if path, _, _ := strings.Cut(strings.TrimPrefix(name, "file:"), "?"); path != "" {
		name = path
	}
	if strings.Contains(err.Error(), name) {
		return err
	}
	return fmt.Errorf("%s database %s: %w", cfg.Database.Driver, name, err)
}

// processStarted tells this process apart from an earlier one that had the same
// pid (in a container billingd is often pid 1 after every restart).
var processStarted = time.Now().UTC()

// InstanceName names this process in leases and billing_runs: host, pid and
// start time. With host and pid alone a restarted daemon that got the same pid
// would take its dead predecessor's "running" runs for its own and never mark
// them interrupted. (It also makes a claimed attempt row at least as long as the
// finished one, which drops the owner: the result UPDATE then rewrites the row in
// place instead of splitting a full page — docs/performance.md.)
func InstanceName() string {
	return instanceNameOf(os.Hostname, os.Getpid(), processStarted)
}

func instanceNameOf(hostname func() (string, error), pid int, started time.Time) string {
	host, _ := hostname()
	if host == "" {
		host = "billingd"
	}
	return fmt.Sprintf("%s:%d:%s", host, pid, started.UTC().Format("20060102T150405Z"))
}

// Settings are the values in force of what a reload can change under a
// running process, for operators (the startup and reload log lines) and tests.
type Settings struct {
	RateLimit   float64
	Concurrency int
	Retry       charge.RetryPolicy
	// NextRuns is when each job (billing, dunning, reconcile, mail) runs next.
	NextRuns map[string]time.Time
}

// Settings reports the settings in force.
func (d *Daemon) Settings() Settings {
	t := d.engine.Settings()
	return Settings{RateLimit: d.Config().Gateway.RateLimit, Concurrency: t.MaxInFlight, Retry: t.Retry, NextRuns: d.sched.nextRuns()}
}

// Resolve reads the gateway's record of one unresolved attempt and records
// what it says, as the reconciler does.
func (d *Daemon) Resolve(ctx context.Context, a *models.ChargeAttempt) (charge.Resolution, error) {
	return d.engine.Resolve(ctx, a)
}
