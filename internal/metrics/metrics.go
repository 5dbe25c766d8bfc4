// Package metrics defines billingd's Prometheus metrics in one place, so that the
// charge engine, the webhook receiver and the reconciler report to the same
// collectors and /metrics shows the whole money path. A nil *Metrics is valid and
// records nothing, which keeps tests and one-shot commands free of wiring.
package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the collectors.
type Metrics struct {
	Registry        *prometheus.Registry
	charges         *prometheus.CounterVec
	attemptLatency  prometheus.Histogram
	webhookEvents   *prometheus.CounterVec
	reconcileAction *prometheus.CounterVec
	passes          *prometheus.CounterVec
	emails          *prometheus.CounterVec
	events          *prometheus.CounterVec
	refunds         *prometheus.CounterVec
	passDuration    prometheus.Histogram
	database        *databaseCollector
}

// New registers billingd's collectors (plus the Go and process collectors) on a
// fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		charges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingd_charge_attempts_total",
			Help: "Charge attempts that reached an outcome, by outcome, whichever path settled them (the gateway's answer, a webhook, the reconciler, a pay page). An attempt that succeeded after it required action counts under both.",
		}, []string{"outcome"}),
		attemptLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "billingd_charge_attempt_duration_seconds",
			Help:    "Time from sending an attempt to recording its outcome, transient retries included.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		webhookEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingd_webhook_events_total",
			Help: "Webhook deliveries by event type and result (applied, ignored, needs_review, duplicate, rejected, error).",
		}, []string{"type", "result"}),
		reconcileAction: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingd_reconciler_actions_total",
			Help: "What the reconciler did with each attempt it looked at (resolved, deferred, needs_review, error).",
		}, []string{"action"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingd_billing_passes_total",
			Help: "Billing passes by final status.",
		}, []string{"status"}),
		emails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingd_emails_total",
			Help: "Outbox emails handled by the mail worker, by outcome (sent, retried, failed, canceled, lease_lost).",
		}, []string{"outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingd_events_total",
			Help: "Tries of events to the merchant's systems (events.url), by outcome: delivered (answered 2xx), retried (any other answer or none; tried again later), failed (not delivered within events.retry_for), lease_lost.",
		}, []string{"outcome"}),
		refunds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingd_refunds_total",
			Help: "Refunds that reached a final status (succeeded, failed, canceled, needs_review), by reason (duplicate: the automatic refund of a second payment for one invoice) and status, whichever path settled them.",
		}, []string{"reason", "status"}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "billingd_billing_pass_duration_seconds",
			Help:    "How long each billing pass took, from its start to its end (finished or interrupted), on the daemon's clock.",
			Buckets: []float64{.1, .5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		database: &databaseCollector{
			statements: prometheus.NewDesc("billingd_db_statements_total",
				"SQL statements this process sent to its database: every Exec and Query, BEGIN, COMMIT and ROLLBACK included (not prepares or pings). Divided by billingd_charge_attempts_total, the database round trips a charge costs.",
				nil, nil),
			transactions: prometheus.NewDesc("billingd_db_transactions_total",
				"Database transactions this process ended, by outcome: committed (its COMMIT succeeded, read-only ones included), rolled_back (a ROLLBACK sent), commit_failed (a COMMIT that returned an error), autocommit (a statement sent outside BEGIN … COMMIT, a transaction of its own for the database).",
				[]string{"outcome"}, nil),
		},
	}
	m.Registry.MustRegister(m.charges, m.attemptLatency, m.webhookEvents, m.reconcileAction, m.passes, m.emails, m.events, m.refunds,
		m.passDuration, m.database, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.initSeries()
	return m
}

// initSeries exports, at zero, the series that alerts and the dashboard in
// docs/monitoring read before the first event of their kind: a counter that
// appears only with its first increment makes increase() miss that increment
// and leaves an alert on it unable to fire for it.
func (m *Metrics) initSeries() {
	for _, outcome := range []string{"succeeded", "declined", "requires_action", "failed", "canceled", "needs_review"} {
		m.charges.WithLabelValues(outcome)
	}
	for _, status := range []string{"finished", "interrupted"} {
		m.passes.WithLabelValues(status)
	}
	// A rejected delivery's type is often unknown: its body was not trusted.
	m.webhookEvents.WithLabelValues("unknown", "rejected")
	for _, status := range []string{"succeeded", "failed", "needs_review"} {
		m.refunds.WithLabelValues("duplicate", status)
		m.refunds.WithLabelValues("requested_by_customer", status)
	}
	for _, action := range []string{"resolved", "needs_review"} {
		m.reconcileAction.WithLabelValues(action)
	}
	for _, outcome := range []string{"delivered", "retried", "failed"} {
		m.events.WithLabelValues(outcome)
	}
}

// GaugeFunc registers a gauge computed at scrape time (e.g. unresolved attempts,
// read from the database so it is right across restarts and instances).
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// GaugeVecFunc registers a gauge with one label computed at scrape time
// (e.g. money collected per currency, read from the database): fn returns the
// value of each label value present. An error from fn exports nothing for
// that scrape, so no alert reads a made-up value.
func (m *Metrics) GaugeVecFunc(name, help, label string, fn func() (map[string]float64, error)) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(&gaugeVecFunc{desc: prometheus.NewDesc(name, help, []string{label}, nil), fn: fn})
}

// gaugeVecFunc is the collector behind GaugeVecFunc.
type gaugeVecFunc struct {
	desc *prometheus.Desc
	fn   func() (map[string]float64, error)
}

func (g *gaugeVecFunc) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gaugeVecFunc) Collect(ch chan<- prometheus.Metric) {
	values, err := g.fn()
	if err != nil {
		return
	}
	for lv, v := range values {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, lv)
	}
}

// AttemptSettled counts one attempt reaching an outcome. The store calls it
// after the commit that recorded the outcome (store.Options.OnAttemptSettled),
// so every path that settles an attempt is counted, once.
func (m *Metrics) AttemptSettled(outcome string) {
	if m == nil {
		return
	}
	m.charges.WithLabelValues(outcome).Inc()
}

// AttemptLatency records how long one exchange with the gateway took, from
// sending to recording its answer.
func (m *Metrics) AttemptLatency(latency time.Duration) {
	if m == nil {
		return
	}
	m.attemptLatency.Observe(latency.Seconds())
}

// Webhook records one delivery.
func (m *Metrics) Webhook(eventType, result string) {
	if m == nil {
		return
	}
	if eventType == "" {
		eventType = "unknown"
	}
	m.webhookEvents.WithLabelValues(eventType, result).Inc()
}

// Reconcile records one reconciler action.
func (m *Metrics) Reconcile(action string) {
	if m == nil {
		return
	}
	m.reconcileAction.WithLabelValues(action).Inc()
}

// Email records what the mail worker did with one outbox row.
func (m *Metrics) Email(outcome string) {
	if m == nil {
		return
	}
	m.emails.WithLabelValues(outcome).Inc()
}

// Event records what the events worker did with one try of an event.
func (m *Metrics) Event(outcome string) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(outcome).Inc()
}

// Pass records a finished billing pass.
func (m *Metrics) Pass(status string) {
	if m == nil {
		return
	}
	m.passes.WithLabelValues(status).Inc()
}

// PassDuration records how long one billing pass took.
func (m *Metrics) PassDuration(took time.Duration) {
	if m == nil {
		return
	}
	m.passDuration.Observe(took.Seconds())
}

// RefundSettled counts one refund reaching a final status. The store calls it
// after the commit that recorded it (store.Options.OnRefundSettled).
func (m *Metrics) RefundSettled(reason, status string) {
	if m == nil {
		return
	}
	m.refunds.WithLabelValues(reason, status).Inc()
}

// DatabaseCounts are the totals billingd_db_statements_total and
// billingd_db_transactions_total export: the store's own counts
// (store.DBCounts), copied, since this package does not import the store.
type DatabaseCounts struct {
	Statements   int64
	Committed    int64
	RolledBack   int64
	CommitFailed int64
	Autocommit   int64
}

// CountDatabase makes the database counters read read at every scrape. The
// store counts each statement with an atomic add where it is sent; reading
// the totals at scrape time keeps a Prometheus counter off that path. Until
// it is called the counters export zero.
func (m *Metrics) CountDatabase(read func() DatabaseCounts) {
	if m == nil {
		return
	}
	m.database.read.Store(&read)
}

// databaseCollector is the collector behind CountDatabase.
type databaseCollector struct {
	statements, transactions *prometheus.Desc
	read                     atomic.Pointer[func() DatabaseCounts]
}

func (c *databaseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.statements
	ch <- c.transactions
}

func (c *databaseCollector) Collect(ch chan<- prometheus.Metric) {
	var n DatabaseCounts
	if read := c.read.Load(); read != nil {
		n = (*read)()
	}
	ch <- prometheus.MustNewConstMetric(c.statements, prometheus.CounterValue, float64(n.Statements))
	ch <- prometheus.MustNewConstMetric(c.transactions, prometheus.CounterValue, float64(n.Committed), "committed")
	ch <- prometheus.MustNewConstMetric(c.transactions, prometheus.CounterValue, float64(n.RolledBack), "rolled_back")
	ch <- prometheus.MustNewConstMetric(c.transactions, prometheus.CounterValue, float64(n.CommitFailed), "commit_failed")
	ch <- prometheus.MustNewConstMetric(c.transactions, prometheus.CounterValue, float64(n.Autocommit), "autocommit")
}
