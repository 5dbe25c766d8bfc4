package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFault5xxBeforeRecordsNothing(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	h.sim.SetFaults(Faults{Error5xxBefore: 1})
	r := h.charge(cus, pm, 100, "inv_1", "k")
	require.Equal(t, http.StatusInternalServerError, r.status)
	require.Equal(t, "api_error", r.errObj(t)["type"])
	require.Empty(t, h.sim.Ledger())
	require.EqualValues(t, 1, h.sim.Stats().Faults.Error5xxBefore)

	h.sim.SetFaults(Faults{})
	again := h.charge(cus, pm, 100, "inv_1", "k")
	require.Equal(t, http.StatusOK, again.status)
	require.Empty(t, again.header.Get("Idempotent-Replayed"), "the first try stored nothing")
	require.Len(t, h.sim.Ledger(), 1)
}

func TestFault5xxAfterThenReplay(t *testing.T) {
	for _, number := range []string{"4242424242424242", "4000000000000002"} {
		t.Run(number, func(t *testing.T) {
			h := newHarness(t, Options{})
			cus, pm := h.chargeTarget(number)
			h.sim.SetFaults(Faults{Error5xxAfter: 1})
			r := h.charge(cus, pm, 100, "inv_1", "k")
			require.Equal(t, http.StatusInternalServerError, r.status)
			require.Equal(t, "api_error", r.errObj(t)["type"])
			ledger := h.sim.Ledger()
			require.Len(t, ledger, 1, "charged although the answer was a 500")

			// Retrying while the fault persists keeps failing, without charging again.
			require.Equal(t, http.StatusInternalServerError, h.charge(cus, pm, 100, "inv_1", "k").status)

			h.sim.SetFaults(Faults{})
			replay := h.charge(cus, pm, 100, "inv_1", "k")
			require.Equal(t, "true", replay.header.Get("Idempotent-Replayed"))
			var pi map[string]any
			if replay.status == http.StatusOK {
				pi = replay.obj(t)
				require.Equal(t, "succeeded", pi["status"])
			} else {
				require.Equal(t, http.StatusPaymentRequired, replay.status)
				pi = replay.errObj(t)["payment_intent"].(map[string]any)
			}
			require.Equal(t, ledger[0].ID, pi["id"])
			require.Len(t, h.sim.Ledger(), 1, "exactly one intent")
			st := h.sim.Stats()
			require.EqualValues(t, 2, st.Faults.Error5xxAfter)
			require.EqualValues(t, 2, st.Replays)
		})
	}
}

func TestFaultRateLimit(t *testing.T) {
	tests := []struct {
		retryAfter time.Duration
		header     string
	}{
		{0, "1"},
		{time.Second, "1"},
		{1500 * time.Millisecond, "2"},
		{10 * time.Millisecond, "1"},
		{3 * time.Second, "3"},
	}
	for _, tc := range tests {
		t.Run(tc.retryAfter.String(), func(t *testing.T) {
			h := newHarness(t, Options{})
			cus, pm := h.chargeTarget("4242424242424242")
			h.sim.SetFaults(Faults{RateLimit: 1, RetryAfter: tc.retryAfter})
			r := h.charge(cus, pm, 100, "inv_1", "k")
			require.Equal(t, http.StatusTooManyRequests, r.status)
			require.Equal(t, tc.header, r.header.Get("Retry-After"))
			e := r.errObj(t)
			require.Equal(t, "api_error", e["type"])
			require.Equal(t, "rate_limit", e["code"])
			require.Empty(t, h.sim.Ledger())
			require.EqualValues(t, 1, h.sim.Stats().Faults.RateLimit)
		})
	}
}

func TestFaultDropClosesConnectionAfterRecording(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	h.sim.SetFaults(Faults{Drop: 1})

	// A fresh connection per request, so net/http cannot transparently retry the
	// request on another connection and hide the drop.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	_, err := h.send(fresh, h.newRequest(http.MethodPost, "/v1/payment_intents", chargeBody(cus, pm, 100, "inv_1"), "k"))
	require.Error(t, err, "no response at all")
	require.Len(t, h.sim.Ledger(), 1, "the charge was recorded")
	require.Equal(t, "succeeded", h.sim.Ledger()[0].Status)
	require.EqualValues(t, 1, h.sim.Stats().Faults.Drop)

	// Another try on a kept-alive connection is faulted too, and a faulted
	// answer never claims to be a replay.
	h.sim.SetFaults(Faults{Error5xxAfter: 1})
	faulted := h.charge(cus, pm, 100, "inv_1", "k")
	require.Equal(t, http.StatusInternalServerError, faulted.status)
	require.Empty(t, faulted.header.Get("Idempotent-Replayed"))

	h.sim.SetFaults(Faults{})
	replay := h.charge(cus, pm, 100, "inv_1", "k")
	require.Equal(t, http.StatusOK, replay.status)
	require.Equal(t, "true", replay.header.Get("Idempotent-Replayed"))
	require.Equal(t, h.sim.Ledger()[0].ID, replay.obj(t)["id"])
	require.Len(t, h.sim.Ledger(), 1)
}

func TestFaultDropWithoutHijacker(t *testing.T) {
	s := New(Options{Faults: Faults{Drop: 1}})
	req, err := http.NewRequest(http.MethodPost, "http://sim.test/v1/customers", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.SetBasicAuth(testKey, "")
	require.PanicsWithValue(t, http.ErrAbortHandler, func() { s.ServeHTTP(nonHijackable{httpRecorder()}, req) })
}

func TestFaultSlow(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	h.sim.SetFaults(Faults{Slow: 1, SlowDelay: 100 * time.Millisecond})

	start := time.Now()
	r := h.charge(cus, pm, 100, "inv_1", "k1")
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	require.Equal(t, http.StatusOK, r.status)

	impatient := &http.Client{Timeout: 20 * time.Millisecond}
	_, err := h.send(impatient, h.newRequest(http.MethodPost, "/v1/payment_intents", chargeBody(cus, pm, 100, "inv_2"), "k2"))
	require.Error(t, err)
	require.Eventually(t, func() bool { return len(h.sim.Ledger()) == 2 }, time.Second, 5*time.Millisecond,
		"the timed-out charge is recorded")
	require.EqualValues(t, 2, h.sim.Stats().Faults.Slow)
}

func TestFaultsApplyOnlyToAPI(t *testing.T) {
	h := newHarness(t, Options{Faults: Faults{Error5xxBefore: 1}})
	for _, path := range []string{"/healthz", "/_sim/ledger", "/_sim/stats", "/_sim/events", "/_sim/faults"} {
		res, err := http.Get(h.srv.URL + path)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode, path)
	}
	require.Equal(t, http.StatusInternalServerError, h.get("/v1/customers/cus_1").status)
	require.EqualValues(t, 1, h.sim.Stats().Requests)
}

// outcomes sends n requests one by one and records what each got.
func outcomes(t *testing.T, seed int64, n int) []int {
	h := newHarness(t, Options{Seed: seed, Faults: Faults{
		Error5xxBefore: 0.15, Error5xxAfter: 0.15, RateLimit: 0.15, Drop: 0.15,
	}})
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	out := make([]int, n)
	for i := range out {
		r, err := h.send(fresh, h.newRequest(http.MethodGet, "/v1/customers/cus_nope", nil, ""))
		if err != nil {
			out[i] = -1 // dropped
			continue
		}
		out[i] = r.status
		if r.status == http.StatusInternalServerError && strings.Contains(string(r.body), "after processing") {
			out[i] = 501 // tell 5xx-after from 5xx-before
		}
	}
	return out
}

func TestFaultDecisionsAreDeterministic(t *testing.T) {
	a := outcomes(t, 42, 80)
	b := outcomes(t, 42, 80)
	c := outcomes(t, 43, 80)
	require.Equal(t, a, b, "same seed, same request order, same faults")
	require.NotEqual(t, a, c)
	kinds := map[int]int{}
	for _, o := range a {
		kinds[o]++
	}
	for _, k := range []int{-1, 404, 429, 500, 501} {
		require.Positive(t, kinds[k], "outcome %d never happened: %v", k, kinds)
	}
}

func TestDrawFaultPartition(t *testing.T) {
	s := New(Options{Seed: 7, Faults: Faults{Error5xxBefore: 0.1, RateLimit: 0.2, Error5xxAfter: 0.3, Drop: 0.4, Slow: 0.5, SlowDelay: time.Millisecond}})
	counts := map[faultKind]int{}
	slow := 0
	const n = 20000
	for range n {
		d := s.drawFault()
		counts[d.kind]++
		if d.slow {
			slow++
		}
	}
	within := func(got int, p float64) {
		require.InDelta(t, p, float64(got)/n, 0.02)
	}
	within(counts[fault5xxBefore], 0.1)
	within(counts[faultRateLimit], 0.2)
	within(counts[fault5xxAfter], 0.3)
	within(counts[faultDrop], 0.4)
	within(counts[faultNone], 0)
	within(slow, 0.5)
}

func TestPutFaults(t *testing.T) {
	h := newHarness(t, Options{})
	put := func(body string) (int, string) {
		req, err := http.NewRequest(http.MethodPut, h.srv.URL+"/_sim/faults", strings.NewReader(body))
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	status, body := put(`{"error_5xx_after": 0.25, "drop": 0.1, "retry_after": "2s", "slow": 0.5, "slow_delay": 1000000}`)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, Faults{Error5xxAfter: 0.25, Drop: 0.1, RetryAfter: 2 * time.Second, Slow: 0.5, SlowDelay: time.Millisecond}, h.sim.Faults())

	res, err := http.Get(h.srv.URL + "/_sim/faults")
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.NewDecoder(res.Body).Decode(&got))
	res.Body.Close()
	require.Equal(t, "2s", got["retry_after"])

	for _, tc := range []struct{ body, mention string }{
		{`{"drop": 1.5}`, "drop"},
		{`{"rate_limit": -0.1}`, "rate_limit"},
		{`{"error_5xx_before": 0.6, "error_5xx_after": 0.6}`, "error_5xx_before+error_5xx_after"},
		{`{"slow": 0.5}`, "slow_delay"},
		{`{"retry_after": "soon"}`, "invalid"},
		{`{"dorp": 0.1}`, "dorp"},
		{`not json`, "invalid"},
	} {
		status, body := put(tc.body)
		require.Equal(t, http.StatusBadRequest, status, tc.body)
		require.Contains(t, body, tc.mention)
	}
	require.Equal(t, 0.25, h.sim.Faults().Error5xxAfter, "rejected settings change nothing")
}

func TestControlEndpoints(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	h.charge(cus, pm, 100, "inv_1", "")
	h.charge(cus, pm, 100, "inv_1", "")

	res, err := http.Get(h.srv.URL + "/_sim/ledger")
	require.NoError(t, err)
	var ledger []LedgerEntry
	require.NoError(t, json.NewDecoder(res.Body).Decode(&ledger))
	res.Body.Close()
	require.Len(t, ledger, 2)
	require.Equal(t, "inv_1", ledger[0].MerchantOrderID)
	require.EqualValues(t, 100, ledger[0].Amount)
	require.Equal(t, "USD", ledger[0].Currency)
	require.Equal(t, cus, ledger[0].Customer)
	require.Equal(t, pm, ledger[0].PaymentMethod)
	require.True(t, ledger[0].OffSession)
	require.False(t, ledger[0].SucceededAt.IsZero())

	res, err = http.Get(h.srv.URL + "/_sim/stats")
	require.NoError(t, err)
	var st Stats
	require.NoError(t, json.NewDecoder(res.Body).Decode(&st))
	res.Body.Close()
	require.EqualValues(t, 2, st.PaymentIntents)
	require.EqualValues(t, 4, st.Requests) // customer, setup intent, two charges
}
