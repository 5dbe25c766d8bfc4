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

// Migration 00012 rebuilds subscriptions, emails and pay_links on SQLite (a
// CHECK constraint cannot be altered there): every row and every reference
// to them must come through unchanged, on both dialects, and the widened
// constraints must take the new values.
func TestOperationsMigrationKeepsEveryRow(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	storetest.EachUnmigrated(t, func(t *testing.T, open func(store.Options) *store.Store) {
		st := open(store.Options{Exclusive: true})
		ctx := context.Background()
		_, err := st.MigrateTo(ctx, 11)
		require.NoError(t, err)
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "keep-1"}, storetest.Subscription{Reference: "keep-2"})
		db := st.DB()
		var sub models.Subscription
		require.NoError(t, db.Where("reference = ?", "keep-1").First(&sub).Error)
		inv := models.Invoice{PublicID: "in_keep", SubscriptionID: sub.ID, PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0),
			Amount: sub.Amount, Currency: sub.Currency, Status: models.InvoiceOpen, CreatedAt: t0, UpdatedAt: t0}
		require.NoError(t, db.Create(&inv).Error)
		require.NoError(t, db.Exec(`INSERT INTO emails (dedupe_key, kind, invoice_id, to_address, link_purpose, message_id, status, next_attempt_at, created_at, updated_at)
			VALUES ('k1', 'payment_failed', ?, 'a@example.com', 'pay', '<m1@example.com>', 'sent', ?, ?, ?)`, inv.ID, t0, t0, t0).Error)
		require.NoError(t, db.Exec(`INSERT INTO pay_links (token_hash, invoice_id, purpose, expires_at, created_at, updated_at)
			VALUES ('h1', ?, 'pay', ?, ?, ?)`, inv.ID, t0.Add(time.Hour), t0, t0).Error)

		applied, err := st.MigrateTo(ctx, 12)
		require.NoError(t, err)
		require.Len(t, applied, 1)
		require.Contains(t, applied[0], "00012")

		var subs []models.Subscription
		require.NoError(t, db.Order("id").Find(&subs).Error)
		require.Len(t, subs, 2)
		require.Equal(t, sub.ID, subs[0].ID)
		require.Equal(t, sub.NextBillingAt.UTC(), subs[0].NextBillingAt.UTC())
		require.Equal(t, sub.Timezone, subs[0].Timezone)
		var em models.Email
		require.NoError(t, db.First(&em).Error)
		require.Equal(t, inv.ID, *em.InvoiceID)
		require.NotNil(t, em.SubscriptionID, "the email's subscription is filled from its invoice")
		require.Equal(t, sub.ID, *em.SubscriptionID)
		var link models.PayLink
		require.NoError(t, db.First(&link).Error)
		require.Equal(t, inv.ID, *link.InvoiceID)
		require.Equal(t, sub.ID, *link.SubscriptionID)

		// The references still hold: an invoice of a missing subscription is refused.
		require.Error(t, db.Exec(`INSERT INTO invoices (public_id, subscription_id, period_index, period_start, period_end, amount, currency, status, created_at, updated_at)
			VALUES ('in_orphan', 99999, 0, ?, ?, 100, 'USD', 'open', ?, ?)`, t0, t0, t0, t0).Error)
		// The widened checks take the new values.
		require.NoError(t, db.Model(&models.Subscription{}).Where("id = ?", sub.ID).Update("status", models.SubscriptionPaused).Error)
		require.Error(t, db.Model(&models.Subscription{}).Where("id = ?", sub.ID).Update("status", "sleeping").Error)
		require.NoError(t, db.Exec(`INSERT INTO emails (dedupe_key, kind, subscription_id, to_address, link_purpose, message_id, status, next_attempt_at, created_at, updated_at)
			VALUES ('k2', 'card_expiring', ?, 'a@example.com', 'update_card', '<m2@example.com>', 'pending', ?, ?, ?)`, sub.ID, t0, t0, t0).Error)
		require.Error(t, db.Exec(`INSERT INTO pay_links (token_hash, subscription_id, purpose, expires_at, created_at, updated_at)
			VALUES ('h2', ?, 'pay', ?, ?, ?)`, sub.ID, t0, t0, t0).Error, "a link without an invoice can only replace the card")

		again, err := st.MigrateTo(ctx, 12)
		require.NoError(t, err)
		require.Empty(t, again)
	})
}
