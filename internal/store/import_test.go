package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// Finding 6: an import of more rows than one statement may bind (SQLite stopped
// at 32,766 rows with "too many SQL variables", PostgreSQL at 65,535 parameters)
// goes in, in one transaction, on both databases.
func TestImportOfManyRowsGoesInWhole(t *testing.T) {
	const n = 40_000 // 80,000 ids in the lookups, 600,000 values in the inserts
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		rows := make([]store.ImportRow, n)
		for i := range rows {
			// Half the customers have two subscriptions, on one card.
			c := i / 2
			rows[i] = store.ImportRow{Line: i + 2, Reference: fmt.Sprintf("big-%06d", i), Email: fmt.Sprintf("c%d@example.com", c),
				Customer: fmt.Sprintf("cus_%d", c), PaymentMethod: fmt.Sprintf("pm_%d", c), Amount: 1000 + int64(i%7), Currency: "USD",
				Interval: "month", IntervalCount: 1, Anchor: t0, FirstBilling: t0}
		}
		start := time.Now()
		imported, err := st.ImportSubscriptions(ctx, rows, t0)
		require.NoError(t, err)
		t.Logf("%d rows in %v", n, time.Since(start))
		require.Equal(t, n, imported)
		var subs, customers, pms int64
		require.NoError(t, st.DB().Model(&models.Subscription{}).Count(&subs).Error)
		require.NoError(t, st.DB().Model(&models.Customer{}).Count(&customers).Error)
		require.NoError(t, st.DB().Model(&models.PaymentMethod{}).Count(&pms).Error)
		require.EqualValues(t, n, subs)
		require.EqualValues(t, n/2, customers)
		require.EqualValues(t, n/2, pms)
		var last models.Subscription
		require.NoError(t, st.DB().Where("reference = ?", "big-039999").Take(&last).Error)
		var pm models.PaymentMethod
		require.NoError(t, st.DB().Take(&pm, last.PaymentMethodID).Error)
		require.Equal(t, "pm_19999", pm.GatewayID)
		require.Equal(t, last.CustomerID, pm.CustomerID)

		// A second file as large whose very last row conflicts: nothing of it is written.
		again := make([]store.ImportRow, n)
		for i := range again {
			again[i] = rows[i]
			again[i].Reference = fmt.Sprintf("more-%06d", i)
			again[i].Customer, again[i].PaymentMethod = fmt.Sprintf("cus_new_%d", i), fmt.Sprintf("pm_new_%d", i)
		}
		again[n-1].Reference = "big-000000"
		_, err = st.ImportSubscriptions(ctx, again, t0)
		var ie store.ImportErrors
		require.True(t, errors.As(err, &ie), "got %v", err)
		require.Equal(t, store.ImportErrors{{Line: n + 1, Column: "reference", Value: "big-000000", Message: "a subscription with this reference already exists"}}, ie)
		require.NoError(t, st.DB().Model(&models.Subscription{}).Count(&subs).Error)
		require.NoError(t, st.DB().Model(&models.Customer{}).Count(&customers).Error)
		require.EqualValues(t, n, subs, "all or nothing")
		require.EqualValues(t, n/2, customers, "all or nothing")
	})
}

// Finding 7: the store refuses an amount above the currency's bound whoever
// calls it, and the invoice door refuses one too.
func TestStoreRefusesUnboundedAmounts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		rows := []store.ImportRow{
			{Line: 2, Reference: "ok", Email: "a@example.com", Customer: "cus_1", PaymentMethod: "pm_1", Amount: 99_999_999, Currency: "USD", Interval: "month", IntervalCount: 1, Anchor: t0, FirstBilling: t0},
			{Line: 3, Reference: "huge", Email: "a@example.com", Customer: "cus_1", PaymentMethod: "pm_1", Amount: 9223372036854775807, Currency: "USD", Interval: "month", IntervalCount: 1, Anchor: t0, FirstBilling: t0},
		}
		_, err := st.ImportSubscriptions(ctx, rows, t0)
		var ie store.ImportErrors
		require.True(t, errors.As(err, &ie), "got %v", err)
		require.Len(t, ie, 1)
		require.Equal(t, 3, ie[0].Line)
		require.Equal(t, "amount", ie[0].Column)

		err = st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, Reference: "ok", PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 9223372036854775807, Currency: "USD"}})
			return err
		})
		require.ErrorContains(t, err, "at most 99999999")
	})
}

// Finding 7: a database that already holds amounts from before the bound (two
// paid invoices of int64's largest) does not make status or the books fail
// with "integer overflow": those rows are counted apart, not summed.
func TestStatusSurvivesUnboundedAmounts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "a", Amount: 500}, storetest.Subscription{Reference: "b", Amount: 700})
		now := t0.Add(time.Hour)
		require.NoError(t, st.DB().Exec(`UPDATE subscriptions SET amount = ? WHERE reference = 'b'`, int64(9223372036854775807)).Error)
		var subs []models.Subscription
		require.NoError(t, st.DB().Order("id").Find(&subs).Error)
		for i, amount := range []int64{500, 9223372036854775807, 9223372036854775807} {
			sub := subs[min(i, 1)]
			require.NoError(t, st.DB().Exec(`INSERT INTO invoices (public_id, subscription_id, period_index, period_start, period_end, amount, currency, status, next_attempt_at, paid_at, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, 'USD', 'paid', ?, ?, ?, ?)`, fmt.Sprintf("inv_huge_%d", i), sub.ID, i, t0.AddDate(0, i, 0), t0.AddDate(0, i+1, 0), amount, t0, now, now, now).Error)
		}
		r, err := st.Status(ctx, now)
		require.NoError(t, err)
		require.Equal(t, []store.CurrencyTotal{{Currency: "USD", Amount: 500, N: 3, Unbounded: 2}}, r.PaidToday)
		require.EqualValues(t, 1, r.UnboundedSubscriptions)
		require.EqualValues(t, 2, r.UnboundedInvoices)
		totals, err := st.PaidTotals(ctx)
		require.NoError(t, err)
		require.Equal(t, []store.CurrencyTotal{{Currency: "USD", Amount: 500, N: 3, Unbounded: 2}}, totals)
	})
}

// A later import that names known customers with new emails updates them, in
// one statement per batch; customers it names with their old email, or with
// none, keep theirs.
func TestImportUpdatesChangedEmails(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		row := func(ref, cus, email string) store.ImportRow {
			return store.ImportRow{Line: 2, Reference: ref, Email: email, Customer: cus, PaymentMethod: "pm_" + cus,
				Amount: 1000, Currency: "USD", Interval: "month", IntervalCount: 1, Anchor: t0, FirstBilling: t0}
		}
		_, err := st.ImportSubscriptions(ctx, []store.ImportRow{
			row("a1", "cus_a", "a@old.example"), row("b1", "cus_b", "b@old.example"), row("c1", "cus_c", "c@old.example")}, t0)
		require.NoError(t, err)
		_, err = st.ImportSubscriptions(ctx, []store.ImportRow{
			row("a2", "cus_a", "a@new.example"), row("b2", "cus_b", "b@old.example"), row("c2", "cus_c", "c@new.example")}, t0)
		require.NoError(t, err)
		got := map[string]string{}
		var cs []models.Customer
		require.NoError(t, st.DB().Find(&cs).Error)
		for _, c := range cs {
			got[c.GatewayID] = c.Email
		}
		require.Equal(t, map[string]string{"cus_a": "a@new.example", "cus_b": "b@old.example", "cus_c": "c@new.example"}, got)
	})
}
