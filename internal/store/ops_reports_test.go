package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
)

// The pass gauges: nothing before the first pass; a running pass ages; a
// finished one stops the age and dates the last finished pass; an
// interrupted one does not.
func TestPassGauges(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		age, err := st.OldestRunningPassAge(ctx, t0)
		require.NoError(t, err)
		require.Zero(t, age)
		last, err := st.LastFinishedPass(ctx)
		require.NoError(t, err)
		require.True(t, last.IsZero())

		run, err := st.StartRun(ctx, "cron", "a", t0)
		require.NoError(t, err)
		age, err = st.OldestRunningPassAge(ctx, t0.Add(90*time.Second))
		require.NoError(t, err)
		require.Equal(t, 90*time.Second, age)

		run.Status = models.RunFinished
		require.NoError(t, st.FinishRun(ctx, run, t0.Add(100*time.Second)))
		broken, err := st.StartRun(ctx, "cron", "a", t0.Add(time.Hour))
		require.NoError(t, err)
		broken.Status = models.RunInterrupted
		require.NoError(t, st.FinishRun(ctx, broken, t0.Add(2*time.Hour)))

		age, err = st.OldestRunningPassAge(ctx, t0.Add(3*time.Hour))
		require.NoError(t, err)
		require.Zero(t, age)
		last, err = st.LastFinishedPass(ctx)
		require.NoError(t, err)
		require.True(t, last.Equal(t0.Add(100*time.Second)), "last finished %s", last)
	})
}
