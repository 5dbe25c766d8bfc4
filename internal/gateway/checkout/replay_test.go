package checkout

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

func listOf(payments ...string) string {
	return `{"limit":100,"skip":0,"total_count":` + strconv.Itoa(len(payments)) + `,"data":[` + join(payments) + `]}`
}

// TestReplayLooksUpBeforeItSends is the exactly-once guarantee on a provider
// that keeps no replay for a request it failed: a possibly-sent charge is
// found by its reference and its own key before anything is sent again.
func TestReplayLooksUpBeforeItSends(t *testing.T) {
	ours := paymentJSON(map[string]any{"id": "pay_ours", "status": "Captured", "approved": true,
		"metadata": map[string]any{"idempotency_key": "ord-1-a2"}})
	// Same invoice, another attempt (the pay page's, or attempt 1): same
	// reference, other key. It must never be taken for ours.
	sibling := paymentJSON(map[string]any{"id": "pay_sibling", "status": "Captured", "approved": true,
		"metadata": map[string]any{"idempotency_key": "ord-1-a1"}})
	created := paymentJSON(map[string]any{"id": "pay_new", "status": "Captured", "approved": true})
	req := mitRequest()
	req.IdempotencyKey = "ord-1-a2"
	req.Replay = true

	cases := []struct {
		name   string
		list   reply
		kind   gateway.Kind
		id     string
		posted int
	}{
		{name: "found: returned, nothing sent", list: reply{status: 200, body: listOf(sibling, ours)}, kind: gateway.Succeeded, id: "pay_ours", posted: 0},
		{name: "found declined: returned as read", list: reply{status: 200, body: listOf(paymentJSON(map[string]any{"id": "pay_ours", "status": "Declined", "approved": false, "response_code": "20051", "metadata": map[string]any{"idempotency_key": "ord-1-a2"}}))}, kind: gateway.Declined, id: "pay_ours", posted: 0},
		{name: "only a sibling: sent", list: reply{status: 200, body: listOf(sibling)}, kind: gateway.Succeeded, id: "pay_new", posted: 1},
		{name: "empty list: sent", list: reply{status: 200, body: listOf()}, kind: gateway.Succeeded, id: "pay_new", posted: 1},
		{name: "lookup 500: nothing sent", list: reply{status: 500}, kind: gateway.Transient, posted: 0},
		{name: "lookup 429: nothing sent", list: reply{status: 429, header: map[string]string{"Retry-After": "3"}}, kind: gateway.Transient, posted: 0},
		{name: "lookup 401: nothing sent, still unknown", list: reply{status: 401}, kind: gateway.Transient, posted: 0},
		{name: "lookup unreadable: nothing sent", list: reply{status: 200, body: "{"}, kind: gateway.Transient, posted: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFake(t)
			f.on("GET /payments", tc.list)
			f.on("POST /payments", reply{status: 201, body: created})
			r := c.CreatePaymentIntent(context.Background(), req)
			require.Equal(t, tc.kind, r.Kind, "%v", r.Err)
			require.Equal(t, tc.posted, f.count("POST", "/payments"))
			require.Equal(t, 1, f.count("GET", "/payments"))
			require.Contains(t, f.requests()[0].Query, "reference=ord-1")
			if tc.id != "" {
				require.Equal(t, tc.id, r.Intent.ID)
			}
			if tc.kind == gateway.Transient {
				require.Contains(t, r.Err.Error(), "lookup before resend")
			}
		})
	}

	t.Run("without Replay no lookup is made", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /payments", reply{status: 201, body: created})
		plain := req
		plain.Replay = false
		r := c.CreatePaymentIntent(context.Background(), plain)
		require.Equal(t, gateway.Succeeded, r.Kind)
		require.Equal(t, 0, f.count("GET", "/payments"))
	})
	t.Run("a request refused locally is not looked up either", func(t *testing.T) {
		c, f := newFake(t)
		bad := req
		bad.Currency = "UYW"
		r := c.CreatePaymentIntent(context.Background(), bad)
		require.Equal(t, gateway.Invalid, r.Kind)
		require.Empty(t, f.requests())
	})
}

func TestRefundReplayLooksUpBeforeItSends(t *testing.T) {
	actions := `[{"id":"act_ours","type":"Refund","amount":500,"approved":true,"response_code":"10000","reference":"rf-2"},
		{"id":"act_other","type":"Refund","amount":500,"approved":true,"reference":"rf-1"},
		{"id":"act_cap","type":"Capture","amount":1200,"approved":true,"reference":"rf-2"}]`
	req := gateway.RefundRequest{PaymentIntent: "pay_1", Amount: 500, Currency: "USD", IdempotencyKey: "rf-2", Replay: true}
	cases := []struct {
		name    string
		actions reply
		kind    gateway.Kind
		id      string
		posted  int
	}{
		{name: "found: returned, nothing sent", actions: reply{status: 200, body: actions}, kind: gateway.Succeeded, id: "act_ours"},
		{name: "not found: sent", actions: reply{status: 200, body: `[{"id":"act_other","type":"Refund","amount":500,"approved":true,"reference":"rf-1"}]`}, kind: gateway.Processing, id: "act_new", posted: 1},
		{name: "lookup 502: nothing sent", actions: reply{status: 502}, kind: gateway.Transient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFake(t)
			f.on("GET /payments/pay_1/actions", tc.actions)
			f.on("POST /payments/pay_1/refunds", reply{status: 202, body: `{"action_id":"act_new","reference":"rf-2"}`})
			r := c.CreateRefund(context.Background(), req)
			require.Equal(t, tc.kind, r.Kind, "%v", r.Err)
			require.Equal(t, tc.posted, f.count("POST", "/payments/pay_1/refunds"))
			if tc.id != "" {
				require.Equal(t, tc.id, r.Refund.ID)
			}
		})
	}
}

func TestKeyPolicy(t *testing.T) {
	c, _ := newFake(t)
	p := c.KeyPolicy()
	require.True(t, p.LookupBeforeResend)
	require.Equal(t, "23h0m0s", p.Window.String())
}
