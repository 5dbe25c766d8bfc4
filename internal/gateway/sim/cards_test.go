package sim

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTestCardOutcomes(t *testing.T) {
	tests := []struct {
		number      string
		httpStatus  int
		status      string
		code        string
		declineCode string
		event       string
	}{
		{"4111111111111111", 200, "succeeded", "", "", evtPISucceeded},
		{"4761344136141390", 200, "succeeded", "", "", evtPISucceeded},
		{"4242424242424242", 200, "succeeded", "", "", evtPISucceeded},
		{"5555555555554444", 200, "succeeded", "", "", evtPISucceeded}, // any other Luhn-valid number
		{"4462030000000000", 200, "requires_action", "", "", evtPIRequiresAction},
		{"4000000000009995", 402, "requires_payment_method", "card_declined", "insufficient_funds", evtPIPaymentFailed},
		{"4000000000000002", 402, "requires_payment_method", "card_declined", "generic_decline", evtPIPaymentFailed},
		{"4000000000000119", 402, "requires_payment_method", "processing_error", "processing_error", evtPIPaymentFailed},
		{"4000000000000069", 402, "requires_payment_method", "expired_card", "expired_card", evtPIPaymentFailed},
		{"4000000000009987", 402, "requires_payment_method", "card_declined", "lost_card", evtPIPaymentFailed},
		{"4000000000009979", 402, "requires_payment_method", "card_declined", "stolen_card", evtPIPaymentFailed},
		{"4000000000000259", 200, "processing", "", "", evtPIProcessing},
	}
	for _, tc := range tests {
		t.Run(tc.number, func(t *testing.T) {
			h := newHarness(t, Options{})
			cus, pm := h.chargeTarget(tc.number)
			r := h.charge(cus, pm, 2500, "inv_1", "inv_1-a1")
			require.Equal(t, tc.httpStatus, r.status, "%s", r.body)

			var pi map[string]any
			if tc.httpStatus == http.StatusPaymentRequired {
				e := r.errObj(t)
				require.Equal(t, "card_error", e["type"])
				require.Equal(t, tc.code, e["code"])
				require.Equal(t, tc.declineCode, e["decline_code"])
				require.NotEmpty(t, e["message"])
				pi = e["payment_intent"].(map[string]any)
				lpe := pi["last_payment_error"].(map[string]any)
				require.Equal(t, tc.declineCode, lpe["decline_code"])
				require.Equal(t, tc.code, lpe["code"])
			} else {
				pi = r.obj(t)
				require.Nil(t, pi["last_payment_error"])
			}
			require.Equal(t, "payment_intent", pi["object"])
			require.Equal(t, tc.status, pi["status"])
			require.Equal(t, "inv_1", pi["merchant_order_id"])
			require.Equal(t, pm, pi["payment_method"])
			require.Equal(t, true, pi["off_session"])

			id := pi["id"].(string)
			if tc.status == "requires_action" {
				na := pi["next_action"].(map[string]any)
				require.Equal(t, "challenge_redirect", na["type"])
				cr := na["challenge_redirect"].(map[string]any)
				require.Equal(t, h.srv.URL+"/3ds/"+id, cr["url"])
				require.Equal(t, "https://merchant.example/pay/return", cr["return_url"])
			} else {
				require.Nil(t, pi["next_action"])
			}
			if tc.status == "succeeded" {
				require.EqualValues(t, 2500, pi["amount_received"])
			} else {
				require.EqualValues(t, 0, pi["amount_received"])
			}

			// Retrieval agrees with the answer, and so does the ledger.
			g := h.get("/v1/payment_intents/" + id)
			require.Equal(t, http.StatusOK, g.status)
			require.Equal(t, tc.status, g.obj(t)["status"])
			ledger := h.sim.Ledger()
			require.Len(t, ledger, 1)
			require.Equal(t, tc.status, ledger[0].Status)
			require.Equal(t, tc.declineCode, ledger[0].DeclineCode)
			require.Equal(t, tc.status == "succeeded", !ledger[0].SucceededAt.IsZero())

			types := eventTypes(h.sim.Events())
			require.Equal(t, []string{evtSISucceeded, evtPICreated, tc.event}, types)
		})
	}
}

func TestSaveCardValidation(t *testing.T) {
	tests := []struct {
		name       string
		number     any
		expMonth   any
		httpStatus int
		code       string
	}{
		{"luhn failure", "4242424242424241", "12", 402, "incorrect_number"},
		{"not digits", "4242-4242-abcd-4242", "12", 402, "invalid_number"},
		{"too short", "42424242", "12", 402, "invalid_number"},
		{"bad month", "4242424242424242", "13", 402, "invalid_expiry_month"},
		{"numeric month accepted", "4242 4242 4242 4242", 7, 200, ""},
		{"missing number", "", "12", 400, "parameter_missing"},
		{"number not a string", 4242424242424242, "12", 400, "parameter_invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			cus := h.customer()
			body := setupBody(cus, "")
			card := body["payment_method_data"].(map[string]any)["card"].(map[string]any)
			card["number"] = tc.number
			card["exp_month"] = tc.expMonth
			r := h.post("/v1/setup_intents", body, "")
			require.Equal(t, tc.httpStatus, r.status, "%s", r.body)
			if tc.httpStatus == 200 {
				pm := h.get("/v1/payment_methods/" + r.obj(t)["payment_method"].(string)).obj(t)
				c := pm["card"].(map[string]any)
				require.EqualValues(t, 7, c["exp_month"])
				require.Equal(t, "4242", c["last4"])
				return
			}
			e := r.errObj(t)
			require.Equal(t, tc.code, e["code"])
			if tc.httpStatus == 402 {
				require.Equal(t, "card_error", e["type"])
				si := e["setup_intent"].(map[string]any)
				require.Equal(t, "requires_payment_method", si["status"])
				require.Nil(t, si["payment_method"])
			}
			list := h.get("/v1/customers/" + cus + "/payment_methods").obj(t)
			require.Empty(t, list["data"])
			require.Empty(t, h.sim.Events())
		})
	}
}

func TestChallengePassAndFail(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4462030000000000")

	t.Run("pass", func(t *testing.T) {
		r := h.charge(cus, pm, 1000, "inv_pass", "")
		id := r.obj(t)["id"].(string)
		require.NoError(t, h.sim.PassChallenge(id))
		pi := h.get("/v1/payment_intents/" + id).obj(t)
		require.Equal(t, "succeeded", pi["status"])
		require.Nil(t, pi["next_action"])
		require.ErrorIs(t, h.sim.PassChallenge(id), ErrUnexpectedState)
	})
	t.Run("fail then confirm again", func(t *testing.T) {
		r := h.charge(cus, pm, 1000, "inv_fail", "")
		id := r.obj(t)["id"].(string)
		require.NoError(t, h.sim.FailChallenge(id))
		pi := h.get("/v1/payment_intents/" + id).obj(t)
		require.Equal(t, "requires_payment_method", pi["status"])
		require.Equal(t, "payment_intent_authentication_failure", pi["last_payment_error"].(map[string]any)["code"])
		evs := h.sim.Events()
		require.Equal(t, evtPIPaymentFailed, evs[len(evs)-1].Type)

		c := h.post("/v1/payment_intents/"+id+"/confirm", map[string]any{"payment_method": pm, "off_session": false}, "")
		require.Equal(t, http.StatusOK, c.status, "%s", c.body)
		require.Equal(t, "requires_action", c.obj(t)["status"])
		require.Equal(t, false, c.obj(t)["off_session"])
	})
	t.Run("unknown intent", func(t *testing.T) {
		require.ErrorIs(t, h.sim.PassChallenge("pi_nope"), ErrNotFound)
		require.ErrorIs(t, h.sim.FailChallenge("pi_nope"), ErrNotFound)
	})
	t.Run("control endpoint", func(t *testing.T) {
		r := h.charge(cus, pm, 1000, "inv_ctl", "")
		id := r.obj(t)["id"].(string)
		res, err := http.Post(h.srv.URL+"/_sim/payment_intents/"+id+"/challenge?result=pass", "", nil)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		require.Equal(t, "succeeded", h.get("/v1/payment_intents/" + id).obj(t)["status"])

		res, err = http.Post(h.srv.URL+"/_sim/payment_intents/"+id+"/challenge?result=pass", "", nil)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusConflict, res.StatusCode)
	})
	t.Run("challenge page redirects to return_url", func(t *testing.T) {
		r := h.charge(cus, pm, 1000, "inv_page", "")
		next := r.obj(t)["next_action"].(map[string]any)["challenge_redirect"].(map[string]any)
		page, err := http.Get(next["url"].(string))
		require.NoError(t, err)
		page.Body.Close()
		require.Equal(t, http.StatusOK, page.StatusCode)

		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := noFollow.PostForm(next["url"].(string), url.Values{"result": {"fail"}})
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusSeeOther, res.StatusCode)
		loc, err := url.Parse(res.Header.Get("Location"))
		require.NoError(t, err)
		require.Equal(t, "merchant.example", loc.Host)
		require.Equal(t, "failed", loc.Query().Get("redirect_status"))
		require.Equal(t, r.obj(t)["id"], loc.Query().Get("payment_intent"))
	})
}

func TestPublicURLInChallenge(t *testing.T) {
	h := newHarness(t, Options{PublicURL: "https://sim.example/"})
	cus, pm := h.chargeTarget("4462030000000000")
	pi := h.charge(cus, pm, 1000, "inv_1", "").obj(t)
	url := pi["next_action"].(map[string]any)["challenge_redirect"].(map[string]any)["url"]
	require.Equal(t, "https://sim.example/3ds/"+pi["id"].(string), url)
}

func TestProcessingSettlesAfterDelay(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, Options{Now: clock.Now, ProcessingDelay: 30 * time.Second})
	cus, pm := h.chargeTarget("4000000000000259")
	r := h.charge(cus, pm, 4200, "inv_p", "")
	require.Equal(t, http.StatusOK, r.status)
	id := r.obj(t)["id"].(string)
	require.Equal(t, "processing", r.obj(t)["status"])

	clock.Advance(29 * time.Second)
	h.sim.SettleDue()
	require.Equal(t, "processing", h.get("/v1/payment_intents/" + id).obj(t)["status"])
	// A processing intent can be neither canceled nor confirmed again.
	require.Equal(t, http.StatusBadRequest, h.post("/v1/payment_intents/"+id+"/cancel", nil, "").status)

	clock.Advance(time.Second)
	h.sim.SettleDue()
	pi := h.get("/v1/payment_intents/" + id).obj(t)
	require.Equal(t, "succeeded", pi["status"])
	require.EqualValues(t, 4200, pi["amount_received"])
	require.Equal(t, clock.Now(), h.sim.Ledger()[0].SucceededAt)

	types := eventTypes(h.sim.Events())
	require.Equal(t, []string{evtSISucceeded, evtPICreated, evtPIProcessing, evtPISucceeded}, types)
	h.sim.SettleDue() // idempotent: no second succeeded event
	require.Len(t, h.sim.Events(), 4)
}

func TestProcessingSettlesInBackground(t *testing.T) {
	h := newHarness(t, Options{ProcessingDelay: 20 * time.Millisecond})
	h.sim.Start(t.Context())
	cus, pm := h.chargeTarget("4000000000000259")
	id := h.charge(cus, pm, 100, "inv_bg", "").obj(t)["id"].(string)
	require.Eventually(t, func() bool {
		l := h.sim.Ledger()
		return len(l) == 1 && l[0].ID == id && l[0].Status == "succeeded"
	}, 5*time.Second, 10*time.Millisecond)
}

func TestLuhnAndBrand(t *testing.T) {
	for number, brand := range map[string]string{
		"4242424242424242": "visa",
		"5555555555554444": "mastercard",
		"2223003122003222": "mastercard",
		"378282246310005":  "amex",
		"6011111111111117": "discover",
		"3566002020360505": "jcb",
		"36227206271667":   "diners",
		"6200000000000005": "unionpay",
	} {
		t.Run(number, func(t *testing.T) {
			require.True(t, luhnValid(number))
			require.Equal(t, brand, cardBrand(number))
		})
	}
	require.False(t, luhnValid("4242424242424241"))
	for number := range testCards {
		require.True(t, luhnValid(number), number)
	}
}
