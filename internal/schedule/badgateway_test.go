package schedule_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// garbage is what a broken gateway (or a proxy in front of it) answers.
type garbage struct {
	status      int
	contentType string
	body        string
}

// garbler sits in front of the simulator: while on, a POST that creates or
// confirms a PaymentIntent is executed and recorded by the simulator (its real
// answer is kept under the idempotency key), and the client gets garbage
// instead — the worst case, money moved and the answer unreadable.
type garbler struct {
	next http.Handler
	on   atomic.Pointer[garbage]
	hits atomic.Int64
}

func (g *garbler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bad := g.on.Load()
	// Payment requests: WooshPay's /v1/payment_intents…, Checkout.com's
	// POST /payments (armed only after the cards were saved).
	charge := strings.HasPrefix(r.URL.Path, "/v1/payment_intents") || r.URL.Path == "/payments"
	if bad == nil || r.Method != http.MethodPost || !charge {
		g.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	g.next.ServeHTTP(rec, r)
	g.hits.Add(1)
	w.Header().Set("Content-Type", bad.contentType)
	w.WriteHeader(bad.status)
	_, _ = w.Write([]byte(bad.body))
}

// syncBuffer collects log lines written by concurrent workers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newGarbledStack is newStack with the garbler between billingd and the
// simulator (gateway.base_url points at it), no webhooks, and the daemon's log
// captured. unknownRetry is how long a pass waits before replaying an attempt
// left unknown: retry.max_interval, which also caps the engine's backoff (the
// retry budget, retry.max_elapsed_time, is 300ms).
func newGarbledStack(t *testing.T, st *store.Store, provider string, start time.Time, unknownRetry time.Duration) (*stack, *garbler, *syncBuffer) {
	t.Helper()
	g := &garbler{}
	logs := &syncBuffer{}
	s := stackWith(t, st, daemontest.Options{
		Provider:   provider,
		Start:      start,
		Sim:        sim.Options{ProcessingDelay: time.Millisecond},
		NoWebhooks: true,
		Front:      func(h http.Handler) http.Handler { g.next = h; return g },
		Log:        logs,
		Configure: func(c *config.Config) {
			c.Retry.InitialInterval = config.Duration(10 * time.Millisecond)
			c.Retry.MaxInterval = config.Duration(unknownRetry)
			c.Retry.MaxElapsedTime = config.Duration(300 * time.Millisecond)
			c.Gateway.Concurrency = 4
		},
	})
	return s, g, logs
}

// TestGatewayAnsweringGarbage: the gateway records the charge, then answers
// JSON that does not parse or an HTML error page, with 2xx and with 5xx. The
// attempt must stay unknown (never failed: money may have moved), the log must
// say why, and the next pass (replaying the same key) or the reconciler must
// bring it to the truth without charging twice.
func TestGatewayAnsweringGarbage(t *testing.T) {
	html502 := garbage{502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"}
	for _, tc := range []struct {
		name     string
		bad      garbage
		resolver string
	}{
		{"truncated json 200", garbage{200, "application/json", `{"id":"pi_123","object":"payment_intent","status":"succ`}, "next pass"},
		{"html 200", garbage{200, "text/html", "<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>"}, "reconciler"},
		{"empty 201", garbage{201, "application/json", ""}, "next pass"},
		{"html 502", html502, "next pass"},
		{"html 502", html502, "reconciler"},
		{"truncated json 500", garbage{500, "application/json", `{"error":{"type":"api_er`}, "reconciler"},
	} {
		bad, resolver := tc.bad, tc.resolver
		{
			t.Run(tc.name+" then "+resolver, func(t *testing.T) {
				t.Parallel()
				eachDB(t, func(t *testing.T, st *store.Store) {
					start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
					unknownRetry := time.Minute
					if resolver == "reconciler" {
						unknownRetry = 24 * time.Hour // passes leave it to the reconciler
					}
					s, g, logs := newGarbledStack(t, st, config.ProviderWooshPay, start, unknownRetry)
					s.seedMixed(t, 10, start, "month")
					g.on.Store(&bad)

					ctx := context.Background()
					run, err := s.biller.Pass(ctx, ctx, "test")
					require.NoError(t, err)
					require.Equal(t, 10, run.AttemptsStarted)
					require.Equal(t, 10, run.Unknown, "every answer was garbage: %+v", run)
					require.Zero(t, run.Failed)
					require.NotZero(t, g.hits.Load())
					require.Len(t, s.gw.Ledger(), 10, "the gateway recorded every charge")
					var statuses []string
					require.NoError(t, s.st.DB().Model(&models.ChargeAttempt{}).Distinct().Pluck("status", &statuses).Error)
					require.Equal(t, []string{string(models.AttemptUnknown)}, statuses, "never failed, never declined on garbage")
					var inv int64
					require.NoError(t, s.st.DB().Model(&models.Invoice{}).Where("status <> ?", models.InvoiceOpen).Count(&inv).Error)
					require.Zero(t, inv, "no invoice changed on garbage")
					out := logs.String()
					require.Contains(t, out, `"status":"unknown"`)
					require.Contains(t, out, "charge attempt recorded")
					if bad.status < 300 {
						require.Contains(t, out, "unreadable response", "the log says the answer could not be read")
					} else {
						require.Contains(t, out, `"http_status":`+strconv.Itoa(bad.status))
					}
					s.check(t, true)
					t.Cleanup(func() {
						if t.Failed() || testing.Verbose() {
							t.Logf("log: %.3000s", logs.String()[max(0, len(logs.String())-3000):])
						}
					})

					g.on.Store(nil)
					switch resolver {
					case "next pass":
						s.clk.Advance(2 * time.Minute)
						run, err = s.biller.Pass(ctx, ctx, "test")
						require.NoError(t, err)
						require.Equal(t, 10, run.AttemptsReplayed)
					case "reconciler":
						s.clk.Advance(61 * time.Minute)
						sum, err := reconcilerFor(s, 5*time.Minute).Run(ctx)
						require.NoError(t, err)
						require.Equal(t, 10, sum.Resolved)
					}
					s.clk.Advance(time.Minute)
					s.gw.SettleDue()
					s.settle(t)
					rep := s.check(t, false)
					require.Len(t, s.gw.Ledger(), 10, "no second charge: the replay and the reconciler used the recorded answer")
					require.Equal(t, rep.Succeeded, rep.PaidInvoices)
					require.Zero(t, rep.DoubleCharges)
					var ones int64
					require.NoError(t, s.st.DB().Model(&models.ChargeAttempt{}).Where("attempt_no > 1").Count(&ones).Error)
					require.Zero(t, ones, "no new attempt number was created for a garbled answer")
				})
			})
		}
	}
}

// On Checkout.com the same garbage after a recorded payment is settled inside
// the pass: the client cannot read the answer, so before it resends it looks
// the order up by reference, finds the payment its key made and takes its
// state from there. Nothing is left unknown, nothing failed on garbage, and
// there is one payment per order.
func TestCheckoutGatewayAnsweringGarbage(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  garbage
	}{
		{"truncated json 200", garbage{200, "application/json", `{"id":"pay_123","status":"Autho`}},
		{"html 200", garbage{200, "text/html", "<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>"}},
		{"empty 201", garbage{201, "application/json", ""}},
		{"html 502", garbage{502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"}},
		{"truncated json 500", garbage{500, "application/json", `{"request_id":"0HL80RJLS76I7","error_ty`}},
	} {
		bad := tc.bad
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := storetest.SQLite(t)
			start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
			s, g, _ := newGarbledStack(t, st, config.ProviderCheckout, start, time.Minute)
			s.seedMixed(t, 10, start, "month")
			g.on.Store(&bad)

			ctx := context.Background()
			run, err := s.biller.Pass(ctx, ctx, "test")
			require.NoError(t, err)
			require.Equal(t, 10, run.AttemptsStarted)
			require.NotZero(t, g.hits.Load())
			require.Zero(t, run.Failed, "never failed on garbage: %+v", run)
			require.Zero(t, run.Unknown, "each garbled answer was settled by the lookup: %+v", run)
			g.on.Store(nil)
			s.settle(t)
			rep := s.check(t, false)
			require.Zero(t, rep.DoubleCharges)
			require.Equal(t, rep.Succeeded, rep.PaidInvoices)
			require.Equal(t, 6, rep.PaidInvoices)
			require.Len(t, s.gw.Ledger(), 10, "one payment per order: the lookup found the recorded one")
		})
	}
}
