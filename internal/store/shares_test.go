package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/cluster"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestBeatSharesSerializesJoiningInstances: instances joining at the same
// moment, each with its own connection pool, beat concurrently; every one
// decides from the rows as they are once the table is locked, so however the
// beats interleave — inserts of new rows included — the committed shares
// never add up to more than the limit, and they settle on fair shares.
func TestBeatSharesSerializesJoiningInstances(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	const n = 4
	limits := cluster.Limits{Rate: 100, Concurrency: 10}
	stores := make([]*store.Store, n)
	for i := range stores {
		st, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: dsn})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		if i == 0 {
			_, err = st.Migrate(ctx)
			require.NoError(t, err)
		}
		stores[i] = st
	}
	used := make([]cluster.Share, n)
	check := func() {
		rows, err := stores[0].Instances(ctx)
		require.NoError(t, err)
		var rate float64
		var conc int
		for _, r := range rows {
			rate += r.RateShare
			conc += r.ConcurrencyShare
		}
		require.LessOrEqual(t, rate, limits.Rate)
		require.LessOrEqual(t, conc, limits.Concurrency)
	}
	for round := 0; round < 4; round++ {
		var wg sync.WaitGroup
		for i := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				self := models.Instance{Name: fmt.Sprintf("host%d:1:x", i), Host: "h", RateLimit: limits.Rate, Concurrency: limits.Concurrency, Claiming: true}
				_, _, err := stores[i].BeatShares(ctx, self, time.Now(), 15*time.Second, func(rows []models.Instance, now time.Time) (float64, int, string, error) {
					p := cluster.Compute(rows, self.Name, limits, now)
					used[i] = p.Next
					return p.Next.Rate, p.Next.Concurrency, p.Note(limits), nil
				})
				require.NoError(t, err)
			}()
		}
		wg.Wait()
		check()
	}
	for i := range used {
		require.InDelta(t, 25, used[i].Rate, 1e-6, "instance %d", i)
		require.GreaterOrEqual(t, used[i].Concurrency, 2)
	}
}
