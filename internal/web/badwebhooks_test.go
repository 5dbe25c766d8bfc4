package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway/checkout"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/web"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// TestBadWebhooksWithTheRealVerifier posts broken deliveries, signed with the
// real WooshPay scheme, to a receiver that has an attempt in flight: each is
// refused with a 4xx, nothing lands in webhook_events and the attempt and its
// invoice keep their state.
func TestBadWebhooksWithTheRealVerifier(t *testing.T) {
	const secret = "whsec_bad_inputs"
	now := time.Now()
	ts := now.Unix()
	sign := func(body string) string { return wooshpay.Sign(secret, ts, []byte(body)) }

	for _, tc := range []struct {
		name        string
		body        string
		contentType string
		sig         func(body string) string
		want        int
	}{
		{"form body, correctly signed", "id=evt_1&type=payment_intent.succeeded", "application/x-www-form-urlencoded", sign, 400},
		{"xml body, correctly signed", "<event><id>evt_1</id></event>", "application/xml", sign, 400},
		{"empty body, correctly signed", "", "application/json", sign, 400},
		{"json array, correctly signed", "[1,2]", "application/json", sign, 400},
		{"json without an id, correctly signed", `{"object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","object":"payment_intent","status":"succeeded","metadata":{"idempotency_key":"%KEY%"}}}}`, "application/json", sign, 400},
		{"json without a type, correctly signed", `{"id":"evt_nt","object":"event","data":{"object":{"id":"pi_1","object":"payment_intent","status":"succeeded","metadata":{"idempotency_key":"%KEY%"}}}}`, "application/json", sign, 400},
		{"truncated json, correctly signed", `{"id":"evt_tr","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"`, "application/json", sign, 400},
		{"several v1, none matching", succeededEvent, "application/json", func(body string) string {
			return fmt.Sprintf("t=%d,v1=%s,v1=%s,v1=%s", ts,
				strings.TrimPrefix(wooshpay.Sign("whsec_old", ts, []byte(body)), fmt.Sprintf("t=%d,v1=", ts)),
				strings.Repeat("ab", 32),
				strings.TrimPrefix(wooshpay.Sign(secret, ts+1, []byte(body)), fmt.Sprintf("t=%d,v1=", ts+1)))
		}, 401},
		{"v1 not hex", succeededEvent, "application/json", func(string) string { return fmt.Sprintf("t=%d,v1=zz-not-hex", ts) }, 400},
		{"no v1 at all", succeededEvent, "application/json", func(string) string { return fmt.Sprintf("t=%d,v0=abcd", ts) }, 400},
		{"body changed after signing", succeededEvent, "application/json", func(body string) string { return sign(strings.Replace(body, "succeeded", "failed", 1)) }, 401},
		{"signed in the future", succeededEvent, "application/json", func(body string) string { return wooshpay.Sign(secret, ts+3600, []byte(body)) }, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, url := realVerifierFixture(t, secret)
			body := strings.ReplaceAll(tc.body, "%KEY%", f.attempt.IdempotencyKey)
			require.Equal(t, tc.want, postRaw(t, url, body, tc.contentType, tc.sig(body)))
			status, inv, events := f.state(t)
			require.Equal(t, models.AttemptPending, status)
			require.Equal(t, models.InvoiceOpen, inv)
			require.Zero(t, events, "nothing stored in webhook_events")
		})
	}

	// Control: the same succeeded event, correctly signed, settles the attempt,
	// so the refusals above were about the delivery, not the event.
	t.Run("control", func(t *testing.T) {
		f, url := realVerifierFixture(t, secret)
		body := strings.ReplaceAll(succeededEvent, "%KEY%", f.attempt.IdempotencyKey)
		require.Equal(t, 200, postRaw(t, url, body, "application/json", sign(body)))
		status, inv, events := f.state(t)
		require.Equal(t, models.AttemptSucceeded, status)
		require.Equal(t, models.InvoicePaid, inv)
		require.EqualValues(t, 1, events)
	})

	// An event type billingd does not handle, correctly signed, is a genuine
	// delivery: it is acknowledged (a 4xx would make the gateway retry it for
	// days and eventually disable the endpoint), kept as "ignored", and changes
	// nothing. (An event of any type that carries a PaymentIntent is applied by
	// the intent's own state, which is the gateway's truth; only the type is
	// unknown here.)
	t.Run("unknown type, correctly signed", func(t *testing.T) {
		f, url := realVerifierFixture(t, secret)
		body := `{"id":"evt_cu","object":"event","created":1767225600,"type":"customer.teleported","data":{"object":{"id":"cus_w1","object":"customer"}}}`
		require.Equal(t, 200, postRaw(t, url, body, "application/json", sign(body)))
		status, inv, events := f.state(t)
		require.Equal(t, models.AttemptPending, status)
		require.Equal(t, models.InvoiceOpen, inv)
		require.EqualValues(t, 1, events)
		var row models.WebhookEvent
		require.NoError(t, f.st.DB().First(&row).Error)
		require.Equal(t, models.WebhookIgnored, row.Result)
	})
}

const succeededEvent = `{"id":"evt_bad_1","object":"event","created":1767225600,"type":"payment_intent.succeeded",
"data":{"object":{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":900,"currency":"USD","customer":"cus_w1","payment_method":"pm_w1",
"metadata":{"idempotency_key":"%KEY%"}}}}`

func realVerifierFixture(t *testing.T, secret string) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	v, err := wooshpay.NewWebhookVerifier(wooshpay.WebhookOptions{Secrets: []string{secret}, Tolerance: 5 * time.Minute})
	require.NoError(t, err)
	rcv := &web.WebhookReceiver{Store: f.st, Engine: charge.New(charge.Options{Store: f.st}), Verifier: v, Clock: clock.Real{}, Log: zerolog.Nop(), MaxBody: 4096}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func postRaw(t *testing.T, url, body, contentType, sig string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(wooshpay.SignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// capturedEvent is a Checkout.com payment_captured delivery for the fixture's
// attempt (the envelope of Checkout.com's documented example, with the
// attempt's key in metadata as billingd sends it).
const capturedEvent = `{"id":"evt_cko_bad_1","type":"payment_captured","created_on":"2026-06-01T09:00:00Z",
"data":{"id":"pay_waji5li3mqtetnaor77xmow4bq","action_id":"act_gse7gcrhleuedmzhq25n3mhweq","response_code":"10000","response_summary":"Approved",
"amount":900,"currency":"USD","processed_on":"2026-06-01T09:00:00Z","reference":"%REF%","metadata":{"idempotency_key":"%KEY%"}}}`

// TestBadCheckoutWebhooksWithTheRealVerifier is the same for Checkout.com's
// Cko-Signature (an HMAC of the body, no timestamp): forged, unsigned,
// doubly signed and oversized deliveries are refused with a 4xx and nothing
// is stored; a correctly signed one settles the attempt, and replaying it
// (the same event id, since a captured delivery verifies forever) changes
// nothing.
func TestBadCheckoutWebhooksWithTheRealVerifier(t *testing.T) {
	const secret = "whsec_cko_bad_inputs"
	sign := func(body string) []string { return []string{checkout.Sign(secret, []byte(body))} }
	for _, tc := range []struct {
		name string
		body func(string) string
		sig  func(body string) []string
		want int
	}{
		{"unsigned", nil, func(string) []string { return nil }, 400},
		{"signed with another key", nil, func(body string) []string { return []string{checkout.Sign("whsec_someone_else", []byte(body))} }, 401},
		{"signature not hex", nil, func(string) []string { return []string{"zz-not-hex"} }, 400},
		{"two signatures", nil, func(body string) []string { return append(sign(body), sign(body)...) }, 400},
		{"body changed after signing", nil, func(body string) []string {
			return sign(strings.Replace(body, `"amount":900`, `"amount":9`, 1))
		}, 401},
		{"oversized, correctly signed", func(body string) string {
			return strings.Replace(body, `"currency"`, `"padding":"`+strings.Repeat("x", int(checkout.DefaultWebhookMaxBody))+`","currency"`, 1)
		}, sign, 413},
		{"not an event, correctly signed", func(string) string { return `[1,2]` }, sign, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, url := checkoutVerifierFixture(t, secret)
			body := f.capturedBody(t)
			if tc.body != nil {
				body = tc.body(body)
			}
			require.Equal(t, tc.want, postSigned(t, url, body, checkout.SignatureHeader, tc.sig(body)))
			status, inv, events := f.state(t)
			require.Equal(t, models.AttemptPending, status)
			require.Equal(t, models.InvoiceOpen, inv)
			require.Zero(t, events, "nothing stored in webhook_events")
		})
	}

	t.Run("control, then replayed", func(t *testing.T) {
		f, url := checkoutVerifierFixture(t, secret)
		body := f.capturedBody(t)
		require.Equal(t, 200, postSigned(t, url, body, checkout.SignatureHeader, sign(body)))
		status, inv, events := f.state(t)
		require.Equal(t, models.AttemptSucceeded, status)
		require.Equal(t, models.InvoicePaid, inv)
		require.EqualValues(t, 1, events)
		var before models.Invoice
		require.NoError(t, f.st.DB().First(&before).Error)

		for i := 0; i < 3; i++ {
			require.Equal(t, 200, postSigned(t, url, body, checkout.SignatureHeader, sign(body)), "a replay is acknowledged")
		}
		status, inv, events = f.state(t)
		require.Equal(t, models.AttemptSucceeded, status)
		require.Equal(t, models.InvoicePaid, inv)
		require.EqualValues(t, 1, events, "a replay stores nothing")
		var after models.Invoice
		require.NoError(t, f.st.DB().First(&after).Error)
		require.Equal(t, before, after, "a replay changes nothing")
	})
}

// capturedBody is capturedEvent for the fixture's attempt and invoice.
func (f *fixture) capturedBody(t *testing.T) string {
	t.Helper()
	var inv models.Invoice
	require.NoError(t, f.st.DB().First(&inv, f.attempt.InvoiceID).Error)
	return strings.NewReplacer("%KEY%", f.attempt.IdempotencyKey, "%REF%", inv.PublicID, "\n", "").Replace(capturedEvent)
}

func checkoutVerifierFixture(t *testing.T, secret string) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	v, err := checkout.NewWebhookVerifier([]string{secret})
	require.NoError(t, err)
	rcv := &web.WebhookReceiver{Store: f.st, Engine: charge.New(charge.Options{Store: f.st}), Verifier: v, Clock: clock.Real{}, Log: zerolog.Nop(), MaxBody: v.MaxBody()}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// postSigned posts body with each of sigs as a value of the signature header.
func postSigned(t *testing.T, url, body, header string, sigs []string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for _, s := range sigs {
		req.Header.Add(header, s)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}
