package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// driver speaks one provider's wire to the simulator, so that behaviour the
// core owns (units, faults, idempotency, delivery) is tested on both.
type driver struct {
	name      string
	h         *harness
	keyHeader string
	ok        int // the status of an approved charge
	declined  int // the status of a declined charge
}

func newDriver(t *testing.T, provider string, opts Options) *driver {
	opts.Provider = provider
	h := newHarness(t, opts)
	if provider == ProviderCheckout {
		return &driver{name: provider, h: h, keyHeader: "Cko-Idempotency-Key", ok: http.StatusCreated, declined: http.StatusCreated}
	}
	return &driver{name: provider, h: h, keyHeader: "Idempotency-Key", ok: http.StatusOK, declined: http.StatusPaymentRequired}
}

var providers = []string{ProviderWooshPay, ProviderCheckout}

func (d *driver) do(method, path string, body any, key string) resp {
	d.h.t.Helper()
	req := d.h.newRequest(method, path, body, "")
	if d.name == ProviderCheckout {
		req.Header.Del("Authorization")
		req.Header.Set("Authorization", "Bearer "+testKey)
	}
	if key != "" {
		req.Header.Set(d.keyHeader, key)
	}
	r, err := d.h.send(d.h.client, req)
	require.NoError(d.h.t, err)
	return r
}

// target is a saved card ready for off-session charges.
type target struct{ cus, pm, prev string }

// save stores a card: a confirmed SetupIntent on WooshPay, a card
// verification with store_for_future_use on Checkout.com.
func (d *driver) save(number string) target {
	t := d.h.t
	t.Helper()
	if d.name == ProviderWooshPay {
		cus, pm := d.h.chargeTarget(number)
		return target{cus: cus, pm: pm}
	}
	r := d.do(http.MethodPost, "/payments", ckoCardBody(number, 0, "USD", "verify-"+number), "")
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	m := r.obj(t)
	require.Equal(t, "Card Verified", m["status"])
	return target{cus: m["customer"].(map[string]any)["id"].(string), pm: m["source"].(map[string]any)["id"].(string), prev: m["id"].(string)}
}

func ckoCardBody(number string, amount int64, currency, reference string) map[string]any {
	return map[string]any{
		"source": map[string]any{"type": "card", "number": number, "expiry_month": 12, "expiry_year": 2030,
			"cvv": "100", "store_for_future_use": true},
		"amount": amount, "currency": currency, "payment_type": "Recurring", "merchant_initiated": false,
		"reference": reference, "customer": map[string]any{"email": "a@example.com", "name": "A B"},
		"success_url": "https://merchant.example/ok", "failure_url": "https://merchant.example/fail",
		"metadata": map[string]string{"purpose": "card"},
	}
}

func ckoMITBody(tg target, amount int64, currency, reference, key string) map[string]any {
	return map[string]any{
		"source": map[string]any{"type": "id", "id": tg.pm}, "amount": amount, "currency": currency,
		"payment_type": "Recurring", "merchant_initiated": true, "previous_payment_id": tg.prev,
		"reference": reference, "capture": true, "customer": map[string]any{"id": tg.cus},
		"description": "subscription", "metadata": map[string]string{"idempotency_key": key},
	}
}

// charge charges tg off-session; amount is in the provider's wire units.
func (d *driver) charge(tg target, amount int64, currency, order, key string) resp {
	d.h.t.Helper()
	if d.name == ProviderWooshPay {
		b := chargeBody(tg.cus, tg.pm, amount, order)
		b["currency"] = currency
		return d.do(http.MethodPost, "/v1/payment_intents", b, key)
	}
	return d.do(http.MethodPost, "/payments", ckoMITBody(tg, amount, currency, order, key), key)
}

// paymentID is the id of the payment an answer is about.
func (d *driver) paymentID(r resp) string {
	t := d.h.t
	t.Helper()
	if d.name == ProviderWooshPay && r.status == http.StatusPaymentRequired {
		return r.errObj(t)["payment_intent"].(map[string]any)["id"].(string)
	}
	return r.obj(t)["id"].(string)
}

// payments is the ledger without the card verifications and setups: the
// payments of orders.
func (d *driver) payments() []LedgerEntry { return d.h.sim.Ledger() }

func TestLedgerUnitsBothProviders(t *testing.T) {
	// ISO minor units asked for, and each provider's documented wire units
	// (units.WooshPay follows Stripe; units.Checkout the "calculating the
	// amount" page).
	tests := []struct {
		currency string
		iso      int64
		wire     map[string]int64
		page     string
	}{
		{"ISK", 12345, map[string]int64{ProviderWooshPay: 1234500, ProviderCheckout: 12345}, "12345 ISK"},
		{"MGA", 12300, map[string]int64{ProviderWooshPay: 123, ProviderCheckout: 12300}, "123.00 MGA"},
		{"HUF", 12345, map[string]int64{ProviderWooshPay: 12345, ProviderCheckout: 12345}, "123.45 HUF"},
		{"JPY", 1200, map[string]int64{ProviderWooshPay: 1200, ProviderCheckout: 1200}, "1200 JPY"},
		{"KWD", 12340, map[string]int64{ProviderWooshPay: 12340, ProviderCheckout: 12340}, "12.340 KWD"},
		{"CLP", 5000, map[string]int64{ProviderWooshPay: 5000, ProviderCheckout: 500000}, "5000 CLP"},
	}
	for _, p := range providers {
		for _, tc := range tests {
			t.Run(p+"/"+tc.currency, func(t *testing.T) {
				d := newDriver(t, p, Options{})
				tg := d.save("4242424242424242")
				r := d.charge(tg, tc.wire[p], tc.currency, "inv_"+tc.currency, "k")
				require.Equal(t, d.ok, r.status, "%s", r.body)
				require.EqualValues(t, tc.wire[p], r.obj(t)["amount"], "the answer is in wire units")
				ledger := d.payments()
				require.Len(t, ledger, 1)
				require.Equal(t, tc.iso, ledger[0].Amount, "the ledger is in ISO minor units")
				require.Equal(t, tc.wire[p], ledger[0].WireAmount)
				require.Equal(t, tc.currency, ledger[0].Currency)
				require.Equal(t, "inv_"+tc.currency, ledger[0].MerchantOrderID)

				// The challenge page shows the ISO amount.
				ch := d.save("4462030000000000")
				var id string
				if p == ProviderWooshPay {
					cr := d.charge(ch, tc.wire[p], tc.currency, "inv_3ds", "k3")
					id = d.paymentID(cr)
				} else {
					b := ckoCardBody("4462030000000000", tc.wire[p], tc.currency, "inv_3ds")
					b["3ds"] = map[string]any{"enabled": true}
					cr := d.do(http.MethodPost, "/payments", b, "k3")
					require.Equal(t, http.StatusAccepted, cr.status, "%s", cr.body)
					id = d.paymentID(cr)
				}
				page := d.h.get("/3ds/" + id)
				require.Contains(t, string(page.body), `<p class="amount" id="amount">`+tc.page+`</p>`)
			})
		}
	}
}

func TestWireAmountsRefused(t *testing.T) {
	tests := []struct {
		provider, currency string
		wire               int64
		status             int
		what               string // WooshPay param or Checkout.com error code
	}{
		{ProviderWooshPay, "ISK", 12345, http.StatusBadRequest, "amount"},  // not whole krónur
		{ProviderWooshPay, "IQD", 1000, http.StatusBadRequest, "currency"}, // not a Stripe currency
		{ProviderWooshPay, "KWD", 12345, http.StatusBadRequest, "amount"},  // last digit not 0
		{ProviderWooshPay, "XYZ", 100, http.StatusBadRequest, "currency"},  // not ISO 4217
		{ProviderCheckout, "KWD", 12345, http.StatusUnprocessableEntity, "amount_invalid"},
		{ProviderCheckout, "CLF", 100, http.StatusUnprocessableEntity, "currency_invalid"},
		{ProviderCheckout, "CLP", 12345, http.StatusUnprocessableEntity, "amount_invalid"}, // CLP is ×100
		{ProviderCheckout, "XYZ", 100, http.StatusUnprocessableEntity, "currency_invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.provider+"/"+tc.currency, func(t *testing.T) {
			d := newDriver(t, tc.provider, Options{})
			tg := d.save("4242424242424242")
			r := d.charge(tg, tc.wire, tc.currency, "inv_1", "k")
			require.Equal(t, tc.status, r.status, "%s", r.body)
			if tc.provider == ProviderWooshPay {
				require.Equal(t, tc.what, r.errObj(t)["param"])
			} else {
				require.Equal(t, []any{tc.what}, r.obj(t)["error_codes"])
			}
			require.Empty(t, d.payments(), "nothing charged")
			// Refused before executing: the key is free for a corrected request.
			require.Empty(t, r.header.Get("Idempotent-Replayed"))
		})
	}
}

func TestRefundUnitsBothProviders(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			d := newDriver(t, p, Options{})
			tg := d.save("4242424242424242")
			wire := map[string]int64{ProviderWooshPay: 1000000, ProviderCheckout: 10000}[p] // 10000 ISK
			r := d.charge(tg, wire, "ISK", "inv_1", "k")
			require.Equal(t, d.ok, r.status, "%s", r.body)
			id := d.paymentID(r)
			half := wire / 2
			var rr resp
			if p == ProviderWooshPay {
				rr = d.do(http.MethodPost, "/v1/refunds", map[string]any{"payment_intent": id, "amount": half}, "r1")
				require.Equal(t, http.StatusOK, rr.status, "%s", rr.body)
			} else {
				rr = d.do(http.MethodPost, "/payments/"+id+"/refunds", map[string]any{"amount": half, "reference": "r1"}, "r1")
				require.Equal(t, http.StatusAccepted, rr.status, "%s", rr.body)
			}
			refunds := d.h.sim.Refunds()
			require.Len(t, refunds, 1)
			require.EqualValues(t, 5000, refunds[0].Amount, "refunds are in ISO minor units")
			require.Equal(t, "inv_1", refunds[0].MerchantOrderID)
			e := d.payments()[0]
			require.EqualValues(t, 5000, e.AmountRefunded)
			require.Equal(t, half, e.WireAmountRefunded)
		})
	}
}

func TestFaultsBothProviders(t *testing.T) {
	for _, p := range providers {
		t.Run(p+"/5xx-before records nothing", func(t *testing.T) {
			d := newDriver(t, p, Options{})
			tg := d.save("4242424242424242")
			d.h.sim.SetFaults(Faults{Error5xxBefore: 1})
			require.Equal(t, http.StatusInternalServerError, d.charge(tg, 100, "USD", "inv_1", "k").status)
			require.Empty(t, d.payments())
			d.h.sim.SetFaults(Faults{})
			require.Equal(t, d.ok, d.charge(tg, 100, "USD", "inv_1", "k").status)
			require.Len(t, d.payments(), 1)
		})
		t.Run(p+"/429 with Retry-After", func(t *testing.T) {
			d := newDriver(t, p, Options{})
			tg := d.save("4242424242424242")
			d.h.sim.SetFaults(Faults{RateLimit: 1, RetryAfter: 2 * time.Second})
			r := d.charge(tg, 100, "USD", "inv_1", "k")
			require.Equal(t, http.StatusTooManyRequests, r.status)
			require.Equal(t, "2", r.header.Get("Retry-After"))
			require.Empty(t, d.payments())
		})
		t.Run(p+"/drop after record keeps the replay", func(t *testing.T) {
			d := newDriver(t, p, Options{})
			tg := d.save("4242424242424242")
			d.h.sim.SetFaults(Faults{Drop: 1})
			_, err := d.tryCharge(tg, "k")
			require.Error(t, err, "the connection was closed without an answer")
			require.Len(t, d.payments(), 1, "the payment was recorded")
			d.h.sim.SetFaults(Faults{})
			again := d.charge(tg, 100, "USD", "inv_1", "k")
			require.Equal(t, d.ok, again.status)
			require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
			require.Len(t, d.payments(), 1, "replayed, not charged again")
		})
		t.Run(p+"/5xx after record", func(t *testing.T) {
			d := newDriver(t, p, Options{})
			tg := d.save("4242424242424242")
			d.h.sim.SetFaults(Faults{Error5xxAfter: 1})
			require.Equal(t, http.StatusInternalServerError, d.charge(tg, 100, "USD", "inv_1", "k").status)
			require.Len(t, d.payments(), 1, "charged behind the 500")
			d.h.sim.SetFaults(Faults{})
			again := d.charge(tg, 100, "USD", "inv_1", "k")
			require.Equal(t, d.ok, again.status)
			if p == ProviderWooshPay {
				// Stripe keeps every executed answer: the resend is a replay.
				require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
				require.Len(t, d.payments(), 1)
			} else {
				// Checkout.com keeps only answers it sent as 2xx: the resend is a
				// second payment, which is why billingd looks the order up first.
				require.Empty(t, again.header.Get("Idempotent-Replayed"))
				ledger := d.payments()
				require.Len(t, ledger, 2)
				require.Equal(t, ledger[0].MerchantOrderID, ledger[1].MerchantOrderID)
				list := d.do(http.MethodGet, "/payments?reference=inv_1&limit=100", nil, "")
				require.EqualValues(t, 2, list.obj(t)["total_count"])
			}
		})
	}
}

// tryCharge sends a 100 USD charge and returns the transport error, if any.
func (d *driver) tryCharge(tg target, key string) (resp, error) {
	var req *http.Request
	if d.name == ProviderWooshPay {
		req = d.h.newRequest(http.MethodPost, "/v1/payment_intents", chargeBody(tg.cus, tg.pm, 100, "inv_1"), key)
	} else {
		req = d.h.newRequest(http.MethodPost, "/payments", ckoMITBody(tg, 100, "USD", "inv_1", key), "")
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set(d.keyHeader, key)
	}
	return d.h.send(d.h.client, req)
}

func TestIdempotencyBothProviders(t *testing.T) {
	for _, p := range providers {
		t.Run(p+"/replay", func(t *testing.T) {
			d := newDriver(t, p, Options{})
			tg := d.save("4242424242424242")
			first := d.charge(tg, 100, "USD", "inv_1", "k")
			again := d.charge(tg, 100, "USD", "inv_1", "k")
			require.Equal(t, first.status, again.status)
			require.Equal(t, string(first.body), string(again.body))
			require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
			require.Len(t, d.payments(), 1)
		})
		t.Run(p+"/a declined answer is replayed too", func(t *testing.T) {
			d := newDriver(t, p, Options{})
			tg := d.save("4000000000009995")
			first := d.charge(tg, 100, "USD", "inv_1", "k")
			require.Equal(t, d.declined, first.status)
			again := d.charge(tg, 100, "USD", "inv_1", "k")
			require.Equal(t, string(first.body), string(again.body))
			require.Len(t, d.payments(), 1)
		})
		t.Run(p+"/window is 24h of the sim clock", func(t *testing.T) {
			clock := newFakeClock()
			d := newDriver(t, p, Options{Now: clock.Now})
			tg := d.save("4242424242424242")
			require.Equal(t, d.ok, d.charge(tg, 100, "USD", "inv_1", "k").status)
			clock.Advance(23 * time.Hour)
			require.Equal(t, "true", d.charge(tg, 100, "USD", "inv_1", "k").header.Get("Idempotent-Replayed"))
			clock.Advance(time.Hour)
			fresh := d.charge(tg, 100, "USD", "inv_1", "k")
			require.Empty(t, fresh.header.Get("Idempotent-Replayed"))
			require.Len(t, d.payments(), 2, "the expired key charged anew")
		})
		t.Run(p+"/concurrent same key", func(t *testing.T) {
			d := newDriver(t, p, Options{})
			tg := d.save("4242424242424242")
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			d.h.sim.mu.Lock()
			d.h.sim.testHookExecuting = func() { once.Do(func() { close(entered); <-release }) }
			d.h.sim.mu.Unlock()
			done := make(chan resp)
			go func() {
				r, _ := d.tryCharge(tg, "k")
				done <- r
			}()
			<-entered
			second, err := d.tryCharge(tg, "k")
			require.NoError(t, err)
			require.Equal(t, http.StatusConflict, second.status)
			if p == ProviderCheckout {
				require.Equal(t, []any{"duplicate_request"}, second.obj(t)["error_codes"])
			}
			close(release)
			require.Equal(t, d.ok, (<-done).status)
			require.Len(t, d.payments(), 1)
		})
	}
}

func TestWebhookDeliveryBothProviders(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			rc := newReceiver(t, "whsec_x", 1) // the first attempt fails: a retry follows
			opts := Options{Provider: p, SecretKey: testKey, Webhook: WebhookOptions{
				URL: rc.srv.URL, Secret: "whsec_x", Retry: []time.Duration{0, 0},
				Delivery: Delivery{Workers: 1, BadSignature: 1},
			}}
			d := newDriver(t, p, opts)
			d.h.sim.Start(t.Context())
			tg := d.save("4242424242424242")
			require.Equal(t, d.ok, d.charge(tg, 100, "USD", "inv_1", "k").status)
			d.h.sim.SettleDue()
			require.NoError(t, d.h.sim.WaitWebhooks(t.Context()))
			evs := d.h.sim.Events()
			require.NotEmpty(t, evs)
			good := map[string]int{}
			for _, got := range rc.all() {
				ok := false
				if p == ProviderCheckout {
					ok = validCko("whsec_x", got.header.Get("Cko-Signature"), got.body)
					require.Empty(t, got.header.Get("Wooshpay-Signature"))
				} else {
					ok = strings.Contains(got.header.Get("Wooshpay-Signature"), "v1=") &&
						Sign("whsec_x", mustTS(got.header.Get("Wooshpay-Signature")), got.body) == got.header.Get("Wooshpay-Signature")
				}
				if ok && got.status == http.StatusOK {
					good[string(got.body)]++
				}
			}
			for _, ev := range evs {
				require.Equal(t, 1, good[string(ev.Body)], "event %s delivered once correctly signed", ev.Type)
			}
			st := d.h.sim.Stats()
			require.EqualValues(t, len(evs), st.WebhookBadSignatures, "every event was first forged")
			require.EqualValues(t, len(evs), st.WebhooksDelivered)
		})
	}
}

func validCko(secret, header string, body []byte) bool {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	got, err := hex.DecodeString(header)
	return err == nil && hmac.Equal(mac.Sum(nil), got)
}

func mustTS(header string) int64 {
	var ts int64
	for _, part := range strings.Split(header, ",") {
		if v, ok := strings.CutPrefix(part, "t="); ok {
			for _, c := range v {
				ts = ts*10 + int64(c-'0')
			}
		}
	}
	return ts
}
