package invariant

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule/period"
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
		if _, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, Reference: "s1", PeriodIndex: 0, PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 700, Currency: "USD"}}); err != nil {
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

func TestCheckComparesInvoicesWithEachSubscriptionsCalendar(t *testing.T) {
	berlin, err := period.LoadZone("Europe/Berlin")
	require.NoError(t, err)
	// Monthly on the 31st at 00:30 Berlin: in UTC that is the 30th at 22:30 or
	// 23:30, so a calendar read in UTC gives different period starts.
	anchor := time.Date(2026, 1, 31, 0, 30, 0, 0, berlin)
	inBerlin := period.Recurrence{Anchor: anchor, Interval: period.Month, Count: 1, Location: berlin}
	inUTC := period.Recurrence{Anchor: anchor, Interval: period.Month, Count: 1, Location: time.UTC}
	s0, s1, s2, s3 := inBerlin.PeriodStart(0), inBerlin.PeriodStart(1), inBerlin.PeriodStart(2), inBerlin.PeriodStart(3)
	require.False(t, s1.Equal(inUTC.PeriodStart(1)), "the two calendars must differ for this test to mean anything")
	tests := []struct {
		name        string
		bounds      [][2]time.Time // invoices 0, 1, … as [start, end)
		next        int
		wrong, gaps int
		overlaps    int
		missed      int
	}{
		{"its own calendar", [][2]time.Time{{s0, s1}, {s1, s2}, {s2, s3}}, 3, 0, 0, 0, 0},
		{"computed in another zone", [][2]time.Time{{s0, inUTC.PeriodStart(1)}, {inUTC.PeriodStart(1), inUTC.PeriodStart(2)}}, 2, 2, 0, 0, 0},
		{"a gap", [][2]time.Time{{s0, s1.Add(-time.Hour)}, {s1, s2}}, 2, 1, 1, 0, 0},
		{"an overlap", [][2]time.Time{{s0, s1}, {s1.Add(-time.Hour), s2}}, 2, 1, 0, 1, 0},
		{"a period skipped by next_period", [][2]time.Time{{s0, s1}, {s1, s2}}, 3, 0, 0, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.SQLite(t)
			ctx := context.Background()
			storetest.Seed(t, st, anchor, storetest.Subscription{Reference: "s1", Anchor: anchor, Timezone: "Europe/Berlin"})
			var invs []store.NewInvoice
			for k, b := range tc.bounds {
				invs = append(invs, store.NewInvoice{SubscriptionID: 1, Reference: "s1", PeriodIndex: k, PeriodStart: b[0], PeriodEnd: b[1], Amount: 1000, Currency: "USD"})
			}
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				if _, err := tx.CreateInvoices(anchor, invs); err != nil {
					return err
				}
				return tx.AdvanceSubscription(anchor, 1, 0, tc.next, inBerlin.PeriodStart(tc.next))
			}))
			rep, err := Check(ctx, st, nil, Options{Now: s2.Add(-time.Nanosecond), AllowUnresolved: true})
			require.NoError(t, err)
			require.Equal(t, tc.wrong, rep.WrongPeriods, rep.String())
			require.Equal(t, tc.gaps, rep.PeriodGaps, rep.String())
			require.Equal(t, tc.overlaps, rep.PeriodOverlaps, rep.String())
			require.Equal(t, tc.missed, rep.MissedPeriods, rep.String())
		})
	}
}
