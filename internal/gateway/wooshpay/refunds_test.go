package wooshpay

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

// refundJSON is a refund object as WooshPay (Stripe-shaped) sends it.
func refundJSON(id, status, extra string) string {
	s := `{"id":"` + id + `","object":"refund","created":1732406400123,"amount":1200,"currency":"jpy",` +
		`"status":"` + status + `","payment_intent":"pi_2","charge":"ch_2","reason":"duplicate",` +
		`"metadata":{"invoice":"inv_789","refund_key":"inv_789-r-pi_2"},"failure_reason":null`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestRefundRequestShape(t *testing.T) {
	f := newFake(t, reply(200, refundJSON("re_1", "succeeded", "")))
	c := f.client()
	ctx := context.Background()

	t.Run("create", func(t *testing.T) {
		r := c.CreateRefund(ctx, gateway.RefundRequest{
			PaymentIntent: "pi_2", Amount: 1200, Currency: "JPY", Reason: gateway.RefundDuplicate,
			Metadata: map[string]string{"invoice": "inv_789"}, IdempotencyKey: "inv_789-r-pi_2",
		})
		require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
		got := f.last()
		require.Equal(t, http.MethodPost, got.Method)
		require.Equal(t, "/v1/refunds", got.Path)
		require.Equal(t, "inv_789-r-pi_2", got.Header.Get("Idempotency-Key"))
		user, _ := basicAuth(t, got.Header)
		require.Equal(t, testKey, user)
		require.Equal(t, map[string]any{
			"payment_intent": "pi_2", "amount": float64(1200), "reason": "duplicate",
			"metadata": map[string]any{"invoice": "inv_789"},
		}, got.BodyMap)
		require.Equal(t, &gateway.Refund{
			ID: "re_1", PaymentIntent: "pi_2", Amount: 1200, Currency: "JPY", Status: gateway.RefundSucceeded,
			Reason: "duplicate", Metadata: map[string]string{"invoice": "inv_789", "refund_key": "inv_789-r-pi_2"},
			Created: time.UnixMilli(1732406400123).UTC(),
		}, r.Refund)
	})

	t.Run("retrieve", func(t *testing.T) {
		r := c.RetrieveRefund(ctx, "pi_1", "re_1")
		require.Equal(t, gateway.Succeeded, r.Kind)
		got := f.last()
		require.Equal(t, http.MethodGet, got.Method)
		require.Equal(t, "/v1/refunds/re_1", got.Path)
		require.Empty(t, got.Body)
		require.Empty(t, got.Header.Get("Idempotency-Key"))
	})

	t.Run("refused locally", func(t *testing.T) {
		n := len(f.requests())
		for _, req := range []gateway.RefundRequest{
			{PaymentIntent: "pi_2", Amount: 1200},                        // no key
			{PaymentIntent: "pi_2", Amount: 0, IdempotencyKey: "k"},      // no amount
			{PaymentIntent: "pi_2/../x", Amount: 1, IdempotencyKey: "k"}, // bad id
		} {
			r := c.CreateRefund(ctx, req)
			require.Equal(t, gateway.Invalid, r.Kind)
		}
		require.Equal(t, gateway.Invalid, c.RetrieveRefund(ctx, "pi_1", "../x").Kind)
		require.Len(t, f.requests(), n, "nothing may be sent")
	})
}

func TestRefundOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   gateway.Kind
	}{
		{"succeeded", 200, refundJSON("re_1", "succeeded", ""), gateway.Succeeded},
		{"pending", 200, refundJSON("re_1", "pending", ""), gateway.Processing},
		{"requires_action", 200, refundJSON("re_1", "requires_action", ""), gateway.Processing},
		{"failed", 200, refundJSON("re_1", "failed", `"failure_reason":"expired_or_canceled_card"`), gateway.Declined},
		{"canceled", 200, refundJSON("re_1", "canceled", ""), gateway.Canceled},
		{"unknown status", 200, refundJSON("re_1", "weird", ""), gateway.Transient},
		{"unreadable 200", 200, `{"id":`, gateway.Transient},
		{"500", 500, `{"error":{"type":"api_error","message":"boom"}}`, gateway.Transient},
		{"409 key in flight", 409, `{"error":{"type":"idempotency_error","code":"idempotency_key_in_use","message":"busy"}}`, gateway.Transient},
		{"429", 429, `{"error":{"type":"api_error","code":"rate_limit","message":"slow down"}}`, gateway.Transient},
		{"already refunded", 400, `{"error":{"type":"invalid_request_error","code":"charge_already_refunded","message":"Charge has already been refunded."}}`, gateway.Invalid},
		{"no such intent", 404, `{"error":{"type":"invalid_request_error","code":"resource_missing","param":"payment_intent","message":"No such payment_intent"}}`, gateway.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, reply(tt.status, tt.body))
			r := f.client().CreateRefund(context.Background(), gateway.RefundRequest{PaymentIntent: "pi_2", Amount: 1200, Currency: "USD", IdempotencyKey: "k1"})
			require.Equal(t, tt.want, r.Kind, "%v", r.Err)
			if tt.name == "failed" {
				require.Equal(t, "expired_or_canceled_card", r.Refund.FailureReason)
				require.Equal(t, "expired_or_canceled_card", r.Decline.Reason())
			}
		})
	}
}

func TestRefundWebhookDecodes(t *testing.T) {
	body := []byte(`{"id":"evt_9","object":"event","created":1732406400999,"type":"charge.refund.updated","data":{"object":` +
		refundJSON("re_1", "succeeded", "") + `}}`)
	ev, err := DecodeEvent(body)
	require.NoError(t, err)
	require.Equal(t, gateway.EventRefundUpdated, ev.Type)
	require.Nil(t, ev.PaymentIntent)
	require.NotNil(t, ev.Refund)
	require.Equal(t, "re_1", ev.Refund.ID)
	require.Equal(t, gateway.RefundSucceeded, ev.Refund.Status)
	require.Equal(t, "pi_2", ev.Refund.PaymentIntent)

	_, err = DecodeEvent([]byte(`{"id":"evt_9","object":"event","created":1,"type":"charge.refund.updated","data":{"object":` +
		intentJSON("pi_1", "succeeded", "") + `}}`))
	require.ErrorIs(t, err, gateway.ErrWebhookMalformed)
}
