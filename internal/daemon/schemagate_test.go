package daemon_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// applyNewerMigration does to st's database what a newer billingd's
// migration would: records a version above every one this build embeds and
// creates a table this build knows nothing of. It returns the version.
func applyNewerMigration(t *testing.T, st *store.Store) int64 {
	t.Helper()
	newer := st.KnownSchemaVersion() + 1
	require.NoError(t, st.DB().Exec(`CREATE TABLE future_feature (id INTEGER PRIMARY KEY)`).Error)
	require.NoError(t, st.DB().Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, TRUE)`, newer).Error)
	return newer
}

// undoNewerMigration takes applyNewerMigration's version back, as a newer
// binary's down migration would.
func undoNewerMigration(t *testing.T, st *store.Store, newer int64) {
	t.Helper()
	require.NoError(t, st.DB().Exec(`DELETE FROM goose_db_version WHERE version_id = ?`, newer).Error)
	require.NoError(t, st.DB().Exec(`DROP TABLE future_feature`).Error)
}

// TestOlderBinaryOnANewerSchemaClaimsNothing starts the daemon on a
// database a newer billingd migrated (one version beyond this build): it
// starts without migrating, says so in the log and /readyz, writes its
// instances row with claiming false and a note, bills nothing that is due
// and refuses webhooks and an operator's process. Once the newer version is
// gone again (the upgrade rolled back), its next heartbeat takes work again
// and the due subscription is charged once.
func TestOlderBinaryOnANewerSchemaClaimsNothing(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) { testOlderBinaryOnANewerSchema(t, driver == "postgres") })
	}
}

func testOlderBinaryOnANewerSchema(t *testing.T, postgres bool) {
	log := &daemontest.LogBuffer{}
	b := daemontest.New(t, daemontest.Options{Postgres: postgres, Log: log})
	{
		ctx := context.Background()
		cus, pm := b.SaveCard(t, "4242424242424242")
		b.Seed(t, storetest.Subscription{Reference: "due", Customer: cus, PaymentMethod: pm, Amount: 1500, Currency: "USD", Interval: "month", Anchor: b.Clock.Now()})

		// The newer binary's migration runs while this one is stopped, and
		// this one starts again on it (SQLite: one process at a time).
		b.Stop(t)
		st, err := store.Open(ctx, store.Options{Driver: b.Config.Database.Driver, DSN: b.Config.Database.DSN})
		require.NoError(t, err)
		newer := applyNewerMigration(t, st)
		require.NoError(t, st.Close())
		b.Start(t)

		require.Contains(t, log.String(), `"level":"error"`)
		require.Contains(t, log.String(), "is newer than this billingd knows")
		code, checks := readyz(t, b)
		require.Equal(t, http.StatusServiceUnavailable, code, "%v", checks)
		require.Contains(t, checks["schema"], "newer than this billingd knows")
		require.Equal(t, "ok", checks["migrations"], "nothing is pending: goose has nothing to apply and never goes down")
		v, err := b.Store.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, newer, v, "nothing was migrated down")
		row := schemaGateOwnRow(t, b)
		require.False(t, row.Claiming)
		require.Contains(t, row.Note, "newer than this billingd knows")

		b.Run(t, 3*time.Hour, 10*time.Minute)
		require.Empty(t, b.Sim.Ledger(), "nothing was charged")
		require.Zero(t, schemaGateRows(t, b, "invoices"), "nothing was invoiced")
		_, err = b.D.Pass(ctx, ctx, "once")
		require.ErrorIs(t, err, daemon.ErrNotClaiming)
		resp, err := http.Post(b.URL+"/webhooks/"+b.Provider, "application/json", strings.NewReader(`{}`))
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the gateway retries its webhook on another instance")
		require.Equal(t, "60", resp.Header.Get("Retry-After"))
		_, err = daemon.New(ctx, b.Config, daemon.Options{Clock: b.Clock, Operator: true})
		require.ErrorContains(t, err, "run the command with the newer billingd")

		undoNewerMigration(t, b.Store, newer)
		b.Run(t, 30*time.Second, 5*time.Second)
		require.Contains(t, log.String(), "claiming work again")
		code, checks = readyz(t, b)
		require.Equal(t, http.StatusOK, code, "%v", checks)
		require.True(t, schemaGateOwnRow(t, b).Claiming)
		require.Empty(t, schemaGateOwnRow(t, b).Note)
		b.Run(t, time.Hour, 10*time.Minute)
		require.Len(t, b.Sim.Ledger(), 1, "the due subscription was charged once")
		var inv models.Invoice
		require.NoError(t, b.Store.DB().Where("status = ?", models.InvoicePaid).First(&inv).Error)
	}
}

// schemaGateOwnRow is the daemon's own row in the instances table.
func schemaGateOwnRow(t *testing.T, b *daemontest.Bundle) models.Instance {
	t.Helper()
	var row models.Instance
	require.NoError(t, b.Store.DB().Where("name = ?", daemon.InstanceName()).First(&row).Error)
	return row
}

func schemaGateRows(t *testing.T, b *daemontest.Bundle, table string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.Store.DB().Raw(`SELECT COUNT(*) FROM `+table).Scan(&n).Error)
	return n
}
