package wooshpay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

func TestCreateCustomer(t *testing.T) {
	f := newFake(t, reply(200, `{"id":"cus_1","object":"customer","created":1732406400000,"email":"a@example.com","name":"A B","metadata":{"ref":"sub_1"}}`))
	c := f.client()
	cus, err := c.CreateCustomer(context.Background(), CustomerParams{Email: "a@example.com", Name: "A B", Metadata: map[string]string{"ref": "sub_1"}}, "cus-sub_1")
	require.NoError(t, err)
	require.Equal(t, &Customer{
		ID: "cus_1", Email: "a@example.com", Name: "A B", Metadata: map[string]string{"ref": "sub_1"},
		Created: time.Date(2024, 11, 24, 0, 0, 0, 0, time.UTC),
	}, cus)
	got := f.last()
	require.Equal(t, http.MethodPost, got.Method)
	require.Equal(t, "/v1/customers", got.Path)
	require.Equal(t, "cus-sub_1", got.Header.Get("Idempotency-Key"))
	require.Equal(t, map[string]any{"email": "a@example.com", "name": "A B", "metadata": map[string]any{"ref": "sub_1"}}, got.BodyMap)
}

func TestCreateCustomerErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		kind     gateway.Kind
		retry    bool
		notFound bool
	}{
		{"400", 400, apiErrorJSON("invalid_request_error", "email_invalid", "Invalid email address."), gateway.Invalid, false, false},
		{"429", 429, apiErrorJSON("api_error", "rate_limit", "Slow down."), gateway.Transient, true, false},
		{"500", 500, apiErrorJSON("api_error", "", "Oops."), gateway.Transient, true, false},
		{"2xx garbage", 200, "not json", gateway.Transient, true, false},
		{"2xx wrong object", 200, `{"id":"pi_1","object":"payment_intent"}`, gateway.Transient, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, reply(tt.status, tt.body, "Retry-After", "3"))
			cus, err := f.client().CreateCustomer(context.Background(), CustomerParams{Email: "x"}, "")
			require.Nil(t, cus)
			var we *Error
			require.ErrorAs(t, err, &we)
			require.Equal(t, tt.kind, we.Result.Kind)
			require.Equal(t, tt.retry, we.Retryable())
			require.Equal(t, tt.status, we.Result.HTTPStatus)
			require.Equal(t, "POST /v1/customers", we.Op)
			if tt.status == 429 || tt.status == 500 {
				require.Equal(t, 3*time.Second, we.Result.RetryAfter)
			}
		})
	}
}

func TestCreateSetupIntent(t *testing.T) {
	f := newFake(t, reply(200, `{"id":"seti_1","object":"setup_intent","status":"succeeded","customer":"cus_1",`+
		`"payment_method":"pm_1","usage":"off_session","created":1732406400000,"metadata":{"demo":"1"}}`))
	c := f.client()
	si, err := c.CreateSetupIntent(context.Background(), SetupIntentParams{
		Customer:  "cus_1",
		Card:      CardData{Number: "4242424242424242", ExpMonth: "12", ExpYear: "2030", CVC: "123", Name: "A B"},
		ReturnURL: "https://b.example/r",
		Metadata:  map[string]string{"demo": "1"},
	}, "seti-cus_1")
	require.NoError(t, err)
	require.Equal(t, &SetupIntent{
		ID: "seti_1", Status: "succeeded", Customer: "cus_1", PaymentMethod: "pm_1", Usage: "off_session",
		Metadata: map[string]string{"demo": "1"}, Created: time.Date(2024, 11, 24, 0, 0, 0, 0, time.UTC),
	}, si)
	got := f.last()
	require.Equal(t, "/v1/setup_intents", got.Path)
	require.Equal(t, "seti-cus_1", got.Header.Get("Idempotency-Key"))
	require.Equal(t, map[string]any{
		"confirm":              true,
		"customer":             "cus_1",
		"payment_method_types": []any{"card"},
		"payment_method_data": map[string]any{
			"type": "card",
			"card": map[string]any{"number": "4242424242424242", "exp_month": "12", "exp_year": "2030", "cvc": "123", "name": "A B"},
		},
		"usage":      "off_session",
		"return_url": "https://b.example/r",
		"metadata":   map[string]any{"demo": "1"},
	}, got.BodyMap)
	// The card travels in the body only: not in the URL, not in a header.
	require.NotContains(t, got.Query, "4242")
	for k, v := range got.Header {
		require.NotContains(t, fmt.Sprint(v), "4242424242424242", k)
	}
}

func TestCreateSetupIntentDeclined(t *testing.T) {
	body := `{"error":{"type":"card_error","code":"incorrect_number","message":"Your card number ` + testCard + ` is incorrect."}}`
	f := newFake(t, reply(402, body))
	si, err := f.client().CreateSetupIntent(context.Background(), SetupIntentParams{
		Customer: "cus_1", Card: CardData{Number: testCard, ExpMonth: "1", ExpYear: "2031", CVC: "321"},
	}, "")
	require.Nil(t, si)
	var we *Error
	require.ErrorAs(t, err, &we)
	require.Equal(t, gateway.Declined, we.Result.Kind)
	require.Equal(t, 402, we.Result.HTTPStatus)
	require.NotNil(t, we.Result.Decline)
	require.Equal(t, "incorrect_number", we.Result.Decline.Code)
	require.True(t, we.Result.Decline.Hard)
	require.False(t, we.Retryable())
	require.Contains(t, err.Error(), "402 declined: incorrect_number")
	requireClean(t, err.Error())
	require.NotContains(t, err.Error(), "321")
}

func TestCreateSetupIntentRefusedLocally(t *testing.T) {
	f := newFake(t, reply(200, "{}"))
	_, err := f.client().CreateSetupIntent(context.Background(), SetupIntentParams{Customer: "cus_1"}, "")
	var we *Error
	require.ErrorAs(t, err, &we)
	require.Equal(t, gateway.Invalid, we.Result.Kind)
	require.Empty(t, f.requests())
}

func TestRetrievePaymentMethod(t *testing.T) {
	f := newFake(t, reply(200, `{"id":"pm_1","object":"payment_method","type":"card","customer":"cus_1",`+
		`"card":{"brand":"visa","last4":"4242","exp_month":12,"exp_year":"2030"},"created":1732406400000}`))
	pm, err := f.client().RetrievePaymentMethod(context.Background(), "pm_1")
	require.NoError(t, err)
	require.Equal(t, &PaymentMethod{
		ID: "pm_1", Type: "card", Customer: "cus_1",
		Card:    &CardDetails{Brand: "visa", Last4: "4242", ExpMonth: 12, ExpYear: 2030},
		Created: time.Date(2024, 11, 24, 0, 0, 0, 0, time.UTC),
	}, pm)
	got := f.last()
	require.Equal(t, http.MethodGet, got.Method)
	require.Equal(t, "/v1/payment_methods/pm_1", got.Path)
}

func TestRetrievePaymentMethodNotFound(t *testing.T) {
	f := newFake(t, reply(404, apiErrorJSON("invalid_request_error", "resource_missing", "No such payment_method: 'pm_x'")))
	pm, err := f.client().RetrievePaymentMethod(context.Background(), "pm_x")
	require.Nil(t, pm)
	require.ErrorIs(t, err, gateway.ErrNotFound)
	require.Contains(t, err.Error(), "wooshpay: GET /v1/payment_methods/pm_x: 404 invalid_request_error resource_missing")
}

func TestSearch(t *testing.T) {
	t.Run("results", func(t *testing.T) {
		body := `{"object":"search_result","has_more":false,"data":[` +
			intentJSON("pi_2", "succeeded", "") + "," + intentJSON("pi_1", "requires_payment_method",
			`"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"m"}`) + `]}`
		f := newFake(t, reply(200, body))
		got, err := f.client().SearchPaymentIntentsByOrder(context.Background(), "inv_789")
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, "pi_2", got[0].ID)
		require.Equal(t, gateway.IntentSucceeded, got[0].Status)
		require.Equal(t, "pi_1", got[1].ID)
		require.Equal(t, "insufficient_funds", got[1].LastError.DeclineCode)
		require.False(t, got[1].LastError.Hard)
	})
	failures := []struct {
		name     string
		status   int
		body     string
		kind     gateway.Kind
		notFound bool
	}{
		{"missing data is not an empty result", 200, `{"object":"search_result","has_more":false}`, gateway.Transient, false},
		{"garbage", 200, `[]`, gateway.Transient, false},
		{"bad element", 200, `{"object":"search_result","data":[{"object":"payment_intent"}]}`, gateway.Transient, false},
		{"wrong object", 200, `{"object":"customer","data":[]}`, gateway.Transient, false},
		{"500", 500, apiErrorJSON("api_error", "", "x"), gateway.Transient, false},
		{"400", 400, apiErrorJSON("invalid_request_error", "invalid_search_query", "x"), gateway.Invalid, false},
		{"404", 404, apiErrorJSON("invalid_request_error", "resource_missing", "x"), gateway.Invalid, true},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, reply(tt.status, tt.body))
			got, err := f.client().SearchPaymentIntentsByOrder(context.Background(), "inv_789")
			require.Nil(t, got)
			var we *Error
			require.ErrorAs(t, err, &we)
			require.Equal(t, tt.kind, we.Result.Kind)
			require.Equal(t, tt.status, we.Result.HTTPStatus)
			require.Equal(t, tt.notFound, errors.Is(err, gateway.ErrNotFound))
		})
	}
}

func TestCardDataRedaction(t *testing.T) {
	card := CardData{Number: "4242 4242 4242 4242", ExpMonth: "12", ExpYear: "2030", CVC: "987", Name: "A B"}
	params := SetupIntentParams{Customer: "cus_1", Card: card}
	outs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%X", "%T %v"} {
		outs[verb] = fmt.Sprintf(verb, card)
		outs["ptr "+verb] = fmt.Sprintf(verb, &card)
		outs["params "+verb] = fmt.Sprintf(verb, params)
		outs["params ptr "+verb] = fmt.Sprintf(verb, &params)
	}
	outs["print"] = fmt.Sprint(card, params)
	outs["println"] = fmt.Sprintln(card, &params)
	j, err := json.Marshal(params)
	require.NoError(t, err)
	outs["json"] = string(j)
	var buf bytes.Buffer
	// No time: its nanoseconds can spell the CVC.
	noTime := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}}
	slog.New(slog.NewJSONHandler(&buf, noTime)).Info("x", "card", card, "params", params)
	outs["slog"] = buf.String()
	buf.Reset()
	slog.New(slog.NewTextHandler(&buf, noTime)).Info("x", "card", card)
	outs["slog text"] = buf.String()

	for name, out := range outs {
		t.Run(name, func(t *testing.T) {
			require.NotContains(t, out, "4242 4242 4242 4242")
			require.NotContains(t, out, "4242424242424242")
			require.NotContains(t, out, "987")
			require.NotContains(t, out, "34323432", "hex of the number")
		})
	}
	require.Contains(t, card.String(), "****4242")
	require.Contains(t, card.String(), "CVC:***")
	require.Contains(t, card.GoString(), "wooshpay.CardData{")
	require.Equal(t, "CardData{Number: ExpMonth: ExpYear: CVC: Name:}", CardData{}.String())
	require.Equal(t, "****", maskPAN("123"))
}
