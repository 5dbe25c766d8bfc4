package sim

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// listIDs lists payment intents with query and returns their ids, newest
// first, and has_more.
func (h *harness) listIDs(query string) ([]string, bool) {
	h.t.Helper()
	r := h.get("/v1/payment_intents?" + query)
	require.Equal(h.t, http.StatusOK, r.status, "%s", r.body)
	m := r.obj(h.t)
	require.Equal(h.t, "list", m["object"])
	var ids []string
	for _, d := range m["data"].([]any) {
		ids = append(ids, d.(map[string]any)["id"].(string))
	}
	return ids, m["has_more"].(bool)
}

func TestListPaymentIntents(t *testing.T) {
	clk := newFakeClock()
	h := newHarness(t, Options{Now: clk.Now})
	cus, pm := h.chargeTarget("4242424242424242")
	var ids []string
	var created []int64
	for i := 0; i < 5; i++ {
		r := h.charge(cus, pm, 100, fmt.Sprintf("inv_%d", i), fmt.Sprintf("k%d", i))
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		ids = append(ids, r.obj(t)["id"].(string))
		created = append(created, clk.Now().Unix())
		clk.Advance(time.Hour)
	}
	newestFirst := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}

	t.Run("all, newest first", func(t *testing.T) {
		got, more := h.listIDs("limit=100")
		require.Equal(t, newestFirst, got)
		require.False(t, more)
	})
	t.Run("created filters, in Unix seconds", func(t *testing.T) {
		for _, c := range []struct {
			query string
			want  []string
		}{
			{fmt.Sprintf("created[gte]=%d", created[2]), newestFirst[:3]},
			{fmt.Sprintf("created[gt]=%d", created[2]), newestFirst[:2]},
			{fmt.Sprintf("created[lte]=%d", created[2]), newestFirst[2:]},
			{fmt.Sprintf("created[lt]=%d", created[2]), newestFirst[3:]},
			{fmt.Sprintf("created[gte]=%d&created[lt]=%d", created[1], created[3]), []string{ids[2], ids[1]}},
			{fmt.Sprintf("created[gte]=%d", created[4]+1), nil},
		} {
			got, more := h.listIDs(c.query)
			require.Equal(t, c.want, got, c.query)
			require.False(t, more, c.query)
		}
	})
	t.Run("pages by limit and starting_after", func(t *testing.T) {
		var all []string
		after := ""
		for pages := 1; ; pages++ {
			q := fmt.Sprintf("limit=2&created[gte]=%d", created[1])
			if after != "" {
				q += "&starting_after=" + after
			}
			got, more := h.listIDs(q)
			require.LessOrEqual(t, len(got), 2)
			all = append(all, got...)
			if !more {
				require.Equal(t, 2, pages)
				break
			}
			after = got[len(got)-1]
		}
		require.Equal(t, newestFirst[:4], all)
	})
	t.Run("the default page is 10", func(t *testing.T) {
		got, _ := h.listIDs("")
		require.Len(t, got, 5)
	})
	t.Run("bad parameters are refused, naming the parameter", func(t *testing.T) {
		for q, param := range map[string]string{
			"limit=0":                   "limit",
			"limit=101":                 "limit",
			"created[gte]=yesterday":    "created[gte]",
			"created[lt]=-1":            "created[lt]",
			"starting_after=pi_missing": "starting_after",
			"customer=" + cus:           "customer",
		} {
			r := h.get("/v1/payment_intents?" + q)
			require.Equal(t, http.StatusBadRequest, r.status, q)
			require.Equal(t, param, r.errObj(t)["param"], q)
		}
	})
	t.Run("auth and faults apply as on every route", func(t *testing.T) {
		req := h.newRequest(http.MethodGet, "/v1/payment_intents", nil, "")
		req.SetBasicAuth("sk_test_wrong", "")
		r, err := h.send(h.client, req)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, r.status)

		h.sim.SetFaults(Faults{Error5xxBefore: 1})
		require.Equal(t, http.StatusInternalServerError, h.get("/v1/payment_intents").status)
		h.sim.SetFaults(Faults{})
		got, _ := h.listIDs("limit=1")
		require.Equal(t, newestFirst[:1], got)
	})
}
