package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// postRecorder stands in front of the simulator for one billingd process and
// keeps every POST it passed on (path and idempotency key), so a test can
// tell which process sent what.
type postRecorder struct {
	mu    sync.Mutex
	posts []string
	srv   *httptest.Server
}

func newPostRecorder(t *testing.T, next http.Handler) *postRecorder {
	r := &postRecorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost {
			r.mu.Lock()
			key := req.Header.Get("Idempotency-Key")
			if key == "" {
				key = req.Header.Get("Cko-Idempotency-Key")
			}
			r.posts = append(r.posts, req.URL.Path+" "+key)
			r.mu.Unlock()
		}
		next.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// sent lists the POSTs that carried key.
func (r *postRecorder) sent(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.posts {
		if strings.HasSuffix(p, " "+key) {
			out = append(out, p)
		}
	}
	return out
}

// processState is the state letter of /proc/PID/stat ('T': stopped).
func processState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) S …: the state follows the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// TestNoSendOnLostLeaseAfterSIGSTOP is docs/protocol.md's "No send on a lost lease" with real processes on
// PostgreSQL: a `billingd run` claims an attempt and stops itself (SIGSTOP)
// right before its request would leave; its lease runs out, a peer takes
// the attempt over and charges it; then the first process is resumed
// (SIGCONT). The resumed process finds its lease gone, sends nothing, and
// says so; the gateway holds one payment.
//
// It stops at two places. charge.before_send is before the engine's lease
// check. gateway.after_send_check is after the last check the engine runs:
// only the HTTP client's own check, on the connection right before the
// first byte is written, stands between a resumed process and a late
// request there. That case runs on Checkout.com, which keeps no answer for
// a request it answered 5xx, with the peer's own request answered 5xx after
// the payment was made: a late request under the same key would be a
// second payment, as a cluster soak once saw.
func TestNoSendOnLostLeaseAfterSIGSTOP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to see a process stopped")
	}
	for _, tc := range []struct {
		name, provider, stopAt string
		peerFirstAnswer500     bool
	}{
		{"stopped before the engine's lease check", config.ProviderWooshPay, failpoint.ChargeBeforeSend, false},
		{"stopped after the engine's last check, the peer's answer a 5xx", config.ProviderCheckout, failpoint.GatewayAfterSendCheck, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testNoSendOnLostLease(t, tc.provider, tc.stopAt, tc.peerFirstAnswer500) })
	}
}

func testNoSendOnLostLease(t *testing.T, provider, stopAt string, peerFirstAnswer500 bool) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	dir := t.TempDir()
	key := "sk_test_leasestop"
	if provider == config.ProviderCheckout {
		key = "sk_sbox_leasestop"
	}
	gw := sim.New(sim.Options{Provider: provider, SecretKey: key, Seed: 5, ProcessingDelay: 10 * time.Millisecond})
	simCtx, stopSim := context.WithCancel(ctx)
	gw.Start(simCtx)
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); stopSim(); gw.Close() })
	toPeerGateway := http.Handler(gw)
	if peerFirstAnswer500 {
		// The peer's first charge request is made and answered 500, as
		// the simulator's 5xx-after-record fault does: on Checkout.com its
		// key then keeps nothing.
		var once sync.Once
		toPeerGateway = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hit := false
			if r.Method == http.MethodPost {
				once.Do(func() { hit = true })
			}
			if hit {
				gw.SetFaults(sim.Faults{Error5xxAfter: 1})
				defer gw.SetFaults(sim.Faults{})
			}
			gw.ServeHTTP(w, r)
		})
	}
	toFirst, toPeer := newPostRecorder(t, gw), newPostRecorder(t, toPeerGateway)

	st, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: dsn, MaxOpenConns: 2})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.Migrate(ctx)
	require.NoError(t, err)
	card := saveTestCards(t, provider, srv.URL, key, "stop", []string{"4242424242424242"})[0]
	anchor := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	storetest.Seed(t, st, anchor, storetest.Subscription{Reference: "stop-1", Customer: card.Customer, PaymentMethod: card.PaymentMethod,
		PreviousPaymentID: card.PreviousPaymentID, Amount: 1234, Currency: "USD", Anchor: anchor})

	// gateway.timeout 500ms: the lease margin is 5s (charge.LeaseMargin)
	// and a charge's lease 1s + 2 × 500ms + 5s = 7s.
	config := func(name, baseURL string) string {
		return writeFile(t, dir, name, fmt.Sprintf(`
database:  { driver: postgres, dsn: %q }
gateway:   { provider: %s, base_url: %q, secret_key: %s, webhook_secret: whsec_leasestop, concurrency: 2, rate_limit: 1000, timeout: 500ms }
retry:     { initial_interval: 10ms, max_interval: 200ms, max_elapsed_time: 1s }
schedule:  { billing: "@every 1s", page_size: 10, drain_timeout: 2s }
http:      { listen: %q, public_base_url: "https://billing.example.com" }
log:       { level: debug }
`, dsn, provider, baseURL, key, freeAddr(t)))
	}
	firstLog, peerLog := filepath.Join(dir, "first.log"), filepath.Join(dir, "peer.log")
	start := time.Now()
	first := startChild(t, firstLog, []string{failpoint.Env + "=" + stopAt + "=" + failpoint.StopAction}, "run", "-c", config("first.yaml", toFirst.srv.URL))
	pid := first.cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) // never leave a stopped process behind
	require.Eventually(t, func() bool { return processState(pid) == 'T' }, 30*time.Second, 20*time.Millisecond,
		"billingd never stopped at %s; log: %s", stopAt, readFile(firstLog))

	var a models.ChargeAttempt
	require.NoError(t, st.DB().Order("id").First(&a).Error)
	require.Equal(t, models.AttemptPending, a.Status, "claimed and committed, not sent")
	require.Empty(t, toFirst.sent(a.IdempotencyKey))
	require.Empty(t, gw.Ledger())

	// The lease runs out on the database's clock; a peer takes the attempt
	// over under the same key and charges it.
	require.Eventually(t, func() bool {
		var expired bool
		require.NoError(t, st.DB().Raw(`SELECT lease_until < clock_timestamp() FROM charge_attempts WHERE id = ?`, a.ID).Scan(&expired).Error)
		return expired
	}, 30*time.Second, 50*time.Millisecond)
	peer := startChild(t, peerLog, nil, "run", "-c", config("peer.yaml", toPeer.srv.URL))
	require.Eventually(t, func() bool {
		var got models.ChargeAttempt
		require.NoError(t, st.DB().First(&got, a.ID).Error)
		return got.Status == models.AttemptSucceeded
	}, 30*time.Second, 50*time.Millisecond, "the peer did not settle the attempt; log: %s", readFile(peerLog))
	require.Len(t, toPeer.sent(a.IdempotencyKey), 1, "the peer sent the attempt once, under its own key")
	require.NoError(t, peer.cmd.Process.Signal(syscall.SIGTERM))
	<-peer.done

	// Resumed, the first process finds its lease gone before the request
	// leaves, sends nothing and says so.
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	require.Eventually(t, func() bool {
		return strings.Contains(readFile(firstLog), "request not sent on a lost lease") || len(toFirst.sent(a.IdempotencyKey)) > 0
	}, 15*time.Second, 20*time.Millisecond, "log: %s", readFile(firstLog))
	time.Sleep(500 * time.Millisecond) // anything it were to send late would have reached the recorder
	require.Empty(t, toFirst.sent(a.IdempotencyKey), "the resumed process sent nothing for the attempt")
	require.Contains(t, readFile(firstLog), "resumed after stop point "+stopAt)
	require.Contains(t, readFile(firstLog), "request not sent on a lost lease")
	require.Contains(t, readFile(firstLog), "lease left on the monotonic clock")
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGTERM))
	<-first.done

	ledger := gw.Ledger()
	require.Len(t, ledger, 1, "one payment")
	require.Equal(t, "succeeded", ledger[0].Status)
	rep, err := invariant.Check(ctx, st, ledger, invariant.Options{Now: time.Now().UTC()})
	require.NoError(t, err)
	require.Zero(t, rep.DoubleCharges, rep.String())
	require.True(t, rep.OK(), rep.String())
	var got models.ChargeAttempt
	require.NoError(t, st.DB().First(&got, a.ID).Error)
	require.Equal(t, models.AttemptSucceeded, got.Status, "the resumed process wrote nothing over the peer's outcome")
	t.Logf("stopped at %s, taken over, resumed: nothing sent by the resumed process (%s)", stopAt, time.Since(start).Round(time.Millisecond))
}
