package daemon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/rs/zerolog"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/events"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/mail"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/web"
)

// parts are the components built from one config. A reload builds a new set
// and swaps it in whole; a job or request that started with the old set
// finishes with it.
type parts struct {
	cfg     *config.Config
	dunning *dunning.Service
	recon   *schedule.Reconciler
	biller  *schedule.Biller
	mailer  *mail.Worker // nil when mail.host is empty: emails wait in the outbox
	// eventer delivers the events to the merchant's systems; nil when
	// events.url is empty (and in an operator's process).
	eventer *events.Worker
	// routes serves the gateway's webhooks and the customers' pay pages.
	routes *web.Server
}

// build makes the parts of cfg around the daemon's long-lived store, engine
// and gateway client. It fails without side effects (a broken template
// directory, an unusable SMTP or webhook setting), so a bad reload keeps the
// running parts.
func (d *Daemon) build(cfg *config.Config) (*parts, error) {
	p := &parts{cfg: cfg}
	p.dunning = &dunning.Service{
		Store:         d.store,
		Policy:        dunning.Policy{Schedule: cfg.Dunning.RetryDelays(), FinalAction: models.FinalAction(cfg.Dunning.FinalAction)},
		LinkTTL:       cfg.Dunning.LinkTTL.D(),
		PublicBaseURL: cfg.HTTP.PublicBaseURL,
		MailDomain:    mail.AddressDomain(cfg.Mail.From),
		Log:           d.log.With().Str("component", "dunning").Logger(),
	}
	p.recon = &schedule.Reconciler{
		Store:    d.store,
		Engine:   d.engine,
		Clock:    d.clock,
		After:    cfg.Reconcile.After.D(),
		Backoff:  cfg.Reconcile.Delays(),
		Owner:    d.owner,
		LeaseFor: 2*cfg.Gateway.Timeout.D() + charge.LeaseMargin(cfg.Gateway.Timeout.D()),
		Log:      d.log.With().Str("component", "reconciler").Logger(),
		Metrics:  d.metrics,
	}
	p.biller = newBiller(cfg, d.store, d.engine, d.clock, d.owner, d.log, p.recon, p.dunning, d.metrics)
	// A broken template is a config error now, not a failed send at night.
	templates, err := mail.LoadTemplates(cfg.Mail.TemplatesDir)
	if err != nil {
		return nil, &config.FieldError{Key: "mail.templates_dir", Value: cfg.Mail.TemplatesDir, Message: err.Error()}
	}
	p.routes = web.New()
	if d.opts.Operator {
		// One operator action: nothing here serves HTTP or sends mail.
		return p, nil
	}
	if cfg.Mail.Enabled() {
		sender, err := mail.NewSMTPSender(cfg.Mail, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("mail: %w", err)
		}
		p.mailer = &mail.Worker{Store: d.store, Sender: sender, Templates: templates, Links: p.dunning, Clock: d.clock,
			From: cfg.Mail.From, Owner: d.owner, Log: d.log.With().Str("component", "mail").Logger(), Metrics: d.metrics}
	}
	if cfg.Events.Enabled() {
		p.eventer = newEventWorker(cfg, d.store, d.clock, d.owner, d.log, d.metrics)
	}
	verifier, route, err := newWebhookVerifier(cfg)
	if err != nil {
		return nil, &config.FieldError{Key: "gateway.webhook_secret", Message: err.Error()}
	}
	receiver := &web.WebhookReceiver{Store: d.store, Engine: d.engine, Verifier: verifier, Clock: d.clock,
		Log: d.log.With().Str("component", "webhooks").Logger(), Metrics: d.metrics,
		// A new card saved for an invoice in dunning is retried at once.
		RetryNow: func() { d.sched.poke(jobBilling) }}
	p.routes.Handle(route, receiver)
	pay := &web.PayPages{Store: d.store, Dunning: p.dunning, Engine: d.engine, Clock: d.clock,
		Merchant: mail.MerchantName(cfg.Mail.From), PublicBaseURL: cfg.HTTP.PublicBaseURL, Owner: d.owner,
		ChargesPerHour: cfg.Dunning.LinkChargesPerHour,
		Log:            d.log.With().Str("component", "pay").Logger()}
	if d.client != nil {
		pay.Sessions = d.client
	}
	pay.Register(p.routes)
	return p, nil
}

func init() {
	// The store records events or not from its start (events.url set or
	// not), so a reload cannot turn them on or off, and one process sends to
	// one receiver: events.url keeps its running value until a restart. The
	// secrets, timeout and retry period apply at once.
	restartKeys = append(restartKeys, "events.url")
}

// newEventWorker builds the events worker of cfg; `billingd events
// redeliver` sends with the same Settings.
func newEventWorker(cfg *config.Config, st *store.Store, clk clock.Clock, owner string, log zerolog.Logger, m *metrics.Metrics) *events.Worker {
	set := EventSettings(cfg)
	return &events.Worker{Store: st, Settings: func() events.Settings { return set }, Clock: clk, Owner: owner,
		Log: log.With().Str("component", "events").Logger(), Metrics: m, UserAgent: "billingd"}
}

// EventSettings are cfg's events section as a sender uses it.
func EventSettings(cfg *config.Config) events.Settings {
	e := cfg.Events
	return events.Settings{URL: e.URL, Secrets: []string{e.Secret.Reveal(), e.SecretPrevious.Reveal()},
		Timeout: e.Timeout.D(), RetryFor: e.RetryFor.D()}
}

// newBiller builds the billing pass of cfg; the dry-run plan builds the same
// one, so that it plans with the pass's own queries.
func newBiller(cfg *config.Config, st *store.Store, engine *charge.Engine, clk clock.Clock, owner string, log zerolog.Logger,
	recon *schedule.Reconciler, dun *dunning.Service, m *metrics.Metrics) *schedule.Biller {
	return &schedule.Biller{
		Store:       st,
		Engine:      engine,
		Clock:       clk,
		Location:    location(cfg),
		PageSize:    cfg.Schedule.PageSize,
		Concurrency: cfg.Gateway.Concurrency,
		Owner:       owner,
		// A lease outlives the longest exchange: the whole backoff window
		// plus one more request timeout, and the margin no request may
		// leave within (charge.LeaseMargin: a minute by default).
		LeaseFor:   cfg.Retry.MaxElapsedTime.D() + 2*cfg.Gateway.Timeout.D() + charge.LeaseMargin(cfg.Gateway.Timeout.D()),
		KeyWindow:  keyPolicy(cfg).Window,
		Log:        log,
		Reconciler: recon,
		Dunning:    dun,
		Metrics:    m,
	}
}

// Plan lists what a billing pass started now would charge, from the pass's
// own queries, writing nothing (`billingd once --dry-run`). It opens the
// database without the instance lock, beside a running daemon, and needs no
// gateway or mail secrets.
func Plan(ctx context.Context, cfg *config.Config, clk clock.Clock, limit int) ([]schedule.Planned, error) {
	if clk == nil {
		clk = clock.Real{}
	}
	st, err := OpenStore(ctx, cfg, false, nil)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if ok, err := st.MigrationsCurrent(ctx); err != nil {
		return nil, NamedDBError(cfg, err)
	} else if !ok {
		return nil, errors.New("the database schema is not current: run `billingd migrate`")
	}
	return newBiller(cfg, st, nil, clk, "", zerolog.Nop(), nil, nil, nil).Plan(ctx, limit)
}

func location(cfg *config.Config) *time.Location {
	loc, err := cfg.Schedule.Location()
	if err != nil {
		return time.UTC // Validate already rejected bad zones
	}
	return loc
}

// dunningHook hands every outcome to the dunning service in force, so that a
// reload's new schedule applies from an open case's next step on.
type dunningHook struct{ d *Daemon }

// AfterOutcome implements charge.Hook.
func (h dunningHook) AfterOutcome(tx *store.Tx, now time.Time, a *models.ChargeAttempt, r store.AttemptResult) error {
	return h.d.cur.Load().dunning.AfterOutcome(tx, now, a, r)
}

// AfterSuccesses implements charge.SuccessesHook.
func (h dunningHook) AfterSuccesses(tx *store.Tx, outs []store.Outcome) error {
	return h.d.cur.Load().dunning.AfterSuccesses(tx, outs)
}

// AfterPaymentMethodSaved implements charge.Hook.
func (h dunningHook) AfterPaymentMethodSaved(tx *store.Tx, now time.Time, si *gateway.SetupIntent) (bool, string, bool, error) {
	return h.d.cur.Load().dunning.AfterPaymentMethodSaved(tx, now, si)
}

// registerGauges exposes database-derived gauges on /metrics, read at scrape
// time so they are right across restarts and instances.
func (d *Daemon) registerGauges() {
	gauge := func(fn func(ctx context.Context) (int64, error)) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := fn(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}
	}
	d.metrics.GaugeFunc("billingd_unresolved_attempts", "Charge attempts whose outcome is not known yet (pending, unknown, processing).",
		gauge(func(ctx context.Context) (int64, error) {
			return d.store.CountAttempts(ctx, models.UnresolvedAttemptStatuses...)
		}))
	d.metrics.GaugeFunc("billingd_attempts_needing_review", "Charge attempts a human must look at (needs_review, failed).",
		gauge(func(ctx context.Context) (int64, error) {
			return d.store.CountAttempts(ctx, models.AttentionAttemptStatuses...)
		}))
	d.metrics.GaugeFunc("billingd_due_subscriptions", "Billable subscriptions whose next period has started.",
		gauge(func(ctx context.Context) (int64, error) { return d.store.CountDueSubscriptions(ctx, d.clock.Now()) }))
	d.metrics.GaugeFunc("billingd_invoices_held", "Invoices at the head of their subscription's queue that nothing will charge without a person (an attempt to resolve, a dead card with no case); the periods behind them wait too.",
		gauge(d.store.CountHeldInvoices))
	d.metrics.GaugeFunc("billingd_refunds_open", "Refunds not yet final (confirming, pending, unknown, processing): money billingd is giving back.",
		gauge(func(ctx context.Context) (int64, error) {
			return d.store.CountRefunds(ctx, models.OpenRefundStatuses...)
		}))
	d.metrics.GaugeFunc("billingd_refunds_needing_review", "Refunds a human must look at (needs_review).",
		gauge(func(ctx context.Context) (int64, error) { return d.store.CountRefunds(ctx, models.RefundNeedsReview) }))
	d.metrics.GaugeFunc("billingd_open_dunning_cases", "Dunning cases still trying to collect their invoice.",
		gauge(func(ctx context.Context) (int64, error) { return d.store.CountOpenCases(ctx) }))
	seconds := func(fn func(ctx context.Context) (time.Duration, error)) func() float64 {
		return gauge(func(ctx context.Context) (int64, error) {
			took, err := fn(ctx)
			return int64(took / time.Second), err
		})
	}
	d.metrics.GaugeFunc("billingd_oldest_due_email_age_seconds", "How long the oldest outbox email that is due has waited to be sent (0 when none waits): it grows when the outbox stops draining.",
		seconds(func(ctx context.Context) (time.Duration, error) { return d.store.OldestDueEmailAge(ctx, d.clock.Now()) }))
	d.metrics.GaugeFunc("billingd_running_pass_age_seconds", "How long the oldest billing pass recorded as running has run (0 when none runs): a pass that hangs, or whose process died, keeps growing it.",
		seconds(func(ctx context.Context) (time.Duration, error) {
			return d.store.OldestRunningPassAge(ctx, d.clock.Now())
		}))
	d.metrics.GaugeFunc("billingd_last_finished_pass_timestamp_seconds", "Unix time at which the latest billing pass that ran to its end finished (0 before the first).",
		gauge(func(ctx context.Context) (int64, error) {
			at, err := d.store.LastFinishedPass(ctx)
			if at.IsZero() {
				return 0, err
			}
			return at.Unix(), err
		}))
	d.metrics.GaugeFunc("billingd_events_oldest_undelivered_seconds", "How long the oldest pending event to the merchant's systems (events.url) has waited since it occurred (0 when none waits): it grows while the receiver refuses or is down.",
		seconds(func(ctx context.Context) (time.Duration, error) {
			return d.store.OldestUndeliveredEventAge(ctx, d.clock.Now())
		}))
	scrape := func(fn func(ctx context.Context) (map[string]float64, error)) func() (map[string]float64, error) {
		return func() (map[string]float64, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return fn(ctx)
		}
	}
	d.metrics.GaugeVecFunc("billingd_events", "Events to the merchant's systems (events.url) by status: pending (to send or retry), delivered, failed (not delivered within events.retry_for: `billingd events redeliver --failed`).", "status",
		scrape(func(ctx context.Context) (map[string]float64, error) {
			counts, err := d.store.EventCounts(ctx)
			out := map[string]float64{string(models.EventPending): 0, string(models.EventDelivered): 0, string(models.EventFailed): 0}
			for st, n := range counts {
				out[string(st)] = float64(n)
			}
			return out, err
		}))
	d.metrics.GaugeVecFunc("billingd_dunning_cases_closed_7d", "Dunning cases closed in the last 7 days, by how they ended (recovered, exhausted, stopped): the recovery rate is recovered / (recovered + exhausted).", "status",
		scrape(func(ctx context.Context) (map[string]float64, error) {
			counts, err := d.store.ClosedCases(ctx, d.clock.Now().Add(-7*24*time.Hour))
			out := map[string]float64{string(models.CaseRecovered): 0, string(models.CaseExhausted): 0, string(models.CaseStopped): 0}
			for _, c := range counts {
				out[c.Status] = float64(c.N)
			}
			return out, err
		}))
	// majorUnits turns minor units into the currency's major unit by its ISO
	// 4217 exponent (1050 USD → 10.5), for gauges a dashboard shows as money.
	majorUnits := func(amount int64, currency string) float64 {
		exp, _ := money.Exponent(currency)
		return float64(amount) / math.Pow10(exp)
	}
	money24h := func(fn func(ctx context.Context, from, to time.Time) ([]store.CurrencyTotal, error)) func() (map[string]float64, error) {
		return scrape(func(ctx context.Context) (map[string]float64, error) {
			now := d.clock.Now()
			totals, err := fn(ctx, now.Add(-24*time.Hour), now.Add(time.Second))
			out := map[string]float64{}
			for _, t := range totals {
				out[t.Currency] = majorUnits(t.Amount, t.Currency)
			}
			return out, err
		})
	}
	d.metrics.GaugeVecFunc("billingd_collected_24h", "Money collected in the last 24 hours, per currency, in the currency's major unit (what `billingd report revenue` counts as collected).", "currency",
		money24h(d.store.RevenueCollected))
	d.metrics.GaugeVecFunc("billingd_refunded_24h", "Money refunded in the last 24 hours, per currency, in the currency's major unit.", "currency",
		money24h(d.store.RevenueRefunded))
}
