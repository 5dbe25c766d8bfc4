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

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
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
	if bad == nil || r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v1/payment_intents") {
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
// simulator, and a captured log. unknownRetry is how long a pass waits before
// replaying an attempt left unknown.
func newGarbledStack(t *testing.T, st *store.Store, start time.Time, unknownRetry time.Duration) (*stack, *garbler, *syncBuffer) {
	t.Helper()
	clk := clock.NewFake(start)
	gw := sim.New(sim.Options{SecretKey: "sk_test_garbage", Seed: 42, Now: clk.Now, ProcessingDelay: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	gw.Start(ctx)
	g := &garbler{next: gw}
	srv := httptest.NewServer(g)
	t.Cleanup(func() { srv.Close(); cancel(); gw.Close() })
	client, err := wooshpay.New(wooshpay.Options{BaseURL: srv.URL, SecretKey: "sk_test_garbage", Timeout: 5 * time.Second})
	require.NoError(t, err)
	logs := &syncBuffer{}
	log := zerolog.New(logs)
	eng := charge.New(charge.Options{Store: st, Gateway: client, Clock: clk, UnknownRetryDelay: unknownRetry,
		Retry: charge.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, MaxElapsedTime: 300 * time.Millisecond},
		Log:   log})
	b := &schedule.Biller{Store: st, Engine: eng, Clock: clk, Location: time.UTC, PageSize: 100, Concurrency: 4,
		Owner: "garbage", LeaseFor: time.Minute, Log: log}
	return &stack{st: st, gw: gw, client: client, clk: clk, engine: eng, biller: b, cards: map[string]string{}}, g, logs
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
				storetest.Each(t, func(t *testing.T, st *store.Store) {
					start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
					unknownRetry := time.Minute
					if resolver == "reconciler" {
						unknownRetry = 24 * time.Hour // passes leave it to the reconciler
					}
					s, g, logs := newGarbledStack(t, st, start, unknownRetry)
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
					require.NoError(t, st.DB().Model(&models.ChargeAttempt{}).Distinct().Pluck("status", &statuses).Error)
					require.Equal(t, []string{string(models.AttemptUnknown)}, statuses, "never failed, never declined on garbage")
					var inv int64
					require.NoError(t, st.DB().Model(&models.Invoice{}).Where("status <> ?", models.InvoiceOpen).Count(&inv).Error)
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
					require.NoError(t, st.DB().Model(&models.ChargeAttempt{}).Where("attempt_no > 1").Count(&ones).Error)
					require.Zero(t, ones, "no new attempt number was created for a garbled answer")
				})
			})
		}
	}
}
