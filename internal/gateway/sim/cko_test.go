package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newCko(t *testing.T, opts Options) *driver { return newDriver(t, ProviderCheckout, opts) }

// events returns the types of the events about payment id, oldest first.
func ckoEvents(s *Server, id string) []string {
	var out []string
	for _, ev := range s.Events() {
		if ev.ObjectID == id {
			out = append(out, ev.Type)
		}
	}
	return out
}

// eventData decodes the data of the last event of type typ.
func eventData(t *testing.T, s *Server, typ string) map[string]any {
	t.Helper()
	evs := s.Events()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			var env map[string]any
			require.NoError(t, json.Unmarshal(evs[i].Body, &env))
			require.Equal(t, evs[i].ID, env["id"])
			require.NotEmpty(t, env["created_on"])
			return env["data"].(map[string]any)
		}
	}
	t.Fatalf("no %s event in %v", typ, eventTypes(evs))
	return nil
}

func TestCheckoutTestCardsOnMIT(t *testing.T) {
	tests := []struct {
		number   string
		status   int
		state    string
		approved bool
		code     string
		events   []string
	}{
		{"4111111111111111", 201, "Authorized", true, "10000", []string{"payment_approved"}},
		{"4761344136141390", 201, "Authorized", true, "10000", []string{"payment_approved"}},
		{"4242424242424242", 201, "Authorized", true, "10000", []string{"payment_approved"}},
		{"4462030000000000", 201, "Declined", false, "20154", []string{"payment_declined"}},
		{"4000000000009995", 201, "Declined", false, "20051", []string{"payment_declined"}},
		{"4000000000000002", 201, "Declined", false, "20005", []string{"payment_declined"}},
		{"4000000000000119", 201, "Declined", false, "20096", []string{"payment_declined"}},
		{"4000000000000069", 201, "Declined", false, "20054", []string{"payment_declined"}},
		{"4000000000009987", 201, "Declined", false, "30041", []string{"payment_declined"}},
		{"4000000000009979", 201, "Declined", false, "30043", []string{"payment_declined"}},
		{"4000000000000259", 202, "Pending", false, "", []string{"payment_pending"}},
	}
	for _, tc := range tests {
		t.Run(tc.number, func(t *testing.T) {
			d := newCko(t, Options{})
			tg := d.save(tc.number)
			r := d.charge(tg, 2500, "EUR", "inv_1", "inv_1-a1")
			require.Equal(t, tc.status, r.status, "%s", r.body)
			m := r.obj(t)
			require.Equal(t, tc.state, m["status"])
			links := m["_links"].(map[string]any)
			require.NotContains(t, links, "redirect", "no challenge without a customer")
			if tc.status == http.StatusCreated {
				require.Equal(t, tc.approved, m["approved"])
				require.Equal(t, tc.code, m["response_code"])
				require.NotEmpty(t, m["response_summary"])
				require.Equal(t, tg.pm, m["source"].(map[string]any)["id"])
				require.Equal(t, "inv_1", m["reference"])
			}
			id := m["id"].(string)
			require.True(t, strings.HasPrefix(id, "pay_"), id)
			require.Equal(t, tc.events, ckoEvents(d.h.sim, id))
			e := d.payments()[0]
			require.Equal(t, tc.code, e.ResponseCode)
			require.Equal(t, tc.approved, e.Status == statusSucceeded, "ledger money iff approved")
			require.Equal(t, "inv_1", e.Reference)
		})
	}
}

func TestCheckoutMITCapturedShortlyAfter(t *testing.T) {
	clock := newFakeClock()
	d := newCko(t, Options{Now: clock.Now, CaptureDelay: time.Second})
	tg := d.save("4242424242424242")
	id := d.paymentID(d.charge(tg, 1000, "USD", "inv_1", "k"))
	d.h.sim.SettleDue()
	require.Equal(t, "Authorized", d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)["status"])
	clock.Advance(time.Second)
	d.h.sim.SettleDue()
	got := d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)
	require.Equal(t, "Captured", got["status"])
	require.Equal(t, map[string]string{"idempotency_key": "k"}, toStrings(got["metadata"]))
	require.Equal(t, []string{"payment_approved", "payment_captured"}, ckoEvents(d.h.sim, id))
	require.Equal(t, "Captured", d.payments()[0].WireStatus)
}

func toStrings(v any) map[string]string {
	out := map[string]string{}
	for k, x := range v.(map[string]any) {
		out[k], _ = x.(string)
	}
	return out
}

func TestCheckoutMITRules(t *testing.T) {
	d := newCko(t, Options{})
	tg := d.save("4242424242424242")
	other := d.save("4111111111111111")
	tests := []struct {
		name   string
		mutate func(b map[string]any)
		code   string
	}{
		{"no previous payment", func(b map[string]any) { delete(b, "previous_payment_id") }, "previous_payment_id_invalid"},
		{"previous payment of another card", func(b map[string]any) { b["previous_payment_id"] = other.prev }, "previous_payment_id_invalid"},
		{"unknown previous payment", func(b map[string]any) { b["previous_payment_id"] = "pay_nope" }, "previous_payment_id_invalid"},
		{"not Recurring", func(b map[string]any) { b["payment_type"] = "Regular" }, "payment_type_invalid"},
		{"unknown source", func(b map[string]any) { b["source"] = map[string]any{"type": "id", "id": "src_nope"} }, "source_id_invalid"},
		{"unknown customer", func(b map[string]any) { b["customer"] = map[string]any{"id": "cus_nope"} }, "customer_not_found"},
		{"another customer's card", func(b map[string]any) { b["customer"] = map[string]any{"id": other.cus + "x"} }, "customer_not_found"},
		{"no amount", func(b map[string]any) { delete(b, "amount") }, "amount_required"},
		{"amount of the wrong type", func(b map[string]any) { b["amount"] = "10" }, "amount_invalid"},
		{"lower-case currency", func(b map[string]any) { b["currency"] = "usd" }, "currency_invalid"},
		{"reference too long", func(b map[string]any) { b["reference"] = strings.Repeat("r", 51) }, "reference_invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := ckoMITBody(tg, 100, "USD", "inv_1", "k-"+tc.name)
			tc.mutate(b)
			r := d.do(http.MethodPost, "/payments", b, "k-"+tc.name)
			require.Equal(t, http.StatusUnprocessableEntity, r.status, "%s", r.body)
			require.Equal(t, []any{tc.code}, r.obj(t)["error_codes"])
			require.Equal(t, "request_invalid", r.obj(t)["error_type"])
		})
	}
	require.Empty(t, d.payments(), "nothing charged")
	// A later MIT may chain on an earlier MIT of the same card.
	first := d.paymentID(d.charge(tg, 100, "USD", "inv_1", "a"))
	tg.prev = first
	require.Equal(t, http.StatusCreated, d.charge(tg, 100, "USD", "inv_2", "b").status)
}

func TestCheckoutAuth(t *testing.T) {
	d := newCko(t, Options{})
	for _, h := range []string{"", "Bearer sk_test_wrong", "Basic " + testKey} {
		req := d.h.newRequest(http.MethodGet, "/payments/pay_1", nil, "")
		req.Header.Del("Authorization")
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		r, err := d.h.send(d.h.client, req)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, r.status, h)
		require.Empty(t, r.body)
	}
	require.Equal(t, http.StatusNotFound, d.do(http.MethodGet, "/payments/pay_1", nil, "").status)
}

// ckoCIT starts a customer-initiated payment with 3-D Secure on a new card.
func ckoCIT(t *testing.T, d *driver, number string) (string, map[string]any) {
	t.Helper()
	b := ckoCardBody(number, 1500, "GBP", "inv_pay")
	b["3ds"] = map[string]any{"enabled": true}
	r := d.do(http.MethodPost, "/payments", b, "cit")
	m := r.obj(t)
	return m["id"].(string), map[string]any{"status": r.status, "body": m}
}

func TestCheckoutChallenge(t *testing.T) {
	for _, tc := range []struct {
		result, status, code, next string
		events                     []string
	}{
		{"pass", "Captured", "10000", "https://merchant.example/ok", []string{"payment_pending", "payment_approved", "payment_captured"}},
		{"fail", "Declined", "20151", "https://merchant.example/fail", []string{"payment_pending", "payment_declined"}},
	} {
		t.Run(tc.result, func(t *testing.T) {
			d := newCko(t, Options{})
			id, a := ckoCIT(t, d, "4462030000000000")
			require.Equal(t, http.StatusAccepted, a["status"])
			body := a["body"].(map[string]any)
			require.Equal(t, "Pending", body["status"])
			href := body["_links"].(map[string]any)["redirect"].(map[string]any)["href"].(string)
			require.Equal(t, d.h.srv.URL+"/3ds/"+id, href)
			got := d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)
			require.Equal(t, "Pending", got["status"])
			require.Contains(t, got["_links"], "redirect")

			page := d.h.get("/3ds/" + id)
			require.Equal(t, http.StatusOK, page.status)
			require.Contains(t, string(page.body), "15.00 GBP")
			require.Contains(t, string(page.body), "Checkout.com simulator")

			noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			res, err := noRedirect.PostForm(href, url.Values{"result": {tc.result}})
			require.NoError(t, err)
			res.Body.Close()
			require.Equal(t, http.StatusSeeOther, res.StatusCode)
			loc, err := url.Parse(res.Header.Get("Location"))
			require.NoError(t, err)
			require.Equal(t, tc.next, loc.Scheme+"://"+loc.Host+loc.Path)
			require.NotEmpty(t, loc.Query().Get("cko-session-id"))

			got = d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)
			require.Equal(t, tc.status, got["status"])
			require.Equal(t, tc.code, got["response_code"])
			require.Equal(t, tc.events, ckoEvents(d.h.sim, id))
		})
	}
}

func TestCheckoutFrictionlessCIT(t *testing.T) {
	d := newCko(t, Options{})
	id, a := ckoCIT(t, d, "4242424242424242")
	require.Equal(t, http.StatusCreated, a["status"])
	require.Equal(t, "Captured", a["body"].(map[string]any)["status"])
	require.Equal(t, []string{"payment_approved", "payment_captured"}, ckoEvents(d.h.sim, id))
}

func TestCheckoutChallengeExpires(t *testing.T) {
	clock := newFakeClock()
	d := newCko(t, Options{Now: clock.Now, ChallengeExpiry: 10 * time.Minute})
	id, _ := ckoCIT(t, d, "4462030000000000")
	clock.Advance(10*time.Minute - time.Second)
	d.h.sim.SettleDue()
	require.Equal(t, "Pending", d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)["status"])
	clock.Advance(time.Second)
	d.h.sim.SettleDue()
	require.Equal(t, "Expired", d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)["status"])
	require.Equal(t, []string{"payment_pending", "payment_expired"}, ckoEvents(d.h.sim, id))
	require.Equal(t, http.StatusConflict, d.h.get("/3ds/"+id).status, "too late to authenticate")
	require.Equal(t, statusCanceled, d.payments()[0].Status)
}

func TestCheckoutProcessingSettlesLater(t *testing.T) {
	clock := newFakeClock()
	d := newCko(t, Options{Now: clock.Now, ProcessingDelay: time.Minute})
	tg := d.save("4000000000000259")
	r := d.charge(tg, 700, "USD", "inv_1", "k")
	require.Equal(t, http.StatusAccepted, r.status)
	id := d.paymentID(r)
	require.NotContains(t, r.obj(t)["_links"], "redirect")
	clock.Advance(time.Minute)
	d.h.sim.SettleDue()
	require.Equal(t, "Captured", d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)["status"])
	require.Equal(t, []string{"payment_pending", "payment_approved", "payment_captured"}, ckoEvents(d.h.sim, id))
	require.Equal(t, statusSucceeded, d.payments()[0].Status)
}

func TestCheckoutCaptureDecline(t *testing.T) {
	d := newCko(t, Options{})
	tg := d.save("4242424242424242")
	id := d.paymentID(d.charge(tg, 900, "USD", "inv_1", "k"))
	d.h.sim.SettleDue()
	res, err := http.Post(d.h.srv.URL+"/_sim/payments/"+id+"/capture_decline", "", nil)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	got := d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)
	require.Equal(t, "Declined", got["status"])
	require.Equal(t, false, got["approved"])
	e := d.payments()[0]
	require.Equal(t, statusCaptureDeclined, e.Status)
	require.True(t, e.SucceededAt.IsZero(), "no money")
	require.Equal(t, []string{"payment_approved", "payment_captured", "payment_capture_declined"}, ckoEvents(d.h.sim, id))
	require.Equal(t, id, eventData(t, d.h.sim, "payment_capture_declined")["id"])

	// Only approved payments can have their capture declined.
	require.ErrorIs(t, d.h.sim.CaptureDecline(id), ErrNoCapture)
	require.ErrorIs(t, d.h.sim.CaptureDecline("pay_nope"), ErrNotFound)
	w := newHarness(t, Options{})
	cus, pm := w.chargeTarget("4242424242424242")
	require.ErrorIs(t, w.sim.CaptureDecline(w.charge(cus, pm, 100, "o", "k").obj(t)["id"].(string)), ErrNoCapture)
}

func TestCheckoutRefundsAndActions(t *testing.T) {
	d := newCko(t, Options{})
	tg := d.save("4242424242424242")
	id := d.paymentID(d.charge(tg, 1000, "USD", "inv_1", "k"))
	d.h.sim.SettleDue()

	r := d.do(http.MethodPost, "/payments/"+id+"/refunds", map[string]any{"amount": 400, "reference": "rf-1",
		"metadata": map[string]string{"refund": "1"}}, "rf-1")
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	act := r.obj(t)["action_id"].(string)
	require.Equal(t, "rf-1", r.obj(t)["reference"])
	replay := d.do(http.MethodPost, "/payments/"+id+"/refunds", map[string]any{"amount": 400, "reference": "rf-1",
		"metadata": map[string]string{"refund": "1"}}, "rf-1")
	require.Equal(t, string(r.body), string(replay.body))

	over := d.do(http.MethodPost, "/payments/"+id+"/refunds", map[string]any{"amount": 601}, "rf-2")
	require.Equal(t, http.StatusUnprocessableEntity, over.status)
	require.Equal(t, []any{"refund_amount_exceeds_balance"}, over.obj(t)["error_codes"])
	require.Equal(t, http.StatusNotFound, d.do(http.MethodPost, "/payments/pay_nope/refunds", map[string]any{}, "x").status)

	var actions []map[string]any
	ar := d.do(http.MethodGet, "/payments/"+id+"/actions", nil, "")
	require.Equal(t, http.StatusOK, ar.status)
	require.NoError(t, json.Unmarshal(ar.body, &actions))
	require.Len(t, actions, 3)
	require.Equal(t, []any{"Refund", "Capture", "Authorization"}, []any{actions[0]["type"], actions[1]["type"], actions[2]["type"]})
	require.Equal(t, act, actions[0]["id"])
	require.Equal(t, "rf-1", actions[0]["reference"])
	require.EqualValues(t, 400, actions[0]["amount"])
	require.Equal(t, true, actions[0]["approved"])

	require.Equal(t, "Partially Refunded", d.do(http.MethodGet, "/payments/"+id, nil, "").obj(t)["status"])
	data := eventData(t, d.h.sim, "payment_refunded")
	require.Equal(t, id, data["id"])
	require.Equal(t, act, data["action_id"])
	require.EqualValues(t, 400, data["amount"])
	require.EqualValues(t, 400, d.h.sim.Refunds()[0].Amount)
	require.Equal(t, "inv_1", d.h.sim.Refunds()[0].MerchantOrderID)

	// A declined payment cannot be refunded.
	bad := d.save("4000000000000002")
	declined := d.paymentID(d.charge(bad, 100, "USD", "inv_2", "k2"))
	require.Equal(t, http.StatusForbidden, d.do(http.MethodPost, "/payments/"+declined+"/refunds", map[string]any{}, "x2").status)
}

func TestCheckoutListByReference(t *testing.T) {
	d := newCko(t, Options{})
	tg := d.save("4242424242424242")
	var ids []string
	for _, k := range []string{"a", "b", "c"} {
		ids = append(ids, d.paymentID(d.charge(tg, 100, "USD", "inv_1", k)))
	}
	d.charge(tg, 100, "USD", "inv_other", "d")
	page := d.do(http.MethodGet, "/payments?reference=inv_1&limit=2&skip=1", nil, "").obj(t)
	require.EqualValues(t, 3, page["total_count"])
	require.EqualValues(t, 2, page["limit"])
	data := page["data"].([]any)
	require.Len(t, data, 2)
	require.Equal(t, ids[1], data[0].(map[string]any)["id"], "newest first, after skip")
	require.Equal(t, ids[0], data[1].(map[string]any)["id"])
	require.Equal(t, "b", toStrings(data[0].(map[string]any)["metadata"])["idempotency_key"])
	require.Equal(t, http.StatusUnprocessableEntity, d.do(http.MethodGet, "/payments?reference=inv_1&limit=101", nil, "").status)
	require.Empty(t, d.do(http.MethodGet, "/payments?reference=none", nil, "").obj(t)["data"])
}

func TestCheckoutCustomersAndInstruments(t *testing.T) {
	d := newCko(t, Options{})
	tg := d.save("4242424242424242")
	cu := d.do(http.MethodGet, "/customers/"+tg.cus, nil, "").obj(t)
	require.Equal(t, "a@example.com", cu["email"])
	require.Equal(t, tg.pm, cu["default"])
	in := d.do(http.MethodGet, "/instruments/"+tg.pm, nil, "").obj(t)
	require.Equal(t, "4242", in["last4"])
	require.Equal(t, "VISA", in["scheme"])
	require.EqualValues(t, 12, in["expiry_month"])
	require.Equal(t, tg.cus, in["customer"].(map[string]any)["id"])
	require.NotContains(t, string(d.do(http.MethodGet, "/instruments/"+tg.pm, nil, "").body), "424242424242")
	require.Equal(t, http.StatusNotFound, d.do(http.MethodGet, "/customers/cus_nope", nil, "").status)
	require.Equal(t, http.StatusNotFound, d.do(http.MethodGet, "/instruments/src_nope", nil, "").status)
	// The same email links the same customer.
	require.Equal(t, tg.cus, d.save("4111111111111111").cus)
}

func TestCheckoutHostedCardVerification(t *testing.T) {
	rc := newReceiver(t, "whsec_cko", 0)
	d := newCko(t, Options{Webhook: WebhookOptions{URL: rc.srv.URL, Secret: "whsec_cko", Delivery: Delivery{Workers: 1}}})
	d.h.sim.Start(t.Context())
	tg := d.save("4242424242424242") // a customer to update the card of

	r := d.do(http.MethodPost, "/hosted-payments", map[string]any{
		"amount": 0, "currency": "EUR", "reference": "setup-" + tg.cus, "customer": map[string]any{"id": tg.cus},
		"billing": map[string]any{"address": map[string]any{"country": "DE"}}, "payment_type": "Recurring",
		"success_url": "https://merchant.example/card/ok", "failure_url": "https://merchant.example/card/fail",
		"cancel_url": "https://merchant.example/card/cancel", "metadata": map[string]string{"subscription": "sub_1"},
		"3ds": map[string]any{"enabled": true},
	}, "hpp-1")
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	hpp := r.obj(t)
	require.True(t, strings.HasPrefix(hpp["id"].(string), "hpp_"))
	href := hpp["_links"].(map[string]any)["redirect"].(map[string]any)["href"].(string)

	page := d.h.get(strings.TrimPrefix(href, d.h.srv.URL))
	require.Equal(t, http.StatusOK, page.status)
	require.Contains(t, string(page.body), `id="test-cards"`)
	require.Contains(t, string(page.body), `href="https://merchant.example/card/cancel"`)

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// A bad card re-shows the form.
	res, err := noRedirect.PostForm(href, url.Values{"card_number": {"4242424242424241"}, "exp_month": {"12"}, "exp_year": {"2030"}, "cvc": {"123"}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	res, err = noRedirect.PostForm(href, url.Values{"card_number": {"4000 0000 0000 9995"}, "exp_month": {"12"}, "exp_year": {"2031"}, "cvc": {"123"}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.True(t, strings.HasPrefix(res.Header.Get("Location"), "https://merchant.example/card/ok?cko-session-id="), res.Header.Get("Location"))

	data := eventData(t, d.h.sim, "card_verified")
	pay := data["id"].(string)
	src := data["source"].(map[string]any)
	require.Equal(t, "9995", src["last_4"])
	require.Equal(t, tg.cus, data["customer"].(map[string]any)["id"])
	require.Equal(t, map[string]string{"subscription": "sub_1"}, toStrings(data["metadata"]))
	require.EqualValues(t, 0, data["amount"])

	got := d.do(http.MethodGet, "/payments/"+pay, nil, "").obj(t)
	require.Equal(t, "Card Verified", got["status"])
	require.Equal(t, src["id"], got["source"].(map[string]any)["id"])
	require.Len(t, d.do(http.MethodGet, "/customers/"+tg.cus, nil, "").obj(t)["instruments"], 2)
	// The verification moved no money; the new card charges by its number.
	require.Len(t, d.payments(), 0)
	mit := d.charge(target{cus: tg.cus, pm: src["id"].(string), prev: pay}, 100, "EUR", "inv_1", "m")
	require.Equal(t, "20051", mit.obj(t)["response_code"])

	// The page is used up.
	res, err = noRedirect.PostForm(href, url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "exp_year": {"2030"}, "cvc": {"123"}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusConflict, res.StatusCode)

	require.NoError(t, d.h.sim.WaitWebhooks(t.Context()))
	signed := 0
	for _, got := range rc.all() {
		var env map[string]any
		require.NoError(t, json.Unmarshal(got.body, &env))
		require.True(t, validCko("whsec_cko", got.header.Get("Cko-Signature"), got.body), "signed with Cko-Signature")
		if env["type"] == "card_verified" {
			signed++
		}
	}
	require.Equal(t, 2, signed, "both verifications (API and page) were delivered signed")
}

func TestCheckoutHostedPaymentRequests(t *testing.T) {
	d := newCko(t, Options{})
	base := func() map[string]any {
		return map[string]any{"amount": 0, "currency": "USD", "customer": map[string]any{"email": "x@example.com"},
			"success_url": "https://m.example/ok", "failure_url": "https://m.example/fail"}
	}
	for name, tc := range map[string]struct {
		mutate func(map[string]any)
		code   string
	}{
		"a charge, not a verification": {func(b map[string]any) { b["amount"] = 100 }, "amount_invalid"},
		"no success_url":               {func(b map[string]any) { delete(b, "success_url") }, "success_url_invalid"},
		"unknown customer":             {func(b map[string]any) { b["customer"] = map[string]any{"id": "cus_nope"} }, "customer_not_found"},
		"no customer":                  {func(b map[string]any) { delete(b, "customer") }, "customer_required"},
		"bad currency":                 {func(b map[string]any) { b["currency"] = "CLF" }, "currency_invalid"},
	} {
		b := base()
		tc.mutate(b)
		r := d.do(http.MethodPost, "/hosted-payments", b, "")
		require.Equal(t, http.StatusUnprocessableEntity, r.status, name)
		require.Equal(t, []any{tc.code}, r.obj(t)["error_codes"], name)
	}
	require.Equal(t, http.StatusCreated, d.do(http.MethodPost, "/hosted-payments", base(), "").status)
}

func TestSignCheckoutKnownVector(t *testing.T) {
	// printf '%s' '{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
	require.Equal(t, "030fa3b2413d1993c551364bd53bb9b3edb5c0c34d55dba6ada6041245632811", SignCheckout("whsec_test", []byte(`{"id":"evt_1"}`)))
}

// TestCheckoutAnswersInDocs keeps docs/simulator.md's Checkout.com table
// equal to what the simulator answers.
func TestCheckoutAnswersInDocs(t *testing.T) {
	data, err := os.ReadFile("../../../docs/simulator.md")
	require.NoError(t, err)
	rows := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		m := regexp.MustCompile(`^\| (\d{16}) \| (.+) \|$`).FindStringSubmatch(line)
		if m != nil {
			rows[m[1]] = m[2]
		}
	}
	require.Len(t, rows, len(TestCards), "one Checkout.com row per test card")
	for _, c := range TestCards {
		require.Equal(t, c.CheckoutAnswer(), rows[c.Number], c.Number)
	}
}

func TestCheckoutControlPlane(t *testing.T) {
	d := newCko(t, Options{})
	tg := d.save("4242424242424242")
	id := d.paymentID(d.charge(tg, 100, "USD", "inv_1", "k"))
	post := func(path, body string) map[string]any {
		t.Helper()
		res, err := http.Post(d.h.srv.URL+path, "text/plain", strings.NewReader(body))
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode, path)
		var m map[string]any
		require.NoError(t, json.NewDecoder(res.Body).Decode(&m))
		return m
	}
	dup := post("/_sim/payment_intents/"+id+"/duplicate", "")
	require.True(t, strings.HasPrefix(dup["id"].(string), "pay_"), dup["id"])
	require.Equal(t, "inv_1", dup["reference"])
	require.Len(t, d.payments(), 2)

	in := post("/_sim/payment_methods/"+tg.pm+"/behaviour", "4000000000009995")
	require.Equal(t, tg.pm, in["id"])
	require.Equal(t, "20051", d.charge(tg, 100, "USD", "inv_2", "k2").obj(t)["response_code"])

	ch, _ := ckoCIT(t, d, "4462030000000000")
	require.Equal(t, "Captured", post("/_sim/payment_intents/"+ch+"/challenge?result=pass", "")["status"])
}

func TestParseFlagsProvider(t *testing.T) {
	cfg, err := ParseFlags([]string{"--provider", "checkout", "--challenge-expiry", "3m"})
	require.NoError(t, err)
	require.Equal(t, ProviderCheckout, cfg.Options.Provider)
	require.Equal(t, 3*time.Minute, cfg.Options.ChallengeExpiry)
	_, err = ParseFlags([]string{"--provider", "stripe"})
	require.ErrorContains(t, err, "--provider")
	_, err = ParseFlags([]string{"--challenge-expiry", "-1s"})
	require.ErrorContains(t, err, "--challenge-expiry")
	cfg, err = ParseFlags(nil)
	require.NoError(t, err)
	require.Equal(t, ProviderWooshPay, New(cfg.Options).wire.name(), "WooshPay by default")
}

func TestCheckoutStaleSpoilIsUnsigned(t *testing.T) {
	rc := newReceiver(t, "whsec_cko", 0)
	d := newCko(t, Options{Webhook: WebhookOptions{URL: rc.srv.URL, Secret: "whsec_cko", Retry: []time.Duration{0},
		Delivery: Delivery{Workers: 1, StaleTimestamp: 1}}})
	d.h.sim.Start(t.Context())
	d.save("4242424242424242")
	require.NoError(t, d.h.sim.WaitWebhooks(t.Context()))
	got := rc.all()
	require.Len(t, got, 2, "the spoiled attempt, then the good one")
	require.Empty(t, got[0].header.Get("Cko-Signature"), "no timestamp to age: sent unsigned")
	require.True(t, validCko("whsec_cko", got[1].header.Get("Cko-Signature"), got[1].body))
	require.Equal(t, string(got[0].body), string(got[1].body))
	require.Equal(t, "Checkout-Simulator/1.0 (billingd)", got[1].header.Get("User-Agent"))
	require.EqualValues(t, 1, d.h.sim.Stats().WebhookStaleTimestamps)
}

func TestWooshPayChallengeDoesNotExpire(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, Options{Now: clock.Now})
	cus, pm := h.chargeTarget("4462030000000000")
	id := h.charge(cus, pm, 100, "inv_1", "k").obj(t)["id"].(string)
	clock.Advance(time.Hour)
	h.sim.SettleDue()
	require.Equal(t, "requires_action", h.get("/v1/payment_intents/" + id).obj(t)["status"])
}
