package checkout

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

// TestResponseFixturesParse serves each documented response body and checks
// the Result the client makes of it.
func TestResponseFixturesParse(t *testing.T) {
	ctx := context.Background()

	t.Run("201 authorized (OAS)", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /payments", reply{status: 201, body: fixture(t, "payment_201_authorized_oas.json")})
		r := c.CreatePaymentIntent(ctx, mitRequest())
		require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
		pi := r.Intent
		require.Equal(t, "pay_mbabizu24mvu3mela5njyhpit4", pi.ID)
		require.Equal(t, gateway.IntentSucceeded, pi.Status)
		require.Equal(t, int64(6540), pi.Amount)
		require.Equal(t, int64(6540), *pi.AmountReceived)
		require.Equal(t, "USD", pi.Currency)
		require.Equal(t, "src_nwd3m4in3hkuddfpjsaevunhdy", pi.PaymentMethod)
		require.Equal(t, "cus_udst2tfldj6upmye2reztkmm4i", pi.Customer)
		require.Equal(t, "ORD-5023-4E89", pi.MerchantOrderID)
		require.Equal(t, time.Date(2019, 9, 10, 10, 11, 12, 0, time.UTC), pi.Created)
		require.Nil(t, pi.LastError)
	})
	t.Run("201 stored card (seed)", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /payments", reply{status: 201, body: fixture(t, "payment_201_stored_card_seed.json")})
		r := c.CreatePaymentIntent(ctx, mitRequest())
		require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
		require.Equal(t, "src_y4pwpefkykre7ijbeyxjsxdkf4", r.Intent.PaymentMethod)
		require.Equal(t, "cus_udst2tfldj6upmye2reztkmm4i", r.Intent.Customer)
	})
	t.Run("202 pending for 3-D Secure (seed)", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /payments", reply{status: 202, body: fixture(t, "payment_202_pending_3ds_seed.json")})
		r := c.CreatePaymentIntent(ctx, mitRequest())
		require.Equal(t, gateway.RequiresAction, r.Kind)
		require.Equal(t, "https://api.sandbox.checkout.com/redirect/act_y3oqhf46pyzuxjbcn2giaqnb44", r.Intent.ActionURL)
		require.Equal(t, "pay_4hlqceyyib5ezpxtpdpwfhwtda", r.Intent.ID)
		require.Nil(t, r.Intent.AmountReceived)
		// The 202 has no amount; the pending payment is the one requested.
		require.Equal(t, int64(1200), r.Intent.Amount)
		require.Equal(t, "USD", r.Intent.Currency)
	})
	t.Run("202 pending asynchronous", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /payments", reply{status: 202, body: fixture(t, "payment_202_pending_async_oas.json")})
		r := c.CreatePaymentIntent(ctx, mitRequest())
		require.Equal(t, gateway.Processing, r.Kind)
		require.Equal(t, gateway.IntentProcessing, r.Intent.Status)
		require.Empty(t, r.Intent.ActionURL)
	})
	t.Run("payment details", func(t *testing.T) {
		c, f := newFake(t)
		f.on("GET /payments/pay_y3oqhf46pyzuxjbcn2giaqnb44", reply{status: 200, body: fixture(t, "payment_details_oas.json")})
		r := c.RetrievePaymentIntent(ctx, "pay_y3oqhf46pyzuxjbcn2giaqnb44")
		require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
		require.Equal(t, map[string]string{"coupon_code": "NY2018", "partner_id": "123989"}, r.Intent.Metadata)
		require.Equal(t, time.Date(2019, 8, 24, 14, 15, 22, 0, time.UTC), r.Intent.Created)
		require.Equal(t, "cus_y3oqhf46pyzuxjbcn2giaqnb44", r.Intent.Customer)
	})
	t.Run("payment list", func(t *testing.T) {
		c, f := newFake(t)
		f.on("GET /payments", reply{status: 200, body: fixture(t, "payment_list_oas.json")})
		pis, err := c.SearchPaymentIntentsByOrder(ctx, "ORD-5023-4E89")
		require.NoError(t, err)
		require.Len(t, pis, 1)
		require.Equal(t, "pay_y3oqhf46pyzuxjbcn2giaqnb44", pis[0].ID)
		require.Equal(t, gateway.IntentSucceeded, pis[0].Status)
		q := f.requests()[0].Query
		require.Contains(t, q, "reference=ORD-5023-4E89")
		require.Contains(t, q, "limit=100")
	})
	t.Run("refund 202", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /payments/pay_y3oqhf46pyzuxjbcn2giaqnb44/refunds", reply{status: 202, body: fixture(t, "refund_202_oas.json")})
		r := c.CreateRefund(ctx, gateway.RefundRequest{PaymentIntent: "pay_y3oqhf46pyzuxjbcn2giaqnb44", Amount: 1000, Currency: "USD", IdempotencyKey: "rf-1"})
		require.Equal(t, gateway.Processing, r.Kind, "%v", r.Err)
		require.Equal(t, "act_y3oqhf46pyzuxjbcn2giaqnb44", r.Refund.ID)
		require.Equal(t, gateway.RefundPending, r.Refund.Status)
		require.Equal(t, "pay_y3oqhf46pyzuxjbcn2giaqnb44", r.Refund.PaymentIntent)
	})
	t.Run("actions: the refund", func(t *testing.T) {
		c, f := newFake(t)
		f.on("GET /payments/pay_y3oqhf46pyzuxjbcn2giaqnb44", reply{status: 200, body: fixture(t, "payment_details_oas.json")})
		f.on("GET /payments/pay_y3oqhf46pyzuxjbcn2giaqnb44/actions", reply{status: 200, body: fixture(t, "actions_oas.json")})
		r := c.RetrieveRefund(ctx, "pay_y3oqhf46pyzuxjbcn2giaqnb44", "act_fd3h6evhpn3uxdoqbuu3lqnqbm")
		require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
		require.Equal(t, int64(1000), r.Refund.Amount)
		require.Equal(t, "USD", r.Refund.Currency)
		require.Equal(t, gateway.RefundSucceeded, r.Refund.Status)
	})
	t.Run("actions: a capture is not a refund", func(t *testing.T) {
		c, f := newFake(t)
		f.on("GET /payments/pay_y3oqhf46pyzuxjbcn2giaqnb44", reply{status: 200, body: fixture(t, "payment_details_oas.json")})
		f.on("GET /payments/pay_y3oqhf46pyzuxjbcn2giaqnb44/actions", reply{status: 200, body: fixture(t, "actions_oas.json")})
		r := c.RetrieveRefund(ctx, "pay_y3oqhf46pyzuxjbcn2giaqnb44", "act_gefycn3jcvuupboxfmqrhk2aym")
		require.Equal(t, gateway.Invalid, r.Kind)
	})
	t.Run("actions: not listed yet", func(t *testing.T) {
		c, f := newFake(t)
		f.on("GET /payments/pay_y3oqhf46pyzuxjbcn2giaqnb44", reply{status: 200, body: fixture(t, "payment_details_oas.json")})
		f.on("GET /payments/pay_y3oqhf46pyzuxjbcn2giaqnb44/actions", reply{status: 200, body: fixture(t, "actions_oas.json")})
		r := c.RetrieveRefund(ctx, "pay_y3oqhf46pyzuxjbcn2giaqnb44", "act_notyetlisted")
		require.Equal(t, gateway.Processing, r.Kind)
	})
	t.Run("422", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /payments", reply{status: 422, body: fixture(t, "error_422_oas.json")})
		r := c.CreatePaymentIntent(ctx, mitRequest())
		require.Equal(t, gateway.OurDataError, r.Kind)
		require.Equal(t, "source", r.Param)
		require.Contains(t, r.Err.Error(), "0HL80RJLS76I7")
	})
	t.Run("hosted page", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /hosted-payments", reply{status: 201, body: fixture(t, "hosted_201_oas.json")})
		s, err := c.CreateSetupCheckoutSession(ctx, setupRequest())
		require.NoError(t, err)
		require.Equal(t, "hpp_xGQBg0AXl3cM", s.ID)
		require.Equal(t, "https://pay.sandbox.checkout.com/page/hpp_xGQBg0AXl3cM", s.URL)
		require.Equal(t, c.now().Add(HostedPageLifetime), s.ExpiresAt)
	})
}

func setupRequest() gateway.SetupSessionRequest {
	return gateway.SetupSessionRequest{
		Customer: "cus_1", SuccessURL: "https://billing.example/card/done", CancelURL: "https://billing.example/card/cancel",
		Metadata: map[string]string{"dunning_case": "7", "currency": "eur"}, IdempotencyKey: "setup-7-1",
	}
}

// requestBody makes the client send one request and returns its JSON body.
func requestBody(t *testing.T, route string, status int, body string, send func(*Client)) (map[string]any, seen) {
	t.Helper()
	c, f := newFake(t)
	f.on(route, reply{status: status, body: body})
	send(c)
	reqs := f.requests()
	require.NotEmpty(t, reqs)
	last := reqs[len(reqs)-1]
	return decodeMap(t, last.Body), last
}

// kinds reports the JSON kind of a decoded value.
func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "?"
}

// requireSameShape checks that every key billingd sends is a field the
// documented example has, with the same JSON kind, recursively; except lists
// keys that the docs do not show (each an assumption docs/gateway-checkout.md
// states).
func requireSameShape(t *testing.T, ours, doc map[string]any, path string, except map[string]bool) {
	t.Helper()
	for k, v := range ours {
		p := path + k
		if except[p] {
			continue
		}
		dv, ok := doc[k]
		require.True(t, ok, "billingd sends %s, which the documented request does not have", p)
		require.Equal(t, kind(dv), kind(v), "%s has another JSON type than documented", p)
		if m, ok := v.(map[string]any); ok && p != "metadata" {
			requireSameShape(t, m, dv.(map[string]any), p+".", except)
		}
	}
}

func TestRequestsMatchTheDocumentedShapes(t *testing.T) {
	ctx := context.Background()
	created := fixture(t, "payment_201_authorized_oas.json")

	t.Run("merchant-initiated payment", func(t *testing.T) {
		ours, req := requestBody(t, "POST /payments", 201, created, func(c *Client) { c.CreatePaymentIntent(ctx, mitRequest()) })
		doc := decodeMap(t, []byte(fixture(t, "request_payment_oas.json")))
		// source {type:"id", id} is documented as its own source type
		// (PaymentRequestIdSource); merchant_initiated by the seed.
		requireSameShape(t, ours, doc, "", map[string]bool{"source.id": true, "merchant_initiated": true})
		require.Equal(t, map[string]any{"type": "id", "id": "src_card1"}, ours["source"])
		require.Equal(t, doc["payment_type"], ours["payment_type"])
		require.Equal(t, doc["capture"], ours["capture"])
		require.Equal(t, true, ours["merchant_initiated"])
		require.Equal(t, "pay_series1", ours["previous_payment_id"])
		require.Equal(t, "ord-1", ours["reference"])
		require.Equal(t, map[string]any{"id": "cus_1"}, ours["customer"])
		require.Equal(t, map[string]any{"attempt": "1", "idempotency_key": "ord-1-a1"}, ours["metadata"])
		require.NotContains(t, ours, "3ds")
		require.NotContains(t, ours, "success_url")
		require.Equal(t, "Bearer "+testKey, req.Header.Get("Authorization"))
		require.Equal(t, "application/json", req.Header.Get("Content-Type"))
		require.Equal(t, "ord-1-a1", req.Header.Get("Cko-Idempotency-Key"))
	})
	t.Run("customer-initiated payment for the pay page", func(t *testing.T) {
		req := mitRequest()
		req.OffSession = false
		req.PreviousPaymentID = ""
		req.ReturnURL = "https://billing.example/pay/tok?x=1"
		ours, _ := requestBody(t, "POST /payments", 202, fixture(t, "payment_202_pending_3ds_seed.json"), func(c *Client) { c.CreatePaymentIntent(ctx, req) })
		seed := decodeMap(t, []byte(fixture(t, "request_cit_store_card_seed.json")))
		doc := decodeMap(t, []byte(fixture(t, "request_payment_oas.json")))
		require.Equal(t, seed["merchant_initiated"], ours["merchant_initiated"])
		require.Equal(t, true, ours["3ds"].(map[string]any)["enabled"])
		require.Equal(t, seed["3ds"].(map[string]any)["enabled"], ours["3ds"].(map[string]any)["enabled"])
		require.Equal(t, "Recurring", ours["payment_type"])
		require.Equal(t, "https://billing.example/pay/tok?cko_result=success&x=1", ours["success_url"])
		require.Equal(t, "https://billing.example/pay/tok?cko_result=failure&x=1", ours["failure_url"])
		require.Equal(t, kind(doc["success_url"]), kind(ours["success_url"]))
		require.NotContains(t, ours, "previous_payment_id")
	})
	t.Run("refund", func(t *testing.T) {
		ours, req := requestBody(t, "POST /payments/pay_1/refunds", 202, fixture(t, "refund_202_oas.json"), func(c *Client) {
			c.CreateRefund(ctx, gateway.RefundRequest{PaymentIntent: "pay_1", Amount: 500, Currency: "USD", IdempotencyKey: "rf-9", Metadata: map[string]string{"refund_id": "9"}})
		})
		doc := decodeMap(t, []byte(fixture(t, "request_refund_oas.json")))
		requireSameShape(t, ours, doc, "", nil)
		require.Equal(t, float64(500), ours["amount"])
		require.Equal(t, "rf-9", ours["reference"])
		require.Equal(t, "rf-9", req.Header.Get("Cko-Idempotency-Key"))
	})
	t.Run("hosted card-update page", func(t *testing.T) {
		ours, _ := requestBody(t, "POST /hosted-payments", 201, fixture(t, "hosted_201_oas.json"), func(c *Client) {
			_, err := c.CreateSetupCheckoutSession(ctx, setupRequest())
			require.NoError(t, err)
		})
		doc := decodeMap(t, []byte(fixture(t, "request_hosted_payments_oas.json")))
		// customer.id: the hosted page documents only email and name.
		requireSameShape(t, ours, doc, "", map[string]bool{"customer.id": true})
		require.Equal(t, float64(0), ours["amount"])
		require.Equal(t, "EUR", ours["currency"])
		require.Equal(t, "Recurring", ours["payment_type"])
		require.Equal(t, map[string]any{"id": "cus_1"}, ours["customer"])
		require.Equal(t, map[string]any{"address": map[string]any{"country": "US"}}, ours["billing"])
		require.Equal(t, map[string]any{"enabled": true}, ours["3ds"])
		require.Equal(t, "https://billing.example/card/cancel", ours["cancel_url"])
		require.Equal(t, "https://billing.example/card/cancel", ours["failure_url"])
		require.Equal(t, "https://billing.example/card/done", ours["success_url"])
		require.Equal(t, "7", ours["metadata"].(map[string]any)["dunning_case"])
	})
}

func TestSearchPagesThroughLongLists(t *testing.T) {
	c, f := newFake(t)
	page := func(ids ...string) string {
		var data []string
		for _, id := range ids {
			data = append(data, paymentJSON(map[string]any{"id": id, "status": "Declined", "approved": false, "response_code": "20051"}))
		}
		return `{"limit":100,"total_count":3,"data":[` + join(data) + `]}`
	}
	f.on("GET /payments", reply{status: 200, body: page("pay_a", "pay_b")}, reply{status: 200, body: page("pay_c")})
	pis, err := c.SearchPaymentIntentsByOrder(context.Background(), "ord-1")
	require.NoError(t, err)
	require.Len(t, pis, 3)
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.Contains(t, reqs[1].Query, "skip=2")

	c2, f2 := newFake(t)
	f2.on("GET /payments", reply{status: 503})
	_, err = c2.SearchPaymentIntentsByOrder(context.Background(), "ord-1")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.True(t, e.Retryable())
	require.Equal(t, http.StatusServiceUnavailable, e.Result.HTTPStatus)
}

func join(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += ","
		}
		out += p
	}
	return out
}
