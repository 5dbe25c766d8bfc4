package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
)

// TestReconcileAfterRestore is the restore drill: the daemon bills several
// subscriptions, the database is backed up, billing goes on (payments the
// backup does not have), the daemon stops and the backup is restored. A day
// later, `billingd reconcile --since <backup time>` must find every payment
// made after the backup and repair it (the lost invoices re-created for
// their periods and paid by the gateway's payments, each repair audited);
// the daemon then runs on it without charging anything twice.
func TestReconcileAfterRestore(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{NoMail: true}, func(t *testing.T, o daemontest.Options) {
		for _, pg := range []bool{false, true} {
			name := "sqlite"
			if pg {
				name = "postgres"
			}
			t.Run(name, func(t *testing.T) {
				o := o
				o.Postgres = pg
				restoreDrill(t, daemontest.New(t, o))
			})
		}
	})
}

func restoreDrill(t *testing.T, b *daemontest.Bundle) {
	ctx := context.Background()
	anchor := b.Clock.Now()
	var subs []storetest.Subscription
	for i, c := range []struct {
		card   string
		amount int64
	}{{"4242424242424242", 1500}, {"4111111111111111", 2500}, {"4242424242424242", 990}, {"4000000000009995", 1200}} {
		cus, pm := b.SaveCard(t, c.card)
		subs = append(subs, storetest.Subscription{Reference: fmt.Sprintf("sub-%d", i+1), Customer: cus, PaymentMethod: pm,
			Amount: c.amount, Currency: "USD", Interval: "day", IntervalCount: 1, Anchor: anchor})
	}
	b.Seed(t, subs...)
	b.Run(t, 48*time.Hour, time.Hour)

	// The backup: taken with the daemon stopped, as a file copy (SQLite) or
	// a copy of every table (PostgreSQL).
	b.Stop(t)
	backupAt := b.Clock.Now()
	restore := backup(t, b.Config)
	b.Start(t)
	b.Clock.Advance(time.Minute)
	b.Run(t, 72*time.Hour, time.Hour)

	var lost []string // the succeeded payments the backup does not have
	for _, e := range b.Sim.Ledger() {
		if e.Status == "succeeded" && e.Created.After(backupAt) {
			lost = append(lost, e.ID)
		}
	}
	require.Len(t, lost, 9, "three paying subscriptions, three days after the backup")

	b.Stop(t)
	restore()
	b.Clock.Advance(25 * time.Hour) // past the gateway's key window
	svc := b.Operator(t)
	actor := ops.Actor{Name: "restore-drill", Via: models.ViaCLI}

	// A dry run reports every lost payment and changes nothing.
	var out, errOut bytes.Buffer
	err := reconcileWith(ctx, svc, ops.ReconcileRequest{Since: backupAt, DryRun: true}, actor, &outputFormat{}, &out, &errOut)
	require.ErrorContains(t, err, "9 difference(s) found; nothing changed")
	require.Equal(t, 9, strings.Count(out.String(), ops.DiffLostInvoice), out.String())
	audits, err := svc.Store().AuditEntries(ctx, store.AuditFilter{Action: ops.ActionReconcileRepair})
	require.NoError(t, err)
	require.Empty(t, audits)

	out.Reset()
	err = reconcileWith(ctx, svc, ops.ReconcileRequest{Since: backupAt}, actor, &outputFormat{}, &out, &errOut)
	require.NoError(t, err, out.String())
	require.Contains(t, out.String(), "9 repaired, 0 flagged for review")
	require.Contains(t, out.String(), "the books agree after the repairs")
	db := svc.Store().DB()
	for _, id := range lost {
		var inv models.Invoice
		require.NoError(t, db.Where("payment_intent_id = ?", id).First(&inv).Error, "payment %s pays an invoice", id)
		require.Equal(t, models.InvoicePaid, inv.Status)
		var at models.ChargeAttempt
		require.NoError(t, db.Where("invoice_id = ? AND payment_intent_id = ?", inv.ID, id).First(&at).Error)
		require.Equal(t, models.AttemptSucceeded, at.Status)
		require.Equal(t, inv.PublicID+"-a1", at.IdempotencyKey)
	}
	audits, err = svc.Store().AuditEntries(ctx, store.AuditFilter{Action: ops.ActionReconcileRepair})
	require.NoError(t, err)
	require.Len(t, audits, 9)
	require.Equal(t, "restore-drill", audits[0].Actor)
	require.Equal(t, "reconcile --since "+backupAt.Format(time.RFC3339), audits[0].Reason)

	// A second run finds nothing to do.
	out.Reset()
	require.NoError(t, reconcileWith(ctx, svc, ops.ReconcileRequest{Since: backupAt}, actor, &outputFormat{}, &out, &errOut))
	require.Contains(t, out.String(), "0 repaired, 0 flagged for review, 0 not billingd's")
	require.Contains(t, out.String(), ": the books agree")

	// The daemon starts on the repaired database and bills on.
	b.Start(t)
	b.Run(t, 72*time.Hour, time.Hour)
	rep, err := invariant.Check(ctx, b.Store, b.Sim.Ledger(), invariant.Options{Now: b.Clock.Now()})
	require.NoError(t, err)
	require.Zero(t, rep.DoubleCharges, "%s", rep)
	require.True(t, rep.OK(), "%s", rep)
	var paid int64
	require.NoError(t, b.Store.DB().Model(&models.Invoice{}).Where("status = 'paid'").Count(&paid).Error)
	require.EqualValues(t, 3*(3+3+4), paid, "every day of the paying subscriptions is paid once")
}

// backup copies the database of a stopped daemon and returns the function
// that restores the copy over it.
func backup(t *testing.T, cfg *config.Config) (restore func()) {
	t.Helper()
	if cfg.Database.Driver != config.DriverPostgres {
		path := cfg.Database.DSN
		copyFile(t, path, path+".backup")
		return func() {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				require.NoError(t, removeIfExists(path+suffix))
			}
			copyFile(t, path+".backup", path)
		}
	}
	u, err := url.Parse(cfg.Database.DSN)
	require.NoError(t, err)
	schema := u.Query().Get("search_path")
	require.NotEmpty(t, schema)
	bak := schema + "_backup"
	admin, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: cfg.Database.DSN, MaxOpenConns: 1})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = admin.DB().Exec("DROP SCHEMA IF EXISTS " + bak + " CASCADE").Error
		_ = admin.Close()
	})
	var tables []string
	require.NoError(t, admin.DB().Raw(`SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name`,
		schema).Scan(&tables).Error)
	require.NotEmpty(t, tables)
	require.NoError(t, admin.DB().Exec("CREATE SCHEMA "+bak).Error)
	for _, tb := range tables {
		require.NoError(t, admin.DB().Exec(fmt.Sprintf("CREATE TABLE %s.%s AS TABLE %s.%s", bak, tb, schema, tb)).Error)
	}
	return func() {
		require.NoError(t, admin.DB().Transaction(func(tx *gorm.DB) error {
			// Foreign keys are checked by triggers; a restore writes rows
			// as they were, in any order.
			if err := tx.Exec("SET LOCAL session_replication_role = replica").Error; err != nil {
				return err
			}
			for _, tb := range tables {
				if err := tx.Exec(fmt.Sprintf("DELETE FROM %s.%s", schema, tb)).Error; err != nil {
					return err
				}
				if err := tx.Exec(fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s", schema, tb, bak, tb)).Error; err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// The command beside a running daemon: what it repairs (an attempt left
// unknown whose payment succeeded; a second success for a paid invoice,
// refunded) and what it flags and leaves to a person (another amount; a
// payment of billingd's that belongs to no invoice; a paid invoice whose
// payment the gateway does not have), with its exit codes, its formats and
// its audit rows.
func TestReconcileCommand(t *testing.T) {
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	daemontest.Each(t, daemontest.Options{Start: start, NoMail: true}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		cfg := bundleConfig(t, b)
		run := func(args ...string) (int, string, string) {
			return runMain(t, nil, append(append([]string{"reconcile"}, args...), "-c", cfg)...)
		}
		db := b.Store.DB()
		attemptOf := func(inv models.Invoice) models.ChargeAttempt {
			var a models.ChargeAttempt
			require.NoError(t, db.Where("invoice_id = ?", inv.ID).Order("attempt_no DESC").First(&a).Error)
			return a
		}
		pay := func(cus, pm, order, key, attempt string, amount int64) string {
			meta := map[string]string{}
			if key != "" {
				meta = map[string]string{"invoice": order, "attempt": attempt, "idempotency_key": key}
			}
			res := b.Gateway.CreatePaymentIntent(ctx, gateway.PaymentIntentRequest{Amount: amount, Currency: "USD", Customer: cus, PaymentMethod: pm,
				OffSession: true, MerchantOrderID: order, Metadata: meta, IdempotencyKey: "test-" + order + "-" + key + attempt})
			require.Equal(t, gateway.Succeeded, res.Kind, "%v", res.Err)
			return res.Intent.ID
		}

		// Paid before --since; then the database says another payment,
		// one the gateway never had, paid it.
		gone := cliCharged(t, b, "rc-gone", "4242424242424242")
		b.Clock.Advance(time.Minute)
		since := b.Clock.Now()
		require.NoError(t, db.Exec(`UPDATE invoices SET payment_intent_id = 'pi_vanished', paid_at = ? WHERE id = ?`, since.Add(time.Second), gone.ID).Error)
		require.NoError(t, db.Exec(`UPDATE charge_attempts SET payment_intent_id = 'pi_vanished' WHERE invoice_id = ?`, gone.ID).Error)

		lostPay := cliCharged(t, b, "rc-unknown", "4242424242424242")

		// A second success for a paid invoice, under an attempt the
		// database does not have.
		paid := cliCharged(t, b, "rc-paid", "4242424242424242")
		first := attemptOf(paid)
		second := pay(first.GatewayCustomer, first.GatewayPM, paid.PublicID, paid.PublicID+"-a2", "2", 1000)

		// An invoice in dunning, and a success for it of another amount.
		dunned := cliCharged(t, b, "rc-amount", "4000000000009995")
		cus, pm := b.SaveCard(t, "4242424242424242")
		pay(cus, pm, dunned.PublicID, dunned.PublicID+"-a2", "2", 999)

		// billingd's metadata, but no invoice or period of billingd's; and
		// a payment that is not billingd's at all.
		unplaced := pay(cus, pm, "inv_22222222222222222222", "inv_22222222222222222222-a1", "1", 500)
		pay(cus, pm, "order-of-another-app", "", "", 700)

		// Paid, but the database lost it: the attempt reads unknown (after
		// the daemon's last pass, whose reconciler would settle it).
		require.NoError(t, db.Exec(`UPDATE invoices SET status = 'open', payment_intent_id = '', paid_at = NULL WHERE id = ?`, lostPay.ID).Error)
		require.NoError(t, db.Exec(`UPDATE charge_attempts SET status = 'unknown', payment_intent_id = '', finished_at = NULL WHERE invoice_id = ?`, lostPay.ID).Error)

		t.Run("bad input is a usage error", func(t *testing.T) {
			for _, args := range [][]string{{}, {"--since", "yesterday"}, {"--since", "-5h"}, {"--since", "2999-01-01"},
				{"--since", "72h", "--json", "--csv"}, {"--since", "72h", "extra"}} {
				code, _, errOut := run(args...)
				require.Equal(t, exitUsage, code, "%v: %s", args, errOut)
				require.Contains(t, errOut, "billingd reconcile: ")
			}
		})

		sinceArg := since.Format(time.RFC3339Nano)
		code, out, errOut := run("--since", sinceArg, "--dry-run")
		require.Equal(t, exitRuntime, code, "%s%s", out, errOut)
		for _, kind := range []string{ops.DiffUnsettled, ops.DiffLostAttempt, ops.DiffAmount, ops.DiffUnplaced, ops.DiffPaidNotSucceeded} {
			require.Contains(t, out, kind)
		}
		require.Contains(t, out, "NEEDS REVIEW")
		require.Contains(t, errOut, "flagged for review")
		require.Zero(t, auditCount(t, b, ops.ActionReconcileRepair)+auditCount(t, b, ops.ActionReconcileFlag), "a dry run changes nothing")

		code, out, errOut = run("--since", sinceArg, "--json", "--actor", "alice", "--reason", "restore drill")
		require.Equal(t, exitRuntime, code, "something is flagged: %s%s", out, errOut)
		require.Contains(t, errOut, "2 repaired, 3 flagged for review, 1 not billingd's")
		var rep ops.ReconcileReport
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		kinds := map[string]ops.Difference{}
		for _, d := range rep.Differences {
			kinds[d.Kind] = d
		}
		require.Len(t, kinds, 5, "%+v", rep.Differences)
		require.True(t, kinds[ops.DiffUnsettled].Repaired)
		require.True(t, kinds[ops.DiffLostAttempt].Repaired)
		require.Contains(t, kinds[ops.DiffLostAttempt].Done, "refund")
		require.Equal(t, second, kinds[ops.DiffLostAttempt].Payment)
		require.True(t, kinds[ops.DiffAmount].NeedsReview)
		require.Equal(t, unplaced, kinds[ops.DiffUnplaced].Payment)
		require.Equal(t, "pi_vanished", kinds[ops.DiffPaidNotSucceeded].Payment)
		require.Equal(t, 1, rep.NotOurs)

		status := func(inv models.Invoice) models.InvoiceStatus {
			var got models.Invoice
			require.NoError(t, db.First(&got, inv.ID).Error)
			return got.Status
		}
		require.Equal(t, models.InvoicePaid, status(lostPay), "the unknown attempt's success pays its invoice")
		var refunds []models.Refund
		require.NoError(t, db.Where("invoice_id = ?", paid.ID).Find(&refunds).Error)
		require.Len(t, refunds, 1, "the second success is refunded")
		require.Equal(t, second, refunds[0].PaymentIntentID)
		require.Equal(t, models.AttemptNeedsReview, attemptOf(dunned).Status, "another amount: stored, not applied")
		require.Equal(t, models.InvoiceOpen, status(dunned))
		require.Equal(t, models.InvoicePaid, status(gone), "never un-paid")
		require.Equal(t, models.AttemptNeedsReview, attemptOf(gone).Status)
		require.EqualValues(t, 2, auditCount(t, b, ops.ActionReconcileRepair))
		require.EqualValues(t, 3, auditCount(t, b, ops.ActionReconcileFlag))
		var who models.AuditEntry
		require.NoError(t, db.Where("action = ?", ops.ActionReconcileRepair).First(&who).Error)
		require.Equal(t, "alice", who.Actor)
		require.Equal(t, "restore drill", who.Reason)

		code, out, _ = runMain(t, nil, "attempts", "list", "--status", "needs_review", "--csv", "-c", cfg)
		require.Equal(t, exitOK, code)
		require.Equal(t, 3, strings.Count(out, "\n"), "a header and the two flagged attempts:\n%s", out)

		// Again: nothing more is repaired or audited; what waits for a
		// person still fails the run.
		code, out, _ = run("--since", sinceArg, "--csv")
		require.Equal(t, exitRuntime, code)
		require.True(t, strings.HasPrefix(out, "kind,invoice,subscription,payment,amount,currency,done\n"), out)
		require.EqualValues(t, 2, auditCount(t, b, ops.ActionReconcileRepair))
		require.EqualValues(t, 3, auditCount(t, b, ops.ActionReconcileFlag))
	})
}
