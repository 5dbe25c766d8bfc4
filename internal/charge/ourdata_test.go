package charge_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

func TestResultOfReadsTheProvidersKinds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		res    gateway.Result
		status models.AttemptStatus
		code   string
	}{
		{"idempotency conflict flagged by the provider", gateway.Result{Kind: gateway.Invalid, HTTPStatus: 400, IdempotencyConflict: true,
			Err: errors.New("keys reused")}, models.AttemptNeedsReview, ""},
		{"error text alone decides nothing", gateway.Result{Kind: gateway.Invalid, HTTPStatus: 401,
			Err: errors.New("401 invalid_request_error: the idempotency_error docs say…")}, models.AttemptFailed, ""},
		{"our data: unknown customer", gateway.Result{Kind: gateway.OurDataError, HTTPStatus: 404, Param: "customer",
			Decline: gateway.NewDecline("invalid_request_error", "resource_missing", "", "", "No such customer: 'cus_x'"),
			Err:     errors.New("wooshpay: POST /v1/payment_intents: 404 invalid_request_error resource_missing param=customer: No such customer: 'cus_x'")},
			models.AttemptNeedsReview, "resource_missing"},
		{"our data: malformed request", gateway.Result{Kind: gateway.OurDataError, HTTPStatus: 400, Param: "amount",
			Err: errors.New("400 invalid_request_error parameter_invalid param=amount")}, models.AttemptNeedsReview, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := charge.ResultOf(tc.res)
			require.Equal(t, tc.status, r.Status)
			require.Equal(t, tc.code, r.DeclineCode)
			require.False(t, r.HardDecline, "ResultOf alone never blames the customer for billingd's data")
			require.Equal(t, tc.res.Err.Error(), r.ErrorMessage, "the gateway's message is kept for the human")
		})
	}
}

// setupOn is setup on a given store (SQLite or PostgreSQL).
func setupOn(t *testing.T, st *store.Store, answers ...gateway.Result) (*bundle, models.ChargeAttempt) {
	t.Helper()
	b := &bundle{st: st, gw: &scripted{answers: answers}, clk: clock.NewFake(t0)}
	b.eng = charge.New(charge.Options{
		Store: b.st, Gateway: b.gw, Clock: sleepRecorder{b.clk, b},
		Retry: charge.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second, MaxElapsedTime: time.Minute},
		Log:   zerolog.Nop(),
	})
	storetest.Seed(t, b.st, t0, storetest.Subscription{Reference: "r1", Amount: 1999, Currency: "USD"})
	return b, b.newAttempt(t, 0)
}

// newAttempt invoices period i of subscription 1 and claims its first attempt.
func (b *bundle) newAttempt(t *testing.T, i int) models.ChargeAttempt {
	t.Helper()
	start := t0.AddDate(0, i, 0)
	require.NoError(t, b.st.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.CreateInvoices(start, []store.NewInvoice{{SubscriptionID: 1, Reference: "r1", PeriodIndex: i, PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0), Amount: 1999, Currency: "USD"}})
		return err
	}))
	claimed, err := b.st.ClaimNewAttempts(context.Background(), fmt.Sprint("test-", i), start, start.Add(time.Hour), 1)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	return claimed[0]
}

func TestOurDataErrorIsOursUnlessTheCardWasKnown(t *testing.T) {
	gone := func(param string) gateway.Result {
		return gateway.Result{Kind: gateway.OurDataError, HTTPStatus: 404, Param: param,
			Decline: gateway.NewDecline("invalid_request_error", "resource_missing", "", "", "No such "+param),
			Err:     fmt.Errorf("wooshpay: POST /v1/payment_intents: 404 invalid_request_error resource_missing param=%s: No such %s: %w", param, param, gateway.ErrNotFound)}
	}
	for _, tc := range []struct {
		name           string
		verifyCustomer bool
		verifyPM       bool
		answer         gateway.Result
		status         models.AttemptStatus
		hard           bool
		code           string
	}{
		{"never verified card: billingd's data", false, false, gone("payment_method"), models.AttemptNeedsReview, false, "resource_missing"},
		{"never verified customer: billingd's data", false, false, gone("customer"), models.AttemptNeedsReview, false, "resource_missing"},
		{"verified card now gone: the customer's hard decline", false, true, gone("payment_method"), models.AttemptDeclined, true, gateway.CodePaymentMethodGone},
		{"verified customer now gone: the customer's hard decline", true, false, gone("customer"), models.AttemptDeclined, true, gateway.CodePaymentMethodGone},
		{"verified card, unknown customer: still billingd's", false, true, gone("customer"), models.AttemptNeedsReview, false, "resource_missing"},
		{"verified card, malformed request: billingd's", true, true, gateway.Result{Kind: gateway.OurDataError, HTTPStatus: 400, Param: "amount",
			Err: errors.New("400 invalid_request_error param=amount")}, models.AttemptNeedsReview, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, st *store.Store) {
				b, a := setupOn(t, st, tc.answer)
				var cus, pms []string
				if tc.verifyCustomer {
					cus = []string{"cus_r1"}
				}
				if tc.verifyPM {
					pms = []string{"pm_r1"}
				}
				require.NoError(t, st.MarkVerified(context.Background(), t0, cus, pms))
				status, err := b.eng.Execute(context.Background(), &a)
				require.NoError(t, err)
				require.Equal(t, tc.status, status)
				got, err := st.AttemptByID(context.Background(), a.ID)
				require.NoError(t, err)
				require.Equal(t, tc.status, got.Status)
				require.Equal(t, tc.hard, got.HardDecline)
				require.Equal(t, tc.code, got.DeclineCode)
				require.Equal(t, tc.answer.Err.Error(), got.ErrorMessage, "the gateway's message is recorded")
				require.Len(t, b.gw.sent, 1, "a definite refusal is not retried")
			})
		})
	}
}

func TestCardThatChargedBeforeIsTheCustomersWhenGone(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		gone := gateway.Result{Kind: gateway.OurDataError, HTTPStatus: 400, Param: "payment_method",
			Err: errors.New("400 invalid_request_error parameter_invalid param=payment_method: The payment method pm_r1 does not belong to customer cus_r1.")}
		b, first := setupOn(t, st, intent("pi_ok", gateway.IntentSucceeded), gone)
		status, err := b.eng.Execute(context.Background(), &first)
		require.NoError(t, err)
		require.Equal(t, models.AttemptSucceeded, status)

		second := b.newAttempt(t, 1)
		status, err = b.eng.Execute(context.Background(), &second)
		require.NoError(t, err)
		require.Equal(t, models.AttemptDeclined, status, "the card charged before, so its removal is the customer's")
		got, err := st.AttemptByID(context.Background(), second.ID)
		require.NoError(t, err)
		require.True(t, got.HardDecline)
		require.Equal(t, gateway.CodePaymentMethodGone, got.DeclineCode)
	})
}
