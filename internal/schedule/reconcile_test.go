package schedule_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// reconciler runs the daemon's reconciler (its reconcile job) and reports
// what one run did.
type reconciler struct{ s *stack }

// reconcilerFor sets the daemon's reconciler config — an attempt is first looked
// at an hour after it was made (reconcile.after), then after each of backoff
// (reconcile.backoff) — and returns a handle that runs it.
func reconcilerFor(s *stack, backoff ...time.Duration) *reconciler {
	s.t.Helper()
	s.reload(s.t, func(c *config.Config) {
		c.Reconcile.After = config.Duration(time.Hour)
		c.Reconcile.Backoff = make([]config.Duration, len(backoff))
		for i, d := range backoff {
			c.Reconcile.Backoff[i] = config.Duration(d)
		}
	})
	return &reconciler{s}
}

// reconcileSummary counts what one reconciler run did, from the daemon's
// billingd_reconciler_actions_total counters (an attempt it examined that was
// settled meanwhile by another path is counted in none of them).
type reconcileSummary struct {
	Examined, Resolved, Deferred, NeedsReview, Errors int
}

// Run runs the daemon's reconciler once (daemon.Reconcile).
func (r *reconciler) Run(ctx context.Context) (reconcileSummary, error) {
	before := reconcilerActions(r.s.t, r.s.b)
	err := r.s.b.D.Reconcile(ctx)
	after := reconcilerActions(r.s.t, r.s.b)
	d := func(action string) int { return after[action] - before[action] }
	sum := reconcileSummary{Resolved: d("resolved"), Deferred: d("deferred"), NeedsReview: d("needs_review"), Errors: d("error")}
	sum.Examined = sum.Resolved + sum.Deferred + sum.NeedsReview + sum.Errors
	return sum, err
}

// reconcilerActions reads the reconciler's action counters from the daemon's
// /metrics, as Prometheus would scrape them.
func reconcilerActions(t *testing.T, b *daemontest.Bundle) map[string]int {
	t.Helper()
	rec := httptest.NewRecorder()
	b.D.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	out := map[string]int{}
	re := regexp.MustCompile(`(?m)^billingd_reconciler_actions_total\{action="([a-z_]+)"\} ([0-9.e+]+)$`)
	for _, m := range re.FindAllStringSubmatch(rec.Body.String(), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err)
		out[m[1]] = int(v)
	}
	return out
}

// noReplays sets retry.max_interval — also how long a pass waits before it
// replays an attempt left unknown — to a day, with a one-second retry budget:
// attempts left unknown are not replayed by later passes for a day, so only the
// reconciler may settle them. (The engine's backoff sleeps advance the shared
// fake clock, by minutes over a faulty pass.)
func noReplays(s *stack) {
	s.t.Helper()
	s.reload(s.t, func(c *config.Config) {
		c.Retry.InitialInterval = config.Duration(10 * time.Millisecond)
		c.Retry.MaxInterval = config.Duration(24 * time.Hour)
		c.Retry.MaxElapsedTime = config.Duration(time.Second)
	})
}

// With no webhooks at all and answers lost to dropped connections, the reconciler
// alone brings every invoice to its true state, on an injected clock.
func TestReconcilerAloneSettlesLostAnswers(t *testing.T) {
	eachStack(t, func(t *testing.T, st *store.Store, provider string) {
		start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
		s := newStackOn(t, st, provider, start, sim.Options{ProcessingDelay: 3 * time.Hour})
		noReplays(s)
		s.seedMixed(t, 200, start, "month")
		// Every answer is lost after the gateway recorded the charge, and the
		// engine gives up quickly: attempts end unknown, their PaymentIntent id
		// never learned.
		s.gw.SetFaults(sim.Faults{Drop: 1})
		run, err := s.biller.Pass(context.Background(), context.Background(), "test")
		require.NoError(t, err)
		require.Equal(t, 200, run.AttemptsStarted)
		require.Equal(t, 200, run.Unknown)
		require.Less(t, s.clk.Now().Sub(start), time.Hour, "the pass's backoff sleeps stayed under reconcile.after")
		s.gw.SetFaults(sim.Faults{})
		require.Len(t, s.gw.Ledger(), 200, "every charge reached the gateway")

		r := reconcilerFor(s, 5*time.Minute, time.Hour)
		sum, err := r.Run(context.Background())
		require.NoError(t, err)
		require.Zero(t, sum.Examined, "too young: the answer or the webhook may still come")

		s.clk.Set(start.Add(61 * time.Minute))
		sum, err = r.Run(context.Background())
		require.NoError(t, err)
		require.Equal(t, 200, sum.Examined)
		require.Equal(t, 200, sum.Resolved, "found by merchant_order_id and the attempt's key")
		rep := s.check(t, true)
		require.Equal(t, 20, rep.AttemptsByState["processing"], "the processing card is still processing at the gateway")

		// The gateway settles the processing charges three hours in; the
		// reconciler's next look (by PaymentIntent id now) picks that up.
		s.clk.Set(start.Add(4 * time.Hour))
		s.gw.SettleDue()
		sum, err = r.Run(context.Background())
		require.NoError(t, err)
		require.Equal(t, 20, sum.Resolved)
		rep = s.check(t, false)
		require.Equal(t, 120, rep.PaidInvoices)
		require.Equal(t, rep.Succeeded, rep.PaidInvoices)
	})
}

// An attempt the gateway cannot settle is looked at on the backoff schedule and
// then becomes needs_review — never retried blindly.
func TestReconcilerGivesUpToNeedsReview(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{}, func(t *testing.T, o daemontest.Options) {
		reconcilerGivesUpToNeedsReview(t, o.Provider)
	})
}

func reconcilerGivesUpToNeedsReview(t *testing.T, provider string) {
	st := storetest.SQLite(t)
	start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	s := newStackOn(t, st, provider, start, sim.Options{ProcessingDelay: 1000 * time.Hour})
	s.seedMixed(t, 10, start, "month") // one processing card among them
	_, err := s.biller.Pass(context.Background(), context.Background(), "test")
	require.NoError(t, err)
	processing, err := s.st.AttemptsByStatus(context.Background(), 10, models.AttemptProcessing)
	require.NoError(t, err)
	require.Len(t, processing, 1)

	r := reconcilerFor(s, 5*time.Minute, time.Hour)
	var looks []time.Time
	for i := 0; i < 6; i++ {
		s.clk.Advance(2 * time.Hour)
		sum, err := r.Run(context.Background())
		require.NoError(t, err)
		if sum.Examined > 0 {
			looks = append(looks, s.clk.Now())
		}
	}
	require.Len(t, looks, 3, "first look, then one per backoff step")
	a, err := s.st.AttemptByID(context.Background(), processing[0].ID)
	require.NoError(t, err)
	require.Equal(t, models.AttemptNeedsReview, a.Status)
	require.Equal(t, 3, a.ReconcileCount)
	require.Contains(t, a.ErrorMessage, "processing")
	var sub models.Subscription
	require.NoError(t, s.st.DB().First(&sub, a.SubscriptionID).Error)
	require.Equal(t, models.SubscriptionPastDue, sub.Status)

	// A later pass never replays it.
	s.clk.Advance(time.Hour)
	run, err := s.biller.Pass(context.Background(), context.Background(), "test")
	require.NoError(t, err)
	require.Zero(t, run.AttemptsReplayed)
}
