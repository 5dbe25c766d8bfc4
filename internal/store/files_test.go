package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// withUmask runs fn under umask mask (process-wide: these tests do not run in
// parallel with each other).
func withUmask(t *testing.T, mask int, fn func()) {
	t.Helper()
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	fn()
}

// requirePrivate asserts that every file of the database at path that exists
// is 0600, and that the database, its WAL, SHM and (when locked) lock file do.
func requirePrivate(t *testing.T, path string, lock bool) {
	t.Helper()
	want := []string{path, path + "-wal", path + "-shm"}
	if lock {
		want = append(want, path+".lock")
	}
	for _, p := range want {
		fi, err := os.Stat(p)
		require.NoError(t, err, "%s exists", p)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s is 0600", p)
	}
}

// TestDatabaseFilesArePrivate opens fresh SQLite databases under the umasks
// operators run with (0022, the usual default, and 0000) and writes to them:
// the database, its WAL and SHM and the instance lock are 0600, never the
// 0644 a 0022 umask gave them before.
func TestDatabaseFilesArePrivate(t *testing.T) {
	for _, mask := range []int{0o022, 0o000} {
		for _, exclusive := range []bool{true, false} {
			t.Run(fmt.Sprintf("umask %04o exclusive %v", mask, exclusive), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "billingd.db")
				withUmask(t, mask, func() {
					st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: path, Exclusive: exclusive})
					require.NoError(t, err)
					defer st.Close()
					_, err = st.Migrate(context.Background())
					require.NoError(t, err)
					storetest.Seed(t, st, t0, storetest.Subscription{})
					require.Empty(t, st.FileNotices(), "a new database needs no tightening")
					requirePrivate(t, path, exclusive)
				})
			})
		}
	}
}

// TestLooseDatabaseFilesAreTightened opens a database whose files an older
// billingd left 0644 (and a lock file 0666): each is made 0600 at open, and
// the store says so, one notice per file, so the daemon can log it.
func TestLooseDatabaseFilesAreTightened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "billingd.db")
	withUmask(t, 0o022, func() {
		st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: path, Exclusive: true})
		require.NoError(t, err)
		_, err = st.Migrate(context.Background())
		require.NoError(t, err)
		storetest.Seed(t, st, t0, storetest.Subscription{})
		// Loosen the files while they are open, as an older billingd made them.
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			require.NoError(t, os.Chmod(p, 0o644))
		}
		require.NoError(t, os.Chmod(path+".lock", 0o666))
		require.NoError(t, st.Close())
	})
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if _, err := os.Stat(p); err == nil {
			require.NoError(t, os.Chmod(p, 0o644))
		}
	}

	st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: path, Exclusive: true})
	require.NoError(t, err)
	defer st.Close()
	notices := st.FileNotices()
	require.NotEmpty(t, notices)
	joined := fmt.Sprint(notices)
	require.Contains(t, joined, path+" from 0644 to 0600")
	require.Contains(t, joined, path+".lock from 0666 to 0600")
	storetest.Seed(t, st, t0, storetest.Subscription{Reference: "after"})
	requirePrivate(t, path, true)
}
