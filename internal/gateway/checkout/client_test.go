package checkout

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

func TestNewValidatesOptions(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		err  string
	}{
		{name: "sandbox key over https", opts: Options{BaseURL: "https://api.sandbox.checkout.com", SecretKey: testKey}},
		{name: "prefixed production host", opts: Options{BaseURL: "https://abc123.api.checkout.com/", SecretKey: "sk_m73dzbpy7cf3gfd46xr4yj5xo4e"}},
		{name: "previous platform key", opts: Options{BaseURL: "https://api.checkout.com", SecretKey: "sk_test_fde517a8-3f01-41ef-b4bd-4282384b0a64"}},
		{name: "loopback http", opts: Options{BaseURL: "http://127.0.0.1:8080", SecretKey: testKey}},
		{name: "no base URL", opts: Options{SecretKey: testKey}, err: "base URL is required"},
		{name: "plain http elsewhere", opts: Options{BaseURL: "http://api.checkout.com", SecretKey: testKey}, err: "plain http"},
		{name: "credentials in URL", opts: Options{BaseURL: "https://u:p@api.checkout.com", SecretKey: testKey}, err: "credentials"},
		{name: "query in URL", opts: Options{BaseURL: "https://api.checkout.com?x=1", SecretKey: testKey}, err: "query"},
		{name: "ftp", opts: Options{BaseURL: "ftp://api.checkout.com", SecretKey: testKey}, err: "scheme"},
		{name: "no key", opts: Options{BaseURL: "https://api.checkout.com"}, err: "secret key is required"},
		{name: "key with newline", opts: Options{BaseURL: "https://api.checkout.com", SecretKey: testKey + "\n"}, err: "one token"},
		{name: "public key", opts: Options{BaseURL: "https://api.checkout.com", SecretKey: "pk_sbox_abcdefghijklmnopqrstuvwxyz2"}, err: "public key"},
		{name: "negative timeout", opts: Options{BaseURL: "https://api.checkout.com", SecretKey: testKey, Timeout: -time.Second}, err: "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if tc.err == "" {
				require.NoError(t, err)
				require.NotNil(t, c)
				return
			}
			require.ErrorContains(t, err, tc.err)
			require.NotContains(t, err.Error(), testKey)
		})
	}
}

func TestLocalRefusalsSendNothing(t *testing.T) {
	cases := []struct {
		name string
		edit func(*gateway.PaymentIntentRequest)
		kind gateway.Kind
	}{
		{"no key", func(r *gateway.PaymentIntentRequest) { r.IdempotencyKey = "" }, gateway.OurDataError},
		{"key with space", func(r *gateway.PaymentIntentRequest) { r.IdempotencyKey = "a b" }, gateway.OurDataError},
		{"zero amount", func(r *gateway.PaymentIntentRequest) { r.Amount = 0 }, gateway.OurDataError},
		{"no card", func(r *gateway.PaymentIntentRequest) { r.PaymentMethod = "" }, gateway.OurDataError},
		{"card id with a slash", func(r *gateway.PaymentIntentRequest) { r.PaymentMethod = "src_1/../x" }, gateway.OurDataError},
		{"no reference", func(r *gateway.PaymentIntentRequest) { r.MerchantOrderID = "" }, gateway.OurDataError},
		{"reference too long", func(r *gateway.PaymentIntentRequest) { r.MerchantOrderID = string(make([]byte, 51)) }, gateway.OurDataError},
		{"metadata key disagrees", func(r *gateway.PaymentIntentRequest) { r.Metadata = map[string]string{"idempotency_key": "other"} }, gateway.OurDataError},
		{"on-session without return URL", func(r *gateway.PaymentIntentRequest) { r.OffSession = false }, gateway.OurDataError},
		{"currency it cannot take", func(r *gateway.PaymentIntentRequest) { r.Currency = "CLF" }, gateway.Invalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFake(t)
			req := mitRequest()
			tc.edit(&req)
			r := c.CreatePaymentIntent(context.Background(), req)
			require.Equal(t, tc.kind, r.Kind)
			require.Error(t, r.Err)
			require.Empty(t, f.requests())
		})
	}
}

func TestMITWithoutPreviousPaymentLeavesTheVerdictToCheckout(t *testing.T) {
	c, f := newFake(t)
	f.on("POST /payments", reply{status: 422, body: `{"error_type":"request_invalid","error_codes":["previous_payment_id_required"]}`})
	req := mitRequest()
	req.PreviousPaymentID = ""
	r := c.CreatePaymentIntent(context.Background(), req)
	require.Equal(t, gateway.OurDataError, r.Kind)
	require.Equal(t, "previous_payment_id", r.Param)
	require.NotContains(t, decodeMap(t, f.requests()[0].Body), "previous_payment_id")
}

func TestCancelReadsThePayment(t *testing.T) {
	cases := []struct {
		name string
		body string
		code int
		kind gateway.Kind
	}{
		{"expired", paymentJSON(map[string]any{"status": "Expired"}), 200, gateway.Canceled},
		{"canceled", paymentJSON(map[string]any{"status": "Canceled"}), 200, gateway.Canceled},
		{"voided", paymentJSON(map[string]any{"status": "Voided"}), 200, gateway.Canceled},
		{"declined", paymentJSON(map[string]any{"status": "Declined", "approved": false, "response_code": "20051"}), 200, gateway.Canceled},
		{"declined 3DS required", paymentJSON(map[string]any{"status": "Declined", "approved": false, "response_code": "20154"}), 200, gateway.Canceled},
		{"captured after all", paymentJSON(map[string]any{"status": "Captured", "approved": true}), 200, gateway.Succeeded},
		{"authorized after all", paymentJSON(map[string]any{"status": "Authorized", "approved": true}), 200, gateway.Succeeded},
		{"still waiting for 3-D Secure", paymentJSON(map[string]any{"status": "Pending", "_links": redirectLinks("https://acs/1")}), 200, gateway.RequiresAction},
		{"still pending", paymentJSON(map[string]any{"status": "Pending"}), 200, gateway.RequiresAction},
		{"read failed", "", 503, gateway.Transient},
		{"unknown payment", "", 404, gateway.Invalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFake(t)
			f.on("GET /payments/pay_1", reply{status: tc.code, body: tc.body})
			r := c.CancelPaymentIntent(context.Background(), "pay_1", "cancel-key")
			require.Equal(t, tc.kind, r.Kind, "%v", r.Err)
			if tc.kind == gateway.Canceled {
				require.Nil(t, r.Decline)
			}
			for _, req := range f.requests() {
				require.Equal(t, "GET", req.Method, "cancel must not change the payment")
			}
		})
	}
}

func TestConfirmIsNotUsed(t *testing.T) {
	c, f := newFake(t)
	r := c.ConfirmPaymentIntent(context.Background(), "pay_1", gateway.ConfirmRequest{IdempotencyKey: "k"})
	require.Equal(t, gateway.Invalid, r.Kind)
	require.ErrorContains(t, r.Err, "not confirmed separately")
	require.Empty(t, f.requests())
}

func TestAccounts(t *testing.T) {
	ctx := context.Background()
	c, f := newFake(t)
	f.on("GET /customers/cus_1", reply{status: 200, body: `{"id":"cus_1","email":"a@example.com","name":"Ann","default":"src_1","metadata":{"crm":"7"},"instruments":[]}`})
	f.on("GET /instruments/src_1", reply{status: 200, body: `{"id":"src_1","type":"card","fingerprint":"f","customer":{"id":"cus_1","email":"a@example.com","default":true},
		"expiry_month":6,"expiry_year":2030,"scheme":"VISA","last4":"4242","bin":"424242","card_type":"CREDIT","issuer_country":"gb"}`})

	cu, err := c.RetrieveCustomer(ctx, "cus_1")
	require.NoError(t, err)
	require.Equal(t, &gateway.Customer{ID: "cus_1", Email: "a@example.com", Name: "Ann", Metadata: map[string]string{"crm": "7"}}, cu)

	pm, err := c.RetrievePaymentMethod(ctx, "src_1")
	require.NoError(t, err)
	require.Equal(t, "cus_1", pm.Customer)
	require.Equal(t, "card", pm.Type)
	require.Equal(t, &gateway.CardDetails{Brand: "visa", Last4: "4242", ExpMonth: 6, ExpYear: 2030, Country: "GB", Funding: "credit"}, pm.Card)

	_, err = c.RetrieveCustomer(ctx, "cus_unknown")
	require.True(t, errors.Is(err, gateway.ErrNotFound), "%v", err)
	_, err = c.RetrievePaymentMethod(ctx, "src_unknown")
	require.True(t, errors.Is(err, gateway.ErrNotFound), "%v", err)

	f.on("GET /customers/cus_2", reply{status: 500})
	_, err = c.RetrieveCustomer(ctx, "cus_2")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.True(t, e.Retryable())
	require.False(t, errors.Is(err, gateway.ErrNotFound))

	_, err = c.RetrieveCustomer(ctx, "cus/../x")
	require.ErrorAs(t, err, &e)
	require.Equal(t, gateway.Invalid, e.Result.Kind)
}

func TestSetupSessionChecks(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		edit func(*gateway.SetupSessionRequest)
	}{
		{"no key", func(r *gateway.SetupSessionRequest) { r.IdempotencyKey = "" }},
		{"no customer", func(r *gateway.SetupSessionRequest) { r.Customer = "" }},
		{"relative success URL", func(r *gateway.SetupSessionRequest) { r.SuccessURL = "/done" }},
		{"currency it cannot take", func(r *gateway.SetupSessionRequest) { r.Metadata = map[string]string{"currency": "UYW"} }},
		{"bad country", func(r *gateway.SetupSessionRequest) { r.Metadata = map[string]string{"country": "GBR"} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFake(t)
			req := setupRequest()
			tc.edit(&req)
			_, err := c.CreateSetupCheckoutSession(ctx, req)
			var e *Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, gateway.Invalid, e.Result.Kind)
			require.Empty(t, f.requests())
		})
	}
	t.Run("default currency and a page without redirect", func(t *testing.T) {
		c, f := newFake(t)
		f.on("POST /hosted-payments", reply{status: 201, body: `{"id":"hpp_1","_links":{"self":{"href":"https://x/hpp_1"}}}`})
		req := setupRequest()
		req.Metadata = nil
		_, err := c.CreateSetupCheckoutSession(ctx, req)
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, gateway.Transient, e.Result.Kind, "a page billingd cannot send anyone to is no answer")
		body := decodeMap(t, f.requests()[0].Body)
		require.Equal(t, "USD", body["currency"])
		require.Equal(t, "setup-cus_1", body["reference"])
	})
}

func TestAuthorizationHeaderPerPlatform(t *testing.T) {
	for key, want := range map[string]string{
		testKey:                          "Bearer " + testKey,
		"sk_m73dzbpy7cf3gfd46xr4yj5xo4e": "Bearer sk_m73dzbpy7cf3gfd46xr4yj5xo4e",
		"sk_test_fde517a8-3f01-41ef-b4bd-4282384b0a64": "sk_test_fde517a8-3f01-41ef-b4bd-4282384b0a64",
		"sk_be458ac1-f20e-4194-bf58-b28e5ffd88e7":      "sk_be458ac1-f20e-4194-bf58-b28e5ffd88e7",
	} {
		_, f := newFake(t)
		c, err := New(Options{BaseURL: f.srv.URL, SecretKey: key})
		require.NoError(t, err)
		f.on("GET /payments/pay_1", reply{status: 200, body: paymentJSON(map[string]any{"status": "Captured"})})
		c.RetrievePaymentIntent(context.Background(), "pay_1")
		require.Equal(t, want, f.requests()[0].Header.Get("Authorization"))
	}
}
