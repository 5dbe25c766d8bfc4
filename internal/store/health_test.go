package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestCheckWritableOnAFullSQLiteDatabase fills a SQLite database (no page
// left, max_page_count at its size): a ping still answers, but CheckWritable
// says the database does not take writes, naming SQLITE_FULL's "database or
// disk is full"; a real write that fails for it is remembered at once; with
// room again the next probe is ready. Between probes the verdict is reused.
func TestCheckWritableOnAFullSQLiteDatabase(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	require.NoError(t, st.CheckWritable(ctx))

	empty, err := store.FillSQLite(st)
	require.NoError(t, err)
	require.NoError(t, st.Ping(ctx), "reads still work: a ping cannot tell")

	// The full-disk failures FillSQLite ran into are real failed writes: the
	// verdict is "not writable" at once, without waiting for a probe.
	err = st.CheckWritable(ctx)
	require.ErrorIs(t, err, store.ErrNotWritable)
	require.Contains(t, err.Error(), "database or disk is full")

	// The probe itself finds it too.
	store.ForgetWriteVerdict(st)
	err = st.CheckWritable(ctx)
	require.ErrorIs(t, err, store.ErrNotWritable)
	require.Contains(t, err.Error(), "database or disk is full")

	require.NoError(t, empty())
	require.Error(t, st.CheckWritable(ctx), "the verdict stands until the next probe is due")
	store.ForgetWriteVerdict(st)
	require.NoError(t, st.CheckWritable(ctx), "room again: ready")
	var left int64
	require.NoError(t, st.DB().Raw(`SELECT COUNT(*) FROM readiness_probes`).Scan(&left).Error)
	require.Zero(t, left, "the probe leaves nothing behind")
}

// TestCheckWritableProbesAtMostEveryInterval: checks within WriteProbeEvery of
// a verdict answer from it, whatever happened to the database meanwhile.
func TestCheckWritableProbesAtMostEveryInterval(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	require.NoError(t, st.CheckWritable(ctx))
	require.NoError(t, st.DB().Exec(`DROP TABLE readiness_probes`).Error)
	start := time.Now()
	for time.Since(start) < store.WriteProbeEvery/2 {
		require.NoError(t, st.CheckWritable(ctx), "answered from the verdict: no probe ran")
	}
	store.ForgetWriteVerdict(st)
	require.Error(t, st.CheckWritable(ctx), "the probe runs again once the verdict is old")
}

// TestCheckWritableOnAReadOnlyPostgresTransaction opens the store with
// default_transaction_read_only on (as a replica promoted the wrong way, or an
// operator's ALTER DATABASE): pings and reads work, CheckWritable names the
// read-only transaction.
func TestCheckWritableOnAReadOnlyPostgresTransaction(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	rw, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: dsn})
	require.NoError(t, err)
	_, err = rw.Migrate(context.Background())
	require.NoError(t, err)
	require.NoError(t, rw.CheckWritable(context.Background()))
	require.NoError(t, rw.Close())

	ro, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: dsn + "&default_transaction_read_only=on"})
	require.NoError(t, err)
	defer ro.Close()
	require.NoError(t, ro.Ping(context.Background()))
	err = ro.CheckWritable(context.Background())
	require.ErrorIs(t, err, store.ErrNotWritable)
	require.Contains(t, err.Error(), "read-only transaction")
}

// BenchmarkCheckWritable measures a readiness check that probes (one committed
// insert+delete; SQLite with synchronous=FULL fsyncs it) and one answered from
// the verdict, which is what every check within WriteProbeEvery costs.
func BenchmarkCheckWritable(b *testing.B) {
	st := storetest.SQLite(b)
	ctx := context.Background()
	b.Run("probe", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			store.ForgetWriteVerdict(st)
			if err := st.CheckWritable(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		require.NoError(b, st.CheckWritable(ctx))
		for i := 0; i < b.N; i++ {
			if err := st.CheckWritable(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
