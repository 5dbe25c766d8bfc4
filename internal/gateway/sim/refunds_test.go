package sim

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func (h *harness) succeededIntent(amount int64, order string) string {
	h.t.Helper()
	cus, pm := h.chargeTarget("4242424242424242")
	r := h.charge(cus, pm, amount, order, order+"-a1")
	require.Equal(h.t, http.StatusOK, r.status, "%s", r.body)
	return r.obj(h.t)["id"].(string)
}

func TestRefundCreateAndRetrieve(t *testing.T) {
	h := newHarness(t, Options{})
	pi := h.succeededIntent(1000, "inv_1")
	r := h.post("/v1/refunds", map[string]any{"payment_intent": pi, "amount": 400, "reason": "duplicate",
		"metadata": map[string]string{"invoice": "inv_1"}}, "r1")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	m := r.obj(t)
	require.Equal(t, "refund", m["object"])
	require.Equal(t, "succeeded", m["status"])
	require.EqualValues(t, 400, m["amount"])
	require.Equal(t, pi, m["payment_intent"])
	got := h.get("/v1/refunds/" + m["id"].(string))
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, m["id"], got.obj(t)["id"])
	require.Equal(t, http.StatusNotFound, h.get("/v1/refunds/re_nope").status)

	require.Equal(t, []RefundEntry{{ID: m["id"].(string), PaymentIntent: pi, MerchantOrderID: "inv_1", Amount: 400,
		Currency: "USD", Status: "succeeded", Reason: "duplicate", Created: h.sim.Refunds()[0].Created}}, h.sim.Refunds())
	require.EqualValues(t, 400, h.sim.Ledger()[0].AmountRefunded)
	var types []string
	for _, ev := range h.sim.Events() {
		types = append(types, ev.Type)
	}
	require.Contains(t, types, "charge.refund.updated")
}

func TestRefundNeverExceedsTheCharge(t *testing.T) {
	h := newHarness(t, Options{})
	pi := h.succeededIntent(1000, "inv_1")
	require.Equal(t, http.StatusOK, h.post("/v1/refunds", map[string]any{"payment_intent": pi, "amount": 600}, "a").status)
	r := h.post("/v1/refunds", map[string]any{"payment_intent": pi, "amount": 401}, "b")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, "amount_too_large", r.errObj(t)["code"])
	r = h.post("/v1/refunds", map[string]any{"payment_intent": pi}, "c") // the rest
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.EqualValues(t, 400, r.obj(t)["amount"])
	r = h.post("/v1/refunds", map[string]any{"payment_intent": pi, "amount": 1}, "d")
	require.Equal(t, "charge_already_refunded", r.errObj(t)["code"])
	require.Len(t, h.sim.Refunds(), 2)

	cus, pm := h.chargeTarget("4000000000000002") // declined: nothing to refund
	declined := h.charge(cus, pm, 100, "inv_2", "inv_2-a1").errObj(t)["payment_intent"].(map[string]any)["id"].(string)
	r = h.post("/v1/refunds", map[string]any{"payment_intent": declined}, "e")
	require.Equal(t, "charge_not_succeeded", r.errObj(t)["code"])
}

func TestRefundIdempotencyAndFaults(t *testing.T) {
	h := newHarness(t, Options{})
	pi := h.succeededIntent(1000, "inv_1")
	body := map[string]any{"payment_intent": pi, "amount": 1000, "reason": "duplicate"}
	h.sim.SetFaults(Faults{Error5xxAfter: 1})
	require.Equal(t, http.StatusInternalServerError, h.post("/v1/refunds", body, "k").status)
	require.Len(t, h.sim.Refunds(), 1, "the refund is recorded behind the 500")
	h.sim.SetFaults(Faults{})
	replay := h.post("/v1/refunds", body, "k")
	require.Equal(t, http.StatusOK, replay.status)
	require.Equal(t, "true", replay.header.Get("Idempotent-Replayed"))
	require.Equal(t, h.sim.Refunds()[0].ID, replay.obj(t)["id"])
	other := h.post("/v1/refunds", map[string]any{"payment_intent": pi, "amount": 999}, "k")
	require.Equal(t, "idempotency_error", other.errObj(t)["type"])
	require.Len(t, h.sim.Refunds(), 1)
}

func TestDuplicateSuccess(t *testing.T) {
	h := newHarness(t, Options{})
	pi := h.succeededIntent(1200, "inv_1")
	r := h.post("/_sim/payment_intents/"+pi+"/duplicate", nil, "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	dup := r.obj(t)
	require.NotEqual(t, pi, dup["id"])
	require.Equal(t, "succeeded", dup["status"])
	require.Equal(t, "inv_1", dup["merchant_order_id"])
	ledger := h.sim.Ledger()
	require.Len(t, ledger, 2)
	for _, e := range ledger {
		require.Equal(t, "succeeded", e.Status)
		require.Equal(t, "inv_1", e.MerchantOrderID)
		require.EqualValues(t, 1200, e.Amount)
	}
	require.Equal(t, http.StatusNotFound, h.post("/_sim/payment_intents/pi_nope/duplicate", nil, "").status)
	cus, pm := h.chargeTarget("4000000000000002")
	declined := h.charge(cus, pm, 100, "inv_2", "inv_2-a1").errObj(t)["payment_intent"].(map[string]any)["id"].(string)
	_, err := h.sim.DuplicateSuccess(declined)
	require.ErrorIs(t, err, ErrNotSucceeded)
}
