package wooshpay

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

func sessionRequest() gateway.SetupSessionRequest {
	return gateway.SetupSessionRequest{
		Customer:       "cus_123",
		SuccessURL:     "https://billing.example.com/pay/tok/card?x=1",
		CancelURL:      "https://billing.example.com/pay/tok",
		Metadata:       map[string]string{"dunning_case": "dc_7"},
		IdempotencyKey: "dc_7-setup-1",
	}
}

func sessionJSON(expiresAt string) string {
	return `{"id":"cs_test_1","object":"checkout.session","mode":"setup","status":"open","customer":"cus_123",` +
		`"setup_intent":"seti_1","url":"https://checkout.example/setup/cs_test_1","success_url":"https://billing.example.com/pay/tok/card?x=1",` +
		`"cancel_url":"https://billing.example.com/pay/tok","metadata":{"dunning_case":"dc_7"},"expires_at":` + expiresAt + `}`
}

func TestCreateSetupCheckoutSession(t *testing.T) {
	want := &gateway.CheckoutSession{
		ID: "cs_test_1", URL: "https://checkout.example/setup/cs_test_1", SetupIntent: "seti_1",
		ExpiresAt: time.Date(2024, 11, 25, 0, 0, 0, 0, time.UTC),
	}
	for _, tc := range []struct{ name, expiresAt string }{
		{"milliseconds", "1732492800000"},
		{"seconds", "1732492800"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, reply(200, sessionJSON(tc.expiresAt)))
			cs, err := f.client().CreateSetupCheckoutSession(context.Background(), sessionRequest())
			require.NoError(t, err)
			require.Equal(t, want, cs)

			got := f.last()
			require.Equal(t, http.MethodPost, got.Method)
			require.Equal(t, "/v1/checkout/sessions/setup", got.Path)
			require.Equal(t, "dc_7-setup-1", got.Header.Get("Idempotency-Key"))
			require.Equal(t, "application/json", got.Header.Get("Content-Type"))
			user, pass := basicAuth(t, got.Header)
			require.Equal(t, testKey, user)
			require.Empty(t, pass)
			require.Equal(t, map[string]any{
				"customer":             "cus_123",
				"success_url":          "https://billing.example.com/pay/tok/card?x=1",
				"cancel_url":           "https://billing.example.com/pay/tok",
				"payment_method_types": []any{"card"},
				"metadata":             map[string]any{"dunning_case": "dc_7"},
			}, got.BodyMap)
		})
	}
	t.Run("no metadata", func(t *testing.T) {
		f := newFake(t, reply(200, sessionJSON("1732492800000")))
		req := sessionRequest()
		req.Metadata = nil
		_, err := f.client().CreateSetupCheckoutSession(context.Background(), req)
		require.NoError(t, err)
		require.NotContains(t, f.last().BodyMap, "metadata")
	})
}

func TestCreateSetupCheckoutSessionErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		kind     gateway.Kind
		notFound bool
	}{
		{"unknown customer", 404, apiErrorJSON("invalid_request_error", "resource_missing", "No such customer: 'cus_123'"), gateway.Invalid, true},
		{"bad url", 400, apiErrorJSON("invalid_request_error", "url_invalid", "success_url must be an absolute http(s) URL."), gateway.Invalid, false},
		{"idempotency mismatch", 400, apiErrorJSON("idempotency_error", "", "Keys for idempotent requests can only be used with the same parameters."), gateway.Invalid, false},
		{"in flight", 409, apiErrorJSON("idempotency_error", "idempotency_key_in_use", "In progress."), gateway.Transient, false},
		{"rate limited", 429, apiErrorJSON("api_error", "rate_limit", "Slow down."), gateway.Transient, false},
		{"server error", 500, apiErrorJSON("api_error", "", "Oops."), gateway.Transient, false},
		{"2xx garbage", 200, "<html>", gateway.Transient, false},
		{"2xx wrong object", 200, intentJSON("pi_1", "succeeded", ""), gateway.Transient, false},
		{"2xx payment mode", 200, `{"id":"cs_1","object":"checkout.session","mode":"payment","url":"https://c.example/cs_1"}`, gateway.Transient, false},
		{"2xx without url", 200, `{"id":"cs_1","object":"checkout.session","mode":"setup","url":null}`, gateway.Transient, false},
		{"2xx script url", 200, `{"id":"cs_1","object":"checkout.session","mode":"setup","url":"javascript:alert(1)"}`, gateway.Transient, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, reply(tc.status, tc.body, "Retry-After", "2"))
			cs, err := f.client().CreateSetupCheckoutSession(context.Background(), sessionRequest())
			require.Nil(t, cs)
			var we *Error
			require.ErrorAs(t, err, &we)
			require.Equal(t, "POST /v1/checkout/sessions/setup", we.Op)
			require.Equal(t, tc.kind, we.Result.Kind)
			require.Equal(t, tc.kind == gateway.Transient, we.Retryable())
			require.Equal(t, tc.status, we.Result.HTTPStatus)
			require.Equal(t, tc.notFound, errors.Is(err, gateway.ErrNotFound))
			if tc.status == 429 || tc.status == 500 || tc.status == 409 {
				require.Equal(t, 2*time.Second, we.Result.RetryAfter)
			}
			requireClean(t, err.Error())
		})
	}
}

func TestCreateSetupCheckoutSessionRefusedLocally(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*gateway.SetupSessionRequest)
		want   string
	}{
		{"no idempotency key", func(r *gateway.SetupSessionRequest) { r.IdempotencyKey = "" }, "idempotency key is required"},
		{"key with space", func(r *gateway.SetupSessionRequest) { r.IdempotencyKey = "a b" }, "printable ASCII"},
		{"no customer", func(r *gateway.SetupSessionRequest) { r.Customer = "" }, "customer id is empty"},
		{"customer with slash", func(r *gateway.SetupSessionRequest) { r.Customer = "cus_1/x" }, "customer id contains"},
		{"no success url", func(r *gateway.SetupSessionRequest) { r.SuccessURL = "" }, "success URL must be an absolute http(s) URL"},
		{"relative cancel url", func(r *gateway.SetupSessionRequest) { r.CancelURL = "/pay/tok" }, "cancel URL must be an absolute http(s) URL"},
		{"javascript cancel url", func(r *gateway.SetupSessionRequest) { r.CancelURL = "javascript:alert(1)" }, "cancel URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, reply(200, sessionJSON("1732492800000")))
			req := sessionRequest()
			tc.mutate(&req)
			_, err := f.client().CreateSetupCheckoutSession(context.Background(), req)
			var we *Error
			require.ErrorAs(t, err, &we)
			require.Equal(t, gateway.Invalid, we.Result.Kind)
			require.Zero(t, we.Result.HTTPStatus)
			require.Contains(t, err.Error(), tc.want)
			require.Empty(t, f.requests(), "nothing was sent")
		})
	}
}

func TestRetrieveSetupIntent(t *testing.T) {
	f := newFake(t, reply(200, `{"id":"seti_1","object":"setup_intent","status":"succeeded","customer":"cus_1",`+
		`"payment_method":"pm_1","usage":"off_session","created":1732406400000,"metadata":{"dunning_case":"dc_7"},`+
		`"return_url":"https://checkout.example/setup/cs_test_1","last_setup_error":null,"next_action":null}`))
	si, err := f.client().RetrieveSetupIntent(context.Background(), "seti_1")
	require.NoError(t, err)
	require.Equal(t, &SetupIntent{
		ID: "seti_1", Status: "succeeded", Customer: "cus_1", PaymentMethod: "pm_1", Usage: "off_session",
		Metadata: map[string]string{"dunning_case": "dc_7"}, Created: time.Date(2024, 11, 24, 0, 0, 0, 0, time.UTC),
	}, si)
	got := f.last()
	require.Equal(t, http.MethodGet, got.Method)
	require.Equal(t, "/v1/setup_intents/seti_1", got.Path)
	require.Empty(t, got.Body)

	t.Run("not found", func(t *testing.T) {
		f := newFake(t, reply(404, apiErrorJSON("invalid_request_error", "resource_missing", "No such setup_intent: 'seti_x'")))
		si, err := f.client().RetrieveSetupIntent(context.Background(), "seti_x")
		require.Nil(t, si)
		require.ErrorIs(t, err, gateway.ErrNotFound)
		require.Contains(t, err.Error(), "GET /v1/setup_intents/seti_x: 404")
	})
	t.Run("bad id", func(t *testing.T) {
		f := newFake(t, reply(200, "{}"))
		_, err := f.client().RetrieveSetupIntent(context.Background(), "../customers")
		var we *Error
		require.ErrorAs(t, err, &we)
		require.Equal(t, gateway.Invalid, we.Result.Kind)
		require.Equal(t, "GET /v1/setup_intents/{id}", we.Op)
		require.Empty(t, f.requests())
	})
}

func TestUnixTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		`1732492800`:      time.Date(2024, 11, 25, 0, 0, 0, 0, time.UTC),
		`1732492800000`:   time.Date(2024, 11, 25, 0, 0, 0, 0, time.UTC),
		`"1732492800123"`: time.Date(2024, 11, 25, 0, 0, 0, 123e6, time.UTC),
		`null`:            {},
		`0`:               {},
	} {
		var u unixTime
		require.NoError(t, u.UnmarshalJSON([]byte(in)), in)
		require.True(t, want.Equal(u.Time), "%s: got %s", in, u.Time)
	}
	for _, bad := range []string{`"soon"`, `-5`, `1.5e12`, `{}`} {
		var u unixTime
		require.Error(t, u.UnmarshalJSON([]byte(bad)), bad)
	}
}
