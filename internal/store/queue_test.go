package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// invoicePeriods creates periods 0..n-1 of a subscription, one a day from start.
func invoicePeriods(t *testing.T, st *store.Store, ref string, start time.Time, n int) {
	t.Helper()
	var invs []store.NewInvoice
	for k := 0; k < n; k++ {
		ps := start.Add(time.Duration(k) * 24 * time.Hour)
		invs = append(invs, store.NewInvoice{SubscriptionID: subID(t, st, ref), Reference: ref, PeriodIndex: k, PeriodStart: ps, PeriodEnd: ps.Add(24 * time.Hour), Amount: 100, Currency: "USD"})
	}
	require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
		created, err := tx.CreateInvoices(start, invs)
		require.Equal(t, n, created)
		return err
	}))
}

func subID(t *testing.T, st *store.Store, ref string) int64 {
	t.Helper()
	var s models.Subscription
	require.NoError(t, st.DB().Where("reference = ?", ref).First(&s).Error)
	return s.ID
}

// Waiting invoices (behind an open period, or on a dead card) are excluded by
// the claim query itself: with the oldest next_attempt_at they come first in the
// index, yet a claim of one still finds the chargeable invoice behind them.
func TestClaimSkipsWaitingInvoicesBeforeItsLimit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		old := t0.Add(-30 * 24 * time.Hour)
		storetest.Seed(t, st, old,
			storetest.Subscription{Reference: "queued", PaymentMethod: "pm_queued", Interval: "day", Anchor: old},
			storetest.Subscription{Reference: "dead", PaymentMethod: "pm_dead", Interval: "day", Anchor: old},
			storetest.Subscription{Reference: "ok", PaymentMethod: "pm_ok", Interval: "day", Anchor: t0})
		invoicePeriods(t, st, "queued", old, 10)
		invoicePeriods(t, st, "dead", old, 10)
		invoicePeriods(t, st, "ok", t0, 1)

		// queued's head is in dunning: its retry is not due.
		later := t0.Add(48 * time.Hour)
		require.NoError(t, st.DB().Exec(`UPDATE invoices SET next_attempt_at = ?, attempt_count = 1 WHERE subscription_id = ? AND period_index = 0`,
			later, subID(t, st, "queued")).Error)
		// dead's card was declined hard.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			marked, err := tx.MarkPaymentMethodDead(old, "pm_dead", "lost_card")
			require.True(t, marked)
			if err != nil {
				return err
			}
			again, err := tx.MarkPaymentMethodDead(t0, "pm_dead", "expired_card")
			require.False(t, again, "the first reason is kept")
			return err
		}))

		claimed, err := st.ClaimNewAttempts(ctx, "w", t0, t0.Add(time.Minute), 1)
		require.NoError(t, err)
		require.Len(t, claimed, 1)
		require.Equal(t, subID(t, st, "ok"), claimed[0].SubscriptionID)
		claimed, err = st.ClaimNewAttempts(ctx, "w", t0, t0.Add(time.Minute), 100)
		require.NoError(t, err)
		require.Empty(t, claimed, "nothing else may be charged")

		// A pay link does not charge the dead card either.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			var head int64
			require.NoError(t, tx.DB().Raw(`SELECT id FROM invoices WHERE subscription_id = ? AND period_index = 0`, subID(t, st, "dead")).Scan(&head).Error)
			ic, err := tx.InvoiceContact(head)
			if err != nil {
				return err
			}
			press, err := tx.StartOnSessionAttempt(t0, ic, "web", t0.Add(time.Minute), 0)
			a := press.Attempt
			require.Nil(t, a)
			return err
		}))

		var pm models.PaymentMethod
		require.NoError(t, st.DB().Where("gateway_payment_method_id = ?", "pm_dead").First(&pm).Error)
		require.Equal(t, "lost_card", pm.DeadReason)
		require.Equal(t, old, pm.DeadAt.UTC())

		// Paid, the head lets the next period through, and only that one.
		queued := subID(t, st, "queued")
		require.NoError(t, st.DB().Exec(`UPDATE invoices SET status = 'paid', next_attempt_at = NULL WHERE subscription_id = ? AND period_index = 0`, queued).Error)
		claimed, err = st.ClaimNewAttempts(ctx, "w", t0, t0.Add(time.Minute), 100)
		require.NoError(t, err)
		require.Len(t, claimed, 1)
		require.Equal(t, queued, claimed[0].SubscriptionID)
		var k int
		require.NoError(t, st.DB().Raw(`SELECT period_index FROM invoices WHERE id = ?`, claimed[0].InvoiceID).Scan(&k).Error)
		require.Equal(t, 1, k)
	})
}

func TestCardReattemptsCountOnlyRetries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "r", PaymentMethod: "pm_r", Interval: "day", Anchor: t0})
		invoicePeriods(t, st, "r", t0, 3)
		// Period 0: its first attempt and two retries, all declined; then
		// period 1's first attempt, declined too.
		claim := func(at time.Time) models.ChargeAttempt {
			claimed, err := st.ClaimNewAttempts(ctx, "w", at, at.Add(time.Minute), 1)
			require.NoError(t, err)
			require.Len(t, claimed, 1)
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				return tx.FinishAttempt(at, &claimed[0], store.AttemptResult{Status: models.AttemptDeclined, DeclineCode: "insufficient_funds"})
			}))
			return claimed[0]
		}
		sub := subID(t, st, "r")
		for i, at := range []time.Time{t0, t0.Add(24 * time.Hour), t0.Add(48 * time.Hour)} {
			require.NoError(t, st.DB().Exec(`UPDATE invoices SET next_attempt_at = ? WHERE subscription_id = ? AND period_index = 0`, at, sub).Error)
			a := claim(at)
			require.Equal(t, i+1, a.AttemptNo)
		}
		require.NoError(t, st.DB().Exec(`UPDATE invoices SET status = 'paid', next_attempt_at = NULL WHERE subscription_id = ? AND period_index = 0`, sub).Error)
		require.NoError(t, st.DB().Exec(`UPDATE invoices SET next_attempt_at = ? WHERE subscription_id = ? AND period_index = 1`, t0.Add(60*time.Hour), sub).Error)
		first := claim(t0.Add(60 * time.Hour))
		require.Equal(t, 1, first.AttemptNo)
		tests := []struct {
			name  string
			pm    string
			since time.Time
			want  int
		}{
			{"both retries", "pm_r", t0.Add(-time.Hour), 2},
			{"the last retry", "pm_r", t0.Add(36 * time.Hour), 1},
			{"another card", "pm_other", t0.Add(-time.Hour), 0},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
					n, err := tx.CountCardReattempts(tc.pm, tc.since)
					require.Equal(t, tc.want, n)
					return err
				}))
			})
		}
	})
}
