package schedule_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// stack is the assembled daemon (daemon.New, through daemontest) on a fresh
// database, with the in-process simulator and a simulated clock the simulator
// shares. Its fields are thin views of the bundle, so that tests read like
// they drive the parts, while everything runs as `billingd run` assembles it.
type stack struct {
	t      *testing.T
	b      *daemontest.Bundle
	st     *store.Store
	gw     *sim.Server
	clk    *clock.Fake
	engine *engine
	biller *biller
	cards  map[string]string // card number -> "cus_…/pm_…"
}

// biller runs the daemon's billing pass (reconciler, due dunning steps,
// invoicing, charging), as its billing job does.
type biller struct{ d *daemon.Daemon }

// Pass runs one billing pass of the assembled daemon.
func (b *biller) Pass(stop, abort context.Context, trigger string) (*models.BillingRun, error) {
	return b.d.Pass(stop, abort, trigger)
}

// Plan lists what a pass started now would charge, as `billingd once
// --dry-run` plans it (the pass's own queries, writing nothing).
func (b *biller) Plan(ctx context.Context, limit int) ([]schedule.Planned, error) {
	return daemon.Plan(ctx, b.d.Config(), b.d.Clock(), limit)
}

// engine reads the gateway's record of an attempt through the daemon's engine.
type engine struct{ d *daemon.Daemon }

// Resolve settles one attempt from the gateway's record, as the reconciler does.
func (e *engine) Resolve(ctx context.Context, a *models.ChargeAttempt) (charge.Resolution, error) {
	return e.d.Resolve(ctx, a)
}

// daemonWebhooks, as a simulator option's Webhook.URL, asks newStack for
// webhooks; the bundle delivers them to the daemon's /webhooks/wooshpay.
const daemonWebhooks = "(the daemon's /webhooks/wooshpay)"

// newStack assembles the daemon for a test that got st from storetest.Each or
// storetest.SQLite: the daemon opens a fresh database of st's dialect itself
// (daemon.New migrates it), and st is closed, so that a test reading st instead
// of s.st fails loudly instead of passing on an empty database. The simulator
// shares the fake clock; opts may override its options (the key, seed and
// clock are fixed). Webhooks reach the daemon only when opts[0].Webhook.URL is
// set (to any value: the bundle points it at the daemon), as before the
// simulator delivered only when given a URL.
func newStack(t *testing.T, st *store.Store, start time.Time, opts ...sim.Options) *stack {
	t.Helper()
	return newStackOn(t, st, config.ProviderWooshPay, start, opts...)
}

// newStackOn is newStack on the given gateway.provider: the simulator speaks
// that provider's API and the daemon is configured for it.
func newStackOn(t *testing.T, st *store.Store, provider string, start time.Time, opts ...sim.Options) *stack {
	t.Helper()
	o := sim.Options{ProcessingDelay: time.Millisecond, Faults: sim.Faults{RetryAfter: time.Second}}
	if len(opts) > 0 {
		o = opts[0]
	}
	return stackWith(t, st, daemontest.Options{Start: start, Sim: o, NoWebhooks: o.Webhook.URL == "", Provider: provider})
}

// eachDB is storetest.Each for tests that hand st to newStack or stackWith:
// st only names the dialect (the daemon migrates a database of its own), so
// it is opened unmigrated, sparing every PostgreSQL subtest a migration of a
// schema nobody reads.
func eachDB(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	t.Helper()
	storetest.EachUnmigrated(t, func(t *testing.T, open func(store.Options) *store.Store) { fn(t, open(store.Options{})) })
}

// eachStack runs fn once per gateway provider (daemontest.Providers) and, for
// each, on SQLite and PostgreSQL (eachDB), as subtests named
// provider/database.
func eachStack(t *testing.T, fn func(t *testing.T, st *store.Store, provider string)) {
	t.Helper()
	for _, p := range daemontest.Providers {
		t.Run(p, func(t *testing.T) {
			eachDB(t, func(t *testing.T, st *store.Store) { fn(t, st, p) })
		})
	}
}

// stackWith is newStack with the bundle's options spelled out (Start, Sim,
// Configure, Front, Log, …); Postgres follows st.
func stackWith(t *testing.T, st *store.Store, o daemontest.Options) *stack {
	t.Helper()
	o.Postgres = st.Dialect() == store.Postgres
	require.NoError(t, st.Close())
	return stackOf(t, daemontest.New(t, o))
}

// stackOf is the stack of a bundle built by the test itself.
func stackOf(t *testing.T, b *daemontest.Bundle) *stack {
	return &stack{t: t, b: b, st: b.Store, gw: b.Sim, clk: b.Clock,
		engine: &engine{b.D}, biller: &biller{b.D}, cards: map[string]string{}}
}

// reload applies fn to a copy of the daemon's config and reloads it, as an
// operator's SIGHUP after editing config.yaml.
func (s *stack) reload(t *testing.T, fn func(*config.Config)) {
	t.Helper()
	cfg := s.b.D.Config().Clone()
	fn(cfg)
	require.NoError(t, cfg.Validate())
	res, err := s.b.D.Reload(cfg)
	require.NoError(t, err)
	require.Empty(t, res.NeedRestart, "a test may only change keys a running daemon applies")
}

// saveCard runs the gateway's save-card flow and returns the gateway ids. The
// same number gives the same customer and card (the requests share their
// idempotency keys), so that a test can put two subscriptions on one card.
func (s *stack) saveCard(t *testing.T, number string) (cus, pm string) {
	t.Helper()
	return s.b.SaveCardKeyed(t, number, "card-"+number)
}

var mixedCards = []string{
	"4242424242424242", "4111111111111111", "4761344136141390", "4242424242424242", "4111111111111111",
	"4000000000009995", "4000000000000069", "4462030000000000", "4000000000000259", "4000000000000002",
}

// mixedCurrencies are the currencies seedMixed cycles through: a two-decimal,
// a zero-decimal and a three-decimal one, whose wire units differ between
// the providers.
var mixedCurrencies = []string{"USD", "JPY", "KWD"}

// seedMixed creates n subscriptions cycling through mixedCards, each card on its
// own customer, all anchored at anchor.
func (s *stack) seedMixed(t *testing.T, n int, anchor time.Time, interval string) {
	t.Helper()
	type ids struct{ cus, pm string }
	saved := map[string]ids{}
	var subs []storetest.Subscription
	for i := 0; i < n; i++ {
		number := mixedCards[i%len(mixedCards)]
		// Every subscription has a card of its own, as customers do: a card
		// the gateway calls dead stops only its own subscription.
		key := fmt.Sprintf("%s-%d", number, i)
		id, ok := saved[key]
		if !ok {
			cus, pm := s.b.SaveCard(t, number)
			id = ids{cus, pm}
			saved[key] = id
		}
		currency := mixedCurrencies[i%len(mixedCurrencies)]
		amount := int64(100 + i)
		if currency == "KWD" {
			// Checkout.com's wire takes KWD in multiples of ten fils.
			amount *= 10
		}
		subs = append(subs, storetest.Subscription{Reference: fmt.Sprintf("sub-%04d", i), Customer: id.cus, PaymentMethod: id.pm,
			Amount: amount, Currency: currency, Interval: interval, Anchor: anchor})
	}
	s.b.SeedAt(t, anchor, subs...)
}

// settle turns faults off, lets processing charges settle at the gateway and runs
// passes until no attempt is unresolved (each unknown one replayed with its key).
func (s *stack) settle(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	s.gw.SetFaults(sim.Faults{})
	for i := 0; i < 20; i++ {
		s.gw.SettleDue()
		open, err := s.st.AttemptsByStatus(ctx, 100000, models.AttemptProcessing)
		require.NoError(t, err)
		for j := range open {
			_, _ = s.engine.Resolve(ctx, &open[j])
		}
		s.clk.Advance(2 * time.Minute) // past next_try_at of unknown attempts and the processing delay
		_, err = s.biller.Pass(ctx, ctx, "settle")
		require.NoError(t, err)
		left, err := s.st.AttemptsByStatus(ctx, 1, models.UnresolvedAttemptStatuses...)
		require.NoError(t, err)
		if len(left) == 0 {
			return
		}
	}
	t.Fatal("attempts still unresolved after settling")
}

func (s *stack) check(t *testing.T, allowUnresolved bool) *invariant.Report {
	t.Helper()
	rep, err := invariant.Check(context.Background(), s.st, s.gw.Ledger(), invariant.Options{Now: s.clk.Now(), Location: time.UTC, AllowUnresolved: allowUnresolved})
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	return rep
}

// lookups counts the order lookups that reach the gateway (WooshPay's
// payment intent search, Checkout.com's GET /payments?reference=…), as a
// proxy in front of the simulator sees them.
type lookups struct{ n atomic.Int64 }

// front is daemontest.Options.Front: it counts lookups and passes every
// request on.
func (l *lookups) front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/v1/payment_intents/search" ||
			(r.URL.Path == "/payments" && r.URL.Query().Get("reference") != "")) {
			l.n.Add(1)
		}
		next.ServeHTTP(w, r)
	})
}

func TestThousandSubscriptionsUnderGatewayFaults(t *testing.T) {
	eachStack(t, func(t *testing.T, st *store.Store, provider string) {
		start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
		var seen lookups
		s := stackWith(t, st, daemontest.Options{Start: start, NoWebhooks: true, Provider: provider, Front: seen.front,
			Sim: sim.Options{ProcessingDelay: time.Millisecond, Faults: sim.Faults{RetryAfter: time.Second}}})
		s.seedMixed(t, 1000, start, "month")
		s.gw.SetFaults(sim.Faults{Error5xxAfter: 0.20, RateLimit: 0.05, RetryAfter: time.Second, Drop: 0.10})

		run, err := s.biller.Pass(context.Background(), context.Background(), "test")
		require.NoError(t, err)
		require.Equal(t, 1000, run.SubscriptionsDue)
		require.Equal(t, 1000, run.InvoicesCreated)
		stats := s.gw.Stats()
		t.Logf("pass: %+v; simulator: %+v; lookups: %d", *run, stats, seen.n.Load())
		require.Positive(t, stats.Faults.Error5xxAfter)
		require.Positive(t, stats.Faults.RateLimit)
		require.Positive(t, stats.Faults.Drop)

		// Straight after the faulty pass: no double charge, nothing charged that
		// the database does not know about, every invoice accounted for.
		rep := s.check(t, true)
		require.Zero(t, rep.DoubleCharges)

		// Every invoice is paid or has an attempt that says why not.
		var open []struct {
			PublicID string
			Status   string
		}
		require.NoError(t, s.st.DB().Raw(`SELECT i.public_id, ca.status FROM invoices i
			LEFT JOIN charge_attempts ca ON ca.invoice_id = i.id WHERE i.status = 'open'`).Scan(&open).Error)
		for _, o := range open {
			require.Contains(t, []string{"declined", "requires_action", "processing", "unknown", "pending", "needs_review"}, o.Status, "invoice %s", o.PublicID)
		}

		s.settle(t)
		rep = s.check(t, false)
		require.Equal(t, 1000, rep.Invoices)
		// 6 of every 10 cards end paid (three success cards twice, and the processing card).
		require.Equal(t, 600, rep.PaidInvoices)
		require.Equal(t, 600, rep.Succeeded)
		require.Equal(t, map[string]int{"succeeded": 600, "declined": 300, "requires_action": 100}, rep.AttemptsByState)
		// Every invoice not paid is in dunning.
		var undunned int64
		require.NoError(t, s.st.DB().Raw(`SELECT COUNT(*) FROM invoices i WHERE i.status <> 'paid'
			AND NOT EXISTS (SELECT 1 FROM dunning_cases c WHERE c.invoice_id = i.id AND c.status = 'open')`).Scan(&undunned).Error)
		require.Zero(t, undunned, "an unpaid invoice outside dunning")

		// One payment per invoice at the gateway, whatever the faults: a request
		// whose answer was lost was settled by its replay (WooshPay) or by the
		// lookup by reference before the resend (Checkout.com keeps no replay
		// of a 5xx), never by a second payment.
		ledger := s.gw.Ledger()
		require.Len(t, ledger, 1000, "no second payment for any order")
		orders := map[string]int{}
		ledgerPaid := map[string]int64{}
		for _, e := range ledger {
			orders[e.MerchantOrderID]++
			if e.Status == "succeeded" {
				ledgerPaid[e.Currency] += e.Amount
			}
		}
		require.Len(t, orders, 1000)
		if provider == config.ProviderCheckout {
			require.Positive(t, seen.n.Load(), "answers lost to a 5xx were looked up by reference before any resend")
		}

		// Paid totals equal the gateway's ledger, per currency.
		var paid []struct {
			Currency string
			Total    int64
		}
		require.NoError(t, s.st.DB().Raw(`SELECT currency, SUM(amount) AS total FROM invoices WHERE status = 'paid' GROUP BY currency`).Scan(&paid).Error)
		dbPaid := map[string]int64{}
		for _, p := range paid {
			dbPaid[p.Currency] = p.Total
		}
		require.Len(t, dbPaid, len(mixedCurrencies))
		require.Equal(t, ledgerPaid, dbPaid)
	})
}

func TestCatchUpBillsEachMissedPeriodOnceInOrder(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		anchor := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, anchor)
		s.seedMixed(t, 5, anchor, "month")

		// The daemon was down from the anchor until mid-May: Jan 31, Feb 28,
		// Mar 31, Apr 30 are due.
		s.clk.Set(time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC))
		run, err := s.biller.Pass(context.Background(), context.Background(), "test")
		require.NoError(t, err)
		require.Equal(t, 20, run.InvoicesCreated)

		var starts []time.Time
		require.NoError(t, s.st.DB().Raw(`SELECT period_start FROM invoices WHERE subscription_id = 1 ORDER BY period_index`).Scan(&starts).Error)
		want := []time.Time{anchor, time.Date(2026, 2, 28, 9, 0, 0, 0, time.UTC), time.Date(2026, 3, 31, 9, 0, 0, 0, time.UTC), time.Date(2026, 4, 30, 9, 0, 0, 0, time.UTC)}
		require.Len(t, starts, 4)
		for i := range want {
			require.True(t, want[i].Equal(starts[i]), "period %d starts %s, want %s", i, starts[i], want[i])
		}

		run, err = s.biller.Pass(context.Background(), context.Background(), "test")
		require.NoError(t, err)
		require.Zero(t, run.InvoicesCreated, "a second pass at the same time bills nothing")

		s.clk.Set(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
		run, err = s.biller.Pass(context.Background(), context.Background(), "test")
		require.NoError(t, err)
		require.Equal(t, 5, run.InvoicesCreated, "May 31 only")
		s.settle(t)
		rep := s.check(t, false)
		require.Zero(t, rep.MissedPeriods)
		require.Equal(t, 25, rep.Invoices)
	})
}

// The dry-run plan (`billingd once --dry-run`, read beside the running daemon)
// lists the periods the next pass bills, and after that pass no period is left.
func TestDryRunPlanListsWhatThePassBills(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		anchor := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, anchor)
		s.seedMixed(t, 5, anchor, "month")
		s.clk.Set(time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC))
		ctx := context.Background()

		plan, err := s.biller.Plan(ctx, 100)
		require.NoError(t, err)
		require.Len(t, plan, 20, "four missed periods of five subscriptions")
		heads := 0
		for _, p := range plan {
			require.Contains(t, []string{schedule.PlanCharge, schedule.PlanFollow}, p.Kind)
			require.Equal(t, "(new)", p.Invoice)
			if p.Kind == schedule.PlanCharge {
				heads++
			}
		}
		require.Equal(t, 5, heads, "each subscription's oldest missed period is charged first; the rest follow")

		run, err := s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		require.Equal(t, len(plan), run.InvoicesCreated)
		plan, err = s.biller.Plan(ctx, 100)
		require.NoError(t, err)
		for _, p := range plan {
			require.NotEqual(t, "(new)", p.Invoice, "%+v was invoiced by the pass", p)
		}
	})
}
