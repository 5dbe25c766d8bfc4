package wooshpay

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

func TestRetrieveCustomer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		want    *gateway.Customer
		missing bool
	}{
		{"found", 200, `{"id":"cus_1","object":"customer","email":"a@example.com","name":"A","metadata":{},"created":1732406400000}`,
			&gateway.Customer{ID: "cus_1", Email: "a@example.com", Name: "A", Metadata: map[string]string{}, Created: time.Date(2024, 11, 24, 0, 0, 0, 0, time.UTC)}, false},
		{"deleted", 200, `{"id":"cus_1","object":"customer","deleted":true}`,
			&gateway.Customer{ID: "cus_1", Deleted: true}, false},
		{"unknown", 404, apiErrorJSON("invalid_request_error", "resource_missing", "No such customer: 'cus_1'"), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, reply(tc.status, tc.body))
			cu, err := f.client().RetrieveCustomer(context.Background(), "cus_1")
			if tc.missing {
				require.Nil(t, cu)
				require.ErrorIs(t, err, gateway.ErrNotFound)
				var we *Error
				require.ErrorAs(t, err, &we)
				require.Equal(t, gateway.Invalid, we.Result.Kind, "a read is not a charge: its 404 is no OurDataError")
				require.False(t, we.Retryable())
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.want, cu)
			}
			got := f.last()
			require.Equal(t, http.MethodGet, got.Method)
			require.Equal(t, "/v1/customers/cus_1", got.Path)
		})
	}
	t.Run("bad id is refused locally", func(t *testing.T) {
		f := newFake(t, reply(200, "{}"))
		_, err := f.client().RetrieveCustomer(context.Background(), "cus_1/../x")
		require.Error(t, err)
		require.NotErrorIs(t, err, gateway.ErrNotFound)
		require.Empty(t, f.requests())
	})
	t.Run("gateway trouble is retryable", func(t *testing.T) {
		f := newFake(t, reply(503, apiErrorJSON("api_error", "", "down")))
		_, err := f.client().RetrieveCustomer(context.Background(), "cus_1")
		var we *Error
		require.ErrorAs(t, err, &we)
		require.True(t, we.Retryable())
	})
}

// TestNotFoundOutsideAChargeStaysInvalid pins that only charges classify a
// refusal as billingd's data: the reconciler reads a 404 on an intent as "never
// created", which must stay gateway.Invalid with ErrNotFound.
func TestNotFoundOutsideAChargeStaysInvalid(t *testing.T) {
	f := newFake(t, reply(404, apiErrorJSON("invalid_request_error", "resource_missing", "No such payment_intent: 'pi_x'")))
	r := f.client().RetrievePaymentIntent(context.Background(), "pi_x")
	require.Equal(t, gateway.Invalid, r.Kind)
	require.ErrorIs(t, r.Err, gateway.ErrNotFound)

	f = newFake(t, reply(404, `{"error":{"type":"invalid_request_error","code":"resource_missing","param":"payment_method","message":"No such payment_method: 'pm_x'"}}`))
	r = f.client().ConfirmPaymentIntent(context.Background(), "pi_x", gateway.ConfirmRequest{PaymentMethod: "pm_x", IdempotencyKey: "k1"})
	require.Equal(t, gateway.OurDataError, r.Kind)
	require.Equal(t, "payment_method", r.Param)
	require.ErrorIs(t, r.Err, gateway.ErrNotFound)
}
