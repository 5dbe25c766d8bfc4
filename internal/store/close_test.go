package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestCloseReleasesTheDatabaseFiles: after Close no file of the database is
// open, so it can be moved, remounted read-only or unmounted at once (the
// statement cache of the writer connection must not keep SQLite's handle open).
func TestCloseReleasesTheDatabaseFiles(t *testing.T) {
	dir := t.TempDir()
	st := storetest.SQLiteAt(t, filepath.Join(dir, "billingd.db"))
	now := time.Now().UTC()
	require.NoError(t, loadtest.SeedOpenInvoices(context.Background(), st, 50, now))
	_, err := st.ClaimNewAttempts(context.Background(), "test", now, now.Add(time.Hour), 20)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		require.False(t, strings.HasPrefix(target, dir), "%s is still open after Close", target)
	}
}
