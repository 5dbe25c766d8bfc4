package schedule_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// stack is billingd wired to an in-process simulator, with an injected clock for
// billing (the simulator keeps real time).
type stack struct {
	st     *store.Store
	gw     *sim.Server
	client *wooshpay.Client
	clk    *clock.Fake
	engine *charge.Engine
	biller *schedule.Biller
	cards  map[string]string // card number -> "cus_…/pm_…"
}

// newStack wires billingd to a fresh simulator. The simulator shares the fake
// clock; opts may override its options (the key and seed are fixed).
func newStack(t *testing.T, st *store.Store, start time.Time, opts ...sim.Options) *stack {
	t.Helper()
	clk := clock.NewFake(start)
	o := sim.Options{ProcessingDelay: time.Millisecond, Faults: sim.Faults{RetryAfter: time.Second}}
	if len(opts) > 0 {
		o = opts[0]
	}
	o.SecretKey, o.Seed, o.Now = "sk_test_e2e", 42, clk.Now
	gw := sim.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	gw.Start(ctx)
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); cancel(); gw.Close() })
	client, err := wooshpay.New(wooshpay.Options{BaseURL: srv.URL, SecretKey: "sk_test_e2e", Timeout: 5 * time.Second})
	require.NoError(t, err)
	eng := charge.New(charge.Options{Store: st, Gateway: client, Clock: clk,
		Retry:             charge.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 200 * time.Millisecond, MaxElapsedTime: 5 * time.Second},
		UnknownRetryDelay: time.Minute, Log: zerolog.Nop()})
	b := &schedule.Biller{Store: st, Engine: eng, Clock: clk, Location: time.UTC, PageSize: 100, Concurrency: 16,
		Owner: "e2e", LeaseFor: time.Minute, Log: zerolog.Nop()}
	return &stack{st: st, gw: gw, client: client, clk: clk, engine: eng, biller: b, cards: map[string]string{}}
}

// saveCard runs the gateway's save-card flow and returns the gateway ids.
func (s *stack) saveCard(t *testing.T, number string) (cus, pm string) {
	t.Helper()
	ctx := context.Background()
	c, err := s.client.CreateCustomer(ctx, wooshpay.CustomerParams{Email: "c" + number[12:] + "@example.com"}, "cus-"+number)
	require.NoError(t, err)
	seti, err := s.client.CreateSetupIntent(ctx, wooshpay.SetupIntentParams{Customer: c.ID,
		Card: wooshpay.CardData{Number: number, ExpMonth: "12", ExpYear: "2035", CVC: "123"}, Usage: "off_session"}, "seti-"+number)
	require.NoError(t, err)
	return c.ID, seti.PaymentMethod
}

var mixedCards = []string{
	"4242424242424242", "4111111111111111", "4761344136141390", "4242424242424242", "4111111111111111",
	"4000000000009995", "4000000000000069", "4462030000000000", "4000000000000259", "4000000000000002",
}

// seedMixed creates n subscriptions cycling through mixedCards, each card on its
// own customer, all anchored at anchor.
func (s *stack) seedMixed(t *testing.T, n int, anchor time.Time, interval string) {
	t.Helper()
	type ids struct{ cus, pm string }
	saved := map[string]ids{}
	var subs []storetest.Subscription
	for i := 0; i < n; i++ {
		number := mixedCards[i%len(mixedCards)]
		key := fmt.Sprintf("%s-%d", number, i%len(mixedCards))
		id, ok := saved[key]
		if !ok {
			cus, pm := s.saveCard(t, number)
			id = ids{cus, pm}
			saved[key] = id
		}
		subs = append(subs, storetest.Subscription{Reference: fmt.Sprintf("sub-%04d", i), Customer: id.cus, PaymentMethod: id.pm,
			Amount: int64(100 + i), Currency: []string{"USD", "EUR", "JPY"}[i%3], Interval: interval, Anchor: anchor})
	}
	storetest.Seed(t, s.st, anchor, subs...)
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

func TestThousandSubscriptionsUnderGatewayFaults(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start)
		s.seedMixed(t, 1000, start, "month")
		s.gw.SetFaults(sim.Faults{Error5xxAfter: 0.20, RateLimit: 0.05, RetryAfter: time.Second, Drop: 0.10})

		run, err := s.biller.Pass(context.Background(), context.Background(), "test")
		require.NoError(t, err)
		require.Equal(t, 1000, run.SubscriptionsDue)
		require.Equal(t, 1000, run.InvoicesCreated)
		stats := s.gw.Stats()
		t.Logf("pass: %+v; simulator: %+v", *run, stats)

		// Straight after the faulty pass: no double charge, nothing charged that
		// the database does not know about, every invoice accounted for.
		rep := s.check(t, true)
		require.Zero(t, rep.DoubleCharges)

		// Every invoice is paid or has an attempt that says why not.
		var open []struct {
			PublicID string
			Status   string
		}
		require.NoError(t, st.DB().Raw(`SELECT i.public_id, ca.status FROM invoices i
			LEFT JOIN charge_attempts ca ON ca.invoice_id = i.id WHERE i.status = 'open'`).Scan(&open).Error)
		for _, o := range open {
			require.Contains(t, []string{"declined", "requires_action", "processing", "unknown", "pending"}, o.Status, "invoice %s", o.PublicID)
		}

		s.settle(t)
		rep = s.check(t, false)
		require.Equal(t, 1000, rep.Invoices)
		// 6 of every 10 cards end paid (three success cards twice, and the processing card).
		require.Equal(t, 600, rep.PaidInvoices)
		require.Equal(t, 600, rep.Succeeded)
		require.Equal(t, map[string]int{"succeeded": 600, "declined": 300, "requires_action": 100}, rep.AttemptsByState)
	})
}

func TestCatchUpBillsEachMissedPeriodOnceInOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
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
		require.NoError(t, st.DB().Raw(`SELECT period_start FROM invoices WHERE subscription_id = 1 ORDER BY period_index`).Scan(&starts).Error)
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
