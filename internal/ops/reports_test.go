package ops_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store/storetest"
)

// paidInvoiceOf returns the paid invoice of the subscription reference.
func paidInvoiceOf(t *testing.T, b *daemontest.Bundle, reference string) models.Invoice {
	t.Helper()
	var inv models.Invoice
	require.NoError(t, b.Store.DB().Raw(`SELECT i.* FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
		WHERE s.reference = ? AND i.status = 'paid' ORDER BY i.period_index LIMIT 1`, reference).Scan(&inv).Error)
	require.NotZero(t, inv.ID, "no paid invoice for %s", reference)
	return inv
}

// The revenue report over a partial refund, a full refund and a duplicate
// second payment refunded automatically: per currency, what the simulator's
// ledger took and its refunds gave back, formatted by the currency's exponent;
// a range that ends before the money moved shows nothing. The export of the
// same range lists those movements and totals them the same.
func TestRevenueMatchesTheGatewayLedger(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		start := b.Clock.Now()
		var subs []storetest.Subscription
		for _, s := range []struct {
			ref, currency string
			amount        int64
		}{{"usd-partial", "USD", 1000}, {"jpy-full", "JPY", 5000}, {"eur-dup", "EUR", 1250}, {"usd-kept", "USD", 2599}} {
			cus, pm := b.SaveCard(t, "4242424242424242")
			subs = append(subs, storetest.Subscription{Reference: s.ref, Customer: cus, PaymentMethod: pm, Amount: s.amount,
				Currency: s.currency, Interval: "month", IntervalCount: 1, Anchor: start})
		}
		b.Seed(t, subs...)
		b.Run(t, time.Second, time.Second)

		partial := paidInvoiceOf(t, b, "usd-partial")
		_, err := b.D.Refund(ctx, partial.ID, 300, models.RefundReasonRequestedByCustomer, "op-partial")
		require.NoError(t, err)
		full := paidInvoiceOf(t, b, "jpy-full")
		_, err = b.D.Refund(ctx, full.ID, 0, models.RefundReasonRequestedByCustomer, "op-full")
		require.NoError(t, err)
		dup := paidInvoiceOf(t, b, "eur-dup")
		_, err = b.Sim.DuplicateSuccess(dup.PaymentIntentID)
		require.NoError(t, err)
		b.Run(t, time.Minute, 10*time.Second)

		var refunds []models.Refund
		require.NoError(t, b.Store.DB().Order("id").Find(&refunds).Error)
		require.Len(t, refunds, 3)
		for _, rf := range refunds {
			require.Equal(t, models.RefundSucceeded, rf.Status, "%s: %s", rf.IdempotencyKey, rf.ErrorMessage)
		}

		// The gateway's books, per currency.
		type books struct{ collected, refunded, payments, refunds int64 }
		want := map[string]*books{}
		get := func(cur string) *books {
			if want[cur] == nil {
				want[cur] = &books{}
			}
			return want[cur]
		}
		for _, e := range b.Sim.Ledger() {
			if e.Status == "succeeded" {
				get(e.Currency).collected += e.Amount
				get(e.Currency).payments++
			}
		}
		for _, r := range b.Sim.Refunds() {
			if r.Status == "succeeded" {
				get(r.Currency).refunded += r.Amount
				get(r.Currency).refunds++
			}
		}
		rows, err := b.D.Ops().Revenue(ctx, start.Add(-time.Hour), b.Clock.Now().Add(time.Hour))
		require.NoError(t, err)
		require.Len(t, rows, len(want))
		for _, r := range rows {
			w := want[r.Currency]
			require.NotNil(t, w, r.Currency)
			require.Equal(t, w.collected, r.Collected.Amount, "%s collected", r.Currency)
			require.Equal(t, w.refunded, r.Refunded.Amount, "%s refunded", r.Currency)
			require.Equal(t, w.collected-w.refunded, r.Net.Amount, "%s net", r.Currency)
			require.EqualValues(t, w.payments, r.Payments, "%s payments", r.Currency)
			require.EqualValues(t, w.refunds, r.Refunds, "%s refunds", r.Currency)
		}
		// And the figures themselves, formatted by ISO 4217 exponent.
		require.Equal(t, []ops.RevenueRow{
			{Currency: "EUR", Collected: ops.NewMoney(2500, "EUR"), Refunded: ops.NewMoney(1250, "EUR"), Net: ops.NewMoney(1250, "EUR"), Payments: 2, Refunds: 1},
			{Currency: "JPY", Collected: ops.NewMoney(5000, "JPY"), Refunded: ops.NewMoney(5000, "JPY"), Net: ops.NewMoney(0, "JPY"), Payments: 1, Refunds: 1},
			{Currency: "USD", Collected: ops.NewMoney(3599, "USD"), Refunded: ops.NewMoney(300, "USD"), Net: ops.NewMoney(3299, "USD"), Payments: 2, Refunds: 1},
		}, rows)
		require.Equal(t, "12.50 EUR", rows[0].Net.Display)
		require.Equal(t, "0 JPY", rows[1].Net.Display)

		// The export lists exactly the movements the revenue report sums:
		// its totals are the same rows, and its signed amounts add up to the
		// net.
		var movements []ops.ExportRow
		totals, err := b.D.Ops().Export(ctx, start.Add(-time.Hour), b.Clock.Now().Add(time.Hour), func(r ops.ExportRow) error {
			movements = append(movements, r)
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, rows, totals)
		net := map[string]int64{}
		kinds := map[string]int{}
		for _, m := range movements {
			net[m.Currency] += m.Amount
			kinds[m.Kind]++
		}
		require.Equal(t, map[string]int64{"EUR": 1250, "JPY": 0, "USD": 3299}, net)
		require.Equal(t, map[string]int{ops.ExportCharge: 5, ops.ExportRefund: 2, ops.ExportDuplicateRefund: 1}, kinds)
		_, err = b.D.Ops().Export(ctx, start, start, func(ops.ExportRow) error { return nil })
		var empty *ops.FieldError
		require.ErrorAs(t, err, &empty)
		require.Equal(t, "to", empty.Field)

		// Before the money moved: nothing. An empty range is the caller's error.
		rows, err = b.D.Ops().Revenue(ctx, start.Add(-48*time.Hour), start.Add(-time.Hour))
		require.NoError(t, err)
		require.Empty(t, rows)
		_, err = b.D.Ops().Revenue(ctx, start, start)
		var fe *ops.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "to", fe.Field)
	})
}

// chargeKey is one new-period charge as the forecast and the invoices both
// tell it: the day (in the report's zone) and currency, with how many and
// how much.
type chargeDay struct {
	Day      string
	Currency string
	Count    int
	Total    int64
}

func forecastDays(rows []ops.ForecastRow) []chargeDay {
	out := make([]chargeDay, 0, len(rows))
	for _, r := range rows {
		out = append(out, chargeDay{r.Day, r.Currency, r.Count, r.Total.Amount})
	}
	return out
}

// invoicedDays groups the invoices created after before by the day of their
// period start in loc and their currency.
func invoicedDays(t *testing.T, b *daemontest.Bundle, loc *time.Location) []chargeDay {
	t.Helper()
	var invs []models.Invoice
	require.NoError(t, b.Store.DB().Order("id").Find(&invs).Error)
	by := map[[2]string]*chargeDay{}
	for _, inv := range invs {
		k := [2]string{inv.PeriodStart.In(loc).Format(time.DateOnly), inv.Currency}
		if by[k] == nil {
			by[k] = &chargeDay{Day: k[0], Currency: k[1]}
		}
		by[k].Count++
		by[k].Total += inv.Amount
	}
	out := make([]chargeDay, 0, len(by))
	for _, d := range by {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Day != out[j].Day {
			return out[i].Day < out[j].Day
		}
		return out[i].Currency < out[j].Currency
	})
	return out
}

// The forecast of the next 31 days is exactly what the daemon then invoices
// on the simulated clock over those 31 days: day of period start (in UTC and
// in another zone), currency, count and amount, for subscriptions of every
// interval in several currencies and zones (across the DST changes of March),
// with paused and canceled subscriptions left out, one canceling at the end of
// its period billed up to then, and one whose amount changed billed at the new
// amount.
func TestForecastEqualsTheInvoicesOfTheNextDays(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		now := b.Clock.Now() // 2026-03-02 09:00 UTC
		at := func(zone string, y int, m time.Month, d, hh, mm int) time.Time {
			loc, err := period.LoadZone(zone)
			require.NoError(t, err)
			return time.Date(y, m, d, hh, mm, 0, 0, loc)
		}
		type seed struct {
			ref, currency, interval, zone string
			count                         int
			amount                        int64
			anchor                        time.Time
		}
		seeds := []seed{
			{"daily-berlin", "EUR", "day", "Europe/Berlin", 1, 199, at("Europe/Berlin", 2026, 3, 2, 23, 45)},
			{"3day-ny", "USD", "day", "America/New_York", 3, 1500, at("America/New_York", 2026, 3, 2, 21, 15)},
			{"weekly-tokyo", "JPY", "week", "Asia/Tokyo", 1, 980, at("Asia/Tokyo", 2026, 3, 3, 7, 30)},
			{"2week-sydney", "USD", "week", "Australia/Sydney", 2, 2500, at("Australia/Sydney", 2026, 3, 4, 0, 10)},
			{"monthly-utc", "EUR", "month", "UTC", 1, 4900, at("UTC", 2026, 3, 3, 12, 5)},
			{"monthly-ny-31st", "USD", "month", "America/New_York", 1, 1999, at("America/New_York", 2026, 3, 31, 23, 30)},
			{"yearly-berlin", "EUR", "year", "Europe/Berlin", 1, 12000, at("Europe/Berlin", 2026, 3, 20, 0, 30)},
			{"later-than-window", "USD", "month", "UTC", 1, 700, at("UTC", 2026, 4, 20, 10, 0)},
			{"paused-daily", "USD", "day", "UTC", 1, 100, at("UTC", 2026, 3, 2, 10, 30)},
			{"paused-weekly", "EUR", "week", "Europe/Berlin", 1, 300, at("Europe/Berlin", 2026, 3, 5, 8, 0)},
			{"canceled-daily", "JPY", "day", "Asia/Tokyo", 1, 500, at("Asia/Tokyo", 2026, 3, 3, 9, 0)},
			{"canceling-weekly", "USD", "week", "America/New_York", 1, 800, at("America/New_York", 2026, 3, 3, 6, 20)},
			{"repriced-weekly", "EUR", "week", "UTC", 1, 1000, at("UTC", 2026, 3, 6, 15, 40)},
		}
		var subs []storetest.Subscription
		for _, s := range seeds {
			cus, pm := b.SaveCard(t, "4242424242424242")
			subs = append(subs, storetest.Subscription{Reference: s.ref, Customer: cus, PaymentMethod: pm, Amount: s.amount,
				Currency: s.currency, Interval: s.interval, IntervalCount: s.count, Anchor: s.anchor, Timezone: s.zone})
		}
		b.Seed(t, subs...)
		db := b.Store.DB()
		// The operator actions are another part's: set their columns as they
		// leave them.
		require.NoError(t, db.Exec(`UPDATE subscriptions SET status = 'paused', paused_at = ? WHERE reference IN ('paused-daily', 'paused-weekly')`, now).Error)
		require.NoError(t, db.Exec(`UPDATE subscriptions SET status = 'canceled', canceled_at = ? WHERE reference = 'canceled-daily'`, now).Error)
		canceling := seeds[11]
		rec, err := period.New(canceling.anchor, canceling.interval, canceling.count, canceling.zone)
		require.NoError(t, err)
		cancelAt := rec.PeriodStart(2) // the end of its second period: two charges, then none
		require.NoError(t, db.Exec(`UPDATE subscriptions SET cancel_at = ? WHERE reference = 'canceling-weekly'`, cancelAt.UTC()).Error)
		require.NoError(t, db.Exec(`UPDATE subscriptions SET amount = 1250 WHERE reference = 'repriced-weekly'`).Error)

		berlin, err := period.LoadZone("Europe/Berlin")
		require.NoError(t, err)
		svc := b.Operator(t)
		inUTC, err := svc.Forecast(ctx, now, 31, time.UTC)
		require.NoError(t, err)
		inBerlin, err := svc.Forecast(ctx, now, 31, berlin)
		require.NoError(t, err)
		require.NotEmpty(t, inUTC)

		// 31 days on the simulated clock. Until the subscription actions
		// land, the biller does not read cancel_at: the test makes the
		// canceling subscription canceled at its cancel_at, as the action's
		// period-end transition does, so the comparison holds either way.
		const step = time.Hour
		untilCancel := cancelAt.Sub(now).Truncate(step) - step
		b.Run(t, untilCancel, step)
		require.NoError(t, db.Exec(`UPDATE subscriptions SET status = 'canceled', canceled_at = ? WHERE reference = 'canceling-weekly' AND status = 'active'`, cancelAt.UTC()).Error)
		b.Run(t, 31*24*time.Hour-untilCancel, step)
		require.Equal(t, now.Add(31*24*time.Hour), b.Clock.Now())

		require.Equal(t, invoicedDays(t, b, time.UTC), forecastDays(inUTC))
		require.Equal(t, invoicedDays(t, b, berlin), forecastDays(inBerlin))

		// Per subscription, to show what the rules left out.
		var perSub []struct {
			Reference string
			N         int
			Amount    int64
		}
		require.NoError(t, db.Raw(`SELECT s.reference, COUNT(i.id) AS n, COALESCE(MAX(i.amount), 0) AS amount FROM subscriptions s
			LEFT JOIN invoices i ON i.subscription_id = s.id GROUP BY s.reference ORDER BY s.reference`).Scan(&perSub).Error)
		got := map[string]int{}
		for _, p := range perSub {
			got[p.Reference] = p.N
			if p.Reference == "repriced-weekly" {
				require.EqualValues(t, 1250, p.Amount)
			}
		}
		require.Equal(t, 0, got["paused-daily"])
		require.Equal(t, 0, got["paused-weekly"])
		require.Equal(t, 0, got["canceled-daily"])
		require.Equal(t, 0, got["later-than-window"])
		require.Equal(t, 2, got["canceling-weekly"])
		require.Equal(t, 31, got["daily-berlin"], "daily from Mar 2 23:45 Berlin to Apr 1 23:45 Berlin, before Apr 2 09:00 UTC")
		require.Equal(t, 1, got["yearly-berlin"])
	})
}

// The forecast's window is bounded and named in the error.
func TestForecastDaysBounds(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{})
	for _, days := range []int{0, -1, ops.MaxForecastDays + 1} {
		_, err := b.D.Ops().Forecast(context.Background(), b.Clock.Now(), days, time.UTC)
		var fe *ops.FieldError
		require.ErrorAs(t, err, &fe, "days %d", days)
		require.Equal(t, "days", fe.Field)
	}
}
