package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/stretchr/testify/require"
)

// dbFilesConfig is a config whose database lives at dir/billingd.db and whose
// gateway nobody answers (the commands below charge nothing).
func dbFilesConfig(t *testing.T, dir string) string {
	t.Helper()
	return writeFile(t, dir, "config.yaml", fmt.Sprintf(`
database: { driver: sqlite, dsn: %q }
gateway:  { base_url: "http://127.0.0.1:1", secret_key: sk_test_files, webhook_secret: whsec_files, timeout: 1s }
http:     { listen: "127.0.0.1:0", public_base_url: "https://billing.example.com" }
`, filepath.Join(dir, "billingd.db")))
}

// requireDBFilesPrivate asserts that the database exists and that it and every
// file beside it that belongs to it (-wal, -shm, -journal, .lock) is 0600;
// want lists files that must exist too.
func requireDBFilesPrivate(t *testing.T, db string, want ...string) {
	t.Helper()
	require.FileExists(t, db)
	for _, w := range want {
		require.FileExists(t, db+w)
	}
	matches, err := filepath.Glob(db + "*")
	require.NoError(t, err)
	for _, p := range matches {
		fi, err := os.Stat(p)
		if err != nil {
			continue // the WAL went away at close
		}
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s is 0600", p)
	}
}

// TestEveryCommandCreatesPrivateDatabaseFiles runs each command that opens the
// SQLite database on a fresh path, under umask 0022 and 0000: the database,
// WAL, SHM and lock files they create are 0600 (they were 0644 under 0022).
// `status` on a database an older billingd left 0644 tightens it and says so.
func TestEveryCommandCreatesPrivateDatabaseFiles(t *testing.T) {
	for _, mask := range []int{0o022, 0o000} {
		t.Run(fmt.Sprintf("umask %04o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)

			t.Run("migrate", func(t *testing.T) {
				dir := t.TempDir()
				code, out, errOut := runMain(t, nil, "migrate", "-c", dbFilesConfig(t, dir))
				require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
				requireDBFilesPrivate(t, filepath.Join(dir, "billingd.db"))
			})
			t.Run("subscriptions import", func(t *testing.T) {
				dir := t.TempDir()
				anchor := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
				f := writeFile(t, dir, "subs.csv", csvHeader+fmt.Sprintf("f-1,f@example.com,cus_a,pm_a,1999,USD,month,1,%s\n", anchor))
				code, out, errOut := runMain(t, nil, "subscriptions", "import", f, "--no-verify", "-c", dbFilesConfig(t, dir))
				require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
				requireDBFilesPrivate(t, filepath.Join(dir, "billingd.db"))
			})
			t.Run("once", func(t *testing.T) {
				dir := t.TempDir()
				code, out, errOut := runWithTimeout(t, "once", "-c", dbFilesConfig(t, dir))
				require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
				requireDBFilesPrivate(t, filepath.Join(dir, "billingd.db"), ".lock")
			})
			t.Run("status on a loose database", func(t *testing.T) {
				dir := t.TempDir()
				cfg := dbFilesConfig(t, dir)
				code, out, errOut := runMain(t, nil, "migrate", "-c", cfg)
				require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
				db := filepath.Join(dir, "billingd.db")
				require.NoError(t, os.Chmod(db, 0o644))
				code, out, errOut = runMain(t, nil, "status", "-c", cfg)
				require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
				requireDBFilesPrivate(t, db)
			})
			t.Run("demo --dir", func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "demo")
				code, out, errOut := runMain(t, nil, "demo", "--dir", dir, "--processing-delay", "20ms")
				require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
				requireDBFilesPrivate(t, filepath.Join(dir, "billingd.db"))
			})
			t.Run("run", func(t *testing.T) {
				dir := t.TempDir()
				db := filepath.Join(dir, "billingd.db")
				ctx, cancel := context.WithCancel(context.Background())
				out, errb := &daemontest.LogBuffer{}, &daemontest.LogBuffer{}
				done := make(chan int, 1)
				go func() {
					m := &Main{Stdout: out, Stderr: errb, Getenv: func(string) string { return "" }}
					done <- m.Run(ctx, []string{"run", "-c", dbFilesConfig(t, dir)})
				}()
				require.Eventually(t, func() bool { return strings.Contains(out.String(), "billingd started") }, 20*time.Second, 20*time.Millisecond,
					"run starts; stdout %s stderr %s", out, errb)
				// While it runs, the WAL, SHM and lock file exist beside the database.
				requireDBFilesPrivate(t, db, "-wal", "-shm", ".lock")
				cancel()
				require.Equal(t, exitOK, <-done, "stdout %s stderr %s", out, errb)
				requireDBFilesPrivate(t, db)
			})
		})
	}
}
