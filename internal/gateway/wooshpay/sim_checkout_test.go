package wooshpay_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
)

// TestSetupCheckoutAgainstSimulator is the card-update path end to end against
// the bundled simulator: create the session, save a card on its hosted page the
// way a browser does, and check that the webhook and a poll both tell billingd
// which card was saved for which dunning case.
func TestSetupCheckoutAgainstSimulator(t *testing.T) {
	const key = "sk_test_roundtrip"
	s := sim.New(sim.Options{SecretKey: key})
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	c, err := wooshpay.New(wooshpay.Options{BaseURL: srv.URL, SecretKey: key, Timeout: 5 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()

	cus, err := c.CreateCustomer(ctx, wooshpay.CustomerParams{Email: "a@example.com"}, "cus-1")
	require.NoError(t, err)
	req := gateway.SetupSessionRequest{
		Customer:       cus.ID,
		SuccessURL:     "https://billing.example/pay/tok/card",
		CancelURL:      "https://billing.example/pay/tok",
		Metadata:       map[string]string{"dunning_case": "dc_7"},
		IdempotencyKey: "dc_7-setup-1",
	}
	before := time.Now()
	cs, err := c.CreateSetupCheckoutSession(ctx, req)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(cs.ID, "cs_test_"), cs.ID)
	require.Equal(t, srv.URL+"/checkout/setup/"+cs.ID, cs.URL)
	require.True(t, strings.HasPrefix(cs.SetupIntent, "seti_"), cs.SetupIntent)
	require.WithinDuration(t, before.Add(24*time.Hour), cs.ExpiresAt, time.Minute)

	again, err := c.CreateSetupCheckoutSession(ctx, req)
	require.NoError(t, err)
	require.Equal(t, cs, again, "a retry with the same key returns the same session")

	si, err := c.RetrieveSetupIntent(ctx, cs.SetupIntent)
	require.NoError(t, err)
	require.Equal(t, "requires_payment_method", si.Status)

	// The customer's browser: show the page, then post the form.
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page, err := browser.Get(cs.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(page.Body)
	page.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, string(body), `id="save"`)
	res, err := browser.PostForm(cs.URL, url.Values{
		"card_number": {"4242 4242 4242 4242"}, "exp_month": {"12"}, "exp_year": {"2030"}, "cvc": {"123"},
	})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Equal(t, req.SuccessURL+"?session_id="+cs.ID, res.Header.Get("Location"))

	// The poll.
	si, err = c.RetrieveSetupIntent(ctx, cs.SetupIntent)
	require.NoError(t, err)
	require.Equal(t, "succeeded", si.Status)
	require.Equal(t, cus.ID, si.Customer)
	require.Equal(t, req.Metadata, si.Metadata)
	pm, err := c.RetrievePaymentMethod(ctx, si.PaymentMethod)
	require.NoError(t, err)
	require.Equal(t, "4242", pm.Card.Last4)
	require.Equal(t, cus.ID, pm.Customer)

	// The webhook, decoded as billingd's receiver decodes it.
	evs := s.Events()
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	ev, err := wooshpay.DecodeEvent(last.Body)
	require.NoError(t, err)
	require.Equal(t, gateway.EventSetupIntentSucceeded, ev.Type)
	require.Equal(t, &gateway.SetupIntent{
		ID: cs.SetupIntent, Status: "succeeded", Customer: cus.ID, PaymentMethod: si.PaymentMethod,
		Metadata: map[string]string{"dunning_case": "dc_7"},
	}, ev.SetupIntent)

	// The new card charges on-session and off-session alike.
	r := c.CreatePaymentIntent(ctx, gateway.PaymentIntentRequest{
		Amount: 2500, Currency: "USD", Customer: cus.ID, PaymentMethod: si.PaymentMethod,
		MerchantOrderID: "inv_1", ReturnURL: "https://billing.example/pay/tok/return", IdempotencyKey: "inv_1-a2",
	})
	require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)

	t.Run("unknown customer", func(t *testing.T) {
		bad := req
		bad.Customer, bad.IdempotencyKey = "cus_nope", "dc_8-setup-1"
		_, err := c.CreateSetupCheckoutSession(ctx, bad)
		var we *wooshpay.Error
		require.ErrorAs(t, err, &we)
		require.Equal(t, gateway.Invalid, we.Result.Kind)
		require.True(t, errors.Is(err, gateway.ErrNotFound))
	})
}
