package checkout

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

const (
	whKey    = "5b2d3a1e-webhook-signature-key"
	whOldKey = "0c7e-old-signature-key"
)

func signed(key string, body []byte) http.Header {
	h := http.Header{}
	h.Set(SignatureHeader, Sign(key, body))
	return h
}

func TestVerifyWebhook(t *testing.T) {
	body := []byte(fixture(t, "webhook_payment_captured.json"))
	v, err := NewWebhookVerifier([]string{whKey, whOldKey})
	require.NoError(t, err)
	now := time.Now()

	cases := []struct {
		name   string
		body   []byte
		header http.Header
		err    error
	}{
		{name: "good", body: body, header: signed(whKey, body)},
		{name: "rotated: old key still accepted", body: body, header: signed(whOldKey, body)},
		{name: "upper-case hex", body: body, header: http.Header{SignatureHeader: {strings.ToUpper(Sign(whKey, body))}}},
		{name: "forged with another key", body: body, header: signed("attacker", body), err: gateway.ErrWebhookSignature},
		{name: "body altered after signing", body: append(bytes.Clone(body), ' '), header: signed(whKey, body), err: gateway.ErrWebhookSignature},
		{name: "unsigned", body: body, header: http.Header{}, err: gateway.ErrWebhookMalformed},
		{name: "two signature headers", body: body, header: http.Header{SignatureHeader: {Sign(whKey, body), Sign(whKey, body)}}, err: gateway.ErrWebhookMalformed},
		{name: "not hex", body: body, header: http.Header{SignatureHeader: {"zz" + Sign(whKey, body)[2:]}}, err: gateway.ErrWebhookMalformed},
		{name: "short signature", body: body, header: http.Header{SignatureHeader: {Sign(whKey, body)[:40]}}, err: gateway.ErrWebhookMalformed},
		{name: "oversized", body: oversized(), header: signed(whKey, oversized()), err: gateway.ErrWebhookMalformed},
		{name: "signed but not an event", body: []byte(`{"hello":1}`), header: signed(whKey, []byte(`{"hello":1}`)), err: gateway.ErrWebhookMalformed},
		{name: "signed but no event id", body: []byte(`{"type":"payment_approved","data":{"id":"pay_1"}}`), header: signed(whKey, []byte(`{"type":"payment_approved","data":{"id":"pay_1"}}`)), err: gateway.ErrWebhookMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := v.VerifyWebhook(tc.body, tc.header, now)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				require.Nil(t, ev)
				require.NotContains(t, err.Error(), whKey)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "evt_6aznipgxbuaure3qen5qbzyswy", ev.ID)
		})
	}

	only, err := NewWebhookVerifier([]string{whKey})
	require.NoError(t, err)
	_, err = only.VerifyWebhook(body, signed(whOldKey, body), now)
	require.ErrorIs(t, err, gateway.ErrWebhookSignature, "a retired key must stop verifying")
	// No timestamp: a delivery verifies whatever the clock says; replays are
	// caught by the stored event id.
	_, err = only.VerifyWebhook(body, signed(whKey, body), now.Add(400*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, DefaultWebhookMaxBody, only.MaxBody())
}

func oversized() []byte {
	return []byte(`{"id":"evt_1","type":"x","pad":"` + strings.Repeat("a", int(DefaultWebhookMaxBody)) + `"}`)
}

func TestNewWebhookVerifierRefusesUnusableKeys(t *testing.T) {
	for _, keys := range [][]string{nil, {}, {""}, {whKey, ""}, {" " + whKey}, {whKey + "\n"}} {
		_, err := NewWebhookVerifier(keys)
		require.Error(t, err, "%q", keys)
		for _, k := range keys {
			if k != "" {
				require.NotContains(t, err.Error(), strings.TrimSpace(k))
			}
		}
	}
}

// TestWebhookFixturesDecode checks every documented event billingd acts on.
func TestWebhookFixturesDecode(t *testing.T) {
	decode := func(t *testing.T, name string) *gateway.Event {
		t.Helper()
		ev, err := DecodeEvent([]byte(fixture(t, name)))
		require.NoError(t, err)
		return ev
	}
	t.Run("payment_approved", func(t *testing.T) {
		ev := decode(t, "webhook_payment_approved.json")
		require.Equal(t, "evt_caxmnvuvbe4elkbdx2imwbnjxu", ev.ID)
		require.Equal(t, gateway.EventPaymentIntentSucceeded, ev.Type)
		require.Equal(t, time.Date(2023, 5, 22, 11, 56, 4, 882154600, time.UTC), ev.Created)
		pi := ev.PaymentIntent
		require.Equal(t, "pay_griq7wyqkggu7mnk7ecm6ysrl4", pi.ID)
		require.Equal(t, gateway.IntentSucceeded, pi.Status)
		require.Equal(t, int64(20), pi.Amount)
		require.Equal(t, int64(20), *pi.AmountReceived)
		require.Equal(t, "src_r54q37yundoubpkiux5g4ocuha", pi.PaymentMethod)
		require.Equal(t, "cus_m3cixs4slzcelfjmdcodlgyvkq", pi.Customer)
		require.Equal(t, "ORD-5023-4E89", pi.MerchantOrderID)
		require.Equal(t, "123989", pi.Metadata["partner_id"])
	})
	t.Run("payment_captured", func(t *testing.T) {
		ev := decode(t, "webhook_payment_captured.json")
		require.Equal(t, gateway.EventPaymentIntentSucceeded, ev.Type)
		require.Equal(t, int64(10000), ev.PaymentIntent.Amount)
		require.Equal(t, "EUR", ev.PaymentIntent.Currency)
	})
	t.Run("payment_captured dated by timestamp", func(t *testing.T) {
		ev := decode(t, "webhook_payment_captured_2023.json")
		require.Equal(t, time.Date(2023, 5, 24, 9, 12, 32, 357000000, time.UTC), ev.Created)
		require.Equal(t, int64(20), *ev.PaymentIntent.AmountReceived)
	})
	t.Run("payment_declined", func(t *testing.T) {
		ev := decode(t, "webhook_payment_declined.json")
		require.Equal(t, gateway.EventPaymentIntentPaymentFailed, ev.Type)
		pi := ev.PaymentIntent
		require.Equal(t, gateway.IntentRequiresPaymentMethod, pi.Status)
		require.Equal(t, "20051", pi.LastError.Code)
		require.Equal(t, "insufficient_funds", pi.LastError.DeclineCode)
		require.False(t, pi.LastError.Hard)
		require.Nil(t, pi.AmountReceived)
	})
	t.Run("payment_capture_declined", func(t *testing.T) {
		ev := decode(t, "webhook_payment_capture_declined.json")
		require.Equal(t, gateway.EventPaymentCaptureDeclined, ev.Type)
		require.Equal(t, "pay_y3oqhf46pyzuxjbcn2giaqnb44", ev.PaymentIntent.ID)
		require.Equal(t, "20120", ev.PaymentIntent.LastError.Code)
		require.Equal(t, "123989", ev.PaymentIntent.Metadata["partner_id"])
	})
	t.Run("payment_refunded", func(t *testing.T) {
		ev := decode(t, "webhook_payment_refunded.json")
		require.Equal(t, gateway.EventRefundUpdated, ev.Type)
		rf := ev.Refund
		require.Equal(t, "act_7fmebms4rtmuja2poigylogjk4", rf.ID)
		require.Equal(t, "pay_pswr5qaqzzferh2puzfyrefzuy", rf.PaymentIntent)
		require.Equal(t, int64(200), rf.Amount)
		require.Equal(t, "GBP", rf.Currency)
		require.Equal(t, gateway.RefundSucceeded, rf.Status)
	})
	t.Run("card_verified", func(t *testing.T) {
		ev := decode(t, "webhook_card_verified.json")
		require.Equal(t, gateway.EventSetupIntentSucceeded, ev.Type)
		si := ev.SetupIntent
		require.Equal(t, "pay_mxkr3g274n2efiqvk2iwedti4u", si.ID)
		require.Equal(t, "pay_mxkr3g274n2efiqvk2iwedti4u", si.SeriesPaymentID)
		require.Equal(t, "src_r54q37yundoubpkiux5g4ocuha", si.PaymentMethod)
		require.Equal(t, "cus_m3cixs4slzcelfjmdcodlgyvkq", si.Customer)
		require.Equal(t, "NY2018", si.Metadata["coupon_code"])
		require.Equal(t, &gateway.CardDetails{Brand: "visa", Last4: "4242", ExpMonth: 6, ExpYear: 2025, Country: "GB", Funding: "credit"}, si.Card)
	})
}

func TestWebhookTypesAndStatuses(t *testing.T) {
	ev := func(typ, data string) string {
		return `{"id":"evt_1","type":"` + typ + `","created_on":"2026-01-01T00:00:00Z","data":` + data + `}`
	}
	pay := `{"id":"pay_1","amount":1200,"currency":"USD","reference":"ord-1","metadata":{"idempotency_key":"ord-1-a1"}}`
	cases := []struct {
		body   string
		typ    string
		status gateway.IntentStatus
		refund gateway.RefundStatus
		only   bool // an event billingd only records
	}{
		{body: ev("payment_pending", pay), typ: gateway.EventPaymentIntentProcessing, status: gateway.IntentProcessing},
		{body: ev("payment_pending", `{"id":"pay_1","3ds":{"enrolled":"Y"}}`), typ: gateway.EventPaymentIntentRequiresAction, status: gateway.IntentRequiresAction},
		{body: ev("payment_declined", `{"id":"pay_1","response_code":"20154"}`), typ: gateway.EventPaymentIntentRequiresAction, status: gateway.IntentRequiresAction},
		{body: ev("payment_expired", pay), typ: gateway.EventPaymentIntentCanceled, status: gateway.IntentCanceled},
		{body: ev("payment_canceled", pay), typ: gateway.EventPaymentIntentCanceled, status: gateway.IntentCanceled},
		{body: ev("payment_refund_declined", `{"id":"pay_1","action_id":"act_1","amount":500,"currency":"USD","response_code":"20005"}`), typ: gateway.EventRefundUpdated, refund: gateway.RefundFailed},
		{body: ev("card_verification_declined", pay), typ: "card_verification_declined", only: true},
		{body: ev("dispute_opened", `{"whatever":[1,2]}`), typ: "dispute_opened", only: true},
		{body: `{"id":"evt_1","type":"payment_voided"}`, typ: "payment_voided", only: true},
	}
	for i, tc := range cases {
		t.Run(strconv.Itoa(i)+" "+tc.typ, func(t *testing.T) {
			e, err := DecodeEvent([]byte(tc.body))
			require.NoError(t, err)
			require.Equal(t, "evt_1", e.ID)
			require.Equal(t, tc.typ, e.Type)
			if tc.only {
				require.Nil(t, e.PaymentIntent)
				require.Nil(t, e.Refund)
				require.Nil(t, e.SetupIntent)
				return
			}
			if tc.refund != "" {
				require.Equal(t, tc.refund, e.Refund.Status)
				require.Equal(t, "20005", e.Refund.FailureReason)
				return
			}
			require.Equal(t, tc.status, e.PaymentIntent.Status)
		})
	}
}

func TestWebhookEventsBillingdActsOnNeedTheirData(t *testing.T) {
	for _, body := range []string{
		`{"id":"evt_1","type":"payment_approved"}`,
		`{"id":"evt_1","type":"payment_approved","data":null}`,
		`{"id":"evt_1","type":"payment_approved","data":{"amount":5}}`,
		`{"id":"evt_1","type":"payment_refunded","data":{"id":"pay_1"}}`,
		`{"id":"evt_1","type":"card_verified","data":{"id":"pay_1"}}`,
		`{"id":"evt_1","type":"payment_captured","data":{"id":"pay_1","amount":5}}`,
		`{"id":"evt 1","type":"payment_approved","data":{"id":"pay_1"}}`,
		`{"id":"evt_1","type":"Payment Approved","data":{"id":"pay_1"}}`,
		`[]`,
		``,
	} {
		_, err := DecodeEvent([]byte(body))
		require.ErrorIs(t, err, gateway.ErrWebhookMalformed, body)
	}
}
