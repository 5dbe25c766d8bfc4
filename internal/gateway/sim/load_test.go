package sim

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConcurrentChargesExactlyOnce drives the simulator the way billingd's charge
// path does, under every fault at once: 64 workers, each retrying its invoices
// with the same idempotency key until the answer is definite. Afterwards every
// invoice has exactly one intent, and every definite answer matches the ledger.
func TestConcurrentChargesExactlyOnce(t *testing.T) {
	h := newHarness(t, Options{Seed: 99, Faults: Faults{
		Error5xxBefore: 0.1, Error5xxAfter: 0.1, RateLimit: 0.05, RetryAfter: time.Millisecond,
		Drop: 0.05, Slow: 0.02, SlowDelay: 5 * time.Millisecond,
	}})
	h.sim.SetFaults(Faults{})
	cus := h.customer()
	cards := []string{
		h.saveCard(cus, "4242424242424242"),
		h.saveCard(cus, "4000000000009995"),
		h.saveCard(cus, "4462030000000000"),
		h.saveCard(cus, "4000000000000259"),
	}
	h.sim.SetFaults(Faults{
		Error5xxBefore: 0.1, Error5xxAfter: 0.1, RateLimit: 0.05, RetryAfter: time.Millisecond,
		Drop: 0.05, Slow: 0.02, SlowDelay: 5 * time.Millisecond,
	})

	const workers, perWorker = 64, 12
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	type final struct {
		status int
		id     string
	}
	var mu sync.Mutex
	finals := map[string]final{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				order := fmt.Sprintf("inv_%d_%d", w, i)
				pm := cards[(w+i)%len(cards)]
				for try := 0; ; try++ {
					if try > 200 {
						t.Errorf("%s: no definite answer after 200 tries", order)
						return
					}
					r, err := h.send(client, h.newRequest(http.MethodPost, "/v1/payment_intents", chargeBody(cus, pm, 100, order), order+"-a1"))
					if err != nil || r.status >= 500 || r.status == 409 || r.status == 429 {
						continue // transient: same key again
					}
					var id string
					switch r.status {
					case http.StatusOK:
						id, _ = r.obj(t)["id"].(string)
					case http.StatusPaymentRequired:
						id, _ = r.errObj(t)["payment_intent"].(map[string]any)["id"].(string)
					default:
						t.Errorf("%s: unexpected %d %s", order, r.status, r.body)
					}
					mu.Lock()
					finals[order] = final{r.status, id}
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	h.sim.SetFaults(Faults{})

	ledger := h.sim.Ledger()
	require.Len(t, finals, workers*perWorker)
	require.Len(t, ledger, workers*perWorker, "exactly one intent per invoice")
	byOrder := map[string]LedgerEntry{}
	for _, e := range ledger {
		_, dup := byOrder[e.MerchantOrderID]
		require.False(t, dup, "second intent for %s", e.MerchantOrderID)
		byOrder[e.MerchantOrderID] = e
	}
	for order, f := range finals {
		require.Equal(t, byOrder[order].ID, f.id, order)
	}
	st := h.sim.Stats()
	require.Positive(t, st.Faults.Error5xxBefore)
	require.Positive(t, st.Faults.Error5xxAfter)
	require.Positive(t, st.Faults.Drop)
	require.Positive(t, st.Replays)
	t.Logf("requests=%d replays=%d conflicts=%d faults=%+v", st.Requests, st.Replays, st.Conflicts, st.Faults)
}

// TestConcurrentSameKey fires one request 32 times at once: one intent, and every
// answer is either the original, its replay, or a 409.
func TestConcurrentSameKey(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	var wg sync.WaitGroup
	statuses := make([]int, 32)
	for i := range statuses {
		wg.Go(func() {
			r, err := h.send(h.client, h.newRequest(http.MethodPost, "/v1/payment_intents", chargeBody(cus, pm, 100, "inv_1"), "k"))
			if err == nil {
				statuses[i] = r.status
			}
		})
	}
	wg.Wait()
	for _, s := range statuses {
		require.Contains(t, []int{200, 409}, s)
	}
	require.Len(t, h.sim.Ledger(), 1)
}
