package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestRestartAfterSIGKILLMidSweep kills a real billingd process in the middle of
// a pass over 1,000 subscriptions, restarts it on the same SQLite file, and checks
// that nothing was charged twice, nothing was lost, and that the restarted pass
// replayed every attempt the dead one left open, each with its own key; on
// each provider.
func TestRestartAfterSIGKILLMidSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	for _, provider := range daemontest.Providers {
		// Each run waits on its child processes more than it computes: the
		// providers run side by side.
		t.Run(provider, func(t *testing.T) { t.Parallel(); runRestartAfterSIGKILL(t, provider) })
	}
}

func runRestartAfterSIGKILL(t *testing.T, provider string) {
	dir := t.TempDir()
	gw := sim.New(sim.Options{Provider: provider, SecretKey: "sk_test_restart", Seed: 7, ProcessingDelay: time.Millisecond})
	simCtx, stopSim := context.WithCancel(context.Background())
	defer stopSim()
	gw.Start(simCtx)
	srv := httptest.NewServer(gw)
	defer srv.Close()
	defer gw.Close()

	// Seed cards at the gateway and subscriptions in the database.
	ctx := context.Background()
	cards := []string{"4242424242424242", "4111111111111111", "4000000000009995", "4761344136141390", "4000000000000069", "4462030000000000"}
	saved := saveTestCards(t, provider, srv.URL, "sk_test_restart", "r", cards)
	dbPath := filepath.Join(dir, "billingd.db")
	anchor := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	st := storetest.SQLiteAt(t, dbPath)
	var subs []storetest.Subscription
	for i := 0; i < 1000; i++ {
		id := saved[i%len(saved)]
		subs = append(subs, storetest.Subscription{Reference: fmt.Sprintf("r-%04d", i), Customer: id.Customer, PaymentMethod: id.PaymentMethod,
			PreviousPaymentID: id.PreviousPaymentID, Amount: int64(500 + i), Anchor: anchor})
	}
	storetest.Seed(t, st, anchor, subs...)
	require.NoError(t, st.Close())

	cfgPath := writeFile(t, dir, "config.yaml", fmt.Sprintf(`
database: { driver: sqlite, dsn: %s }
gateway:  { provider: %s, base_url: %q, secret_key: sk_test_restart, webhook_secret: whsec_x, concurrency: 8, rate_limit: 1000, timeout: 5s }
retry:    { initial_interval: 10ms, max_interval: 200ms, max_elapsed_time: 20s }
schedule: { page_size: 100 }
http:     { public_base_url: "https://billing.example.com" }
log:      { level: debug }
`, dbPath, provider, srv.URL))

	// Slow answers and faults keep many attempts in flight when the kill lands.
	gw.SetFaults(sim.Faults{Error5xxAfter: 0.1, Drop: 0.05, Slow: 0.5, SlowDelay: 30 * time.Millisecond})
	logPath := filepath.Join(dir, "billingd.log")
	first := startChild(t, logPath, nil, "once", "-c", cfgPath)
	deadline := time.Now().Add(60 * time.Second)
	for len(gw.Ledger()) < 300 {
		require.True(t, time.Now().Before(deadline), "the first process never got going; log: %s", readFile(logPath))
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	<-first.done
	killedAt := len(gw.Ledger())

	// What the dead process left behind is consistent already.
	st = storetest.SQLiteAt(t, dbPath)
	rep, err := invariant.Check(ctx, st, gw.Ledger(), invariant.Options{Now: time.Now().UTC(), AllowUnresolved: true})
	require.NoError(t, err)
	require.Zero(t, rep.DoubleCharges, rep.String())
	left, err := st.AttemptsByStatus(ctx, 10000, models.AttemptPending, models.AttemptUnknown)
	require.NoError(t, err)
	require.NotEmpty(t, left, "the kill should land while attempts are in flight")
	leftKeys := map[int64]string{}
	for _, a := range left {
		leftKeys[a.ID] = a.IdempotencyKey
	}
	require.NoError(t, st.Close())

	// Restart on the same file, same faults, and let it finish.
	second := startChild(t, logPath, nil, "once", "-c", cfgPath)
	select {
	case <-second.done:
		require.NoError(t, second.err, "log: %s", readFile(logPath))
	case <-time.After(3 * time.Minute):
		t.Fatalf("restarted process did not finish; log: %s", readFile(logPath))
	}

	st = storetest.SQLiteAt(t, dbPath)
	rep, err = invariant.Check(ctx, st, gw.Ledger(), invariant.Options{Now: time.Now().UTC()})
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	require.Zero(t, rep.DoubleCharges)
	require.Zero(t, rep.MissedPeriods)
	require.Zero(t, rep.Unresolved, "no attempt is left pending or unknown")
	require.Equal(t, 1000, rep.Invoices)

	for id, key := range leftKeys {
		a, err := st.AttemptByID(ctx, id)
		require.NoError(t, err)
		require.Equal(t, key, a.IdempotencyKey)
		require.False(t, a.Status.Unresolved(), "attempt %d (%s) still %s", id, key, a.Status)
		require.Equal(t, 1, a.AttemptNo, "the replay kept the attempt; no second attempt was created")
	}
	var runs []models.BillingRun
	require.NoError(t, st.DB().Order("id").Find(&runs).Error)
	require.Len(t, runs, 2)
	require.Equal(t, models.RunInterrupted, runs[0].Status, "the killed run is marked interrupted")
	require.Equal(t, models.RunFinished, runs[1].Status)
	require.Equal(t, len(left), runs[1].AttemptsReplayed)
	t.Logf("killed after %d payment intents with %d attempts in flight; after restart: %s", killedAt, len(left), rep)
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
