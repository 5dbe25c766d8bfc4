package schedule_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/importcheck"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

func attemptsOf(t *testing.T, st *store.Store) []models.ChargeAttempt {
	return rowsOf[models.ChargeAttempt](t, st)
}

func casesOf(t *testing.T, st *store.Store) []models.DunningCase {
	return rowsOf[models.DunningCase](t, st)
}

// An import without verification that names an unknown customer (line 2) and
// another customer's card (line 3): its charges are billingd's data errors,
// for a human, and the customers hear nothing.
func TestUnverifiedBadIDsNeedReviewAndEmailNobody(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start, sim.Options{})
		st = s.st // the assembled daemon's database
		withDunning(s, dunning.FinalCancel)
		cusA, pmA := s.saveCard(t, "4242424242424242")
		_, pmB := s.saveCard(t, "4111111111111111")
		// The import path --no-verify takes: no gateway call.
		storetest.Seed(t, st, start,
			storetest.Subscription{Reference: "unknown-customer", Customer: "cus_nope", PaymentMethod: pmA},
			storetest.Subscription{Reference: "foreign-card", Customer: cusA, PaymentMethod: pmB})

		ctx := context.Background()
		for i := 0; i < 3; i++ { // later passes change nothing: nothing is retried blindly
			_, err := s.biller.Pass(ctx, ctx, "test")
			require.NoError(t, err)
			s.clk.Advance(24 * time.Hour)
		}

		as := attemptsOf(t, st)
		require.Len(t, as, 2, "one attempt each, never retried")
		byCustomer := map[string]models.ChargeAttempt{}
		for _, a := range as {
			require.Equal(t, models.AttemptNeedsReview, a.Status, a.GatewayCustomer)
			require.False(t, a.HardDecline)
			byCustomer[a.GatewayCustomer] = a
		}
		require.Contains(t, byCustomer["cus_nope"].ErrorMessage, "No such customer: 'cus_nope'", "the gateway's message is kept")
		require.Contains(t, byCustomer[cusA].ErrorMessage, "param=payment_method: The payment method")
		require.Contains(t, byCustomer[cusA].ErrorMessage, "does not belong to customer")
		require.Empty(t, casesOf(t, st), "no dunning case: the customer did nothing wrong")
		require.Empty(t, emailsOf(t, st), "no email: the customer cannot fix billingd's data")

		rep, err := st.Status(ctx, s.clk.Now())
		require.NoError(t, err)
		require.EqualValues(t, 2, rep.NeedsReview, "billingd status shows them as needing a human")
		s.check(t, false)
	})
}

// A card the gateway confirmed at import, removed by the customer later, is the
// customer's hard decline: a card-update email, no blind retry.
func TestVerifiedCardGoneIsAHardDecline(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start, sim.Options{})
		st = s.st // the assembled daemon's database
		withDunning(s, dunning.FinalCancel)
		cus, pm := s.saveCard(t, "4242424242424242")
		rows := []store.ImportRow{{Line: 2, Reference: "verified", Email: "v@example.com", Customer: cus, PaymentMethod: pm,
			Amount: 1000, Currency: "USD", Interval: "month", IntervalCount: 1, Anchor: start, FirstBilling: start}}
		ctx := context.Background()
		res, err := importcheck.Check(ctx, s.b.Gateway, rows, importcheck.Options{})
		require.NoError(t, err)
		_, err = st.ImportSubscriptions(ctx, rows, start)
		require.NoError(t, err)
		require.NoError(t, st.MarkVerified(ctx, start, res.Customers, res.PaymentMethods))

		require.NoError(t, s.gw.DetachPaymentMethod(pm), "the customer removes the card at the gateway")
		_, err = s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)

		as := attemptsOf(t, st)
		require.Len(t, as, 1)
		require.Equal(t, models.AttemptDeclined, as[0].Status)
		require.True(t, as[0].HardDecline)
		require.Equal(t, gateway.CodePaymentMethodGone, as[0].DeclineCode)
		cs := casesOf(t, st)
		require.Len(t, cs, 1)
		require.Equal(t, models.ReasonHardDecline, cs[0].Reason)
		es := emailsOf(t, st)
		require.Len(t, es, 1)
		require.Equal(t, models.EmailCardUpdate, es[0].Kind)
		require.Equal(t, "v@example.com", es[0].ToAddress)

		s.clk.Advance(48 * time.Hour)
		_, err = s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		require.Len(t, attemptsOf(t, st), 1, "a hard decline is not retried on the same card")
	})
}

// A card that charged before and is gone now is the customer's too, even when
// it was imported without verification.
func TestCardThatChargedBeforeAndIsGoneIsAHardDecline(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start, sim.Options{})
		st = s.st // the assembled daemon's database
		withDunning(s, dunning.FinalCancel)
		cus, pm := s.saveCard(t, "4242424242424242")
		storetest.Seed(t, st, start, storetest.Subscription{Reference: "daily", Customer: cus, PaymentMethod: pm, Interval: "day"})
		ctx := context.Background()
		_, err := s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		require.Equal(t, models.AttemptSucceeded, attemptsOf(t, st)[0].Status)

		require.NoError(t, s.gw.DetachPaymentMethod(pm))
		s.clk.Advance(24 * time.Hour)
		_, err = s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		as := attemptsOf(t, st)
		require.Len(t, as, 2)
		require.Equal(t, models.AttemptDeclined, as[1].Status)
		require.True(t, as[1].HardDecline)
		es := emailsOf(t, st)
		require.Len(t, es, 1)
		require.Equal(t, models.EmailCardUpdate, es[0].Kind)
	})
}

// Finding 7: a subscription an older billingd imported with an amount above
// every bound (int64's largest) is not invoiced, so never charged; the pass
// goes on and bills the others.
func TestUnboundedSubscriptionIsNotInvoiced(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start, sim.Options{})
		st = s.st
		cusA, pmA := s.saveCard(t, "4242424242424242")
		cusB, pmB := s.saveCard(t, "4111111111111111")
		storetest.Seed(t, st, start,
			storetest.Subscription{Reference: "huge", Customer: cusA, PaymentMethod: pmA},
			storetest.Subscription{Reference: "normal", Customer: cusB, PaymentMethod: pmB, Amount: 1500})
		require.NoError(t, st.DB().Exec(`UPDATE subscriptions SET amount = ? WHERE reference = 'huge'`, int64(9223372036854775807)).Error)

		ctx := context.Background()
		for i := 0; i < 2; i++ {
			_, err := s.biller.Pass(ctx, ctx, "test")
			require.NoError(t, err)
			s.clk.Advance(time.Hour)
		}
		invs := rowsOf[models.Invoice](t, st)
		require.Len(t, invs, 1, "only the in-bound subscription is invoiced")
		require.EqualValues(t, 1500, invs[0].Amount)
		as := attemptsOf(t, st)
		require.Len(t, as, 1)
		require.Equal(t, models.AttemptSucceeded, as[0].Status)
	})
}
