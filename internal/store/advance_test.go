package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// advancedSub is what a test reads back of a subscription's advance.
type advancedSub struct {
	ID            int64
	NextPeriod    int
	NextBillingAt time.Time
	UpdatedAt     time.Time
}

func readAdvanced(t *testing.T, st *store.Store) map[int64]advancedSub {
	t.Helper()
	var rows []advancedSub
	require.NoError(t, st.DB().Raw(`SELECT id, next_period, next_billing_at, updated_at FROM subscriptions`).Scan(&rows).Error)
	out := make(map[int64]advancedSub, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out
}

// TestAdvanceSubscriptions checks the batched advance of a sweep page: catch-up
// subscriptions move several periods at once, a subscription whose
// next_period moved since the sweep read it is left as it is (the fence of
// AdvanceSubscription, row by row) while the rest of the page moves, and a
// page larger than one statement's bound parameters allow on either database
// (17,000 subscriptions, four parameters each: 68,000 > 65,535 > 32,766) is
// split into statements that all apply.
func TestAdvanceSubscriptions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		anchor := now.Add(-90 * 24 * time.Hour)
		const n = 17000
		require.NoError(t, st.SeedDueSubscriptions(ctx, []store.SeedCard{{Customer: "cus_a", PaymentMethod: "pm_a", Email: "a@example.com"}},
			n, "adv-%05d", "plan", 1000, "USD", anchor, anchor))
		before := readAdvanced(t, st)
		require.Len(t, before, n)

		var ids []int64
		for id := range before {
			ids = append(ids, id)
		}
		stale := ids[0]
		var advs []store.Advance
		want := map[int64]advancedSub{}
		for i, id := range ids {
			old := before[id].NextPeriod
			// Catch-up: up to three periods in one advance; every tenth a
			// realignment (next_period kept, next_billing_at moved).
			np := old + 1 + i%3
			if i%10 == 0 {
				np = old
			}
			nb := anchor.Add(time.Duration(np)*30*24*time.Hour + time.Duration(i)*time.Second)
			advs = append(advs, store.Advance{ID: id, OldNext: old, NewNext: np, NextBillingAt: nb})
			want[id] = advancedSub{ID: id, NextPeriod: np, NextBillingAt: nb, UpdatedAt: now}
		}
		// Another writer moved one subscription after the page was read.
		require.NoError(t, st.DB().Exec(`UPDATE subscriptions SET next_period = next_period + 7 WHERE id = ?`, stale).Error)
		want[stale] = advancedSub{ID: stale, NextPeriod: before[stale].NextPeriod + 7, NextBillingAt: before[stale].NextBillingAt, UpdatedAt: before[stale].UpdatedAt}

		var moved int64
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			var err error
			moved, err = tx.AdvanceSubscriptions(now, advs)
			return err
		}))
		require.EqualValues(t, n-1, moved, "every subscription but the one that moved meanwhile")
		after := readAdvanced(t, st)
		for id, w := range want {
			got := after[id]
			require.Equal(t, w.NextPeriod, got.NextPeriod, "subscription %d", id)
			require.Truef(t, w.NextBillingAt.Equal(got.NextBillingAt), "subscription %d: next_billing_at %s, want %s", id, got.NextBillingAt, w.NextBillingAt)
			require.Truef(t, w.UpdatedAt.Equal(got.UpdatedAt), "subscription %d: updated_at %s, want %s", id, got.UpdatedAt, w.UpdatedAt)
		}

		t.Run("a subscription twice in one call is refused, nothing moves", func(t *testing.T) {
			a := after[ids[1]]
			err := st.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.AdvanceSubscriptions(now.Add(time.Hour), []store.Advance{
					{ID: a.ID, OldNext: a.NextPeriod, NewNext: a.NextPeriod + 1, NextBillingAt: now},
					{ID: a.ID, OldNext: a.NextPeriod + 1, NewNext: a.NextPeriod + 2, NextBillingAt: now},
				})
				return err
			})
			require.ErrorContains(t, err, "advanced twice")
			require.Equal(t, a.NextPeriod, readAdvanced(t, st)[a.ID].NextPeriod)
		})
		t.Run("an empty page sends nothing", func(t *testing.T) {
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				moved, err := tx.AdvanceSubscriptions(now, nil)
				require.Zero(t, moved)
				return err
			}))
		})
	})
}
