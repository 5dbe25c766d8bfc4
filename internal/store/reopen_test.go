package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// A capture declined after the payment recovered a dunning case at its last
// step reopens the case at the start of its schedule, so the customer gets a
// retry and an email instead of an ended subscription; the reopening is one
// transaction over attempt, invoice and case, and a second one is a no-op.
func TestReopenAfterCaptureDeclinedStartsTheScheduleAgain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "s1", Anchor: t0})
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, Reference: "s1", PeriodIndex: 0, PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 1000, Currency: "USD"}})
			return err
		}))
		claimed, err := st.ClaimNewAttempts(ctx, "test", t0, t0.Add(time.Hour), 1)
		require.NoError(t, err)
		a := claimed[0]
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.SettleSucceeded(t0, a.ID, store.AttemptResult{PaymentIntentID: "pay_1"}); err != nil {
				return err
			}
			_, err := tx.MarkInvoicePaid(t0, a.InvoiceID, "pay_1")
			return err
		}))
		require.NoError(t, st.DB().Exec(`INSERT INTO dunning_cases (invoice_id, subscription_id, reason, status, step, opened_at, closed_at, created_at, updated_at)
			VALUES (?, 1, 'soft_decline', 'recovered', 4, ?, ?, ?, ?)`, a.InvoiceID, t0, t0, t0, t0).Error)

		reopen := func() (moved bool) {
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				var err error
				moved, err = tx.ReopenAfterCaptureDeclined(t0, a.ID, "pay_1", "capture declined")
				return err
			}))
			return moved
		}
		require.True(t, reopen())
		var inv models.Invoice
		require.NoError(t, st.DB().First(&inv, a.InvoiceID).Error)
		require.Equal(t, models.InvoiceOpen, inv.Status)
		var c models.DunningCase
		require.NoError(t, st.DB().Where("invoice_id = ?", a.InvoiceID).First(&c).Error)
		require.Equal(t, models.CaseOpen, c.Status)
		require.Zero(t, c.Step, "the schedule starts again")
		require.Nil(t, c.ClosedAt)
		require.False(t, reopen(), "a second capture decline changes nothing")
	})
}

// The challenge address of a waiting attempt recorded without one (a webhook
// came first) is kept from the answer; one already known, another payment's,
// or an attempt no longer waiting is left alone.
func TestFillActionURLOnlyFillsAWaitingAttemptsMissingAddress(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "s1", Anchor: t0})
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, Reference: "s1", PeriodIndex: 0, PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 1000, Currency: "USD"}})
			return err
		}))
		claimed, err := st.ClaimNewAttempts(ctx, "test", t0, t0.Add(time.Hour), 1)
		require.NoError(t, err)
		id := claimed[0].ID
		fill := func(payment, url string) string {
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error { return tx.FillActionURL(t0, id, payment, url) }))
			a, err := st.AttemptByID(ctx, id)
			require.NoError(t, err)
			return a.ActionURL
		}
		require.Empty(t, fill("pay_1", "https://3ds.example/early"), "a pending attempt is not waiting for a challenge")
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.SettleAttempt(t0, id, store.AttemptResult{Status: models.AttemptRequiresAction, PaymentIntentID: "pay_1"})
			return err
		}))
		require.Empty(t, fill("pay_other", "https://3ds.example/other"), "another payment's address")
		require.Equal(t, "https://3ds.example/1", fill("pay_1", "https://3ds.example/1"))
		require.Equal(t, "https://3ds.example/1", fill("pay_1", "https://3ds.example/2"), "a known address stays")
	})
}
