package wooshpay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

const (
	whCurrent = "whsec_current_TOPSECRET123"
	whOld     = "whsec_previous_OLDSECRET456"
	whOther   = "whsec_someone_else_789"
)

// whEvent renders an event envelope around a data.object.
func whEvent(id, typ, object string) string {
	return `{"id":"` + id + `","object":"event","created":1732406400999,"livemode":false,"type":"` + typ +
		`","data":{"object":` + object + `}}`
}

func whSetupIntentJSON(id, status string) string {
	return `{"id":"` + id + `","object":"setup_intent","created":1732406400123,"status":"` + status +
		`","customer":"cus_123","payment_method":"pm_789","usage":"off_session","metadata":{"subscription":"sub_1"},` +
		`"client_secret":"` + id + `_secret_x","last_setup_error":null,"next_action":null}`
}

// whHeader builds a signature header from parts, for headers Sign cannot make.
func whHeader(parts ...string) http.Header {
	return http.Header{SignatureHeader: {strings.Join(parts, ",")}}
}

// whSig is the hex v1 of body under secret with timestamp text t.
func whSig(secret, t string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "." + string(body)))
	return hex.EncodeToString(mac.Sum(nil))
}

func newTestVerifier(t testing.TB, secrets ...string) *WebhookVerifier {
	t.Helper()
	v, err := NewWebhookVerifier(WebhookOptions{Secrets: secrets})
	require.NoError(t, err)
	return v
}

func TestSignKnownVector(t *testing.T) {
	// printf '%s' '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
	require.Equal(t,
		"t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925",
		Sign("whsec_test", 1700000000, []byte(`{"id":"evt_1"}`)))
}

func TestNewWebhookVerifier(t *testing.T) {
	tests := []struct {
		name    string
		opts    WebhookOptions
		wantErr string
	}{
		{"no secrets", WebhookOptions{}, "secret is required"},
		{"empty secret", WebhookOptions{Secrets: []string{whCurrent, ""}}, "secret #2 is empty"},
		{"trailing newline", WebhookOptions{Secrets: []string{whCurrent + "\n"}}, "secret #1 has leading or trailing whitespace"},
		{"negative tolerance", WebhookOptions{Secrets: []string{whCurrent}, Tolerance: -time.Second}, "tolerance must not be negative"},
		{"negative max body", WebhookOptions{Secrets: []string{whCurrent}, MaxBody: -1}, "max body must not be negative"},
		{"defaults", WebhookOptions{Secrets: []string{whCurrent}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewWebhookVerifier(tt.opts)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), whCurrent)
				require.Nil(t, v)
				return
			}
			require.NoError(t, err)
			require.Equal(t, DefaultWebhookTolerance, v.Tolerance())
			require.Equal(t, DefaultWebhookMaxBody, v.MaxBody())
		})
	}

	v, err := NewWebhookVerifier(WebhookOptions{Secrets: []string{whCurrent}, Tolerance: time.Minute, MaxBody: 4096})
	require.NoError(t, err)
	require.Equal(t, time.Minute, v.Tolerance())
	require.Equal(t, int64(4096), v.MaxBody())
}

// TestVerifyWebhookAuthentication covers the signature and timestamp checks and
// their order relative to each other and to JSON decoding.
func TestVerifyWebhookAuthentication(t *testing.T) {
	body := []byte(whEvent("evt_1", gateway.EventPaymentIntentSucceeded, intentJSON("pi_1", "succeeded", "")))
	badJSON := []byte(`{"id":"evt_1","type":`)
	sec := fixedNow.Unix()
	ms := fixedNow.UnixMilli()
	secs := func(d time.Duration) int64 { return int64(d / time.Second) }
	millis := func(d time.Duration) int64 { return d.Milliseconds() }
	tol := DefaultWebhookTolerance
	good := whSig(whCurrent, strconv.FormatInt(sec, 10), body)
	bad := whSig(whOther, strconv.FormatInt(sec, 10), body)

	tests := []struct {
		name    string
		secrets []string // default whCurrent
		body    []byte
		header  http.Header
		now     time.Time // default fixedNow
		wantErr error
	}{
		{name: "valid, seconds", body: body, header: whHeader(Sign(whCurrent, sec, body))},
		{name: "valid, milliseconds", body: body, header: whHeader(Sign(whCurrent, ms, body))},
		{name: "valid, now not UTC and with nanoseconds", body: body, header: whHeader(Sign(whCurrent, sec, body)),
			now: fixedNow.Add(999 * time.Millisecond).In(time.FixedZone("x", 5*3600))},
		{name: "two v1, second valid", body: body,
			header: whHeader("t="+strconv.FormatInt(sec, 10), "v1="+bad, "v1="+good)},
		{name: "two v1, first valid", body: body,
			header: whHeader("t="+strconv.FormatInt(sec, 10), "v1="+good, "v1="+bad)},
		{name: "v1 before t, v0 ignored, whitespace around parts", body: body,
			header: whHeader(" v0=not-hex-at-all ", " v1 = "+good+" ", "\tt="+strconv.FormatInt(sec, 10), "", "flag")},
		{name: "upper-case hex", body: body,
			header: whHeader("t="+strconv.FormatInt(sec, 10), "v1="+strings.ToUpper(good))},
		{name: "timestamp text with leading zero is signed as sent", body: body,
			header: whHeader("t=0"+strconv.FormatInt(sec, 10), "v1="+whSig(whCurrent, "0"+strconv.FormatInt(sec, 10), body))},
		{name: "rotation: old secret still accepted", secrets: []string{whCurrent, whOld}, body: body,
			header: whHeader(Sign(whOld, sec, body))},
		{name: "rotation: new secret accepted", secrets: []string{whCurrent, whOld}, body: body,
			header: whHeader(Sign(whCurrent, sec, body))},
		{name: "old secret after rotation ended", body: body,
			header: whHeader(Sign(whOld, sec, body)), wantErr: gateway.ErrWebhookSignature},
		{name: "wrong secret", body: body, header: whHeader(Sign(whOther, sec, body)), wantErr: gateway.ErrWebhookSignature},
		{name: "tampered body", body: []byte(strings.Replace(string(body), `"amount":2500`, `"amount":2`, 1)),
			header: whHeader(Sign(whCurrent, sec, body)), wantErr: gateway.ErrWebhookSignature},
		{name: "re-dated timestamp", body: body,
			header: whHeader("t="+strconv.FormatInt(sec+1, 10), "v1="+good), wantErr: gateway.ErrWebhookSignature},
		{name: "seconds signature presented as milliseconds", body: body,
			header: whHeader("t="+strconv.FormatInt(sec, 10)+"000", "v1="+good), wantErr: gateway.ErrWebhookSignature},
		{name: "signature of empty body", body: body, header: whHeader(Sign(whCurrent, sec, nil)), wantErr: gateway.ErrWebhookSignature},

		{name: "past, tolerance-1s, seconds", body: body, header: whHeader(Sign(whCurrent, sec-secs(tol-time.Second), body))},
		{name: "past, exactly tolerance, seconds", body: body, header: whHeader(Sign(whCurrent, sec-secs(tol), body))},
		{name: "past, tolerance+1s, seconds", body: body, header: whHeader(Sign(whCurrent, sec-secs(tol+time.Second), body)), wantErr: gateway.ErrWebhookStale},
		{name: "future, tolerance-1s, seconds", body: body, header: whHeader(Sign(whCurrent, sec+secs(tol-time.Second), body))},
		{name: "future, tolerance+1s, seconds", body: body, header: whHeader(Sign(whCurrent, sec+secs(tol+time.Second), body)), wantErr: gateway.ErrWebhookStale},
		{name: "past, tolerance-1s, milliseconds", body: body, header: whHeader(Sign(whCurrent, ms-millis(tol-time.Second), body))},
		{name: "past, tolerance+1ms, milliseconds", body: body, header: whHeader(Sign(whCurrent, ms-millis(tol)-1, body)), wantErr: gateway.ErrWebhookStale},
		{name: "past, tolerance+1s, milliseconds", body: body, header: whHeader(Sign(whCurrent, ms-millis(tol+time.Second), body)), wantErr: gateway.ErrWebhookStale},
		{name: "future, tolerance-1s, milliseconds", body: body, header: whHeader(Sign(whCurrent, ms+millis(tol-time.Second), body))},
		{name: "future, tolerance+1s, milliseconds", body: body, header: whHeader(Sign(whCurrent, ms+millis(tol+time.Second), body)), wantErr: gateway.ErrWebhookStale},
		{name: "timestamp zero", body: body, header: whHeader(Sign(whCurrent, 0, body)), wantErr: gateway.ErrWebhookStale},
		{name: "timestamp far in the future", body: body, header: whHeader(Sign(whCurrent, 999_999_999_999_999_999, body)), wantErr: gateway.ErrWebhookStale},
		{name: "stale and wrong secret: signature checked first", body: body,
			header: whHeader(Sign(whOther, sec-secs(time.Hour), body)), wantErr: gateway.ErrWebhookSignature},

		{name: "malformed JSON after a valid signature", body: badJSON, header: whHeader(Sign(whCurrent, sec, badJSON)), wantErr: gateway.ErrWebhookMalformed},
		{name: "malformed JSON with a bad signature is not parsed", body: badJSON, header: whHeader(Sign(whOther, sec, badJSON)), wantErr: gateway.ErrWebhookSignature},
		{name: "malformed JSON with a stale timestamp is not parsed", body: badJSON,
			header: whHeader(Sign(whCurrent, sec-secs(time.Hour), badJSON)), wantErr: gateway.ErrWebhookStale},

		{name: "missing header", body: body, header: http.Header{}, wantErr: gateway.ErrWebhookMalformed},
		{name: "nil header", body: body, header: nil, wantErr: gateway.ErrWebhookMalformed},
		{name: "two header lines", body: body,
			header: http.Header{SignatureHeader: {Sign(whCurrent, sec, body), Sign(whCurrent, sec, body)}}, wantErr: gateway.ErrWebhookMalformed},
		{name: "empty header", body: body, header: whHeader(""), wantErr: gateway.ErrWebhookMalformed},
		{name: "garbage header", body: body, header: whHeader("garbage"), wantErr: gateway.ErrWebhookMalformed},
		{name: "bare signature", body: body, header: whHeader(good), wantErr: gateway.ErrWebhookMalformed},
		{name: "no t", body: body, header: whHeader("v1=" + good), wantErr: gateway.ErrWebhookMalformed},
		{name: "empty t", body: body, header: whHeader("t=", "v1="+good), wantErr: gateway.ErrWebhookMalformed},
		{name: "non-numeric t", body: body, header: whHeader("t=now", "v1="+good), wantErr: gateway.ErrWebhookMalformed},
		{name: "signed t", body: body, header: whHeader("t=+"+strconv.FormatInt(sec, 10), "v1="+good), wantErr: gateway.ErrWebhookMalformed},
		{name: "negative t", body: body, header: whHeader("t=-1", "v1="+good), wantErr: gateway.ErrWebhookMalformed},
		{name: "fractional t", body: body, header: whHeader("t=1.5", "v1="+good), wantErr: gateway.ErrWebhookMalformed},
		{name: "overlong t", body: body, header: whHeader("t=99999999999999999999", "v1="+good), wantErr: gateway.ErrWebhookMalformed},
		{name: "duplicate t, same value", body: body,
			header: whHeader("t="+strconv.FormatInt(sec, 10), "t="+strconv.FormatInt(sec, 10), "v1="+good), wantErr: gateway.ErrWebhookMalformed},
		{name: "duplicate t, different value", body: body,
			header: whHeader("t="+strconv.FormatInt(sec, 10), "v1="+good, "t=1"), wantErr: gateway.ErrWebhookMalformed},
		{name: "no v1", body: body, header: whHeader("t="+strconv.FormatInt(sec, 10), "v0="+good), wantErr: gateway.ErrWebhookMalformed},
		{name: "empty v1", body: body, header: whHeader("t="+strconv.FormatInt(sec, 10), "v1="), wantErr: gateway.ErrWebhookMalformed},
		{name: "bad hex v1", body: body, header: whHeader("t="+strconv.FormatInt(sec, 10), "v1="+strings.Repeat("zz", 32)), wantErr: gateway.ErrWebhookMalformed},
		{name: "short v1", body: body, header: whHeader("t="+strconv.FormatInt(sec, 10), "v1="+good[:62]), wantErr: gateway.ErrWebhookMalformed},
		{name: "one bad hex v1 next to a valid one", body: body,
			header: whHeader("t="+strconv.FormatInt(sec, 10), "v1="+good, "v1=xyz"), wantErr: gateway.ErrWebhookMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := tt.secrets
			if secrets == nil {
				secrets = []string{whCurrent}
			}
			now := tt.now
			if now.IsZero() {
				now = fixedNow
			}
			v := newTestVerifier(t, secrets...)
			ev, err := v.VerifyWebhook(tt.body, tt.header, now)
			if tt.wantErr == nil {
				require.NoError(t, err)
				require.Equal(t, "evt_1", ev.ID)
				require.NotNil(t, ev.PaymentIntent)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			require.Nil(t, ev)
			for _, other := range []error{gateway.ErrWebhookMalformed, gateway.ErrWebhookSignature, gateway.ErrWebhookStale} {
				if other != tt.wantErr {
					require.NotErrorIs(t, err, other)
				}
			}
			msg := err.Error()
			for _, s := range []string{whCurrent, whOld, whOther, good, bad, strings.ToUpper(good), good[:16]} {
				require.NotContains(t, msg, s)
			}
			require.Less(t, len(msg), 200)
		})
	}
}

func TestVerifyWebhookCustomTolerance(t *testing.T) {
	body := []byte(whEvent("evt_1", "charge.dispute.created", `{"id":"dp_1","object":"dispute"}`))
	v, err := NewWebhookVerifier(WebhookOptions{Secrets: []string{whCurrent}, Tolerance: 10 * time.Second})
	require.NoError(t, err)
	_, err = v.VerifyWebhook(body, whHeader(Sign(whCurrent, fixedNow.Unix()-10, body)), fixedNow)
	require.NoError(t, err)
	_, err = v.VerifyWebhook(body, whHeader(Sign(whCurrent, fixedNow.Unix()-11, body)), fixedNow)
	require.ErrorIs(t, err, gateway.ErrWebhookStale)
}

func TestVerifyWebhookZeroVerifierRejects(t *testing.T) {
	body := []byte(whEvent("evt_1", "charge.refund.updated", `{}`))
	h := whHeader(Sign("", fixedNow.Unix(), body))
	for _, v := range []*WebhookVerifier{nil, {}} {
		_, err := v.VerifyWebhook(body, h, fixedNow)
		require.ErrorIs(t, err, gateway.ErrWebhookSignature)
	}
}

// TestVerifyWebhookEvents checks the decoding of each event type billingd acts on,
// through the full verification path.
func TestVerifyWebhookEvents(t *testing.T) {
	created := time.UnixMilli(1732406400999).UTC()
	piCreated := time.UnixMilli(1732406400123).UTC()
	decline := func(dc, msg string) string {
		return `"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"` + dc + `","message":"` + msg + `"}`
	}
	tests := []struct {
		name  string
		typ   string
		obj   string
		check func(t *testing.T, ev *gateway.Event)
	}{
		{"payment_intent.succeeded", gateway.EventPaymentIntentSucceeded, intentJSON("pi_1", "succeeded", `"amount_received":2500`),
			func(t *testing.T, ev *gateway.Event) {
				require.Nil(t, ev.SetupIntent)
				received := int64(2500)
				require.Equal(t, &gateway.PaymentIntent{
					ID: "pi_1", Status: gateway.IntentSucceeded, Amount: 2500, AmountReceived: &received, Currency: "USD",
					Customer: "cus_123", PaymentMethod: "pm_456", MerchantOrderID: "inv_789",
					Metadata: map[string]string{"invoice": "inv_789"}, Created: piCreated,
				}, ev.PaymentIntent)
			}},
		{"payment_intent.payment_failed, hard", gateway.EventPaymentIntentPaymentFailed,
			intentJSON("pi_2", "requires_payment_method", decline("expired_card", "Your card has expired.")),
			func(t *testing.T, ev *gateway.Event) {
				pi := ev.PaymentIntent
				require.Equal(t, gateway.IntentRequiresPaymentMethod, pi.Status)
				require.NotNil(t, pi.LastError)
				require.Equal(t, "expired_card", pi.LastError.DeclineCode)
				require.Equal(t, "card_declined", pi.LastError.Code)
				require.Equal(t, "card_error", pi.LastError.Type)
				require.True(t, pi.LastError.Hard)
				r := gateway.ResultFromIntent(pi, 0)
				require.Equal(t, gateway.Declined, r.Kind)
				require.Equal(t, "expired_card", r.Decline.Reason())
			}},
		{"payment_intent.payment_failed, soft, card number scrubbed", gateway.EventPaymentIntentPaymentFailed,
			intentJSON("pi_3", "requires_payment_method", decline("insufficient_funds", "Card 4000000000009995 has insufficient funds.")),
			func(t *testing.T, ev *gateway.Event) {
				le := ev.PaymentIntent.LastError
				require.Equal(t, "insufficient_funds", le.DeclineCode)
				require.False(t, le.Hard)
				require.NotContains(t, le.Message, "4000000000009995")
				require.Contains(t, le.Message, redacted)
			}},
		{"payment_intent.requires_action", gateway.EventPaymentIntentRequiresAction,
			intentJSON("pi_4", "requires_action", `"next_action":{"type":"challenge_redirect","challenge_redirect":{"url":"https://pay.example/3ds/pi_4"}}`),
			func(t *testing.T, ev *gateway.Event) {
				require.Equal(t, gateway.IntentRequiresAction, ev.PaymentIntent.Status)
				require.Equal(t, "https://pay.example/3ds/pi_4", ev.PaymentIntent.ActionURL)
			}},
		{"payment_intent.processing", gateway.EventPaymentIntentProcessing, intentJSON("pi_5", "processing", ""),
			func(t *testing.T, ev *gateway.Event) {
				require.Equal(t, gateway.IntentProcessing, ev.PaymentIntent.Status)
				require.Nil(t, ev.PaymentIntent.LastError)
			}},
		{"payment_intent.canceled", gateway.EventPaymentIntentCanceled, intentJSON("pi_6", "canceled", ""),
			func(t *testing.T, ev *gateway.Event) {
				require.Equal(t, gateway.IntentCanceled, ev.PaymentIntent.Status)
			}},
		{"payment_intent.created is decoded too", "payment_intent.created", intentJSON("pi_7", "requires_confirmation", ""),
			func(t *testing.T, ev *gateway.Event) {
				require.Equal(t, "pi_7", ev.PaymentIntent.ID)
			}},
		{"payment_intent with expanded customer", gateway.EventPaymentIntentSucceeded,
			`{"id":"pi_8","object":"payment_intent","status":"succeeded","customer":{"id":"cus_9","object":"customer"}}`,
			func(t *testing.T, ev *gateway.Event) {
				require.Equal(t, "cus_9", ev.PaymentIntent.Customer)
				require.True(t, ev.PaymentIntent.Created.IsZero())
			}},
		{"setup_intent.succeeded", gateway.EventSetupIntentSucceeded, whSetupIntentJSON("seti_1", "succeeded"),
			func(t *testing.T, ev *gateway.Event) {
				require.Nil(t, ev.PaymentIntent)
				require.Equal(t, &gateway.SetupIntent{
					ID: "seti_1", Status: "succeeded", Customer: "cus_123", PaymentMethod: "pm_789",
					Metadata: map[string]string{"subscription": "sub_1"},
				}, ev.SetupIntent)
			}},
		{"unknown type", "charge.dispute.created", `{"id":"dp_1","object":"dispute","amount":100}`,
			func(t *testing.T, ev *gateway.Event) {
				require.Nil(t, ev.PaymentIntent)
				require.Nil(t, ev.SetupIntent)
			}},
		{"unknown type with an odd object", "customer.updated", `"not an object"`,
			func(t *testing.T, ev *gateway.Event) {
				require.Nil(t, ev.PaymentIntent)
				require.Nil(t, ev.SetupIntent)
			}},
	}
	v := newTestVerifier(t, whCurrent)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(whEvent("evt_"+strings.NewReplacer(".", "_", " ", "_", ",", "").Replace(tt.name), tt.typ, tt.obj))
			ev, err := v.VerifyWebhook(body, whHeader(Sign(whCurrent, fixedNow.UnixMilli(), body)), fixedNow)
			require.NoError(t, err)
			require.Equal(t, tt.typ, ev.Type)
			require.True(t, strings.HasPrefix(ev.ID, "evt_"))
			require.Equal(t, created, ev.Created)
			tt.check(t, ev)

			direct, err := DecodeEvent(body)
			require.NoError(t, err)
			require.Equal(t, ev, direct)
		})
	}
}

func TestDecodeEventMalformed(t *testing.T) {
	pi := intentJSON("pi_1", "succeeded", "")
	tests := []struct {
		name string
		body string
	}{
		{"empty", ``},
		{"whitespace", " \n"},
		{"null", `null`},
		{"array", `[]`},
		{"truncated", `{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":` + pi},
		{"trailing garbage", whEvent("evt_1", "payment_intent.succeeded", pi) + `x`},
		{"not UTF-8 JSON", "\xff\xfe{}"},
		{"no id", `{"object":"event","type":"charge.refund.updated","data":{"object":{}}}`},
		{"empty id", whEvent("", "charge.refund.updated", `{}`)},
		{"id with a slash", whEvent("evt_1/../x", "charge.refund.updated", `{}`)},
		{"no type", `{"id":"evt_1","object":"event","data":{"object":{}}}`},
		{"type with spaces", whEvent("evt_1", "payment intent", `{}`)},
		{"type in upper case", whEvent("evt_1", "PAYMENT_INTENT.SUCCEEDED", `{}`)},
		{"envelope is not an event", `{"id":"evt_1","object":"payment_intent","type":"charge.refund.updated"}`},
		{"id is a number", `{"id":1,"object":"event","type":"charge.refund.updated"}`},
		{"created is not a number", `{"id":"evt_1","object":"event","created":"yesterday","type":"charge.refund.updated"}`},
		{"data is not an object", `{"id":"evt_1","object":"event","type":"charge.refund.updated","data":[]}`},
		{"payment_intent event without data", `{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}`},
		{"payment_intent event with null object", whEvent("evt_1", "payment_intent.succeeded", `null`)},
		{"payment_intent event with a setup_intent", whEvent("evt_1", "payment_intent.succeeded", whSetupIntentJSON("seti_1", "succeeded"))},
		{"payment_intent event with a charge", whEvent("evt_1", "payment_intent.succeeded", `{"id":"ch_1","object":"charge","status":"succeeded"}`)},
		{"payment_intent without object field", whEvent("evt_1", "payment_intent.succeeded", `{"id":"pi_1","status":"succeeded"}`)},
		{"payment_intent without id", whEvent("evt_1", "payment_intent.succeeded", `{"object":"payment_intent","status":"succeeded"}`)},
		{"payment_intent without status", whEvent("evt_1", "payment_intent.succeeded", `{"id":"pi_1","object":"payment_intent"}`)},
		{"payment_intent amount is a string", whEvent("evt_1", "payment_intent.succeeded", `{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":"2500"}`)},
		{"payment_intent is a string", whEvent("evt_1", "payment_intent.succeeded", `"pi_1"`)},
		{"setup_intent event with a payment_intent", whEvent("evt_1", "setup_intent.succeeded", pi)},
		{"setup_intent without id", whEvent("evt_1", "setup_intent.succeeded", `{"object":"setup_intent","status":"succeeded"}`)},
		{"setup_intent without data", `{"id":"evt_1","object":"event","type":"setup_intent.succeeded","data":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := DecodeEvent([]byte(tt.body))
			require.ErrorIs(t, err, gateway.ErrWebhookMalformed)
			require.Nil(t, ev)
			require.Less(t, len(err.Error()), 250)

			// The same body, correctly signed, is still rejected as malformed.
			v := newTestVerifier(t, whCurrent)
			_, err = v.VerifyWebhook([]byte(tt.body), whHeader(Sign(whCurrent, fixedNow.Unix(), []byte(tt.body))), fixedNow)
			require.ErrorIs(t, err, gateway.ErrWebhookMalformed)
		})
	}
}

func TestParseSignatureHeader(t *testing.T) {
	sigA := strings.Repeat("ab", 32)
	sigB := strings.Repeat("0F", 32)
	rawA, _ := hex.DecodeString(sigA)
	rawB, _ := hex.DecodeString(sigB)
	tests := []struct {
		name   string
		value  string
		wantT  int64
		wantV1 [][]byte
		ok     bool
	}{
		{"seconds", "t=1700000000,v1=" + sigA, 1700000000, [][]byte{rawA}, true},
		{"milliseconds", "t=1700000000123,v1=" + sigA, 1700000000123, [][]byte{rawA}, true},
		{"two v1 in order", "t=1,v1=" + sigA + ",v1=" + sigB, 1, [][]byte{rawA, rawB}, true},
		{"v0 and unknown ignored", "v0=xyz,t=5,v2=,v1=" + sigA + ",extra", 5, [][]byte{rawA}, true},
		{"whitespace", "  t = 7 ,\tv1=" + sigA + " , ", 7, [][]byte{rawA}, true},
		{"empty", "", 0, nil, false},
		{"garbage", "hello world", 0, nil, false},
		{"no t", "v1=" + sigA, 0, nil, false},
		{"no v1", "t=1", 0, nil, false},
		{"duplicate t", "t=1,t=1,v1=" + sigA, 0, nil, false},
		{"t not numeric", "t=abc,v1=" + sigA, 0, nil, false},
		{"t with exponent", "t=1e9,v1=" + sigA, 0, nil, false},
		{"v1 odd length", "t=1,v1=" + sigA[:63], 0, nil, false},
		{"v1 not hex", "t=1,v1=" + strings.Repeat("g", 64), 0, nil, false},
		{"v1 too long", "t=1,v1=" + sigA + "00", 0, nil, false},
		{"key is case-sensitive", "T=1,V1=" + sigA, 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, v1, err := ParseSignatureHeader(tt.value)
			if !tt.ok {
				require.ErrorIs(t, err, gateway.ErrWebhookMalformed)
				require.Zero(t, ts)
				require.Nil(t, v1)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantT, ts)
			require.Equal(t, tt.wantV1, v1)
		})
	}
}

// FuzzParseSignatureHeader checks that any header value parses without panic,
// that a success is self-consistent, and that errors never quote the input.
func FuzzParseSignatureHeader(f *testing.F) {
	sig := strings.Repeat("ab", 32)
	for _, s := range []string{
		"", "t=1,v1=" + sig, "t=1700000000123,v1=" + sig + ",v1=" + sig, " t = 1 , v1 = " + sig + " ",
		"t=1,t=2,v1=" + sig, "t=,v1=", "t=-1,v1=" + sig, "t=99999999999999999999,v1=" + sig,
		"v0=x,t=00001,v1=" + strings.ToUpper(sig), "t=1,v1=zz", ",,,,=,=,", "t=1\x00,v1=" + sig, "t=\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		ts, v1, err := ParseSignatureHeader(value)
		if err != nil {
			if !errors.Is(err, gateway.ErrWebhookMalformed) {
				t.Fatalf("error does not wrap ErrWebhookMalformed: %v", err)
			}
			if ts != 0 || v1 != nil {
				t.Fatal("values returned with an error")
			}
			if strings.Contains(value, "=") && strings.Contains(err.Error(), value) {
				t.Fatalf("error quotes the header: %v", err)
			}
			return
		}
		if ts < 0 || len(v1) == 0 {
			t.Fatalf("bad success: t=%d, %d signatures", ts, len(v1))
		}
		parts := []string{"t=" + strconv.FormatInt(ts, 10)}
		for _, m := range v1 {
			if len(m) != sha256.Size {
				t.Fatalf("signature of %d bytes", len(m))
			}
			parts = append(parts, "v1="+hex.EncodeToString(m))
		}
		ts2, v12, err := ParseSignatureHeader(strings.Join(parts, ","))
		if err != nil || ts2 != ts || len(v12) != len(v1) {
			t.Fatalf("canonical form does not round-trip: %v", err)
		}
		for i := range v1 {
			if !hmac.Equal(v1[i], v12[i]) {
				t.Fatal("canonical form changed a signature")
			}
		}
	})
}

// independentlyVerified reports whether header carries a v1 that is the HMAC
// of body under one of secrets, parsing the header as simply as possible rather
// than with the code under test.
func independentlyVerified(header string, body []byte, secrets ...string) bool {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch strings.TrimSpace(k) {
		case "t":
			ts = strings.TrimSpace(v)
		case "v1":
			sigs = append(sigs, strings.ToLower(strings.TrimSpace(v)))
		}
	}
	for _, s := range secrets {
		want := whSig(s, ts, body)
		for _, got := range sigs {
			if got == want {
				return true
			}
		}
	}
	return false
}

// FuzzVerifyWebhook feeds arbitrary bodies, headers and clock skews. It must
// never panic; every error must be exactly one of the three sentinels and free
// of secrets; a success must be a delivery that really verifies; and an honest
// delivery of the fuzzed body must be judged only on its timestamp and JSON.
func FuzzVerifyWebhook(f *testing.F) {
	goodBody := []byte(whEvent("evt_1", gateway.EventPaymentIntentSucceeded, intentJSON("pi_1", "succeeded", "")))
	siBody := []byte(whEvent("evt_2", gateway.EventSetupIntentSucceeded, whSetupIntentJSON("seti_1", "succeeded")))
	otherBody := []byte(whEvent("evt_3", "charge.dispute.created", `{"id":"dp_1"}`))
	seeds := []struct {
		body   []byte
		header string
		skew   int64
	}{
		{goodBody, Sign(whCurrent, fixedNow.Unix(), goodBody), 0},
		{goodBody, Sign(whOld, fixedNow.UnixMilli(), goodBody), 1},
		{siBody, Sign(whCurrent, fixedNow.Unix()-299, siBody), 299},
		{otherBody, Sign(whCurrent, fixedNow.Unix()+301, otherBody), -301},
		{goodBody, Sign(whOther, fixedNow.Unix(), goodBody), 0},
		{[]byte(`{"id":"evt_1","type":`), Sign(whCurrent, fixedNow.Unix(), []byte(`{"id":"evt_1","type":`)), 7},
		{[]byte(whEvent("evt_4", "payment_intent.succeeded", `{"id":"pi_1"}`)), "t=1,v1=00", 12345},
		{nil, "", 0},
		{[]byte("null"), "garbage", -1},
		{goodBody, "t=1,t=2,v1=" + strings.Repeat("0", 64), 1 << 62},
	}
	for _, s := range seeds {
		f.Add(s.body, s.header, s.skew)
	}
	secrets := []string{whCurrent, whOld}
	v := newTestVerifier(f, secrets...)
	sentinels := []error{gateway.ErrWebhookMalformed, gateway.ErrWebhookSignature, gateway.ErrWebhookStale}
	checkErr := func(t *testing.T, err error) {
		n := 0
		for _, s := range sentinels {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error wraps %d sentinels: %v", n, err)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Fatal("secret in error")
			}
		}
	}
	checkEvent := func(t *testing.T, ev *gateway.Event) {
		if ev == nil || ev.ID == "" || ev.Type == "" {
			t.Fatalf("success without id or type: %+v", ev)
		}
		switch {
		case strings.HasPrefix(ev.Type, "payment_intent."):
			if ev.PaymentIntent == nil || ev.PaymentIntent.ID == "" || ev.SetupIntent != nil {
				t.Fatalf("%s without a payment intent", ev.Type)
			}
		case strings.HasPrefix(ev.Type, "setup_intent."):
			if ev.SetupIntent == nil || ev.SetupIntent.ID == "" || ev.PaymentIntent != nil {
				t.Fatalf("%s without a setup intent", ev.Type)
			}
		default:
			if ev.PaymentIntent != nil || ev.SetupIntent != nil {
				t.Fatalf("%s with an object", ev.Type)
			}
		}
	}

	f.Fuzz(func(t *testing.T, body []byte, header string, skew int64) {
		// 1. Arbitrary delivery.
		ev, err := v.VerifyWebhook(body, http.Header{SignatureHeader: {header}}, fixedNow)
		if err != nil {
			checkErr(t, err)
			if ev != nil {
				t.Fatal("event returned with an error")
			}
		} else {
			if !independentlyVerified(header, body, secrets...) {
				t.Fatalf("accepted a delivery that does not verify: %q", header)
			}
			checkEvent(t, ev)
		}

		// 2. Honest delivery of the same body, signed skew seconds away from now
		// (in seconds or milliseconds).
		skew %= 1000
		ts := fixedNow.Unix() + skew
		if skew&1 == 1 {
			ts = fixedNow.UnixMilli() + skew*1000
		}
		honest := Sign(secrets[int(skew&2)>>1], ts, body)
		ev, err = v.VerifyWebhook(body, http.Header{SignatureHeader: {honest}}, fixedNow)
		direct, derr := DecodeEvent(body)
		switch {
		case skew > 300 || skew < -300:
			if !errors.Is(err, gateway.ErrWebhookStale) {
				t.Fatalf("skew %ds: got %v, want stale", skew, err)
			}
		case derr != nil:
			if !errors.Is(err, gateway.ErrWebhookMalformed) || !errors.Is(derr, gateway.ErrWebhookMalformed) {
				t.Fatalf("undecodable body: verify %v, decode %v", err, derr)
			}
		default:
			if err != nil {
				t.Fatalf("honest delivery rejected: %v", err)
			}
			checkEvent(t, ev)
			require.Equal(t, direct, ev)
		}

		// 3. The same delivery with the body altered never verifies.
		tampered := append(append([]byte(nil), body...), ' ')
		if _, err := v.VerifyWebhook(tampered, http.Header{SignatureHeader: {honest}}, fixedNow); !errors.Is(err, gateway.ErrWebhookSignature) {
			t.Fatalf("tampered body: got %v, want signature mismatch", err)
		}
	})
}
