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

// An invoice's order id is derived from its subscription's reference and its
// period start, so re-creating the invoice of a period (after a restore) gives
// it the same id, and an id another period's invoice already holds is never
// taken for "this period is invoiced".
func TestCreateInvoicesDerivesOrderIDs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "alpha", Anchor: t0}, storetest.Subscription{Reference: "beta", Anchor: t0})
		ids := map[string]int64{}
		var subs []models.Subscription
		require.NoError(t, st.DB().Find(&subs).Error)
		for _, s := range subs {
			ids[s.Reference] = s.ID
		}
		period := func(ref string, k int) store.NewInvoice {
			ps := t0.AddDate(0, k, 0)
			return store.NewInvoice{SubscriptionID: ids[ref], Reference: ref, PeriodIndex: k, PeriodStart: ps, PeriodEnd: ps.AddDate(0, 1, 0), Amount: 1000, Currency: "USD"}
		}
		create := func(invs ...store.NewInvoice) (int, error) {
			var n int
			err := st.InTx(ctx, func(tx *store.Tx) error {
				var err error
				n, err = tx.CreateInvoices(t0, invs)
				return err
			})
			return n, err
		}
		publicID := func(ref string, k int) string {
			var inv models.Invoice
			require.NoError(t, st.DB().Where("subscription_id = ? AND period_index = ?", ids[ref], k).First(&inv).Error)
			return inv.PublicID
		}

		t.Run("derived from reference and period start", func(t *testing.T) {
			n, err := create(period("alpha", 0), period("beta", 0))
			require.NoError(t, err)
			require.Equal(t, 2, n)
			require.Equal(t, store.DerivedOrderID("alpha", t0), publicID("alpha", 0))
			require.Equal(t, store.DerivedOrderID("beta", t0), publicID("beta", 0))
			at, ok := store.OrderIDTime(publicID("alpha", 0))
			require.True(t, ok)
			require.True(t, at.Equal(t0), "the id's time prefix is the period start, got %s", at)

			n, err = create(period("alpha", 0), period("beta", 0))
			require.NoError(t, err)
			require.Zero(t, n, "a period already invoiced is left alone")
		})

		t.Run("an order id another period holds is not taken for this period's invoice", func(t *testing.T) {
			// alpha's period 1 is made to hold the id beta's period 1
			// derives, as a 52-bit collision in one millisecond would.
			taken := store.DerivedOrderID("beta", t0.AddDate(0, 1, 0))
			p := period("alpha", 1)
			require.NoError(t, st.DB().Exec(`INSERT INTO invoices (public_id, subscription_id, period_index, period_start, period_end, amount,
				currency, status, next_attempt_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,'open',?,?,?)`,
				taken, p.SubscriptionID, p.PeriodIndex, p.PeriodStart, p.PeriodEnd, p.Amount, p.Currency, p.PeriodStart, t0, t0).Error)

			n, err := create(period("alpha", 1), period("beta", 1), period("beta", 2))
			require.NoError(t, err)
			require.Equal(t, 2, n, "beta's periods 1 and 2 are invoiced; alpha's period 1 already was")
			got := publicID("beta", 1)
			require.NotEqual(t, taken, got)
			at1, _ := store.OrderIDTime(taken)
			at2, _ := store.OrderIDTime(got)
			require.Equal(t, at1, at2, "the salted id keeps the period's time prefix")
			require.Equal(t, store.DerivedOrderID("beta", t0.AddDate(0, 2, 0)), publicID("beta", 2))

			// Re-created (a restore), the period meets the same collision
			// and gets the same salted id again.
			require.NoError(t, st.DB().Exec(`DELETE FROM invoices WHERE public_id = ?`, got).Error)
			n, err = create(period("beta", 1))
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.Equal(t, got, publicID("beta", 1))
		})

		t.Run("a period without a reference is refused", func(t *testing.T) {
			p := period("alpha", 5)
			p.Reference = ""
			_, err := create(p)
			require.ErrorContains(t, err, "no reference")
		})
	})
}

func TestOrderIDTimeReadsThePrefix(t *testing.T) {
	at := time.Date(2027, 2, 3, 4, 5, 6, 7_000_000, time.UTC)
	got, ok := store.OrderIDTime(store.DerivedOrderID("x", at))
	require.True(t, ok)
	require.Equal(t, at, got)
	random, err := store.NewPublicID("inv")
	require.NoError(t, err)
	got, ok = store.OrderIDTime(random)
	require.True(t, ok)
	require.WithinDuration(t, time.Now(), got, time.Minute, "a random id's prefix is its creation time")
	for _, bad := range []string{"", "inv_", "inv_short", "in_keep", "inv_ABCDEFGHIJKLMNOPQRST", "inv_2aktctzc244du3xg3b4h-a1", "_2aktctzc244du3xg3b4h"} {
		_, ok := store.OrderIDTime(bad)
		require.False(t, ok, bad)
	}
}
