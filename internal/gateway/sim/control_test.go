package sim

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// postBehaviour calls the card-behaviour control route without credentials,
// as a test driving a separate simulator process does.
func (h *harness) postBehaviour(t *testing.T, pm, body string) resp {
	t.Helper()
	res, err := http.Post(h.srv.URL+"/_sim/payment_methods/"+pm+"/behaviour", "text/plain", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// chargeOutcome charges pm and returns the intent's status and decline code,
// from the intent itself or, for a decline (402), from the error's intent.
func (h *harness) chargeOutcome(t *testing.T, cus, pm, order string) (status, decline string) {
	t.Helper()
	r := h.charge(cus, pm, 1000, order, "")
	pi := r.obj(t)
	if e, ok := pi["error"].(map[string]any); ok {
		require.Equal(t, http.StatusPaymentRequired, r.status, "%s", r.body)
		decline, _ = e["decline_code"].(string)
		pi, ok = e["payment_intent"].(map[string]any)
		require.True(t, ok, "a decline carries its intent: %s", r.body)
	}
	require.Contains(t, []int{http.StatusOK, http.StatusPaymentRequired}, r.status, "%s", r.body)
	return pi["status"].(string), decline
}

func TestControlCardBehaviour(t *testing.T) {
	h := newHarness(t, Options{})
	for i, tc := range []struct {
		name      string
		saved     string // the card the customer saved
		behaviour string // the body posted
		before    string // status of a charge before the change
		after     string // status of a charge after it
		decline   string // decline_code after, for a decline
	}{
		{name: "topped up: insufficient funds then accepted", saved: "4000000000009995", behaviour: "4242424242424242", before: "requires_payment_method", after: "succeeded"},
		{name: "spaces and dashes as typed", saved: "4000000000009995", behaviour: " 4242-4242 4242 4242\n", before: "requires_payment_method", after: "succeeded"},
		{name: "a good card reported lost", saved: "4242424242424242", behaviour: "4000000000009987", before: "succeeded", after: "requires_payment_method", decline: "lost_card"},
		{name: "a good card now asks for 3-D Secure", saved: "4111111111111111", behaviour: "4462030000000000", before: "succeeded", after: "requires_action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cus, pm := h.chargeTarget(tc.saved)
			before, _ := h.chargeOutcome(t, cus, pm, fmt.Sprintf("inv_before_%d", i))
			require.Equal(t, tc.before, before)

			r := h.postBehaviour(t, pm, tc.behaviour)
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			m := r.obj(t)
			require.Equal(t, pm, m["id"])
			require.Equal(t, tc.saved[len(tc.saved)-4:], m["card"].(map[string]any)["last4"], "the card keeps its last 4")
			require.NotContains(t, string(r.body), normalizeCardNumber(strings.TrimSpace(tc.behaviour)), "the number is not echoed")

			after, decline := h.chargeOutcome(t, cus, pm, fmt.Sprintf("inv_after_%d", i))
			require.Equal(t, tc.after, after)
			require.Equal(t, tc.decline, decline)
		})
	}
}

func TestControlCardBehaviourRefusals(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4000000000009995")
	for _, tc := range []struct {
		name   string
		pm     string
		body   string
		status int
	}{
		{name: "unknown payment method", pm: "pm_nope", body: "4242424242424242", status: http.StatusNotFound},
		{name: "empty body", pm: pm, body: "", status: http.StatusBadRequest},
		{name: "not digits", pm: pm, body: `{"number":"4242424242424242"}`, status: http.StatusBadRequest},
		{name: "fails the Luhn check", pm: pm, body: "4242424242424241", status: http.StatusBadRequest},
		{name: "too short", pm: pm, body: "42424242", status: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.postBehaviour(t, tc.pm, tc.body)
			require.Equal(t, tc.status, r.status, "%s", r.body)
			require.Equal(t, "invalid_request_error", r.errObj(t)["type"])
		})
	}
	// A refused request changed nothing: the card still declines.
	status, decline := h.chargeOutcome(t, cus, pm, "inv_after_refusals")
	require.Equal(t, "requires_payment_method", status)
	require.Equal(t, "insufficient_funds", decline)
}
