package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestJobLeases: one holder at a time; a lease that ran out is taken over,
// and the old holder can then neither renew nor release it.
func TestJobLeases(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
		a, ok, err := st.AcquireJobLease(ctx, "dunning", "a", t0, t0.Add(time.Minute))
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, int64(1), a.Version)
		require.WithinDuration(t, time.Now().Add(time.Minute), a.Deadline, 5*time.Second)

		_, ok, err = st.AcquireJobLease(ctx, "dunning", "b", t0.Add(30*time.Second), t0.Add(90*time.Second))
		require.NoError(t, err)
		require.False(t, ok, "held by a")
		other, ok, err := st.AcquireJobLease(ctx, "reconcile", "b", t0, t0.Add(time.Minute))
		require.NoError(t, err)
		require.True(t, ok, "each job has its own lease")

		renewed, err := st.RenewJobLease(ctx, a, t0.Add(40*time.Second), t0.Add(100*time.Second))
		require.NoError(t, err)
		require.True(t, renewed)
		_, ok, err = st.AcquireJobLease(ctx, "dunning", "b", t0.Add(90*time.Second), t0.Add(150*time.Second))
		require.NoError(t, err)
		require.False(t, ok, "the renewal holds")

		b, ok, err := st.AcquireJobLease(ctx, "dunning", "b", t0.Add(100*time.Second), t0.Add(160*time.Second))
		require.NoError(t, err)
		require.True(t, ok, "a's lease ran out: b takes it over")
		require.Equal(t, int64(2), b.Version)
		renewed, err = st.RenewJobLease(ctx, a, t0.Add(101*time.Second), t0.Add(200*time.Second))
		require.NoError(t, err)
		require.False(t, renewed, "a lost it")
		require.NoError(t, st.ReleaseJobLease(ctx, a, t0.Add(101*time.Second)))
		_, ok, err = st.AcquireJobLease(ctx, "dunning", "c", t0.Add(102*time.Second), t0.Add(162*time.Second))
		require.NoError(t, err)
		require.False(t, ok, "a's release did not free b's lease")

		require.NoError(t, st.ReleaseJobLease(ctx, b, t0.Add(103*time.Second)))
		c, ok, err := st.AcquireJobLease(ctx, "dunning", "c", t0.Add(104*time.Second), t0.Add(164*time.Second))
		require.NoError(t, err)
		require.True(t, ok, "released: free at once")
		require.Equal(t, int64(3), c.Version)
		require.NoError(t, st.ReleaseJobLease(ctx, other, t0))
	})
}
