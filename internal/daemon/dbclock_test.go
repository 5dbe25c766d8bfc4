package daemon_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/stretchr/testify/require"
)

// TestDaemonOnPostgresRunsOnTheDatabasesClock: a daemon on the wall clock
// against PostgreSQL tells the database server's time (docs/protocol.md, "No send on a lost lease"); one
// on a simulated clock keeps it.
func TestDaemonOnPostgresRunsOnTheDatabasesClock(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{Postgres: true})
	_, fake := b.D.Clock().(*clock.Fake)
	require.True(t, fake, "a simulated clock is left alone")

	d, err := daemon.New(context.Background(), b.Config, daemon.Options{Log: io.Discard})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	aligned, ok := d.Clock().(*clock.Aligned)
	require.True(t, ok, "the wall clock is aligned to the database's")
	before := time.Now()
	dbNow, err := d.Store().DBNow(context.Background())
	require.NoError(t, err)
	rtt := time.Since(before)
	require.WithinDuration(t, dbNow, aligned.Now(), rtt+50*time.Millisecond)
}
