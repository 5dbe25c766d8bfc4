package daemon_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestRestoredDatabaseChargesNoPeriodTwice bills daily subscriptions for a
// few days, takes a backup of the database, bills on (those periods are paid
// at the gateway only), restores the backup, lets more than a day pass — the
// simulator forgets idempotency keys after 24 h of the shared clock — and
// starts a fresh daemon on the restored database. The sweep re-creates the
// invoices of the periods paid after the backup; their derived order ids are
// the same as before, and the charge engine finds each one's payment at the
// gateway instead of charging again. No reconcile run helps.
//
// The ledger must hold exactly one succeeded payment per (subscription,
// period) — with random order ids, every period paid after the backup would
// be paid twice — and each re-created invoice must be paid by the very
// payment made before the restore.
func TestRestoredDatabaseChargesNoPeriodTwice(t *testing.T) {
	daemontest.Each(t, daemontest.Options{NoWebhooks: true}, func(t *testing.T, b *daemontest.Bundle) {
		backup, restore := backupFuncs(t, b)
		cards := map[string]string{"good-1": "4242424242424242", "good-2": "4111111111111111", "good-3": "4761344136141390", "soft": "4000000000009995"}
		var subs []storetest.Subscription
		pms := map[string]string{}
		for ref, number := range cards {
			cus, pm := b.SaveCard(t, number)
			pms[ref] = pm
			subs = append(subs, storetest.Subscription{Reference: ref, Customer: cus, PaymentMethod: pm, Amount: 1200, Currency: "USD",
				Interval: "day", Anchor: b.Clock.Now()})
		}
		b.Seed(t, subs...)

		// Days 0-2: the soft-declined card is topped up after its first
		// decline and recovers on its dunning retry.
		b.Run(t, 0, 0)
		require.NoError(t, b.Sim.SetCardBehaviour(pms["soft"], "4242424242424242"))
		b.Run(t, 2*24*time.Hour, 6*time.Hour)
		b.Stop(t)
		backup()
		before := succeededPayments(b)
		b.Start(t)

		// Days 3-5 are charged after the backup.
		b.Run(t, 3*24*time.Hour, 6*time.Hour)
		afterBackup := map[string]bool{}
		for id := range succeededPayments(b) {
			if !before[id] {
				afterBackup[id] = true
			}
		}
		require.GreaterOrEqual(t, len(afterBackup), 3*len(cards), "every subscription paid periods after the backup")
		b.Stop(t)

		restore()
		b.Clock.Advance(25 * time.Hour) // past the gateway's key window
		b.Start(t)
		b.Run(t, 2*24*time.Hour, 6*time.Hour)

		// At most one succeeded payment per order id and per period.
		var invoices []models.Invoice
		require.NoError(t, b.Store.DB().Order("subscription_id, period_index").Find(&invoices).Error)
		byOrder := map[string]models.Invoice{}
		for _, inv := range invoices {
			byOrder[inv.PublicID] = inv
		}
		perOrder := map[string]int{}
		perPeriod := map[[2]int64]int{}
		for _, e := range b.Sim.Ledger() {
			if e.Status != "succeeded" {
				continue
			}
			perOrder[e.MerchantOrderID]++
			inv, ok := byOrder[e.MerchantOrderID]
			require.True(t, ok, "payment %s of order %s belongs to no invoice", e.ID, e.MerchantOrderID)
			perPeriod[[2]int64{inv.SubscriptionID, int64(inv.PeriodIndex)}]++
		}
		for order, n := range perOrder {
			require.Equal(t, 1, n, "order %s paid %d times", order, n)
		}
		for period, n := range perPeriod {
			require.Equal(t, 1, n, "subscription %d period %d paid %d times", period[0], period[1], n)
		}

		// Every period ends paid (the soft card recovered before the
		// backup), and each paid invoice is paid by its one payment; those
		// charged after the backup by the very payment made then.
		paidBy := map[string]string{}
		for _, inv := range invoices {
			require.Equal(t, models.InvoicePaid, inv.Status, "invoice %s (subscription %d period %d)", inv.PublicID, inv.SubscriptionID, inv.PeriodIndex)
			paidBy[inv.PaymentIntentID] = inv.PublicID
		}
		for id := range afterBackup {
			require.Contains(t, paidBy, id, "payment %s made after the backup pays a re-created invoice", id)
		}
		require.Len(t, paidBy, len(invoices))
		require.Equal(t, len(invoices), len(perOrder), "one payment per invoice, none twice: the ledger has exactly the payments made before and after the backup and the new periods'")
		require.GreaterOrEqual(t, len(invoices), 7*len(cards))
	})
}

// backupFuncs returns how to back the bundle's database up while its daemon
// is stopped, and how to put that backup back: a copy of the SQLite file, or
// pg_dump of the test's PostgreSQL schema and psql to restore it.
func backupFuncs(t *testing.T, b *daemontest.Bundle) (backup, restore func()) {
	t.Helper()
	dir := t.TempDir()
	if b.Config.Database.Driver != "postgres" {
		db := b.Config.Database.DSN
		copyFile := func(from, to string) {
			data, err := os.ReadFile(from)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(to, data, 0o600))
		}
		return func() {
				copyFile(db, filepath.Join(dir, "backup.db"))
				_, err := os.Stat(db + "-wal")
				require.True(t, os.IsNotExist(err) || fileEmpty(t, db+"-wal"), "a stopped daemon leaves no write-ahead log behind")
			}, func() {
				for _, side := range []string{"-wal", "-shm"} {
					require.NoError(t, removeIfExists(db+side))
				}
				copyFile(filepath.Join(dir, "backup.db"), db)
			}
	}
	for _, tool := range []string{"pg_dump", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("PostgreSQL backup and restore need %s on PATH", tool)
		}
	}
	u, err := url.Parse(b.Config.Database.DSN)
	require.NoError(t, err, "the PostgreSQL test DSN is a URL")
	schema := u.Query().Get("search_path")
	require.NotEmpty(t, schema)
	q := u.Query()
	q.Del("search_path")
	u.RawQuery = q.Encode()
	server := u.String()
	dump := filepath.Join(dir, "backup.sql")
	run := func(name string, args ...string) {
		out, err := exec.Command(name, args...).CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
	}
	return func() {
			run("pg_dump", "--dbname="+server, "--schema="+schema, "--no-owner", "--file="+dump)
		}, func() {
			run("psql", "--dbname="+server, "-v", "ON_ERROR_STOP=1", "-q", "-c", fmt.Sprintf("DROP SCHEMA %s CASCADE", schema))
			run("psql", "--dbname="+server, "-v", "ON_ERROR_STOP=1", "-q", "-f", dump)
		}
}

func fileEmpty(t *testing.T, path string) bool {
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size() == 0
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// succeededPayments is the set of the simulator's succeeded payments.
func succeededPayments(b *daemontest.Bundle) map[string]bool {
	out := map[string]bool{}
	for _, e := range b.Sim.Ledger() {
		if e.Status == "succeeded" {
			out[e.ID] = true
		}
	}
	return out
}
