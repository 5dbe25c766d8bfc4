package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// serveDirect runs one request through ServeHTTP in the calling goroutine.
func serveDirect(ctx context.Context, s *Server, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(ctx, method, "http://sim.test"+path, strings.NewReader(body))
	req.SetBasicAuth(testKey, "")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

func TestLatency(t *testing.T) {
	const latency = 30 * time.Millisecond
	h := newHarness(t, Options{Latency: latency})
	cus, pm := h.chargeTarget("4242424242424242")
	dcus, declining := h.chargeTarget("4000000000000002")

	// timed sends a request and asserts that its answer took at least latency.
	timed := func(t *testing.T, send func() resp) resp {
		t.Helper()
		start := time.Now()
		r := send()
		require.GreaterOrEqual(t, time.Since(start), latency, "answered before the latency passed")
		return r
	}
	withFaults := func(t *testing.T, f Faults) {
		h.sim.SetFaults(f)
		t.Cleanup(func() { h.sim.SetFaults(Faults{}) })
	}

	t.Run("success", func(t *testing.T) {
		r := timed(t, func() resp { return h.charge(cus, pm, 100, "inv_ok", "k_ok") })
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	})
	t.Run("idempotent replay", func(t *testing.T) {
		r := timed(t, func() resp { return h.charge(cus, pm, 100, "inv_ok", "k_ok") })
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "true", r.header.Get("Idempotent-Replayed"))
	})
	t.Run("decline", func(t *testing.T) {
		r := timed(t, func() resp { return h.charge(dcus, declining, 100, "inv_decline", "k_decline") })
		require.Equal(t, http.StatusPaymentRequired, r.status)
	})
	t.Run("invalid parameters", func(t *testing.T) {
		r := timed(t, func() resp { return h.post("/v1/customers", map[string]any{"nope": 1}, "") })
		require.Equal(t, http.StatusBadRequest, r.status)
	})
	t.Run("retrieve", func(t *testing.T) {
		r := timed(t, func() resp { return h.get("/v1/payment_intents/pi_missing") })
		require.Equal(t, http.StatusNotFound, r.status)
	})
	t.Run("unrecognized URL", func(t *testing.T) {
		r := timed(t, func() resp { return h.get("/v1/nope") })
		require.Equal(t, http.StatusNotFound, r.status)
	})
	t.Run("unauthenticated", func(t *testing.T) {
		r := timed(t, func() resp {
			req := h.newRequest(http.MethodGet, "/v1/customers/"+cus, nil, "")
			req.Header.Del("Authorization")
			r, err := h.send(h.client, req)
			require.NoError(t, err)
			return r
		})
		require.Equal(t, http.StatusUnauthorized, r.status)
	})
	t.Run("fault 5xx-before", func(t *testing.T) {
		withFaults(t, Faults{Error5xxBefore: 1})
		r := timed(t, func() resp { return h.charge(cus, pm, 100, "inv_5xx_before", "k_5xx_before") })
		require.Equal(t, http.StatusInternalServerError, r.status)
	})
	t.Run("fault 429", func(t *testing.T) {
		withFaults(t, Faults{RateLimit: 1})
		r := timed(t, func() resp { return h.charge(cus, pm, 100, "inv_429", "k_429") })
		require.Equal(t, http.StatusTooManyRequests, r.status)
	})
	t.Run("fault 5xx-after", func(t *testing.T) {
		withFaults(t, Faults{Error5xxAfter: 1})
		r := timed(t, func() resp { return h.charge(cus, pm, 100, "inv_5xx_after", "k_5xx_after") })
		require.Equal(t, http.StatusInternalServerError, r.status)
	})
	t.Run("fault slow shorter than the latency", func(t *testing.T) {
		withFaults(t, Faults{Slow: 1, SlowDelay: time.Millisecond})
		r := timed(t, func() resp { return h.charge(cus, pm, 100, "inv_slow", "k_slow") })
		require.Equal(t, http.StatusOK, r.status)
	})
	t.Run("fault drop", func(t *testing.T) {
		withFaults(t, Faults{Drop: 1})
		fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		timed(t, func() resp {
			_, err := h.send(fresh, h.newRequest(http.MethodPost, "/v1/payment_intents", chargeBody(cus, pm, 100, "inv_drop"), "k_drop"))
			require.Error(t, err, "no answer at all")
			return resp{}
		})
	})
	t.Run("over the rate limit", func(t *testing.T) {
		lh := newHarness(t, Options{Latency: latency, RateLimit: 0.001, RateBurst: 1})
		require.Equal(t, http.StatusNotFound, lh.get("/v1/nope").status)
		r := timed(t, func() resp { return lh.get("/v1/nope") })
		require.Equal(t, http.StatusTooManyRequests, r.status)
	})
}

// TestLatencyProcessesThenWaits shows that the request executes before its
// answer waits, and that the wait ends, writing nothing, when the client goes
// away.
func TestLatencyProcessesThenWaits(t *testing.T) {
	s := New(Options{SecretKey: testKey})
	t.Cleanup(s.Close)
	rec := serveDirect(t.Context(), s, http.MethodPost, "/v1/customers", `{"email":"a@example.com"}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var cus struct{ ID string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &cus))
	rec = serveDirect(t.Context(), s, http.MethodPost, "/v1/setup_intents", string(mustJSON(setupBody(cus.ID, "4242424242424242"))))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var seti struct {
		PaymentMethod string `json:"payment_method"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &seti))

	// No request is in flight, so the options can change for the next ones.
	s.opts.Latency = time.Hour

	t.Run("executed answer", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan *httptest.ResponseRecorder)
		go func() {
			done <- serveDirect(ctx, s, http.MethodPost, "/v1/payment_intents",
				string(mustJSON(chargeBody(cus.ID, seti.PaymentMethod, 100, "inv_1"))))
		}()
		require.Eventually(t, func() bool { return len(s.Ledger()) == 1 }, 10*time.Second, time.Millisecond,
			"the charge executes before its answer waits")
		require.Equal(t, "succeeded", s.Ledger()[0].Status)
		cancel()
		select {
		case rec := <-done:
			require.Zero(t, rec.Body.Len(), "nothing written to a client that is gone")
		case <-time.After(10 * time.Second):
			t.Fatal("the latency wait ignored the request context")
		}
	})
	t.Run("answer before routing", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		done := make(chan *httptest.ResponseRecorder)
		go func() {
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://sim.test/v1/customers/x", nil)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req) // unauthenticated: a 401 that would wait
			done <- rec
		}()
		select {
		case rec := <-done:
			require.Zero(t, rec.Body.Len())
		case <-time.After(10 * time.Second):
			t.Fatal("the latency wait ignored the request context")
		}
	})
}

// TestLatencyWaitsWithoutLock holds a thousand answers in their latency wait at
// once: every request executes (they would queue behind one another if a wait
// held the state lock) and the lock stays free for Stats.
func TestLatencyWaitsWithoutLock(t *testing.T) {
	const n = 1000
	s := New(Options{SecretKey: testKey, Latency: time.Hour})
	t.Cleanup(s.Close)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveDirect(ctx, s, http.MethodPost, "/v1/customers", `{}`)
		}()
	}
	customers := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.customers)
	}
	require.Eventually(t, func() bool { return customers() == n }, 30*time.Second, 5*time.Millisecond)
	require.EqualValues(t, n, s.Stats().Requests)
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("waiting answers did not end when their clients went away")
	}
}

func TestRateLimit(t *testing.T) {
	t.Run("over the limit is refused unprocessed", func(t *testing.T) {
		// A token every 1000s: the burst is all there is during the test.
		h := newHarness(t, Options{RateLimit: 0.001, RateBurst: 4})
		cus, pm := h.chargeTarget("4242424242424242") // 2 requests
		require.Equal(t, http.StatusOK, h.charge(cus, pm, 100, "inv_1", "k1").status)
		require.Equal(t, http.StatusOK, h.charge(cus, pm, 100, "inv_2", "k2").status)

		r := h.charge(cus, pm, 100, "inv_3", "k3")
		require.Equal(t, http.StatusTooManyRequests, r.status)
		e := r.errObj(t)
		require.Equal(t, "api_error", e["type"], "the body of the 429 fault")
		require.Equal(t, "rate_limit", e["code"])
		secs, err := strconv.Atoi(r.header.Get("Retry-After"))
		require.NoError(t, err)
		require.Greater(t, secs, 900, "the next token is ~1000s away")
		require.LessOrEqual(t, secs, 1000)
		require.Len(t, h.sim.Ledger(), 2, "not processed")

		st := h.sim.Stats()
		require.EqualValues(t, 1, st.RateLimited)
		require.Equal(t, FaultCounts{}, st.Faults, "not a fault")
		require.EqualValues(t, 5, st.Requests, "refused requests are received requests")

		// The control plane is not limited, and shows the count.
		stats := h.get("/_sim/stats")
		require.Equal(t, http.StatusOK, stats.status)
		require.EqualValues(t, 1, stats.obj(t)["rate_limited"])

		// The key was not used: once admitted, the same request executes anew.
		h.sim.limiter.SetLimit(rate.Inf)
		again := h.charge(cus, pm, 100, "inv_3", "k3")
		require.Equal(t, http.StatusOK, again.status)
		require.Empty(t, again.header.Get("Idempotent-Replayed"))
		require.Len(t, h.sim.Ledger(), 3)
		require.EqualValues(t, 1, h.sim.Stats().RateLimited)
	})
	t.Run("checked before faults", func(t *testing.T) {
		h := newHarness(t, Options{RateLimit: 0.001, RateBurst: 1, Faults: Faults{Error5xxBefore: 1}})
		require.Equal(t, http.StatusInternalServerError, h.post("/v1/customers", map[string]any{}, "").status)
		require.Equal(t, http.StatusTooManyRequests, h.post("/v1/customers", map[string]any{}, "").status)
		st := h.sim.Stats()
		require.EqualValues(t, 1, st.RateLimited)
		require.Equal(t, FaultCounts{Error5xxBefore: 1}, st.Faults, "a refused request draws no fault")
	})
	t.Run("checked before authentication", func(t *testing.T) {
		h := newHarness(t, Options{RateLimit: 0.001, RateBurst: 1})
		require.Equal(t, http.StatusNotFound, h.get("/v1/nope").status)
		req := h.newRequest(http.MethodGet, "/v1/nope", nil, "")
		req.Header.Del("Authorization")
		r, err := h.send(h.client, req)
		require.NoError(t, err)
		require.Equal(t, http.StatusTooManyRequests, r.status)
	})
	t.Run("the 429 fault is not the rate limit", func(t *testing.T) {
		h := newHarness(t, Options{Faults: Faults{RateLimit: 1}})
		require.Equal(t, http.StatusTooManyRequests, h.post("/v1/customers", map[string]any{}, "").status)
		st := h.sim.Stats()
		require.Zero(t, st.RateLimited)
		require.EqualValues(t, 1, st.Faults.RateLimit)
	})
	t.Run("unlimited by default", func(t *testing.T) {
		h := newHarness(t, Options{})
		require.Nil(t, h.sim.limiter)
		for range 50 {
			require.Equal(t, http.StatusOK, h.post("/v1/customers", map[string]any{}, "").status)
		}
		require.Zero(t, h.sim.Stats().RateLimited)
	})
	t.Run("burst", func(t *testing.T) {
		tests := []struct {
			limit float64
			burst int
			want  int
		}{
			{100, 0, 100},
			{2.5, 0, 3},
			{0.2, 0, 1},
			{1, 7, 7},
			{1e12, 0, 1<<31 - 1},
		}
		for _, tc := range tests {
			s := New(Options{RateLimit: tc.limit, RateBurst: tc.burst})
			require.Equal(t, tc.want, s.limiter.Burst(), "limit %v burst %d", tc.limit, tc.burst)
			require.Equal(t, rate.Limit(tc.limit), s.limiter.Limit())
		}
		for _, limit := range []float64{0, -1} {
			require.Nil(t, New(Options{RateLimit: limit, RateBurst: 5}).limiter, "unlimited")
		}
	})
}
