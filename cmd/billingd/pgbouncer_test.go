package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// startPgBouncer runs Debian's pgbouncer in pool_mode = transaction in front
// of the server of direct, and returns direct's DSN through it. It skips when
// pgbouncer is not installed. pgbouncer refuses to run as root: as root the
// test runs it as the postgres user, in a directory of its own it can read.
func startPgBouncer(t *testing.T, direct string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/pgbouncer"); e != nil {
			t.Skip("PgBouncer test skipped: pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)")
		}
		bin = "/usr/sbin/pgbouncer"
	}
	u, err := url.Parse(direct)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, "5432"
	}
	dir, err := os.MkdirTemp("", "billingd-pgbouncer-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("PgBouncer test skipped: running as root and there is no postgres user to run pgbouncer as")
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		require.NoError(t, os.Chown(dir, uid, gid))
	}
	listen := freePort(t)
	_, lport, _ := net.SplitHostPort(listen)
	dbUser := u.User.Username()
	userlist := writeFile(t, dir, "userlist.txt", fmt.Sprintf("%q \"\"\n", dbUser))
	ini := writeFile(t, dir, "pgbouncer.ini", fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 500
default_pool_size = 8
server_reset_query =
logfile = %s
pidfile = %s
`, host, port, lport, userlist, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid")))
	for _, f := range []string{userlist, ini} {
		require.NoError(t, os.Chmod(f, 0o644))
	}
	cmd := exec.Command(bin, ini)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	through := *u
	through.Host = listen
	dsn := through.String()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("pgbouncer exited: %s %s", out, readFile(filepath.Join(dir, "pgbouncer.log")))
		default:
		}
		st, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: dsn, PgBouncer: true, MaxOpenConns: 1})
		if err == nil {
			_ = st.Close()
			return dsn
		}
		require.True(t, time.Now().Before(deadline), "pgbouncer did not answer on %s: %v; log: %s", listen, err, readFile(filepath.Join(dir, "pgbouncer.log")))
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterThroughPgBouncerInTransactionMode runs three `billingd run`
// processes on an empty database through Debian's PgBouncer in transaction
// pooling, with database.pgbouncer set: they start at once, so they migrate
// at once (one takes the migration lock row, the others wait for it), and
// bill three dozen subscriptions against the simulator, each charged once —
// with nothing depending on a server session (no prepared statement, no
// advisory lock) that the pooler would hand to another client.
func TestClusterThroughPgBouncerInTransactionMode(t *testing.T) {
	direct := pgTestDatabase(t)
	bounced := startPgBouncer(t, direct)
	c := newPGCluster(t, direct, bounced, 3, true)
	c.start(t)
	st := c.open(t)
	v, err := st.SchemaVersion(context.Background())
	require.NoError(t, err)
	require.Equal(t, st.KnownSchemaVersion(), v, "migrated through the pooler")

	c.seed(t, st, "bounced", 36)
	c.waitPaid(t, st, "bounced", 36)
	rep := c.checkLedger(t, st)
	require.Equal(t, 36, rep.Invoices)
	require.Equal(t, 36, rep.Succeeded, "each subscription charged once")
	require.Len(t, liveInstances(t, st), 3)
	for i := range c.procs {
		require.Empty(t, c.errorLines(i), "instance %d logged errors through the pooler", i)
	}
	c.stop(t)
}
