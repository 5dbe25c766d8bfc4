package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
)

// startOperator runs StartOperatorAttempt for one invoice in its own
// transaction.
func startOperator(t *testing.T, st *store.Store, now time.Time, invoiceID int64) (*models.ChargeAttempt, error) {
	t.Helper()
	var a *models.ChargeAttempt
	err := st.InTx(context.Background(), func(tx *store.Tx) error {
		inv, err := tx.LockInvoice(invoiceID)
		if err != nil {
			return err
		}
		a, err = tx.StartOperatorAttempt(now, inv, "ops", now.Add(time.Minute))
		return err
	})
	return a, err
}

func blockedReason(t *testing.T, err error) string {
	t.Helper()
	var b *store.AttemptBlocked
	require.True(t, errors.As(err, &b), "want AttemptBlocked, got %v", err)
	return b.Reason
}

// An operator's charge of one invoice follows the pass's rules: one open
// payment per invoice, period order, no dead card, the card networks' cap.
func TestStartOperatorAttemptFollowsTheChargeRules(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		anchor := t0.AddDate(0, -1, 0)
		storetest.Seed(t, st, anchor, storetest.Subscription{Reference: "rules", Anchor: anchor})
		var sub models.Subscription
		require.NoError(t, st.DB().First(&sub).Error)
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.CreateInvoices(anchor, []store.NewInvoice{
				{SubscriptionID: sub.ID, Reference: sub.Reference, PeriodIndex: 0, PeriodStart: anchor, PeriodEnd: t0, Amount: 1000, Currency: "USD"},
				{SubscriptionID: sub.ID, Reference: sub.Reference, PeriodIndex: 1, PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 1000, Currency: "USD"},
			})
			return err
		}))
		var invs []models.Invoice
		require.NoError(t, st.DB().Order("period_index").Find(&invs).Error)
		require.Len(t, invs, 2)
		now := t0.Add(time.Hour)

		_, err := startOperator(t, st, now, invs[1].ID)
		require.Contains(t, blockedReason(t, err), invs[0].PublicID, "period order")

		a, err := startOperator(t, st, now, invs[0].ID)
		require.NoError(t, err)
		require.Equal(t, 1, a.AttemptNo)
		require.Equal(t, store.IdempotencyKey(invs[0].PublicID, 1), a.IdempotencyKey)
		require.Equal(t, "ops", a.LeaseOwner)
		_, err = startOperator(t, st, now, invs[0].ID)
		require.Contains(t, blockedReason(t, err), a.IdempotencyKey, "one open payment")

		require.NoError(t, st.DB().Exec(`UPDATE charge_attempts SET status = 'declined', lease_owner = '', lease_until = NULL WHERE id = ?`, a.ID).Error)
		require.NoError(t, st.DB().Exec(`UPDATE payment_methods SET dead_at = ?, dead_reason = 'expired_card'`, now).Error)
		_, err = startOperator(t, st, now, invs[0].ID)
		require.Contains(t, blockedReason(t, err), "dead")

		require.NoError(t, st.DB().Exec(`UPDATE payment_methods SET dead_at = NULL, dead_reason = ''`).Error)
		// 15 reattempts of the card in the last 30 days (declined, on the
		// later invoice's rows) use the cap up.
		for n := 2; n < 2+store.MaxCardReattempts; n++ {
			require.NoError(t, st.DB().Exec(`INSERT INTO charge_attempts (invoice_id, subscription_id, attempt_no, idempotency_key, merchant_order_id,
				amount, currency, gateway_customer_id, gateway_payment_method_id, previous_payment_id, off_session, status, lease_owner, lease_version, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, 1000, 'USD', ?, ?, '', TRUE, 'declined', '', 1, ?, ?)`,
				invs[1].ID, invs[1].SubscriptionID, n, fmt.Sprintf("%s-a%d", invs[1].PublicID, n), invs[1].PublicID,
				a.GatewayCustomer, a.GatewayPM, now.Add(-time.Hour), now.Add(-time.Hour)).Error)
		}
		_, err = startOperator(t, st, now, invs[0].ID)
		require.Contains(t, blockedReason(t, err), "15")

		require.NoError(t, st.DB().Exec(`UPDATE charge_attempts SET created_at = ? WHERE attempt_no > 1`, now.AddDate(0, 0, -31)).Error)
		second, err := startOperator(t, st, now, invs[0].ID)
		require.NoError(t, err)
		require.Equal(t, 2, second.AttemptNo)

		require.NoError(t, st.DB().Exec(`UPDATE invoices SET status = 'paid' WHERE id = ?`, invs[0].ID).Error)
		_, err = startOperator(t, st, now, invs[0].ID)
		require.Contains(t, blockedReason(t, err), "paid")

		// The listings see the attempts and filter by status and reference.
		rows, err := st.ListAttempts(ctx, store.ListingFilter{Reference: invs[0].PublicID})
		require.NoError(t, err)
		require.Len(t, rows, 2)
		require.Equal(t, "rules", rows[0].Reference)
		rows, err = st.ListAttempts(ctx, store.ListingFilter{Statuses: []string{"declined"}, Reference: "rules"})
		require.NoError(t, err)
		require.Len(t, rows, 1+store.MaxCardReattempts)
		listed, err := st.ListInvoices(ctx, store.ListingFilter{Customer: "rules@example.com", Statuses: []string{"open"}})
		require.NoError(t, err)
		require.Len(t, listed, 1)
		require.Equal(t, invs[1].PublicID, listed[0].PublicID)
		from := t0
		listed, err = st.ListInvoices(ctx, store.ListingFilter{From: &from})
		require.NoError(t, err)
		require.Len(t, listed, 1)
	})
}
