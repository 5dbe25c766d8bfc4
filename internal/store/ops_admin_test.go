package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

func TestAdminRequests(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		day := now.Add(24 * time.Hour)

		row, begun, err := st.BeginAdminRequest(ctx, now, "app", "k1", "h1", "POST", "/v1/subscriptions", day)
		require.NoError(t, err)
		require.True(t, begun)
		again, begun, err := st.BeginAdminRequest(ctx, now, "app", "k1", "h1", "POST", "/v1/subscriptions", day)
		require.NoError(t, err)
		require.False(t, begun, "in flight")
		require.Equal(t, row.ID, again.ID)
		require.Zero(t, again.StatusCode)

		other, begun, err := st.BeginAdminRequest(ctx, now, "other-token", "k1", "h1", "POST", "/v1/subscriptions", day)
		require.NoError(t, err)
		require.True(t, begun, "keys are scoped to the token")
		require.NotEqual(t, row.ID, other.ID)

		require.NoError(t, st.FinishAdminRequest(ctx, now, row.ID, 201, `{"ok":true}`, nil, &day))
		done, begun, err := st.BeginAdminRequest(ctx, now.Add(time.Hour), "app", "k1", "h1", "POST", "/v1/subscriptions", day)
		require.NoError(t, err)
		require.False(t, begun)
		require.Equal(t, 201, done.StatusCode)
		require.Equal(t, `{"ok":true}`, done.ResponseBody)

		t.Run("an abandoned request is taken over", func(t *testing.T) {
			later := now.Add(store.AdminRequestAbandonAfter + time.Second)
			_, begun, err := st.BeginAdminRequest(ctx, later, "other-token", "k1", "h1", "POST", "/v1/subscriptions", later.Add(24*time.Hour))
			require.NoError(t, err)
			require.True(t, begun)
		})
		t.Run("expired rows are replaced and pruned", func(t *testing.T) {
			after := day.Add(time.Second)
			n, err := st.PruneAdminRequests(ctx, after, 100)
			require.NoError(t, err)
			require.EqualValues(t, 1, n, "app/k1 expired; other-token/k1 was renewed")
			_, begun, err := st.BeginAdminRequest(ctx, after, "app", "k1", "h2", "POST", "/v1/subscriptions", after.Add(24*time.Hour))
			require.NoError(t, err)
			require.True(t, begun)
		})
		t.Run("concurrent first requests: one begins", func(t *testing.T) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			begins := 0
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, b, err := st.BeginAdminRequest(ctx, now, "app", "race", "h", "POST", "/v1/x", day)
					require.NoError(t, err)
					if b {
						mu.Lock()
						begins++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			require.Equal(t, 1, begins)
		})
	})
}
