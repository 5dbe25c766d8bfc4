package sim

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIdempotentReplay(t *testing.T) {
	tests := []struct {
		name   string
		number string
		status int
	}{
		{"success", "4242424242424242", http.StatusOK},
		{"decline", "4000000000009995", http.StatusPaymentRequired},
		{"3-D Secure", "4462030000000000", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			cus, pm := h.chargeTarget(tc.number)
			first := h.charge(cus, pm, 2500, "inv_1", "inv_1-a1")
			require.Equal(t, tc.status, first.status)
			require.Empty(t, first.header.Get("Idempotent-Replayed"))
			require.Equal(t, "inv_1-a1", first.header.Get("Idempotency-Key"))

			// Same parameters in another key order and spacing: still the same request.
			raw := `{ "metadata": {"invoice": "inv_1"}, "merchant_order_id": "inv_1", "payment_method": "` + pm +
				`", "customer": "` + cus + `", "off_session": true, "confirm": true, "currency": "USD", "amount": 2500,
				"description": "subscription", "return_url": "https://merchant.example/pay/return" }`
			for _, body := range []any{chargeBody(cus, pm, 2500, "inv_1"), raw} {
				again := h.post("/v1/payment_intents", body, "inv_1-a1")
				require.Equal(t, tc.status, again.status)
				require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
				require.Equal(t, string(first.body), string(again.body), "byte-identical replay")
			}
			require.Len(t, h.sim.Ledger(), 1)
			require.EqualValues(t, 2, h.sim.Stats().Replays)
		})
	}
}

func TestIdempotencyReplayIsTheFirstAnswer(t *testing.T) {
	// The replay is the stored answer, not the intent's current state.
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4462030000000000")
	first := h.charge(cus, pm, 100, "inv_1", "k1")
	id := first.obj(t)["id"].(string)
	require.NoError(t, h.sim.PassChallenge(id))
	again := h.charge(cus, pm, 100, "inv_1", "k1")
	require.Equal(t, "requires_action", again.obj(t)["status"])
	require.Equal(t, "succeeded", h.get("/v1/payment_intents/" + id).obj(t)["status"])
}

func TestIdempotencyDifferentParameters(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	require.Equal(t, http.StatusOK, h.charge(cus, pm, 2500, "inv_1", "key-1").status)
	r := h.charge(cus, pm, 2600, "inv_1", "key-1")
	require.Equal(t, http.StatusBadRequest, r.status)
	e := r.errObj(t)
	require.Equal(t, "idempotency_error", e["type"])
	require.Contains(t, e["message"], "key-1")
	require.Empty(t, r.header.Get("Idempotent-Replayed"))
	require.Len(t, h.sim.Ledger(), 1)
	require.EqualValues(t, 1, h.sim.Stats().IdempotencyMismatches)
}

func TestIdempotencyKeysAreScopedByPath(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	b := chargeBody(cus, pm, 100, "inv_1")
	b["confirm"] = false
	pi := h.post("/v1/payment_intents", b, "same").obj(t)
	c := h.post("/v1/payment_intents/"+pi["id"].(string)+"/confirm", map[string]any{}, "same")
	require.Equal(t, http.StatusOK, c.status)
	require.Empty(t, c.header.Get("Idempotent-Replayed"))
	require.Equal(t, "succeeded", c.obj(t)["status"])
}

func TestIdempotencyRejectedRequestsAreNotStored(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")

	bad := chargeBody(cus, pm, 0, "inv_1")
	require.Equal(t, http.StatusBadRequest, h.post("/v1/payment_intents", bad, "k").status)
	require.Equal(t, http.StatusBadRequest, h.post("/v1/payment_intents", `{"amount":`, "k").status)
	// Unauthenticated: rejected before executing.
	req := h.newRequest(http.MethodPost, "/v1/payment_intents", chargeBody(cus, pm, 100, "inv_1"), "k")
	req.SetBasicAuth("sk_test_wrong", "")
	r, err := h.send(h.client, req)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, r.status)

	good := h.charge(cus, pm, 100, "inv_1", "k")
	require.Equal(t, http.StatusOK, good.status)
	require.Empty(t, good.header.Get("Idempotent-Replayed"))
	require.Len(t, h.sim.Ledger(), 1)

	t.Run("executed failures are stored", func(t *testing.T) {
		nf := h.charge(cus, "pm_nope", 100, "inv_2", "k2")
		require.Equal(t, http.StatusNotFound, nf.status)
		again := h.charge(cus, "pm_nope", 100, "inv_2", "k2")
		require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	})
	t.Run("key too long", func(t *testing.T) {
		r := h.charge(cus, pm, 100, "inv_3", strings.Repeat("k", 256))
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Len(t, h.sim.Ledger(), 1)
	})
}

func TestIdempotencyWithoutKeyIsNotDeduplicated(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	h.charge(cus, pm, 100, "inv_1", "")
	h.charge(cus, pm, 100, "inv_1", "")
	require.Len(t, h.sim.Ledger(), 2)
}

func TestIdempotencyKeyInFlight(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")

	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h.sim.mu.Lock()
	h.sim.testHookExecuting = func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	h.sim.mu.Unlock()
	firstDone := make(chan resp)
	go func() {
		r, err := h.send(h.client, h.newRequest(http.MethodPost, "/v1/payment_intents", chargeBody(cus, pm, 100, "inv_1"), "k"))
		if err != nil {
			r.status = -1
		}
		firstDone <- r
	}()
	<-entered

	conflict := h.charge(cus, pm, 100, "inv_1", "k")
	require.Equal(t, http.StatusConflict, conflict.status)
	e := conflict.errObj(t)
	require.Equal(t, "idempotency_error", e["type"])
	require.Equal(t, "idempotency_key_in_use", e["code"])
	// Different parameters while in flight: still 409, the first request decides.
	require.Equal(t, http.StatusConflict, h.charge(cus, pm, 999, "inv_1", "k").status)

	close(release)
	first := <-firstDone
	require.Equal(t, http.StatusOK, first.status)
	replay := h.charge(cus, pm, 100, "inv_1", "k")
	require.Equal(t, "true", replay.header.Get("Idempotent-Replayed"))
	require.Equal(t, string(first.body), string(replay.body))
	require.Len(t, h.sim.Ledger(), 1)
	require.EqualValues(t, 2, h.sim.Stats().Conflicts)
}

func TestIdempotencyKeysExpireAfter24h(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, Options{Now: clock.Now})
	cus, pm := h.chargeTarget("4242424242424242")
	h.charge(cus, pm, 100, "inv_1", "k")

	clock.Advance(24*time.Hour - time.Second)
	require.Equal(t, "true", h.charge(cus, pm, 100, "inv_1", "k").header.Get("Idempotent-Replayed"))
	require.Len(t, h.sim.Ledger(), 1)

	clock.Advance(time.Second)
	r := h.charge(cus, pm, 100, "inv_1", "k")
	require.Empty(t, r.header.Get("Idempotent-Replayed"), "forgotten after 24h")
	require.Len(t, h.sim.Ledger(), 2)
}

func TestExpireIdempotencyKeysSweep(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, Options{Now: clock.Now})
	cus, pm := h.chargeTarget("4242424242424242")
	h.charge(cus, pm, 100, "inv_1", "a")
	clock.Advance(time.Hour)
	h.charge(cus, pm, 100, "inv_2", "b")
	clock.Advance(23 * time.Hour)

	h.sim.expireIdempotencyKeys()
	h.sim.mu.Lock()
	require.Len(t, h.sim.idem, 1)
	require.Len(t, h.sim.idemQueue, 1)
	h.sim.mu.Unlock()
	require.Equal(t, "true", h.charge(cus, pm, 100, "inv_2", "b").header.Get("Idempotent-Replayed"))
}
