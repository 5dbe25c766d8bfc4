package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	successURL = "https://billing.example/pay/tok/card-saved?lang=de"
	cancelURL  = "https://billing.example/pay/tok?canceled=1&x=a%20b"
)

func sessionBody(cus string) map[string]any {
	return map[string]any{
		"customer": cus, "success_url": successURL, "cancel_url": cancelURL,
		"payment_method_types": []string{"card"},
		"metadata":             map[string]string{"dunning_case": "dc_1", "subscription": "sub_1"},
	}
}

// session creates a setup checkout session for cus and returns it.
func (h *harness) session(cus string) map[string]any {
	h.t.Helper()
	r := h.post("/v1/checkout/sessions/setup", sessionBody(cus), "")
	require.Equal(h.t, http.StatusOK, r.status, "%s", r.body)
	return r.obj(h.t)
}

// browser returns a client that, like a test driving a page, sees redirects
// instead of following them.
func (h *harness) browser() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// page GETs an absolute URL as a browser would (no API key).
func (h *harness) page(u string) resp {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(h.t, err)
	r, err := h.send(h.browser(), req)
	require.NoError(h.t, err)
	return r
}

// submit POSTs a form to an absolute URL as a browser would.
func (h *harness) submit(u string, form url.Values) resp {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	require.NoError(h.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r, err := h.send(h.browser(), req)
	require.NoError(h.t, err)
	return r
}

func cardForm(number string) url.Values {
	return url.Values{"card_number": {number}, "exp_month": {"12"}, "exp_year": {"2030"}, "cvc": {"123"}}
}

func TestCheckoutSessionCreate(t *testing.T) {
	for _, tc := range []struct{ name, path, mode string }{
		{"setup endpoint", "/v1/checkout/sessions/setup", ""},
		{"setup endpoint with mode", "/v1/checkout/sessions/setup", "setup"},
		{"generic endpoint", "/v1/checkout/sessions", "setup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			h := newHarness(t, Options{Now: clock.Now})
			cus := h.customer()
			body := sessionBody(cus)
			if tc.mode != "" {
				body["mode"] = tc.mode
			}
			r := h.post(tc.path, body, "")
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			cs := r.obj(t)
			id := cs["id"].(string)
			require.True(t, strings.HasPrefix(id, "cs_test_"), id)
			require.Equal(t, "checkout.session", cs["object"])
			require.Equal(t, "setup", cs["mode"])
			require.Equal(t, "open", cs["status"])
			require.Equal(t, cus, cs["customer"])
			require.Equal(t, h.srv.URL+"/checkout/setup/"+id, cs["url"])
			require.Equal(t, successURL, cs["success_url"])
			require.Equal(t, cancelURL, cs["cancel_url"])
			require.Equal(t, []any{"card"}, cs["payment_method_types"])
			require.Equal(t, map[string]any{"dunning_case": "dc_1", "subscription": "sub_1"}, cs["metadata"])
			require.EqualValues(t, clock.Now().UnixMilli(), cs["created"])
			require.EqualValues(t, clock.Now().Add(24*time.Hour).UnixMilli(), cs["expires_at"])

			got := h.get("/v1/checkout/sessions/" + id)
			require.Equal(t, http.StatusOK, got.status)
			require.JSONEq(t, string(r.body), string(got.body))

			// The session's SetupIntent waits for the card and carries the metadata.
			siID := cs["setup_intent"].(string)
			require.True(t, strings.HasPrefix(siID, "seti_"), siID)
			si := h.get("/v1/setup_intents/" + siID).obj(t)
			require.Equal(t, "requires_payment_method", si["status"])
			require.Equal(t, cus, si["customer"])
			require.Nil(t, si["payment_method"])
			require.Equal(t, "off_session", si["usage"])
			require.Equal(t, cs["url"], si["return_url"])
			require.Equal(t, cs["metadata"], si["metadata"])
			require.Empty(t, h.sim.Events(), "nothing happened yet that a merchant must hear about")
		})
	}
	t.Run("public URL", func(t *testing.T) {
		h := newHarness(t, Options{PublicURL: "https://sim.example/"})
		cs := h.session(h.customer())
		require.Equal(t, "https://sim.example/checkout/setup/"+cs["id"].(string), cs["url"])
	})
}

func TestCheckoutSessionValidation(t *testing.T) {
	h := newHarness(t, Options{})
	cus := h.customer()
	with := func(k string, v any) map[string]any {
		b := sessionBody(cus)
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	tests := []struct {
		name   string
		path   string
		body   map[string]any
		status int
		code   string
		param  string
	}{
		{"unknown customer", "/v1/checkout/sessions/setup", with("customer", "cus_nope"), 404, "resource_missing", "customer"},
		{"missing customer", "/v1/checkout/sessions/setup", with("customer", nil), 400, "parameter_missing", "customer"},
		{"missing success_url", "/v1/checkout/sessions/setup", with("success_url", nil), 400, "parameter_missing", "success_url"},
		{"relative success_url", "/v1/checkout/sessions/setup", with("success_url", "/pay/done"), 400, "url_invalid", "success_url"},
		{"ftp success_url", "/v1/checkout/sessions/setup", with("success_url", "ftp://billing.example/x"), 400, "url_invalid", "success_url"},
		{"missing cancel_url", "/v1/checkout/sessions/setup", with("cancel_url", nil), 400, "parameter_missing", "cancel_url"},
		{"javascript cancel_url", "/v1/checkout/sessions/setup", with("cancel_url", "javascript:alert(1)"), 400, "url_invalid", "cancel_url"},
		{"other payment method type", "/v1/checkout/sessions/setup", with("payment_method_types", []string{"alipay"}), 400, "parameter_invalid", "payment_method_types"},
		{"payment mode", "/v1/checkout/sessions/setup", with("mode", "payment"), 400, "parameter_unsupported", "mode"},
		{"unknown parameter", "/v1/checkout/sessions/setup", with("line_items", []string{"x"}), 400, "parameter_unknown", "line_items"},
		{"generic endpoint without mode", "/v1/checkout/sessions", sessionBody(cus), 400, "parameter_missing", "mode"},
		{"generic endpoint in payment mode", "/v1/checkout/sessions", with("mode", "payment"), 400, "parameter_unsupported", "mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.post(tc.path, tc.body, "")
			require.Equal(t, tc.status, r.status, "%s", r.body)
			e := r.errObj(t)
			require.Equal(t, "invalid_request_error", e["type"])
			require.Equal(t, tc.code, e["code"])
			require.Equal(t, tc.param, e["param"])
		})
	}
	t.Run("unknown session", func(t *testing.T) {
		r := h.get("/v1/checkout/sessions/cs_test_nope")
		require.Equal(t, http.StatusNotFound, r.status)
		require.Equal(t, "resource_missing", r.errObj(t)["code"])
	})
	h.sim.mu.Lock()
	defer h.sim.mu.Unlock()
	require.Empty(t, h.sim.sessions, "no rejected request created a session")
}

func TestCheckoutSessionIdempotency(t *testing.T) {
	h := newHarness(t, Options{})
	cus := h.customer()
	first := h.post("/v1/checkout/sessions/setup", sessionBody(cus), "dc_1-step2-setup")
	require.Equal(t, http.StatusOK, first.status, "%s", first.body)
	again := h.post("/v1/checkout/sessions/setup", sessionBody(cus), "dc_1-step2-setup")
	require.Equal(t, http.StatusOK, again.status)
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	require.Equal(t, string(first.body), string(again.body))

	other := sessionBody(cus)
	other["success_url"] = "https://billing.example/elsewhere"
	mismatch := h.post("/v1/checkout/sessions/setup", other, "dc_1-step2-setup")
	require.Equal(t, http.StatusBadRequest, mismatch.status)
	require.Equal(t, "idempotency_error", mismatch.errObj(t)["type"])

	// A rejected request stores nothing: the key stays free for a fixed retry.
	bad := sessionBody(cus)
	delete(bad, "cancel_url")
	require.Equal(t, http.StatusBadRequest, h.post("/v1/checkout/sessions/setup", bad, "dc_2-setup").status)
	fixed := h.post("/v1/checkout/sessions/setup", sessionBody(cus), "dc_2-setup")
	require.Equal(t, http.StatusOK, fixed.status)
	require.Empty(t, fixed.header.Get("Idempotent-Replayed"))

	h.sim.mu.Lock()
	defer h.sim.mu.Unlock()
	require.Len(t, h.sim.sessions, 2)
}

func TestHostedSetupPageForm(t *testing.T) {
	h := newHarness(t, Options{})
	cs := h.session(h.customer())
	r := h.page(cs["url"].(string))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	body := string(r.body)
	require.Contains(t, body, "<h1>Save a card</h1>")
	require.Contains(t, body, `<form method="post"`)
	for _, name := range []string{"card_number", "exp_month", "exp_year", "cvc"} {
		require.Contains(t, body, `id="`+name+`" name="`+name+`"`)
	}
	require.Contains(t, body, `<button type="submit" id="save">`)
	require.Contains(t, body, `<a id="cancel" href="https://billing.example/pay/tok?canceled=1&amp;x=a%20b">`)
	require.Contains(t, body, "4242 4242 4242 4242")
	require.Contains(t, body, "4462 0300 0000 0000")
	require.NotContains(t, body, "<script")

	t.Run("unknown session", func(t *testing.T) {
		r := h.page(h.srv.URL + "/checkout/setup/cs_test_nope")
		require.Equal(t, http.StatusNotFound, r.status)
		require.Contains(t, string(r.body), "does not exist")
		r = h.submit(h.srv.URL+"/checkout/setup/cs_test_nope", cardForm("4242424242424242"))
		require.Equal(t, http.StatusNotFound, r.status)
	})
}

func TestHostedSetupSubmit(t *testing.T) {
	tests := []struct {
		number string
		last4  string
		charge int    // HTTP status of an off-session charge with the saved card
		status string // its PaymentIntent status
	}{
		{"4242 4242 4242 4242", "4242", 200, "succeeded"},
		{"4462030000000000", "0000", 200, "requires_action"},
		{"4000-0000-0000-9995", "9995", 402, "requires_payment_method"},
	}
	for _, tc := range tests {
		t.Run(tc.number, func(t *testing.T) {
			h := newHarness(t, Options{})
			cus := h.customer()
			cs := h.session(cus)
			id, pageURL := cs["id"].(string), cs["url"].(string)

			r := h.submit(pageURL, cardForm(tc.number))
			require.Equal(t, http.StatusSeeOther, r.status, "%s", r.body)
			require.Equal(t, successURL+"&session_id="+id, r.header.Get("Location"))

			// The card is saved for the session's customer, number not kept.
			list := h.get("/v1/customers/" + cus + "/payment_methods").obj(t)["data"].([]any)
			require.Len(t, list, 1)
			pm := list[0].(map[string]any)
			pmID := pm["id"].(string)
			require.Equal(t, map[string]any{"brand": "visa", "last4": tc.last4, "exp_month": float64(12), "exp_year": float64(2030), "funding": "credit"}, pm["card"])

			si := h.get("/v1/setup_intents/" + cs["setup_intent"].(string)).obj(t)
			require.Equal(t, "succeeded", si["status"])
			require.Equal(t, pmID, si["payment_method"])

			sess := h.get("/v1/checkout/sessions/" + id).obj(t)
			require.Equal(t, "complete", sess["status"])
			require.Nil(t, sess["url"])

			// One event, the one billingd acts on, with the session's metadata.
			evs := h.sim.Events()
			require.Equal(t, []string{evtSISucceeded}, eventTypes(evs))
			require.Equal(t, si["id"], evs[0].ObjectID)
			var ev struct {
				Type string `json:"type"`
				Data struct {
					Object map[string]any `json:"object"`
				} `json:"data"`
			}
			require.NoError(t, json.Unmarshal(evs[0].Body, &ev))
			obj := ev.Data.Object
			require.Equal(t, "setup_intent", obj["object"])
			require.Equal(t, "succeeded", obj["status"])
			require.Equal(t, cus, obj["customer"])
			require.Equal(t, pmID, obj["payment_method"])
			require.Equal(t, map[string]any{"dunning_case": "dc_1", "subscription": "sub_1"}, obj["metadata"])
			digits := strings.NewReplacer(" ", "", "-", "").Replace(tc.number)
			require.NotContains(t, string(evs[0].Body), digits)

			// The saved card behaves as its number says when charged.
			c := h.charge(cus, pmID, 2500, "inv_1", "inv_1-a1")
			require.Equal(t, tc.charge, c.status, "%s", c.body)

			// The page is spent: showing or posting it again changes nothing.
			again := h.page(pageURL)
			require.Equal(t, http.StatusConflict, again.status)
			require.Contains(t, string(again.body), "already been saved")
			again = h.submit(pageURL, cardForm("4242424242424242"))
			require.Equal(t, http.StatusConflict, again.status)
			require.Len(t, h.get("/v1/customers/" + cus + "/payment_methods").obj(t)["data"], 1)
		})
	}
}

func TestHostedSetupSubmitInvalid(t *testing.T) {
	clock := newFakeClock() // March 2026
	h := newHarness(t, Options{Now: clock.Now})
	cus := h.customer()
	cs := h.session(cus)
	pageURL := cs["url"].(string)
	tests := []struct {
		name  string
		form  url.Values
		error string
	}{
		{"luhn failure", cardForm("4242424242424241"), "Your card number is incorrect."},
		{"letters", cardForm("4242 4242 abcd 4242"), "The card number is not a valid credit card number."},
		{"too short", cardForm("42424242"), "The card number is not a valid credit card number."},
		{"missing number", cardForm(""), "Enter the card number."},
		{"bad month", url.Values{"card_number": {"4242424242424242"}, "exp_month": {"13"}, "exp_year": {"2030"}, "cvc": {"123"}}, "expiration month is invalid"},
		{"month not a number", url.Values{"card_number": {"4242424242424242"}, "exp_month": {"MM"}, "exp_year": {"2030"}, "cvc": {"123"}}, "expiration month is invalid"},
		{"missing year", url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "cvc": {"123"}}, "Enter the card&#39;s expiry month and year."},
		{"expired", url.Values{"card_number": {"4242424242424242"}, "exp_month": {"2"}, "exp_year": {"2026"}, "cvc": {"123"}}, "expiration date is in the past"},
		{"missing cvc", url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "exp_year": {"2030"}}, "security code (CVC)"},
		{"bad cvc", url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "exp_year": {"2030"}, "cvc": {"12"}}, "security code is invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.submit(pageURL, tc.form)
			require.Equal(t, http.StatusOK, r.status)
			body := string(r.body)
			require.Contains(t, body, `id="error"`)
			require.Contains(t, body, tc.error)
			require.Contains(t, body, `id="save"`, "the form is shown again")
			if n := tc.form.Get("card_number"); n != "" {
				require.NotContains(t, body, n, "the number is never written back")
			}
			if m := tc.form.Get("exp_month"); m != "" {
				require.Contains(t, body, `value="`+m+`"`, "expiry is kept for the next try")
			}
		})
	}
	require.Empty(t, h.get("/v1/customers/" + cus + "/payment_methods").obj(t)["data"])
	require.Empty(t, h.sim.Events())
	require.Equal(t, "open", h.get("/v1/checkout/sessions/" + cs["id"].(string)).obj(t)["status"])

	// The session still works after the mistakes.
	r := h.submit(pageURL, cardForm("4242424242424242"))
	require.Equal(t, http.StatusSeeOther, r.status)
}

func TestHostedSetupExpired(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, Options{Now: clock.Now})
	cus := h.customer()
	cs := h.session(cus)
	id, pageURL := cs["id"].(string), cs["url"].(string)

	clock.Advance(24*time.Hour - time.Second)
	require.Equal(t, http.StatusOK, h.page(pageURL).status, "open until expires_at")

	clock.Advance(time.Second)
	r := h.page(pageURL)
	require.Equal(t, http.StatusGone, r.status)
	require.Contains(t, string(r.body), "expired")
	require.Contains(t, string(r.body), `href="https://billing.example/pay/tok?canceled=1&amp;x=a%20b"`)
	r = h.submit(pageURL, cardForm("4242424242424242"))
	require.Equal(t, http.StatusGone, r.status)

	sess := h.get("/v1/checkout/sessions/" + id).obj(t)
	require.Equal(t, "expired", sess["status"])
	require.Nil(t, sess["url"])
	require.Empty(t, h.get("/v1/customers/" + cus + "/payment_methods").obj(t)["data"])
	require.Empty(t, h.sim.Events())
}

func TestChallengePage(t *testing.T) {
	h := newHarness(t, Options{})
	cus, pm := h.chargeTarget("4462030000000000")
	// pending charges a fresh on-session intent with the 3-D Secure card and
	// returns its id and challenge URL.
	pending := func(t *testing.T, returnURL string) (string, string) {
		t.Helper()
		body := chargeBody(cus, pm, 2500, "inv_3ds")
		body["off_session"] = false
		body["return_url"] = returnURL
		if returnURL == "" {
			delete(body, "return_url")
		}
		r := h.post("/v1/payment_intents", body, "")
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		pi := r.obj(t)
		require.Equal(t, "requires_action", pi["status"])
		cr := pi["next_action"].(map[string]any)["challenge_redirect"].(map[string]any)
		return pi["id"].(string), cr["url"].(string)
	}
	lastEvent := func() Event {
		evs := h.sim.Events()
		return evs[len(evs)-1]
	}

	t.Run("page", func(t *testing.T) {
		id, u := pending(t, "https://billing.example/pay/tok/return")
		r := h.page(u)
		require.Equal(t, http.StatusOK, r.status)
		body := string(r.body)
		require.Contains(t, body, `<p class="amount" id="amount">25.00 USD</p>`)
		require.Contains(t, body, id)
		require.Contains(t, body, `<button type="submit" id="pass" name="result" value="pass">Complete authentication</button>`)
		require.Contains(t, body, `<button type="submit" id="fail" name="result" value="fail">Fail authentication</button>`)
		require.NotContains(t, body, "<script")
	})
	t.Run("pass", func(t *testing.T) {
		id, u := pending(t, "https://billing.example/pay/tok/return?lang=de")
		r := h.submit(u, url.Values{"result": {"pass"}})
		require.Equal(t, http.StatusSeeOther, r.status, "%s", r.body)
		require.Equal(t, "https://billing.example/pay/tok/return?lang=de&payment_intent="+id+"&redirect_status=succeeded", r.header.Get("Location"))
		pi := h.get("/v1/payment_intents/" + id).obj(t)
		require.Equal(t, "succeeded", pi["status"])
		require.Nil(t, pi["next_action"])
		require.Equal(t, evtPISucceeded, lastEvent().Type)
		require.Equal(t, id, lastEvent().ObjectID)

		// Answered: the page now says so, and a second click changes nothing.
		again := h.page(u)
		require.Equal(t, http.StatusConflict, again.status)
		require.Contains(t, string(again.body), "status: succeeded")
		again = h.submit(u, url.Values{"result": {"fail"}})
		require.Equal(t, http.StatusConflict, again.status)
		require.Equal(t, "succeeded", h.get("/v1/payment_intents/" + id).obj(t)["status"])
	})
	t.Run("fail", func(t *testing.T) {
		id, u := pending(t, "https://billing.example/pay/tok/return")
		r := h.submit(u, url.Values{"result": {"fail"}})
		require.Equal(t, http.StatusSeeOther, r.status, "%s", r.body)
		loc, err := url.Parse(r.header.Get("Location"))
		require.NoError(t, err)
		require.Equal(t, "/pay/tok/return", loc.Path)
		require.Equal(t, url.Values{"payment_intent": {id}, "redirect_status": {"failed"}}, loc.Query())
		pi := h.get("/v1/payment_intents/" + id).obj(t)
		require.Equal(t, "requires_payment_method", pi["status"])
		lpe := pi["last_payment_error"].(map[string]any)
		require.Equal(t, "payment_intent_authentication_failure", lpe["code"])
		require.Equal(t, "authentication_failure", lpe["decline_code"])
		require.Equal(t, evtPIPaymentFailed, lastEvent().Type)
		require.Equal(t, http.StatusConflict, h.page(u).status)
	})
	t.Run("no return_url", func(t *testing.T) {
		id, u := pending(t, "")
		r := h.submit(u, url.Values{"result": {"pass"}})
		require.Equal(t, http.StatusOK, r.status)
		require.Contains(t, string(r.body), "Authentication succeeded")
		require.Equal(t, "succeeded", h.get("/v1/payment_intents/" + id).obj(t)["status"])
	})
	t.Run("bad result", func(t *testing.T) {
		id, u := pending(t, "https://billing.example/r")
		require.Equal(t, http.StatusBadRequest, h.submit(u, url.Values{"result": {"maybe"}}).status)
		require.Equal(t, "requires_action", h.get("/v1/payment_intents/" + id).obj(t)["status"])
	})
	t.Run("not a challenge", func(t *testing.T) {
		okCus, okPM := h.chargeTarget("4242424242424242")
		paid := h.charge(okCus, okPM, 1000, "inv_paid", "").obj(t)["id"].(string)
		r := h.page(h.srv.URL + "/3ds/" + paid)
		require.Equal(t, http.StatusConflict, r.status)
		require.Contains(t, string(r.body), "does not need authentication now (status: succeeded)")
		require.Equal(t, http.StatusConflict, h.submit(h.srv.URL+"/3ds/"+paid, url.Values{"result": {"pass"}}).status)

		require.Equal(t, http.StatusNotFound, h.page(h.srv.URL+"/3ds/pi_nope").status)
		require.Equal(t, http.StatusNotFound, h.submit(h.srv.URL+"/3ds/pi_nope", url.Values{"result": {"pass"}}).status)
	})
}

// TestOnSessionCardTable checks the pay-link path: an on-session intent with
// return_url behaves like the off-session one, except that the 3-D Secure card's
// challenge is then something the customer can actually pass.
func TestOnSessionCardTable(t *testing.T) {
	tests := []struct {
		number      string
		httpStatus  int
		status      string
		declineCode string
	}{
		{"4111111111111111", 200, "succeeded", ""},
		{"4242424242424242", 200, "succeeded", ""},
		{"4462030000000000", 200, "requires_action", ""},
		{"4000000000009995", 402, "requires_payment_method", "insufficient_funds"},
		{"4000000000000002", 402, "requires_payment_method", "generic_decline"},
		{"4000000000000119", 402, "requires_payment_method", "processing_error"},
		{"4000000000000069", 402, "requires_payment_method", "expired_card"},
	}
	const returnURL = "https://billing.example/pay/tok/return"
	for _, tc := range tests {
		t.Run(tc.number, func(t *testing.T) {
			h := newHarness(t, Options{})
			cus, pm := h.chargeTarget(tc.number)
			off := h.charge(cus, pm, 2500, "inv_1", "inv_1-a1")
			require.Equal(t, tc.httpStatus, off.status, "%s", off.body)

			body := chargeBody(cus, pm, 2500, "inv_1")
			body["off_session"] = false
			body["return_url"] = returnURL
			on := h.post("/v1/payment_intents", body, "inv_1-pay-link-1")
			require.Equal(t, tc.httpStatus, on.status, "%s", on.body)

			var pi map[string]any
			if tc.httpStatus == http.StatusPaymentRequired {
				offErr, onErr := off.errObj(t), on.errObj(t)
				require.Equal(t, tc.declineCode, onErr["decline_code"])
				require.Equal(t, offErr["code"], onErr["code"], "same code on- and off-session")
				require.Equal(t, offErr["decline_code"], onErr["decline_code"])
				pi = onErr["payment_intent"].(map[string]any)
			} else {
				pi = on.obj(t)
			}
			require.Equal(t, tc.status, pi["status"])
			require.Equal(t, false, pi["off_session"])
			require.Equal(t, returnURL, pi["return_url"])
			if tc.status != "requires_action" {
				require.Nil(t, pi["next_action"])
				return
			}
			na := pi["next_action"].(map[string]any)
			require.Equal(t, "challenge_redirect", na["type"])
			cr := na["challenge_redirect"].(map[string]any)
			require.Equal(t, h.srv.URL+"/3ds/"+pi["id"].(string), cr["url"])
			require.Equal(t, returnURL, cr["return_url"])

			r := h.submit(cr["url"].(string), url.Values{"result": {"pass"}})
			require.Equal(t, http.StatusSeeOther, r.status)
			require.Equal(t, "succeeded", h.get("/v1/payment_intents/" + pi["id"].(string)).obj(t)["status"])
		})
	}
}

func TestFormatAmount(t *testing.T) {
	for in, want := range map[struct {
		amount   int64
		currency string
	}]string{
		{2500, "USD"}:  "25.00 USD",
		{5, "eur"}:     "0.05 EUR",
		{2500, "JPY"}:  "2500 JPY",
		{12345, "KWD"}: "12.345 KWD",
		{100, "GBP"}:   "1.00 GBP",
	} {
		require.Equal(t, want, formatAmount(in.amount, in.currency))
	}
}

func TestAppendQuery(t *testing.T) {
	require.Equal(t, "https://a.example/p?session_id=cs_1", appendQuery("https://a.example/p", "session_id", "cs_1"))
	require.Equal(t, "https://a.example/p?x=a%20b&session_id=cs_1", appendQuery("https://a.example/p?x=a%20b", "session_id", "cs_1"))
	require.Equal(t, "https://a.example/p?k=1&a=x&b=y#frag", appendQuery("https://a.example/p?k=1#frag", "a", "x", "b", "y"))
}
