package importcheck_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway/checkout"
	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/importcheck"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// On Checkout.com a new card's previous_payment_id is read from the gateway:
// it must exist, have succeeded, and have been made with that row's card by
// that row's customer — else the import names the line and the column.
func TestCheckoutSeriesIsVerified(t *testing.T) {
	const key = "sk_sbox_importcheck"
	srv := httptest.NewServer(sim.New(sim.Options{Provider: "checkout", SecretKey: key, Seed: 1}))
	t.Cleanup(srv.Close)
	saver, err := signup.New(signup.Gateway{Provider: signup.Checkout, BaseURL: srv.URL, SecretKey: key})
	require.NoError(t, err)
	ctx := context.Background()
	save := func(email string) signup.Saved {
		s, err := saver.Save(ctx, signup.Card{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2035, CVC: "123", Email: email})
		require.NoError(t, err)
		return s
	}
	ann, bob := save("ann@example.com"), save("bob@example.com")
	client, err := checkout.New(checkout.Options{BaseURL: srv.URL, SecretKey: key, Timeout: 5 * time.Second})
	require.NoError(t, err)

	row := func(line int, s signup.Saved, series string) store.ImportRow {
		return store.ImportRow{Line: line, Reference: "r", Customer: s.Customer, PaymentMethod: s.PaymentMethod, PreviousPaymentID: series}
	}
	_, err = importcheck.Check(ctx, client, []store.ImportRow{row(2, ann, ann.PreviousPaymentID), row(3, bob, bob.PreviousPaymentID)}, importcheck.Options{})
	require.NoError(t, err)

	_, err = importcheck.Check(ctx, client, []store.ImportRow{
		row(2, ann, bob.PreviousPaymentID),
		row(3, bob, "pay_doesnotexist0000000000000"),
	}, importcheck.Options{})
	var problems store.ImportErrors
	require.True(t, errors.As(err, &problems), "%v", err)
	require.Len(t, problems, 2)
	require.Equal(t, 2, problems[0].Line)
	require.Equal(t, "previous_payment_id", problems[0].Column)
	require.Contains(t, problems[0].Message, "another card")
	require.Equal(t, 3, problems[1].Line)
	require.Equal(t, "previous_payment_id", problems[1].Column)
	require.Contains(t, problems[1].Message, "no such payment")
}
