package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/mail"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/web"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// loadConfig reads and validates the config; any problem is a usage error (exit 2)
// listing every bad key.
func (m *Main) loadConfig(path string) (*config.Config, error) {
	cfg, err := config.LoadAndValidate(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("config %s:\n%w", path, indentErr(err))}
	}
	return cfg, nil
}

func indentErr(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// newLogger builds the zerolog logger of the config: JSON for journald, or console.
// The level is process-wide so that SIGHUP can change it under running goroutines.
func newLogger(cfg config.LogConfig, w io.Writer) zerolog.Logger {
	setLogLevel(cfg.Level)
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).With().Timestamp().Logger()
}

func setLogLevel(name string) {
	level, err := zerolog.ParseLevel(name)
	if err != nil || name == "" {
		level = zerolog.InfoLevel
	}
	zerolog.SetGlobalLevel(level)
}

// app is billingd wired from a config: the pieces run, once and demo share.
type app struct {
	cfg     *config.Config
	log     zerolog.Logger
	clock   clock.Clock
	store   *store.Store
	gw      gateway.Gateway
	limiter *rate.Limiter
	engine  *charge.Engine
	biller  *schedule.Biller
	recon   *schedule.Reconciler
	dunning *dunning.Service
	mailer  *mail.Worker // nil when mail.host is empty: emails wait in the outbox
	client  *wooshpay.Client
	metrics *metrics.Metrics
	owner   string
	// observeAttempt, when set, receives each recorded attempt's duration (the
	// load tool's percentiles).
	observeAttempt func(time.Duration)
}

// openApp opens the database (taking the SQLite instance lock), applies
// migrations, rescues the leases of a dead predecessor, and wires the engine.
func openApp(ctx context.Context, cfg *config.Config, log zerolog.Logger, clk clock.Clock) (*app, error) {
	if clk == nil {
		clk = clock.Real{}
	}
	st, err := openStore(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	// Errors of the first writes (a lock held by another connection, a full
	// disk, a read-only file) otherwise read "database is locked" without
	// saying which database.
	dbErr := func(err error) error { return namedDBError(cfg, err) }
	a := &app{cfg: cfg, log: log, clock: clk, store: st, owner: instanceName(), metrics: metrics.New()}
	if applied, err := st.Migrate(ctx); err != nil {
		_ = st.Close()
		return nil, dbErr(err)
	} else if len(applied) > 0 {
		log.Info().Strs("migrations", applied).Msg("database migrated")
	}
	now := clk.Now()
	if st.Exclusive() {
		n, err := st.ReleaseAllLeases(ctx, now)
		if err != nil {
			_ = st.Close()
			return nil, dbErr(err)
		}
		if n > 0 {
			log.Warn().Int64("attempts", n).Msg("reclaimed attempts leased by a previous process that did not stop cleanly; they will be replayed with their own idempotency keys")
		}
		if err := st.InterruptStaleRuns(ctx, now, a.owner); err != nil {
			_ = st.Close()
			return nil, dbErr(err)
		}
	}
	gw, err := wooshpay.New(wooshpay.Options{
		BaseURL:   cfg.Gateway.BaseURL,
		SecretKey: cfg.Gateway.SecretKey.Reveal(),
		Timeout:   cfg.Gateway.Timeout.D(),
	})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	a.gw, a.client = gw, gw
	a.wire()
	// A broken template is a config error now, not a failed send at night.
	templates, err := mail.LoadTemplates(cfg.Mail.TemplatesDir)
	if err != nil {
		_ = st.Close()
		return nil, usageError{fmt.Errorf("mail.templates_dir: %w", err)}
	}
	if cfg.Mail.Enabled() {
		sender, err := mail.NewSMTPSender(cfg.Mail, 30*time.Second)
		if err != nil {
			_ = st.Close()
			return nil, usageError{fmt.Errorf("mail: %w", err)}
		}
		a.mailer = &mail.Worker{Store: st, Sender: sender, Templates: templates, Links: a.dunning, Clock: clk,
			From: cfg.Mail.From, Owner: a.owner, Log: log.With().Str("component", "mail").Logger(), Metrics: a.metrics}
	} else {
		log.Warn().Msg("mail.host is empty: dunning emails are queued in the outbox and sent once mail is configured")
	}
	return a, nil
}

// wire builds the engine and biller from the current config; SIGHUP calls it again.
func (a *app) wire() {
	cfg := a.cfg
	a.limiter = rate.NewLimiter(rate.Limit(cfg.Gateway.RateLimit), 1)
	a.dunning = &dunning.Service{
		Store:         a.store,
		Policy:        dunning.Policy{Schedule: cfg.Dunning.RetryDelays(), FinalAction: cfg.Dunning.FinalAction},
		LinkTTL:       cfg.Dunning.LinkTTL.D(),
		PublicBaseURL: cfg.HTTP.PublicBaseURL,
		MailDomain:    mail.AddressDomain(cfg.Mail.From),
		Log:           a.log.With().Str("component", "dunning").Logger(),
	}
	a.engine = charge.New(charge.Options{
		Store:   a.store,
		Gateway: a.gw,
		Clock:   a.clock,
		Limiter: a.limiter,
		// gateway.concurrency is a cap on requests at the gateway; the
		// biller runs more workers than this so that recording outcomes
		// does not leave the gateway idle.
		MaxInFlight: cfg.Gateway.Concurrency,
		Retry: charge.RetryPolicy{
			InitialInterval: cfg.Retry.InitialInterval.D(),
			MaxInterval:     cfg.Retry.MaxInterval.D(),
			MaxElapsedTime:  cfg.Retry.MaxElapsedTime.D(),
		},
		UnknownRetryDelay: cfg.Retry.MaxInterval.D(),
		Log:               a.log,
		Metrics:           a.metrics,
		RecheckAfter:      cfg.Reconcile.Backoff[0].D(),
		Hook:              a.dunning,
		Observe:           a.observeAttempt,
	})
	loc, err := cfg.Schedule.Location()
	if err != nil {
		loc = time.UTC // Validate already rejected bad zones
	}
	// A lease outlives the longest exchange: the whole backoff window plus one
	// more request timeout and a margin.
	leaseFor := cfg.Retry.MaxElapsedTime.D() + 2*cfg.Gateway.Timeout.D() + time.Minute
	a.recon = &schedule.Reconciler{
		Store:    a.store,
		Engine:   a.engine,
		Clock:    a.clock,
		After:    cfg.Reconcile.After.D(),
		Backoff:  cfg.Reconcile.Delays(),
		Owner:    a.owner,
		LeaseFor: 2*cfg.Gateway.Timeout.D() + time.Minute,
		Log:      a.log.With().Str("component", "reconciler").Logger(),
		Metrics:  a.metrics,
	}
	a.biller = &schedule.Biller{
		Store:       a.store,
		Engine:      a.engine,
		Clock:       a.clock,
		Location:    loc,
		PageSize:    cfg.Schedule.PageSize,
		Concurrency: cfg.Gateway.Concurrency,
		Owner:       a.owner,
		LeaseFor:    leaseFor,
		Log:         a.log,
		Reconciler:  a.recon,
		Metrics:     a.metrics,
	}
}

func (a *app) Close() error { return a.store.Close() }

// webhookReceiver builds POST /webhooks/wooshpay for this config.
func (a *app) webhookReceiver() (*web.WebhookReceiver, error) {
	v, err := wooshpay.NewWebhookVerifier(wooshpay.WebhookOptions{
		Secrets:   []string{a.cfg.Gateway.WebhookSecret.Reveal()},
		Tolerance: a.cfg.Gateway.WebhookTolerance.D(),
	})
	if err != nil {
		return nil, err
	}
	return &web.WebhookReceiver{Store: a.store, Engine: a.engine, Verifier: v, Clock: a.clock,
		Log: a.log.With().Str("component", "webhooks").Logger(), Metrics: a.metrics}, nil
}

// mountCustomerRoutes mounts what the outside world calls: the gateway's webhooks
// and the customers' pay pages. retryNow, if set, runs after a webhook scheduled
// an immediate retry (a new card for an invoice in dunning).
func (a *app) mountCustomerRoutes(srv *web.Server, retryNow func()) error {
	receiver, err := a.webhookReceiver()
	if err != nil {
		return err
	}
	receiver.RetryNow = retryNow
	srv.Handle("POST /webhooks/wooshpay", receiver)
	a.payPages().Register(srv)
	return nil
}

// runSummary is the one line that says what a billing pass did.
func runSummary(run *models.BillingRun) string {
	return fmt.Sprintf("billing run %d %s in %dms: %d due, %d invoiced, %d attempts (%d replayed): %d succeeded, %d processing, %d requires_action, %d declined, %d failed, %d unknown",
		run.ID, run.Status, run.DurationMS, run.SubscriptionsDue, run.InvoicesCreated, run.AttemptsStarted+run.AttemptsReplayed,
		run.AttemptsReplayed, run.Succeeded, run.Processing, run.RequiresAction, run.Declined, run.Failed, run.Unknown)
}

// payPages builds the /pay routes: on-session payment and card update.
func (a *app) payPages() *web.PayPages {
	p := &web.PayPages{Store: a.store, Dunning: a.dunning, Engine: a.engine, Clock: a.clock,
		Merchant: mail.MerchantName(a.cfg.Mail.From), PublicBaseURL: a.cfg.HTTP.PublicBaseURL, Owner: a.owner,
		Log: a.log.With().Str("component", "pay").Logger()}
	if a.client != nil {
		p.Sessions = a.client
	}
	return p
}

// registerGauges exposes database-derived gauges on /metrics, read at scrape time
// so they are right across restarts and instances.
func (a *app) registerGauges() {
	count := func(q string) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var n int64
			if err := a.store.DB().WithContext(ctx).Raw(q).Scan(&n).Error; err != nil {
				return -1
			}
			return float64(n)
		}
	}
	a.metrics.GaugeFunc("billingd_unresolved_attempts", "Charge attempts whose outcome is not known yet (pending, unknown, processing).",
		count(`SELECT COUNT(*) FROM charge_attempts WHERE status IN ('pending','unknown','processing')`))
	a.metrics.GaugeFunc("billingd_attempts_needing_review", "Charge attempts a human must look at (needs_review, failed).",
		count(`SELECT COUNT(*) FROM charge_attempts WHERE status IN ('needs_review','failed')`))
	a.metrics.GaugeFunc("billingd_due_subscriptions", "Billable subscriptions whose next period has started.",
		count(`SELECT COUNT(*) FROM subscriptions WHERE status IN ('active','past_due') AND next_billing_at <= CURRENT_TIMESTAMP`))
}

// namedDBError prefixes err with the database it came from (the SQLite path, or
// the PostgreSQL DSN without its password) unless the error names it already.
func namedDBError(cfg *config.Config, err error) error {
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

func openStore(ctx context.Context, cfg *config.Config, exclusive bool) (*store.Store, error) {
	st, err := store.Open(ctx, store.Options{
		Driver:       cfg.Database.Driver,
		DSN:          cfg.Database.DSN,
		Synchronous:  cfg.Database.Synchronous,
		BusyTimeout:  cfg.Database.BusyTimeout.D(),
		MaxOpenConns: cfg.Database.MaxOpenConns,
		Exclusive:    exclusive,
	})
	return st, namedDBError(cfg, err)
}

// processStarted tells this process apart from an earlier one that had the same
// pid (in a container billingd is often pid 1 after every restart).
var processStarted = time.Now().UTC()

// instanceName names this process in leases and billing_runs: host, pid and
// start time. With host and pid alone a restarted daemon that got the same pid
// would take its dead predecessor's "running" runs for its own and never mark
// them interrupted. (It also makes a claimed attempt row at least as long as the
// finished one, which drops the owner: the result UPDATE then rewrites the row in
// place instead of splitting a full page — docs/performance.md.)
func instanceName() string {
	return instanceNameOf(os.Hostname, os.Getpid(), processStarted)
}

func instanceNameOf(hostname func() (string, error), pid int, started time.Time) string {
	host, _ := hostname()
	if host == "" {
		host = "billingd"
	}
	return fmt.Sprintf("%s:%d:%s", host, pid, started.UTC().Format("20060102T150405Z"))
}
