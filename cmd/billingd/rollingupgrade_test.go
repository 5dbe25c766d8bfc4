package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestRollingUpgradeOlderInstancesStopClaiming runs two `billingd run`
// processes on one PostgreSQL database while a newer billingd's migration
// (test-only: a version above this build's and a table it does not know)
// runs under them, as the first upgraded host of a rolling upgrade would.
// Within a heartbeat both stop claiming: the subscriptions that come due
// are not charged, /readyz answers 503 naming its schema check, each
// instance's row says claiming false with a note, the log has an ERROR line
// and `billingd status` says so. When the newer version goes away again
// (rolled back) they claim again and charge what came due, once each.
func TestRollingUpgradeOlderInstancesStopClaiming(t *testing.T) {
	direct := pgTestDatabase(t)
	c := newPGCluster(t, direct, direct, 2, false)
	c.start(t)
	st := c.open(t)
	ctx := context.Background()

	c.seed(t, st, "before", 12)
	c.waitPaid(t, st, "before", 12)
	for i := range c.procs {
		code, checks := c.readyz(t, i)
		require.Equal(t, http.StatusOK, code, "instance %d: %v", i, checks)
	}

	known := st.KnownSchemaVersion()
	newer := known + 1
	require.NoError(t, st.DB().Exec(`CREATE TABLE future_feature (id BIGINT PRIMARY KEY)`).Error)
	require.NoError(t, st.DB().Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, TRUE)`, newer).Error)
	appliedAt := time.Now()
	require.Eventually(t, func() bool {
		rows := liveInstances(t, st)
		if len(rows) != 2 {
			return false
		}
		for _, r := range rows {
			if r.Claiming {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "both instances stop claiming; logs:\n%s", c.tails())
	t.Logf("both instances stopped claiming %s after the newer migration (heartbeat 1s)", time.Since(appliedAt).Round(10*time.Millisecond))
	for _, r := range liveInstances(t, st) {
		require.Contains(t, r.Note, "newer than this billingd knows", r.Name)
	}
	for i := range c.procs {
		code, checks := c.readyz(t, i)
		require.Equal(t, http.StatusServiceUnavailable, code, "instance %d: %v", i, checks)
		require.Contains(t, checks["schema"], "newer than this billingd knows")
		require.NotEmpty(t, c.errorLines(i), "instance %d logs an ERROR line", i)
	}
	code, out, errOut := runMain(t, nil, "status", "-c", c.configs[0])
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "newer than this billingd knows")
	require.Contains(t, out, "is not claiming work")

	charged := len(c.gw.Ledger())
	c.seed(t, st, "during", 6)
	time.Sleep(4 * time.Second) // four heartbeats and billing ticks
	require.Len(t, c.gw.Ledger(), charged, "nothing was charged while the schema is newer")
	var invoiced int64
	require.NoError(t, st.DB().Raw(`SELECT COUNT(*) FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id WHERE s.reference LIKE 'during-%'`).Scan(&invoiced).Error)
	require.Zero(t, invoiced, "nothing was invoiced")

	require.NoError(t, st.DB().Exec(`DELETE FROM goose_db_version WHERE version_id = ?`, newer).Error)
	require.NoError(t, st.DB().Exec(`DROP TABLE future_feature`).Error)
	c.waitPaid(t, st, "during", 6)
	for i := range c.procs {
		require.Eventually(t, func() bool {
			code, _ := c.readyz(t, i)
			return code == http.StatusOK
		}, 10*time.Second, 50*time.Millisecond, "instance %d is ready again within a heartbeat", i)
	}
	require.Eventually(t, func() bool {
		for _, r := range liveInstances(t, st) {
			if !r.Claiming || r.Note != "" {
				return false
			}
		}
		return true
	}, 5*time.Second, 50*time.Millisecond, "every row says claiming again, without a note")
	v, err := st.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, known, v)
	rep := c.checkLedger(t, st)
	require.Equal(t, 18, rep.Invoices)
	c.stop(t)
}

// TestMigrateAndStatusOnANewerSchema runs an older binary's `migrate` and
// `status` on a SQLite database a newer billingd migrated: migrate does
// nothing and says why (not "up to date"), status says the schema is newer.
func TestMigrateAndStatusOnANewerSchema(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "config.yaml", strings.ReplaceAll(goodConfig, "%DIR%", dir))
	st := storetest.SQLiteAt(t, filepath.Join(dir, "billingd.db"))
	newer := st.KnownSchemaVersion() + 1
	require.NoError(t, st.DB().Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, TRUE)`, newer).Error)
	require.NoError(t, st.Close())

	code, out, errOut := runMain(t, nil, "migrate", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, fmt.Sprintf("nothing to do: the database's schema (version %d) is newer than this billingd knows (%d)", newer, newer-1))
	code, out, errOut = runMain(t, nil, "status", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, fmt.Sprintf("schema: version %d in the database is newer than this billingd knows (%d)", newer, newer-1))
}
