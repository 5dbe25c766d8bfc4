package invariant

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

// paidInvoice seeds one subscription with its first invoice paid by pi.
func paidInvoice(t *testing.T, st *store.Store, pi string) models.Invoice {
	storetest.Seed(t, st, t0, storetest.Subscription{Reference: "s1", Amount: 700})
	ctx := context.Background()
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, PeriodIndex: 0, PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 700, Currency: "USD"}}); err != nil {
			return err
		}
		return tx.AdvanceSubscription(t0, 1, 0, 1, t0.AddDate(0, 1, 0))
	}))
	claimed, err := st.ClaimNewAttempts(ctx, "w", t0, t0.Add(time.Hour), 1)
	require.NoError(t, err)
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.FinishAttempt(t0, &claimed[0], store.AttemptResult{Status: models.AttemptSucceeded, PaymentIntentID: pi}); err != nil {
			return err
		}
		_, err := tx.MarkInvoicePaid(t0, claimed[0].InvoiceID, pi)
		return err
	}))
	var inv models.Invoice
	require.NoError(t, st.DB().First(&inv).Error)
	return inv
}

func TestCheckPassesWhenDatabaseAndLedgerAgree(t *testing.T) {
	st := storetest.SQLite(t)
	inv := paidInvoice(t, st, "pi_1")
	ledger := []sim.LedgerEntry{{ID: "pi_1", MerchantOrderID: inv.PublicID, Amount: 700, Currency: "USD", Status: "succeeded"}}
	rep, err := Check(context.Background(), st, ledger, Options{Now: t0.Add(time.Hour)})
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	require.Equal(t, map[string]int64{"USD": 700}, rep.PaidTotals)
}

func TestCheckCatchesEachViolation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ledger func(order string) []sim.LedgerEntry
		now    time.Time
		want   string
	}{
		{"double charge", func(o string) []sim.LedgerEntry {
			return []sim.LedgerEntry{{ID: "pi_1", MerchantOrderID: o, Amount: 700, Currency: "USD", Status: "succeeded"},
				{ID: "pi_2", MerchantOrderID: o, Amount: 700, Currency: "USD", Status: "succeeded"}}
		}, t0.Add(time.Hour), "DOUBLE CHARGE"},
		{"paid without a charge", func(string) []sim.LedgerEntry { return nil }, t0.Add(time.Hour), "succeeded payment intents for it"},
		{"charged an unknown order", func(o string) []sim.LedgerEntry {
			return []sim.LedgerEntry{{ID: "pi_1", MerchantOrderID: o, Amount: 700, Currency: "USD", Status: "succeeded"},
				{ID: "pi_9", MerchantOrderID: "inv_elsewhere", Amount: 5, Currency: "USD", Status: "succeeded"}}
		}, t0.Add(time.Hour), "no invoice of this database"},
		{"missed period", func(o string) []sim.LedgerEntry {
			return []sim.LedgerEntry{{ID: "pi_1", MerchantOrderID: o, Amount: 700, Currency: "USD", Status: "succeeded"}}
		}, t0.AddDate(0, 2, 0), "period(s) started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.SQLite(t)
			inv := paidInvoice(t, st, "pi_1")
			rep, err := Check(context.Background(), st, tc.ledger(inv.PublicID), Options{Now: tc.now})
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.True(t, strings.Contains(rep.String(), tc.want), rep.String())
		})
	}
}
