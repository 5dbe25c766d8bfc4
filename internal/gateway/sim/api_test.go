package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSecretKey(t *testing.T) {
	tests := []struct {
		name   string
		secret string // Options.SecretKey
		auth   func(r *http.Request)
		want   int
	}{
		{"right key", testKey, func(r *http.Request) { r.SetBasicAuth(testKey, "") }, 200},
		{"bearer", testKey, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testKey) }, 200},
		{"wrong key", testKey, func(r *http.Request) { r.SetBasicAuth("sk_test_other", "") }, 401},
		{"no auth", testKey, func(*http.Request) {}, 401},
		{"empty user", testKey, func(r *http.Request) { r.SetBasicAuth("", testKey) }, 401},
		{"any key accepted", "", func(r *http.Request) { r.SetBasicAuth("sk_test_whatever", "") }, 200},
		{"but not none", "", func(*http.Request) {}, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{SecretKey: tc.secret})
			req, err := http.NewRequest(http.MethodPost, "http://sim.test/v1/customers", strings.NewReader(`{"email":"a@example.com"}`))
			require.NoError(t, err)
			tc.auth(req)
			rec := httptestRecorder(s, req)
			require.Equal(t, tc.want, rec.status, "%s", rec.body)
			if tc.want == 401 {
				require.Equal(t, "invalid_request_error", rec.errObj(t)["type"])
				require.NotContains(t, string(rec.body), "sk_test_other")
				require.Empty(t, s.Ledger())
			}
		})
	}
}

// httptestRecorder serves one request in-process.
func httptestRecorder(s *Server, req *http.Request) resp {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func TestCustomersAndPaymentMethods(t *testing.T) {
	h := newHarness(t, Options{})
	r := h.post("/v1/customers", map[string]any{"email": "x@example.com", "name": "X", "metadata": map[string]string{"ref": "sub_1"}}, "")
	require.Equal(t, http.StatusOK, r.status)
	cu := r.obj(t)
	id := cu["id"].(string)
	require.True(t, strings.HasPrefix(id, "cus_"))
	require.Equal(t, "customer", cu["object"])
	require.Equal(t, map[string]any{"ref": "sub_1"}, cu["metadata"])

	got := h.get("/v1/customers/" + id)
	require.Equal(t, http.StatusOK, got.status)
	require.JSONEq(t, string(r.body), string(got.body))

	pm1 := h.saveCard(id, "4242424242424242")
	pm2 := h.saveCard(id, "5555555555554444")
	list := h.get("/v1/customers/" + id + "/payment_methods?type=card").obj(t)
	require.Equal(t, "list", list["object"])
	require.Equal(t, false, list["has_more"])
	data := list["data"].([]any)
	require.Len(t, data, 2)
	require.Equal(t, pm2, data[0].(map[string]any)["id"], "newest first")
	require.Equal(t, pm1, data[1].(map[string]any)["id"])

	limited := h.get("/v1/customers/" + id + "/payment_methods?limit=1").obj(t)
	require.Len(t, limited["data"], 1)
	require.Equal(t, true, limited["has_more"])

	pm := h.get("/v1/payment_methods/" + pm1).obj(t)
	require.Equal(t, "payment_method", pm["object"])
	require.Equal(t, id, pm["customer"])
	require.Equal(t, map[string]any{"brand": "visa", "last4": "4242", "exp_month": float64(12), "exp_year": float64(2030), "funding": "credit"}, pm["card"])

	for _, path := range []string{"/v1/customers/cus_nope", "/v1/customers/cus_nope/payment_methods", "/v1/payment_methods/pm_nope", "/v1/setup_intents/seti_nope", "/v1/payment_intents/pi_nope"} {
		t.Run(path, func(t *testing.T) {
			r := h.get(path)
			require.Equal(t, http.StatusNotFound, r.status)
			e := r.errObj(t)
			require.Equal(t, "invalid_request_error", e["type"])
			require.Equal(t, "resource_missing", e["code"])
		})
	}
}

func TestSetupIntent(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, Options{Now: clock.Now})
	cus := h.customer()
	body := setupBody(cus, "4761344136141390")
	body["metadata"] = map[string]string{"a": "1"}
	r := h.post("/v1/setup_intents", body, "seti-key")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	si := r.obj(t)
	require.Equal(t, "setup_intent", si["object"])
	require.Equal(t, "succeeded", si["status"])
	require.Equal(t, cus, si["customer"])
	require.Equal(t, "off_session", si["usage"])
	require.EqualValues(t, clock.Now().UnixMilli(), si["created"])
	require.True(t, strings.HasPrefix(si["payment_method"].(string), "pm_"))
	require.True(t, strings.HasPrefix(si["client_secret"].(string), si["id"].(string)+"_secret_"))

	got := h.get("/v1/setup_intents/" + si["id"].(string))
	require.JSONEq(t, string(r.body), string(got.body))

	evs := h.sim.Events()
	require.Len(t, evs, 1)
	require.Equal(t, evtSISucceeded, evs[0].Type)
	var ev map[string]any
	require.NoError(t, json.Unmarshal(evs[0].Body, &ev))
	require.Equal(t, "event", ev["object"])
	require.Equal(t, false, ev["livemode"])
	require.Equal(t, si["id"], ev["data"].(map[string]any)["object"].(map[string]any)["id"])

	t.Run("unconfirmed then confirmed", func(t *testing.T) {
		b := setupBody(cus, "4242424242424242")
		b["confirm"] = false
		r := h.post("/v1/setup_intents", b, "").obj(t)
		require.Equal(t, "requires_confirmation", r["status"])
		pm := r["payment_method"].(string)
		require.Nil(t, h.get("/v1/payment_methods/" + pm).obj(t)["customer"])
		c := h.post("/v1/setup_intents/"+r["id"].(string)+"/confirm", nil, "")
		require.Equal(t, http.StatusOK, c.status, "%s", c.body)
		require.Equal(t, "succeeded", c.obj(t)["status"])
		require.Equal(t, cus, h.get("/v1/payment_methods/" + pm).obj(t)["customer"])
		again := h.post("/v1/setup_intents/"+r["id"].(string)+"/confirm", nil, "")
		require.Equal(t, http.StatusBadRequest, again.status)
		require.Equal(t, "setup_intent_unexpected_state", again.errObj(t)["code"])
	})
	t.Run("unknown customer", func(t *testing.T) {
		r := h.post("/v1/setup_intents", setupBody("cus_nope", "4242424242424242"), "")
		require.Equal(t, http.StatusNotFound, r.status)
		require.Equal(t, "resource_missing", r.errObj(t)["code"])
	})
}

func TestPaymentIntentValidation(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	other, otherPM := h.chargeTarget("4242424242424242")
	_ = other

	tests := []struct {
		name   string
		mutate func(b map[string]any)
		raw    string // used instead of the body when set
		status int
		typ    string
		code   string
		param  string
	}{
		{name: "zero amount", mutate: func(b map[string]any) { b["amount"] = 0 }, status: 400, typ: "invalid_request_error", param: "amount"},
		{name: "negative amount", mutate: func(b map[string]any) { b["amount"] = -5 }, status: 400, typ: "invalid_request_error", param: "amount"},
		{name: "fractional amount", mutate: func(b map[string]any) { b["amount"] = 10.5 }, status: 400, typ: "invalid_request_error", param: "amount"},
		{name: "string amount", mutate: func(b map[string]any) { b["amount"] = "10" }, status: 400, typ: "invalid_request_error", param: "amount"},
		{name: "missing amount", mutate: func(b map[string]any) { delete(b, "amount") }, status: 400, typ: "invalid_request_error", code: "parameter_missing"},
		{name: "two-letter currency", mutate: func(b map[string]any) { b["currency"] = "US" }, status: 400, typ: "invalid_request_error", param: "currency"},
		{name: "digit in currency", mutate: func(b map[string]any) { b["currency"] = "US1" }, status: 400, typ: "invalid_request_error", param: "currency"},
		{name: "unknown parameter", mutate: func(b map[string]any) { b["amout"] = 1 }, status: 400, typ: "invalid_request_error", code: "parameter_unknown", param: "amout"},
		{name: "confirm without payment method", mutate: func(b map[string]any) { delete(b, "payment_method") }, status: 400, typ: "invalid_request_error", code: "parameter_missing"},
		{name: "unknown customer", mutate: func(b map[string]any) { b["customer"] = "cus_nope" }, status: 404, typ: "invalid_request_error", code: "resource_missing", param: "customer"},
		{name: "unknown payment method", mutate: func(b map[string]any) { b["payment_method"] = "pm_nope" }, status: 404, typ: "invalid_request_error", code: "resource_missing", param: "payment_method"},
		{name: "someone else's card", mutate: func(b map[string]any) { b["payment_method"] = otherPM }, status: 400, typ: "invalid_request_error", param: "payment_method"},
		{name: "card without its customer", mutate: func(b map[string]any) { delete(b, "customer") }, status: 400, typ: "invalid_request_error", param: "payment_method"},
		{name: "bad return_url", mutate: func(b map[string]any) { b["return_url"] = "not a url" }, status: 400, typ: "invalid_request_error", param: "return_url"},
		{name: "malformed JSON", raw: `{"amount":`, status: 400, typ: "invalid_request_error"},
		{name: "JSON array", raw: `[1]`, status: 400, typ: "invalid_request_error"},
		{name: "lower-case currency is fine", mutate: func(b map[string]any) { b["currency"] = "eur" }, status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body any = tc.raw
			if tc.raw == "" {
				b := chargeBody(cus, pm, 100, "inv_v")
				tc.mutate(b)
				body = b
			}
			before := len(h.sim.Ledger())
			r := h.post("/v1/payment_intents", body, "")
			require.Equal(t, tc.status, r.status, "%s", r.body)
			if tc.status == 200 {
				require.Equal(t, "EUR", r.obj(t)["currency"])
				return
			}
			e := r.errObj(t)
			require.Equal(t, tc.typ, e["type"])
			if tc.code != "" {
				require.Equal(t, tc.code, e["code"])
			}
			if tc.param != "" {
				require.Equal(t, tc.param, e["param"])
			}
			require.Len(t, h.sim.Ledger(), before, "a rejected request creates no intent")
		})
	}
}

func TestCreateThenConfirmAndCancel(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")

	b := chargeBody(cus, pm, 700, "inv_c")
	b["confirm"] = false
	r := h.post("/v1/payment_intents", b, "")
	require.Equal(t, http.StatusOK, r.status)
	pi := r.obj(t)
	id := pi["id"].(string)
	require.Equal(t, "requires_confirmation", pi["status"])

	c := h.post("/v1/payment_intents/"+id+"/confirm", map[string]any{"off_session": true}, "")
	require.Equal(t, http.StatusOK, c.status, "%s", c.body)
	require.Equal(t, "succeeded", c.obj(t)["status"])

	cancel := h.post("/v1/payment_intents/"+id+"/cancel", map[string]any{"cancellation_reason": "duplicate"}, "")
	require.Equal(t, http.StatusBadRequest, cancel.status)
	e := cancel.errObj(t)
	require.Equal(t, "payment_intent_unexpected_state", e["code"])
	require.Equal(t, "succeeded", e["payment_intent"].(map[string]any)["status"])

	again := h.post("/v1/payment_intents/"+id+"/confirm", nil, "")
	require.Equal(t, http.StatusBadRequest, again.status)
	require.Equal(t, "payment_intent_unexpected_state", again.errObj(t)["code"])

	// A declined intent can be canceled.
	_, declPM := "", h.saveCard(cus, "4000000000000002")
	d := h.charge(cus, declPM, 700, "inv_d", "")
	require.Equal(t, http.StatusPaymentRequired, d.status)
	did := d.errObj(t)["payment_intent"].(map[string]any)["id"].(string)
	bad := h.post("/v1/payment_intents/"+did+"/cancel", map[string]any{"cancellation_reason": "because"}, "")
	require.Equal(t, http.StatusBadRequest, bad.status)
	ok := h.post("/v1/payment_intents/"+did+"/cancel", map[string]any{"cancellation_reason": "abandoned"}, "")
	require.Equal(t, http.StatusOK, ok.status, "%s", ok.body)
	require.Equal(t, "canceled", ok.obj(t)["status"])
	require.Equal(t, "abandoned", ok.obj(t)["cancellation_reason"])
	require.NotNil(t, ok.obj(t)["canceled_at"])
	evs := h.sim.Events()
	require.Equal(t, evtPICanceled, evs[len(evs)-1].Type)

	// Retrying with a card that works succeeds on a declined intent.
	d2 := h.charge(cus, declPM, 900, "inv_d2", "")
	did2 := d2.errObj(t)["payment_intent"].(map[string]any)["id"].(string)
	fix := h.post("/v1/payment_intents/"+did2+"/confirm", map[string]any{"payment_method": pm}, "")
	require.Equal(t, http.StatusOK, fix.status, "%s", fix.body)
	require.Equal(t, "succeeded", fix.obj(t)["status"])
	require.Nil(t, fix.obj(t)["last_payment_error"])
}

func TestSearchByMerchantOrderID(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4242424242424242")
	var ids []string
	for range 3 {
		ids = append(ids, h.charge(cus, pm, 100, "inv_42", "").obj(t)["id"].(string))
	}
	h.charge(cus, pm, 100, "inv_43", "")
	h.charge(cus, pm, 100, "inv_it's", "")

	search := func(q string, extra string) resp {
		return h.get("/v1/payment_intents/search?query=" + url.QueryEscape(q) + extra)
	}
	r := search("merchant_order_id:'inv_42'", "&limit=10")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	res := r.obj(t)
	require.Equal(t, "search_result", res["object"])
	require.Equal(t, false, res["has_more"])
	data := res["data"].([]any)
	require.Len(t, data, 3)
	for i, d := range data {
		require.Equal(t, ids[2-i], d.(map[string]any)["id"], "newest first")
	}

	page := search("merchant_order_id:'inv_42'", "&limit=2").obj(t)
	require.Len(t, page["data"], 2)
	require.Equal(t, true, page["has_more"])

	require.Len(t, search(`merchant_order_id:"inv_43"`, "").obj(t)["data"], 1)
	require.Len(t, search(`merchant_order_id:'inv_it\'s'`, "").obj(t)["data"], 1)
	require.Empty(t, search("merchant_order_id:'inv_none'", "").obj(t)["data"])

	for _, bad := range []struct{ q, extra string }{
		{"merchant_order_id:inv_42", ""},
		{"merchant_order_id:'inv_42", ""},
		{"merchant_order_id:'in'v'", ""},
		{"merchant_order_id:''", ""},
		{"customer:'cus_1'", ""},
		{"merchant_order_id:'inv_42' AND status:'succeeded'", ""},
		{"", ""},
		{"merchant_order_id:'inv_42'", "&limit=0"},
		{"merchant_order_id:'inv_42'", "&limit=101"},
		{"merchant_order_id:'inv_42'", "&page=abc"},
	} {
		t.Run(bad.q+bad.extra, func(t *testing.T) {
			r := search(bad.q, bad.extra)
			require.Equal(t, http.StatusBadRequest, r.status, "%s", r.body)
			require.Equal(t, "invalid_request_error", r.errObj(t)["type"])
		})
	}
}

func TestUnrecognizedURLAndHealthz(t *testing.T) {
	h := newHarness(t, Options{})
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/nope"},
		{http.MethodDelete, "/v1/customers/cus_1"},
		{http.MethodGet, "/v1/customers"},
	} {
		r := h.do(tc.method, tc.path, nil, "")
		require.Equal(t, http.StatusNotFound, r.status, "%s %s", tc.method, tc.path)
		require.Contains(t, r.errObj(t)["message"], "Unrecognized request URL")
	}
	res, err := http.Get(h.srv.URL + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
}

// TestCardNumberNeverLeaks saves and charges every test card, then looks for any
// card number in everything the simulator emitted: answers, ledger, events,
// stats and log lines.
func TestCardNumberNeverLeaks(t *testing.T) {
	var logMu sync.Mutex
	var logs strings.Builder
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(&logs, format+"\n", args...)
	}
	var received strings.Builder
	hook := newReceiver(t, "whsec", 0)
	h := newHarness(t, Options{Logf: logf, Webhook: WebhookOptions{URL: hook.srv.URL, Secret: "whsec"}})
	h.sim.Start(t.Context())

	var seen strings.Builder
	record := func(r resp) { seen.Write(r.body); seen.WriteByte('\n') }
	numbers := []string{"4242424242424241"} // a Luhn failure too
	for n := range testCards {
		numbers = append(numbers, n)
	}
	for i, number := range numbers {
		cus := h.customer()
		key := fmt.Sprintf("seti-%d", i)
		si := h.post("/v1/setup_intents", setupBody(cus, number), key)
		record(si)
		record(h.post("/v1/setup_intents", setupBody(cus, number), key)) // replay
		if si.status != http.StatusOK {
			continue
		}
		pm := si.obj(t)["payment_method"].(string)
		record(h.get("/v1/payment_methods/" + pm))
		record(h.get("/v1/customers/" + cus + "/payment_methods"))
		record(h.charge(cus, pm, 100, "inv_"+number[12:], ""))
	}
	for _, path := range []string{"/_sim/ledger", "/_sim/events", "/_sim/stats"} {
		res, err := http.Get(h.srv.URL + path)
		require.NoError(t, err)
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		seen.Write(b)
	}
	ledger, _ := json.Marshal(h.sim.Ledger())
	seen.Write(ledger)
	for _, ev := range h.sim.Events() {
		seen.Write(ev.Body)
	}
	require.Eventually(t, func() bool { return h.sim.Stats().WebhooksPending == 0 }, 5*time.Second, 5*time.Millisecond)
	for _, d := range hook.all() {
		received.Write(d.body)
	}

	logMu.Lock()
	all := seen.String() + received.String() + logs.String()
	logMu.Unlock()
	require.NotEmpty(t, received.String())
	for _, number := range numbers {
		require.False(t, strings.Contains(all, number), "card number %s leaked", number)
		require.False(t, strings.Contains(all, number[:12]), "more than the last four digits of %s leaked", number)
	}
	require.False(t, strings.Contains(all, `"cvc"`), "cvc leaked")
}
