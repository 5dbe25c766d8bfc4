package wooshpay

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/stretchr/testify/require"
)

func TestListPaymentIntentsWire(t *testing.T) {
	since := time.Date(2026, 11, 24, 0, 0, 0, 500e6, time.UTC) // half a second in
	intent := func(id string, at time.Time) string {
		return fmt.Sprintf(`{"id":%q,"object":"payment_intent","status":"succeeded","amount":500,"currency":"usd","created":%d,`+
			`"merchant_order_id":"inv_1","metadata":{"idempotency_key":"inv_1-a1","attempt":"1"}}`, id, at.UnixMilli())
	}
	t.Run("sends created[gte] in seconds, limit and the cursor", func(t *testing.T) {
		f := newFake(t, reply(200, `{"object":"list","has_more":true,"data":[`+intent("pi_2", since.Add(time.Hour))+`]}`))
		page, err := f.client().ListPaymentIntents(context.Background(), gateway.PaymentListRequest{CreatedFrom: since, StartingAfter: "pi_3", Limit: 50})
		require.NoError(t, err)
		require.True(t, page.HasMore)
		require.Len(t, page.Intents, 1)
		require.Equal(t, "pi_2", page.Intents[0].ID)
		require.Equal(t, "inv_1-a1", page.Intents[0].Metadata["idempotency_key"])
		got := f.last()
		require.Equal(t, "/v1/payment_intents", got.Path)
		q, err := url.ParseQuery(got.Query)
		require.NoError(t, err)
		require.Equal(t, url.Values{"created[gte]": {fmt.Sprint(since.Unix())}, "limit": {"50"}, "starting_after": {"pi_3"}}, q)
	})
	t.Run("older intents end the list", func(t *testing.T) {
		// The gateway rounds the filter to its second (or reads it in other
		// units) and answers with older intents: they are dropped and the list
		// ends there, since the rest is older still.
		f := newFake(t, reply(200, `{"object":"list","has_more":true,"data":[`+intent("pi_2", since)+`,`+intent("pi_1", since.Add(-time.Millisecond))+`]}`))
		page, err := f.client().ListPaymentIntents(context.Background(), gateway.PaymentListRequest{CreatedFrom: since})
		require.NoError(t, err)
		require.False(t, page.HasMore)
		require.Len(t, page.Intents, 1)
		require.Equal(t, "pi_2", page.Intents[0].ID)
	})
	t.Run("answers that cannot be trusted are errors", func(t *testing.T) {
		for name, body := range map[string]string{
			"no data":                 `{"object":"list","has_more":false}`,
			"more without any cursor": `{"object":"list","has_more":true,"data":[]}`,
			"not a list":              `{"object":"payment_intent","data":[]}`,
		} {
			f := newFake(t, reply(200, body))
			_, err := f.client().ListPaymentIntents(context.Background(), gateway.PaymentListRequest{CreatedFrom: since})
			require.Error(t, err, name)
		}
		f := newFake(t, reply(500, `{"error":{"type":"api_error","message":"boom"}}`))
		_, err := f.client().ListPaymentIntents(context.Background(), gateway.PaymentListRequest{})
		var ge *Error
		require.True(t, errors.As(err, &ge), "%v", err)
	})
	t.Run("bad requests are refused before sending", func(t *testing.T) {
		f := newFake(t, reply(200, `{"object":"list","data":[]}`))
		_, err := f.client().ListPaymentIntents(context.Background(), gateway.PaymentListRequest{Limit: 101})
		require.ErrorContains(t, err, "limit 101")
		_, err = f.client().ListPaymentIntents(context.Background(), gateway.PaymentListRequest{StartingAfter: "pi_1/../x"})
		require.Error(t, err)
		require.Empty(t, f.requests())
	})
}

func TestListPaymentIntentsAgainstSimulator(t *testing.T) {
	const key = "sk_test_list"
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	s := sim.New(sim.Options{SecretKey: key, Now: func() time.Time { return now }})
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	c, err := New(Options{BaseURL: srv.URL, SecretKey: key, Timeout: 5 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()
	cus, err := c.CreateCustomer(ctx, CustomerParams{Email: "a@example.com"}, "")
	require.NoError(t, err)
	si, err := c.CreateSetupIntent(ctx, SetupIntentParams{Customer: cus.ID,
		Card: CardData{Number: "4242424242424242", ExpMonth: "12", ExpYear: "2030", CVC: "123"}, ReturnURL: "https://b.example/r"}, "")
	require.NoError(t, err)
	var want []string
	since := now.Add(90 * time.Minute)
	for i := 0; i < 7; i++ {
		order := fmt.Sprintf("inv_%d", i)
		res := c.CreatePaymentIntent(ctx, gateway.PaymentIntentRequest{Amount: 100, Currency: "USD", Customer: cus.ID, PaymentMethod: si.PaymentMethod,
			OffSession: true, MerchantOrderID: order, IdempotencyKey: order + "-a1", Metadata: map[string]string{"idempotency_key": order + "-a1"}})
		require.Equal(t, gateway.Succeeded, res.Kind, "%v", res.Err)
		if !now.Before(since) {
			want = append([]string{res.Intent.ID}, want...)
		}
		now = now.Add(time.Hour)
	}
	var got []string
	req := gateway.PaymentListRequest{CreatedFrom: since, Limit: 2}
	for {
		page, err := c.ListPaymentIntents(ctx, req)
		require.NoError(t, err)
		for _, pi := range page.Intents {
			got = append(got, pi.ID)
			require.Equal(t, gateway.IntentSucceeded, pi.Status)
		}
		if !page.HasMore {
			break
		}
		req.StartingAfter = page.Intents[len(page.Intents)-1].ID
	}
	require.Len(t, want, 5)
	require.Equal(t, want, got)
}
