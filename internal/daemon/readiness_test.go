package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// readyz asks the daemon's real HTTP handler, as a load balancer would.
func readyz(t *testing.T, b *daemontest.Bundle) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(b.URL + "/readyz")
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, resp.StatusCode == http.StatusOK, body.Ready)
	return resp.StatusCode, body.Checks
}

// tmpfs mounts a tmpfs of size bytes on a new directory, or skips where that
// is not allowed.
func tmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestReadyzFailsWhenTheDiskIsFull is finding 9 through the assembled daemon:
// its SQLite database lives on a small file system that fills up. A ping still
// answers, but /readyz answers 503 naming the cause — first from the billing
// pass whose writes failed, then from its own probe — and is ready again
// within a probe interval once space is freed.
func TestReadyzFailsWhenTheDiskIsFull(t *testing.T) {
	dir := tmpfs(t, 8<<20)
	db := filepath.Join(dir, "billingd.db")
	b := daemontest.New(t, daemontest.Options{Configure: func(c *config.Config) { c.Database.DSN = db }})
	code, checks := readyz(t, b)
	require.Equal(t, http.StatusOK, code, "%v", checks)
	require.Equal(t, "ok", checks["database_writes"])

	// Fill the file system: the WAL is truncated first so that the next
	// write must grow it.
	require.NoError(t, b.Store.DB().Exec(`PRAGMA wal_checkpoint(TRUNCATE)`).Error)
	var fs syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &fs))
	filler := filepath.Join(dir, "filler")
	require.NoError(t, os.WriteFile(filler, make([]byte, int64(fs.Bavail)*int64(fs.Bsize)), 0o600))

	// The daemon's next billing pass cannot even record its run.
	_, passErr := b.D.Pass(t.Context(), t.Context(), "test")
	require.ErrorContains(t, passErr, "database or disk is full")

	require.Eventually(t, func() bool {
		code, checks = readyz(t, b)
		return code == http.StatusServiceUnavailable
	}, 10*time.Second, 50*time.Millisecond, "/readyz fails on the full disk: %v", checks)
	require.Contains(t, checks["database_writes"], "database or disk is full")
	require.Equal(t, "ok", checks["database"], "a ping alone would have said ready")

	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool {
		code, checks = readyz(t, b)
		return code == http.StatusOK
	}, 10*store.WriteProbeEvery, 50*time.Millisecond, "ready again once there is room: %v", checks)
	require.Equal(t, "ok", checks["database_writes"])
}

// TestReadyzFailsOnAReadOnlyPostgres starts the daemon on a PostgreSQL schema
// whose sessions are read-only (default_transaction_read_only, as a standby or
// an operator's ALTER DATABASE would make them): the daemon starts and pings,
// /readyz answers 503 naming the read-only transaction.
func TestReadyzFailsOnAReadOnlyPostgres(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{Postgres: true, Prepare: func(b *daemontest.Bundle) {
		st, err := store.Open(t.Context(), store.Options{Driver: store.Postgres, DSN: b.Config.Database.DSN})
		require.NoError(t, err)
		_, err = st.Migrate(t.Context())
		require.NoError(t, err)
		require.NoError(t, st.Close())
		b.Config.Database.DSN += "&default_transaction_read_only=on"
	}})
	code, checks := readyz(t, b)
	require.Equal(t, http.StatusServiceUnavailable, code, "%v", checks)
	require.Contains(t, checks["database_writes"], "read-only transaction")
	require.Equal(t, "ok", checks["database"])
}
