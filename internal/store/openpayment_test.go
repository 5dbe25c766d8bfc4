package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// One open customer payment per invoice, on PostgreSQL under concurrent
// presses from several instances (one store each, its own connection pool):
// pay-link presses and the billing claim race for one invoice, again and
// again; at no moment does the invoice have two open attempts, and an intent
// waiting for authentication blocks every path like an unresolved one does.
func TestOneOpenPaymentUnderConcurrentPressesOnPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	const instances = 4
	var stores []*store.Store
	for i := 0; i < instances; i++ {
		st, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: dsn})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		if i == 0 {
			_, err = st.Migrate(ctx)
			require.NoError(t, err)
		}
		stores = append(stores, st)
	}
	st := stores[0]
	storetest.Seed(t, st, t0, storetest.Subscription{Reference: "raced"})
	require.Equal(t, 1, invoiceAll(t, st, t0))
	var inv models.Invoice
	require.NoError(t, st.DB().First(&inv).Error)
	ic, err := st.InvoiceContact(ctx, inv.ID)
	require.NoError(t, err)

	now := t0.Add(time.Hour)
	for round := 0; round < 5; round++ {
		// The invoice is due for the billing claim too (a dunning retry).
		require.NoError(t, st.DB().Exec(`UPDATE invoices SET next_attempt_at = ? WHERE id = ?`, now, inv.ID).Error)
		var mu sync.Mutex
		started := 0
		var wg sync.WaitGroup
		for g := 0; g < 3*instances; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				s := stores[g%instances]
				if g%3 == 2 {
					claimed, err := s.ClaimNewAttempts(ctx, "claim", now, now.Add(time.Minute), 10)
					require.NoError(t, err)
					mu.Lock()
					started += len(claimed)
					mu.Unlock()
					return
				}
				var p store.Press
				require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
					var err error
					p, err = tx.StartOnSessionAttempt(now, ic, "press", now.Add(time.Minute), 0)
					return err
				}))
				if p.Attempt != nil {
					mu.Lock()
					started++
					mu.Unlock()
				}
			}(g)
		}
		wg.Wait()
		require.Equal(t, 1, started, "round %d: one attempt started among all presses and claims", round)
		var open []models.ChargeAttempt
		require.NoError(t, st.DB().Where("invoice_id = ? AND status IN ?", inv.ID, models.OpenAttemptStatuses).Find(&open).Error)
		require.Len(t, open, 1)

		// The attempt's intent now waits for the customer (3-D Secure):
		// still open — nothing starts beside it.
		require.NoError(t, st.DB().Exec(`UPDATE charge_attempts SET status = 'requires_action', payment_intent_id = ?, finished_at = ?, lease_owner = '', lease_until = NULL WHERE id = ?`,
			"pi_round"+string(rune('a'+round)), now, open[0].ID).Error)
		require.NoError(t, st.DB().Exec(`UPDATE invoices SET next_attempt_at = ? WHERE id = ?`, now, inv.ID).Error)
		claimed, err := stores[1].ClaimNewAttempts(ctx, "claim", now, now.Add(time.Minute), 10)
		require.NoError(t, err)
		require.Empty(t, claimed, "a waiting intent blocks the billing claim")
		require.NoError(t, stores[2].InTx(ctx, func(tx *store.Tx) error {
			p, err := tx.StartOnSessionAttempt(now, ic, "press", now.Add(time.Minute), 0)
			require.Nil(t, p.Attempt, "a waiting intent blocks a press")
			require.NotNil(t, p.Open)
			return err
		}))
		// A second open attempt is refused by the database itself.
		err = st.DB().Exec(`INSERT INTO charge_attempts (invoice_id, subscription_id, attempt_no, idempotency_key, merchant_order_id, amount, currency,
		        gateway_customer_id, gateway_payment_method_id, off_session, status, created_at, updated_at)
		        VALUES (?, ?, 99, ?, ?, 1, 'USD', 'c', 'p', TRUE, 'pending', ?, ?)`, inv.ID, inv.SubscriptionID, "forced-"+string(rune('a'+round)), inv.PublicID, now, now).Error
		require.Error(t, err, "charge_attempts_one_open refuses a second open attempt")

		// Canceled at the gateway (recorded): the invoice is free again.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			ok, err := tx.MarkIntentCanceled(now, open[0].ID)
			require.True(t, ok)
			return err
		}))
		now = now.Add(time.Minute)
	}
}

// The challenge timeout marks only intents that waited long enough, and a
// paid invoice asks for the cancel of every other intent still waiting.
func TestWaitingIntentsAreMarkedForCancel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "a"}, storetest.Subscription{Reference: "b"})
		require.Equal(t, 2, invoiceAll(t, st, t0))
		var invs []models.Invoice
		require.NoError(t, st.DB().Order("id").Find(&invs).Error)
		var ids []int64
		for i, inv := range invs {
			ic, err := st.InvoiceContact(ctx, inv.ID)
			require.NoError(t, err)
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				p, err := tx.StartOnSessionAttempt(t0, ic, "press", t0.Add(time.Minute), 3)
				require.NotNil(t, p.Attempt)
				ids = append(ids, p.Attempt.ID)
				return err
			}))
			waited := t0.Add(time.Duration(i) * 20 * time.Minute)
			require.NoError(t, st.DB().Exec(`UPDATE charge_attempts SET status = 'requires_action', payment_intent_id = ?, finished_at = ? WHERE id = ?`,
				"pi_"+inv.PublicID, waited, p0(ids)).Error)
		}
		n, err := st.RequestAbandonedCancels(ctx, t0.Add(45*time.Minute), t0.Add(15*time.Minute))
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "only the intent waiting since before the cutoff")
		due, err := st.CancelsDue(ctx, t0.Add(45*time.Minute), 10)
		require.NoError(t, err)
		require.Len(t, due, 1)
		require.Equal(t, ids[0], due[0].ID)
		require.Equal(t, models.CancelChallengeTimeout, due[0].CancelReason)

		// The second invoice is paid by another intent: its waiting one is
		// to be canceled, in the paying transaction.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			ok, err := tx.MarkInvoicePaid(t0.Add(time.Hour), invs[1].ID, "pi_other")
			require.True(t, ok)
			return err
		}))
		due, err = st.CancelsDue(ctx, t0.Add(time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, due, 2)
		require.Equal(t, models.CancelInvoiceSettled, due[1].CancelReason)
	})
}

func p0(ids []int64) int64 { return ids[len(ids)-1] }

// Migration 00008 can only create the one-open index if no invoice holds two
// open attempts: an older intent left waiting beside a newer open attempt (two
// tabs before this rule) needs review, and intents waiting on invoices already
// settled are marked for cancel.
func TestMigrationResolvesInvoicesWithSeveralWaitingIntents(t *testing.T) {
	storetest.EachUnmigrated(t, func(t *testing.T, open func(store.Options) *store.Store) {
		ctx := context.Background()
		st := open(store.Options{DefaultTimezone: "UTC"})
		_, err := st.MigrateTo(ctx, 7)
		require.NoError(t, err)
		storetest.SeedBeforeTimezones(t, st, t0, storetest.Subscription{Reference: "tabs"}, storetest.Subscription{Reference: "paid"})
		require.Equal(t, 2, invoiceAll(t, st, t0))
		var invs []models.Invoice
		require.NoError(t, st.DB().Order("id").Find(&invs).Error)
		insert := func(inv models.Invoice, no int, status string) {
			require.NoError(t, st.DB().Exec(`INSERT INTO charge_attempts (invoice_id, subscription_id, attempt_no, idempotency_key, merchant_order_id, amount, currency,
			        gateway_customer_id, gateway_payment_method_id, off_session, status, payment_intent_id, finished_at, created_at, updated_at)
			        VALUES (?, ?, ?, ?, ?, 1, 'USD', 'c', 'p', FALSE, ?, ?, ?, ?, ?)`,
				inv.ID, inv.SubscriptionID, no, store.IdempotencyKey(inv.PublicID, no), inv.PublicID, status, "pi_"+store.IdempotencyKey(inv.PublicID, no), t0, t0, t0).Error)
		}
		insert(invs[0], 1, "requires_action")
		insert(invs[0], 2, "requires_action")
		insert(invs[1], 1, "requires_action")
		insert(invs[1], 2, "succeeded")
		require.NoError(t, st.DB().Exec(`UPDATE invoices SET status = 'paid' WHERE id = ?`, invs[1].ID).Error)

		_, err = st.Migrate(ctx)
		require.NoError(t, err)
		var as []models.ChargeAttempt
		require.NoError(t, st.DB().Order("invoice_id, attempt_no").Find(&as).Error)
		require.Equal(t, models.AttemptNeedsReview, as[0].Status, "the older of two waiting intents")
		require.Contains(t, as[0].ErrorMessage, "cancel its payment intent at the gateway")
		require.Equal(t, models.AttemptRequiresAction, as[1].Status, "the newest keeps its place")
		require.Nil(t, as[1].CancelRequestedAt)
		require.Equal(t, models.AttemptRequiresAction, as[2].Status)
		require.NotNil(t, as[2].CancelRequestedAt, "a waiting intent of a paid invoice is to be canceled")
		require.Equal(t, models.CancelInvoiceSettled, as[2].CancelReason)
	})
}

// The hourly cap per card holds under concurrent presses on two invoices of
// one card from several instances: the card's row serializes their counts.
func TestCardCapUnderConcurrentPressesOnPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	var stores []*store.Store
	for i := 0; i < 4; i++ {
		st, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: dsn})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		if i == 0 {
			_, err = st.Migrate(ctx)
			require.NoError(t, err)
		}
		stores = append(stores, st)
	}
	st := stores[0]
	storetest.Seed(t, st, t0, storetest.Subscription{Reference: "a", Customer: "cus_shared", PaymentMethod: "pm_shared"},
		storetest.Subscription{Reference: "b", Customer: "cus_shared", PaymentMethod: "pm_shared"})
	require.Equal(t, 2, invoiceAll(t, st, t0))
	var invs []models.Invoice
	require.NoError(t, st.DB().Order("id").Find(&invs).Error)
	var ics []*store.InvoiceContact
	for _, inv := range invs {
		ic, err := st.InvoiceContact(ctx, inv.ID)
		require.NoError(t, err)
		ics = append(ics, ic)
	}
	now := t0.Add(time.Hour)
	for round := 0; round < 4; round++ {
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				require.NoError(t, stores[g%4].InTx(ctx, func(tx *store.Tx) error {
					_, err := tx.StartOnSessionAttempt(now, ics[g%2], "press", now.Add(time.Minute), 3)
					return err
				}))
			}(g)
		}
		wg.Wait()
		// Each press's charge was declined: the invoices are free again.
		require.NoError(t, st.DB().Exec(`UPDATE charge_attempts SET status = 'declined' WHERE status = 'pending'`).Error)
		now = now.Add(time.Second)
	}
	var n int64
	require.NoError(t, st.DB().Model(&models.ChargeAttempt{}).Where("NOT off_session").Count(&n).Error)
	require.EqualValues(t, 3, n, "dunning.link_charges_per_hour = 3 per card across its invoices")
}
