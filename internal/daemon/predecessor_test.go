package daemon_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestRestartTakesTheShareOfItsGonePredecessorAtOnce: an instance that died
// on this host (its pid no longer runs) left its row live, holding the whole
// rate; the instance started after it marks that row dead before its first
// heartbeat and starts with the whole share, instead of nothing for three
// heartbeats. A row of this host whose pid still runs is left alone.
func TestRestartTakesTheShareOfItsGonePredecessorAtOnce(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	gone := exec.Command("true")
	require.NoError(t, gone.Run()) // its pid is free now
	for _, tc := range []struct {
		name     string
		pid      int
		started  time.Time
		wantRate float64
	}{
		{"predecessor gone", gone.Process.Pid, time.Now().Add(-time.Hour), 20},
		{"a process with that pid runs", os.Getppid(), time.Now().Add(-time.Hour), 0},
		{"this pid, started an hour before this process (a container's pid 1 before a restart)", os.Getpid(), time.Now().Add(-time.Hour), 20},
		{"this pid, started with this process (another instance of this test binary)", os.Getpid(), time.Now(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := storetest.PostgresDSN(t)
			st, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: dsn})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			_, err = st.Migrate(context.Background())
			require.NoError(t, err)
			start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
			// The dead predecessor's row, as its last heartbeat left it.
			_, err = st.Beat(context.Background(), models.Instance{Name: host + ":1:old", Host: host, PID: tc.pid, Version: "old", StartedAt: tc.started,
				SchemaVersion: st.KnownSchemaVersion(), RateLimit: 20, Concurrency: 8, RateShare: 20, ConcurrencyShare: 8, Claiming: true},
				time.Now(), time.Now().Add(time.Hour)) // the heartbeat reads the database's clock

			require.NoError(t, err)
			b := daemontest.New(t, daemontest.Options{Postgres: true, NoMail: true, Start: start, Name: host + ":2:new", Configure: func(c *config.Config) {
				c.Database.DSN = dsn
				c.Gateway.RateLimit, c.Gateway.Concurrency = 20, 8
			}})
			require.InDelta(t, tc.wantRate, b.D.Shares().Use.Rate, 1e-6)
		})
	}
}
