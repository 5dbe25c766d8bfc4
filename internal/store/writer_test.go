package store_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

func openSQLite(t *testing.T, busy time.Duration) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: filepath.Join(t.TempDir(), "billingd.db"), Exclusive: true, BusyTimeout: busy})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.Migrate(context.Background())
	require.NoError(t, err)
	return st
}

// TestEveryWriteQueuesBehindTheWriter: writes that are not part of a larger
// transaction (a billing run's row, marking an email sent, releasing leases)
// wait for the running transaction instead of racing it for SQLite's lock. A
// write that lost that race after busy_timeout failed, and an email sent but
// not marked sent is sent again.
func TestEveryWriteQueuesBehindTheWriter(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t, time.Millisecond) // a pool connection would give up at once
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	holding, release := make(chan struct{}), make(chan struct{})
	txDone := make(chan error, 1)
	go func() {
		txDone <- st.InTx(ctx, func(tx *store.Tx) error {
			close(holding)
			<-release
			return tx.DB().Exec(`UPDATE billing_runs SET error = 'x' WHERE id = -1`).Error
		})
	}()
	<-holding
	type result struct {
		run *models.BillingRun
		err error
	}
	started := make(chan result, 1)
	go func() {
		run, err := st.StartRun(ctx, "test", "owner", now)
		started <- result{run, err}
	}()
	// Let the write reach the database while the lock is held; a write that
	// queues behind the writer passes however long this is.
	time.Sleep(50 * time.Millisecond)
	close(release)
	require.NoError(t, <-txDone)
	got := <-started
	require.NoError(t, got.err)
	require.NoError(t, st.FinishRun(ctx, got.run, now.Add(time.Second)))
	n, err := st.ReleaseAllLeases(ctx, now)
	require.NoError(t, err)
	require.Zero(t, n)
	require.NoError(t, st.InterruptStaleRuns(ctx, now, "other"))
}

// TestWriterRecoversFromATransactionLeftOpen: if a ROLLBACK ever fails and
// leaves the writer connection inside a transaction, the next transaction rolls
// it back and proceeds instead of every write failing until a restart.
func TestWriterRecoversFromATransactionLeftOpen(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t, time.Second)
	require.NoError(t, store.LeaveWriterInTransaction(st))
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	run, err := st.StartRun(ctx, "test", "owner", now)
	require.NoError(t, err)
	var n int64
	require.NoError(t, st.DB().Raw(`SELECT COUNT(*) FROM billing_runs WHERE id = ?`, run.ID).Scan(&n).Error)
	require.EqualValues(t, 1, n, "the run is committed, visible to another connection")
}

// Finding 6: a subscription import is another process holding SQLite's write
// lock for its whole file (one transaction; about 40 s for a million rows). The
// daemon's writes wait for it to commit instead of failing with "database is
// locked" once busy_timeout has passed.
func TestDaemonWritesWaitForAnotherProcesssLongTransaction(t *testing.T) {
	ctx := context.Background()
	const busy = 50 * time.Millisecond
	path := filepath.Join(t.TempDir(), "billingd.db")
	daemon, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: path, Exclusive: true, BusyTimeout: busy})
	require.NoError(t, err)
	t.Cleanup(func() { _ = daemon.Close() })
	daemon.SetLockWait(store.DaemonLockWait) // as billingd run does
	_, err = daemon.Migrate(ctx)
	require.NoError(t, err)
	importer, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: path, BusyTimeout: busy})
	require.NoError(t, err)
	t.Cleanup(func() { _ = importer.Close() })

	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	holding, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the stores close, whatever fails
	importDone := make(chan error, 1)
	go func() {
		importDone <- importer.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.DB().Exec(`UPDATE billing_runs SET error = 'x' WHERE id = -1`).Error; err != nil {
				return err
			}
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	wrote := make(chan error, 1)
	go func() {
		run, err := daemon.StartRun(ctx, "test", "owner", now)
		if err == nil {
			err = daemon.FinishRun(ctx, run, now.Add(time.Second))
		}
		wrote <- err
	}()
	// Many busy timeouts pass while the other process holds the lock.
	time.Sleep(10 * busy)
	select {
	case err := <-wrote:
		t.Fatalf("the write ended while the lock was held: %v", err)
	default:
	}
	free()
	require.NoError(t, <-importDone)
	require.NoError(t, <-wrote, "the daemon's write waited for the other transaction")
}
