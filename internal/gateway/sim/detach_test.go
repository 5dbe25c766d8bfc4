package sim

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDetachPaymentMethod(t *testing.T) {
	h := newHarness(t, Options{})
	cus := h.customer()
	pm := h.saveCard(cus, "4242424242424242")
	require.Equal(t, http.StatusOK, h.charge(cus, pm, 500, "inv_before", "k-before").status, "attached: it charges")

	r := h.post("/v1/payment_methods/"+pm+"/detach", nil, "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Nil(t, r.obj(t)["customer"], "a detached method has no customer")

	got := h.get("/v1/payment_methods/" + pm).obj(t)
	require.Nil(t, got["customer"], "it still reads by id")
	list := h.get("/v1/customers/" + cus + "/payment_methods").obj(t)
	require.Empty(t, list["data"], "it left the customer's list")

	c := h.charge(cus, pm, 500, "inv_after", "k-after")
	require.Equal(t, http.StatusBadRequest, c.status, "%s", c.body)
	e := c.errObj(t)
	require.Equal(t, "invalid_request_error", e["type"])
	require.Equal(t, "payment_method", e["param"])

	again := h.post("/v1/payment_methods/"+pm+"/detach", nil, "")
	require.Equal(t, http.StatusBadRequest, again.status, "detaching twice is refused")
	require.Equal(t, http.StatusNotFound, h.post("/v1/payment_methods/pm_nope/detach", nil, "").status)
}

func TestDetachPaymentMethodInProcess(t *testing.T) {
	h := newHarness(t, Options{})
	cus := h.customer()
	pm := h.saveCard(cus, "4242424242424242")
	require.NoError(t, h.sim.DetachPaymentMethod(pm))
	require.Error(t, h.sim.DetachPaymentMethod(pm), "already detached")
	require.Error(t, h.sim.DetachPaymentMethod("pm_nope"))
	require.Equal(t, http.StatusBadRequest, h.charge(cus, pm, 500, "inv_1", "k1").status)
}
