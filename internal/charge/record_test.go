package charge_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// claimedAttempts seeds n open invoices on a fresh SQLite database and claims an
// attempt for each.
func claimedAttempts(tb testing.TB, n int) (*store.Store, []models.ChargeAttempt) {
	tb.Helper()
	ctx := context.Background()
	st := storetest.SQLite(tb)
	require.NoError(tb, loadtest.SeedOpenInvoices(ctx, st, n, t0))
	claimed, err := st.ClaimNewAttempts(ctx, "test", t0, t0.Add(time.Hour), n)
	require.NoError(tb, err)
	require.Len(tb, claimed, n)
	return st, claimed
}

// executeAll runs the attempts through eng on `workers` goroutines, as a pass
// does, and reports each result to done (called concurrently).
func executeAll(eng *charge.Engine, attempts []models.ChargeAttempt, workers int, done func(a *models.ChargeAttempt, status models.AttemptStatus, err error)) {
	jobs := make(chan *models.ChargeAttempt)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				status, err := eng.Execute(context.Background(), a)
				done(a, status, err)
			}
		}()
	}
	for i := range attempts {
		jobs <- &attempts[i]
	}
	close(jobs)
	wg.Wait()
}

// fastRetry keeps transient retries of these tests short.
var fastRetry = charge.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second, MaxElapsedTime: time.Second}

// barrierGateway answers every charge with success, but only once `width`
// requests are waiting, so that many outcomes are ready at the same moment.
type barrierGateway struct {
	scripted
	mu      sync.Mutex
	waiting int
	width   int
	release chan struct{}
}

func (g *barrierGateway) CreatePaymentIntent(_ context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	g.mu.Lock()
	g.waiting++
	ch := g.release
	if g.waiting == g.width {
		close(g.release)
		g.waiting, g.release = 0, make(chan struct{})
	}
	g.mu.Unlock()
	<-ch
	return echoAmount(intent("pi_"+req.IdempotencyKey, gateway.IntentSucceeded), req)
}

// txCounter is a hook that counts the transactions outcomes were recorded in,
// and fails the outcome of one attempt.
type txCounter struct {
	mu     sync.Mutex
	txs    map[*store.Tx]int
	failID int64
}

func (h *txCounter) AfterOutcome(tx *store.Tx, _ time.Time, a *models.ChargeAttempt, _ store.AttemptResult) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.txs[tx]++
	if a.ID == h.failID {
		return fmt.Errorf("hook refuses attempt %d", a.ID)
	}
	return nil
}

func (h *txCounter) AfterPaymentMethodSaved(*store.Tx, time.Time, *gateway.SetupIntent) (bool, string, bool, error) {
	return false, "", false, nil
}

func TestGroupCommit(t *testing.T) {
	const attempts, workers = 256, 32
	for _, tc := range []struct {
		name   string
		failID int64 // 0: no outcome fails
	}{
		{"every outcome recorded, many per transaction", 0},
		{"one failing outcome does not hold back the others", 77},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, claimed := claimedAttempts(t, attempts)
			hook := &txCounter{txs: map[*store.Tx]int{}, failID: tc.failID}
			eng := charge.New(charge.Options{Store: st, Gateway: &barrierGateway{width: workers, release: make(chan struct{})},
				Clock: clock.NewFake(t0), Log: zerolog.Nop(), Hook: hook, Retry: fastRetry})
			errs := make([]error, attempts)
			executeAll(eng, claimed, workers, func(a *models.ChargeAttempt, _ models.AttemptStatus, err error) { errs[a.ID-1] = err })

			var rows []models.ChargeAttempt
			require.NoError(t, st.DB().Order("id").Find(&rows).Error)
			for i, row := range rows {
				a := claimed[i]
				if row.ID == tc.failID {
					require.Error(t, errs[i])
					require.Equal(t, models.AttemptPending, row.Status, "the failed outcome leaves its attempt to be replayed")
					require.Equal(t, models.AttemptPending, a.Status, "the caller's copy is restored to what is stored")
					require.Equal(t, row.LeaseVersion, a.LeaseVersion)
					continue
				}
				require.NoError(t, errs[i], "attempt %d", row.ID)
				require.Equal(t, models.AttemptSucceeded, row.Status, "attempt %d", row.ID)
				require.Equal(t, "pi_"+row.IdempotencyKey, row.PaymentIntentID)
				require.Equal(t, models.AttemptSucceeded, a.Status)
			}
			var paid int64
			require.NoError(t, st.DB().Model(&models.Invoice{}).Where("status = 'paid'").Count(&paid).Error)
			want := int64(attempts)
			if tc.failID != 0 {
				want--
			}
			require.Equal(t, want, paid)
			// With 32 outcomes ready at once, transactions carry several each.
			require.Less(t, len(hook.txs), attempts/2, "outcomes should share transactions (group commit)")
		})
	}
}

// holdGateway holds every request until released, signals full once `width`
// requests are inside at the same time, and records the most it ever held.
type holdGateway struct {
	*scripted
	mu       sync.Mutex
	inside   int
	most     int
	width    int
	full     chan struct{}
	fullOnce sync.Once
	release  chan struct{}
}

func (g *holdGateway) CreatePaymentIntent(_ context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	g.mu.Lock()
	g.inside++
	if g.inside > g.most {
		g.most = g.inside
	}
	if g.inside >= g.width {
		g.fullOnce.Do(func() { close(g.full) })
	}
	g.mu.Unlock()
	<-g.release
	g.mu.Lock()
	g.inside--
	g.mu.Unlock()
	return echoAmount(intent("pi_"+req.IdempotencyKey, gateway.IntentSucceeded), req)
}

// TestMaxInFlightCapsRequestsNotWorkers: gateway.concurrency bounds requests at
// the gateway however many workers execute attempts. The first requests are held
// at the gateway; while they are, no other worker may get a request in.
func TestMaxInFlightCapsRequestsNotWorkers(t *testing.T) {
	const attempts, workers, slots = 60, 24, 4
	st, claimed := claimedAttempts(t, attempts)
	gw := &holdGateway{scripted: &scripted{}, width: slots, full: make(chan struct{}), release: make(chan struct{})}
	eng := charge.New(charge.Options{Store: st, Gateway: gw, Clock: clock.NewFake(t0), Log: zerolog.Nop(), MaxInFlight: slots, Retry: fastRetry})
	go func() {
		<-gw.full
		// Give workers without a slot the chance to (wrongly) reach the
		// gateway; a correct cap passes however long this is.
		time.Sleep(50 * time.Millisecond)
		close(gw.release)
	}()
	var failed atomic.Int64
	executeAll(eng, claimed, workers, func(_ *models.ChargeAttempt, status models.AttemptStatus, err error) {
		if err != nil || status != models.AttemptSucceeded {
			failed.Add(1)
		}
	})
	require.Zero(t, failed.Load(), "attempts not recorded as succeeded")
	require.Equal(t, slots, gw.most, "requests in flight at once")
}
