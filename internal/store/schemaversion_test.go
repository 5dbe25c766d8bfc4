package store_test

import (
	"context"
	"sync"
	"testing"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestSchemaVersion checks what the mixed-version check reads: 0 before the
// first migration, the newest applied one after, a newer version once a
// newer binary recorded one, and that an older binary's Migrate then neither
// fails nor undoes anything.
func TestSchemaVersion(t *testing.T) {
	storetest.EachUnmigrated(t, func(t *testing.T, open func(store.Options) *store.Store) {
		ctx := context.Background()
		st := open(store.Options{})
		v, err := st.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Zero(t, v, "no version table yet")
		_, err = st.Migrate(ctx)
		require.NoError(t, err)
		known := st.KnownSchemaVersion()
		require.GreaterOrEqual(t, known, int64(14))
		v, err = st.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, known, v)

		newer := known + 1000
		require.NoError(t, st.DB().Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, TRUE)`, newer).Error)
		v, err = st.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, newer, v)
		applied, err := st.Migrate(ctx)
		require.NoError(t, err, "an older binary's Migrate on a newer schema does nothing")
		require.Empty(t, applied)
		v, err = st.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, newer, v, "nothing was migrated down")
		current, err := st.MigrationsCurrent(ctx)
		require.NoError(t, err)
		require.True(t, current)
	})
}

// TestConcurrentMigrationsThroughTheLockRow starts several processes'
// migrations on one empty PostgreSQL schema at once: one migrates while the
// others wait on the lock row, and every one ends with the schema current.
func TestConcurrentMigrationsThroughTheLockRow(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	const n = 3
	stores := make([]*store.Store, n)
	for i := range stores {
		st, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: dsn, PgBouncer: i%2 == 0})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		stores[i] = st
	}
	applied := make([][]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, st := range stores {
		wg.Go(func() { applied[i], errs[i] = st.Migrate(ctx) })
	}
	wg.Wait()
	total := 0
	for i := range stores {
		require.NoError(t, errs[i], "process %d", i)
		total += len(applied[i])
	}
	require.Equal(t, int(stores[0].KnownSchemaVersion()), total, "every migration ran once")
	var locks int64
	require.NoError(t, stores[0].DB().Raw(`SELECT COUNT(*) FROM `+store.MigrationLockTable+` WHERE locked`).Scan(&locks).Error)
	require.Zero(t, locks, "the lock row was released")
	var advisory int64
	require.NoError(t, stores[0].DB().Raw(`SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'`).Scan(&advisory).Error)
	require.Zero(t, advisory, "no advisory lock was taken")
}
