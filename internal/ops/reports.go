package ops

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/schedule/period"
)

// RevenueRow is one currency's money over a range.
type RevenueRow struct {
	Currency  string `json:"currency"`
	Collected Money  `json:"collected"`
	Refunded  Money  `json:"refunded"`
	Net       Money  `json:"net"`
	Payments  int    `json:"payments"`
	Refunds   int    `json:"refunds"`
}

// ForecastRow is the new-period charges of one day in one currency.
type ForecastRow struct {
	Day      string `json:"day"` // YYYY-MM-DD in the report's zone
	Currency string `json:"currency"`
	Count    int    `json:"count"`
	Total    Money  `json:"total"`
	// AtRisk and AtRiskTotal are the part of Count and Total whose
	// subscription is past_due: its dunning case may end (exhausted, with
	// dunning.final_action cancel or unpaid) before the period starts, and
	// then the period is never invoiced.
	AtRisk      int   `json:"at_risk"`
	AtRiskTotal Money `json:"at_risk_total"`
}

// MaxForecastDays bounds `billingd forecast --days`: a year (and a leap day)
// is as far as anyone plans charges, and the bound keeps a daily
// subscription's enumeration small.
const MaxForecastDays = 366

// Revenue reports, per currency, what was collected in [from, to) — every
// payment that took money, by when it succeeded, a duplicate second payment
// included — what was refunded in that range (any reason, by when the refund
// succeeded, so a duplicate's automatic refund shows here) and the net of the
// two. Finance reads it instead of hand-written SQL over minor units.
func (s *Service) Revenue(ctx context.Context, from, to time.Time) ([]RevenueRow, error) {
	if !from.Before(to) {
		return nil, &FieldError{Field: "to", Value: to.Format(time.RFC3339), Message: "must be after from (" + from.Format(time.RFC3339) + ")"}
	}
	collected, err := s.opts.Store.RevenueCollected(ctx, from, to)
	if err != nil {
		return nil, err
	}
	refunded, err := s.opts.Store.RevenueRefunded(ctx, from, to)
	if err != nil {
		return nil, err
	}
	type sums struct {
		collected, refunded int64
		payments, refunds   int
	}
	by := map[string]*sums{}
	get := func(cur string) *sums {
		if by[cur] == nil {
			by[cur] = &sums{}
		}
		return by[cur]
	}
	for _, c := range collected {
		r := get(c.Currency)
		r.collected += c.Amount
		r.payments += int(c.N)
	}
	for _, c := range refunded {
		r := get(c.Currency)
		r.refunded += c.Amount
		r.refunds += int(c.N)
	}
	out := make([]RevenueRow, 0, len(by))
	for cur, r := range by {
		out = append(out, RevenueRow{
			Currency:  cur,
			Collected: NewMoney(r.collected, cur),
			Refunded:  NewMoney(r.refunded, cur),
			Net:       NewMoney(r.collected-r.refunded, cur),
			Payments:  r.payments,
			Refunds:   r.refunds,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Currency < out[j].Currency })
	return out, nil
}

// Forecast lists the new-period charges the billing pass will create in the
// next days days from now, per day (in loc) and currency: for every billable
// subscription (active or past_due; paused and canceled ones are not
// invoiced), every period not yet invoiced that starts before now+days and
// before the subscription's cancel_at, at the subscription's current amount.
// The periods come from the same period math the Biller invoices with
// (period.New on the subscription's anchor, interval and own zone), so the
// forecast and the invoices cannot disagree on a day. Retries of open
// invoices are not new-period charges and are left out. The charges of
// past_due subscriptions are counted and also shown apart (AtRisk): whether
// their dunning ends before the period starts depends on the customer.
func (s *Service) Forecast(ctx context.Context, now time.Time, days int, loc *time.Location) ([]ForecastRow, error) {
	if days < 1 || days > MaxForecastDays {
		return nil, &FieldError{Field: "days", Value: fmt.Sprint(days), Message: fmt.Sprintf("must be between 1 and %d", MaxForecastDays)}
	}
	if loc == nil {
		loc = time.UTC
	}
	until := now.Add(time.Duration(days) * 24 * time.Hour)
	subs, err := s.opts.Store.ForecastSubscriptions(ctx, until)
	if err != nil {
		return nil, err
	}
	type key struct{ day, currency string }
	type sum struct {
		count, atRisk      int
		total, atRiskTotal int64
	}
	by := map[key]*sum{}
	for i := range subs {
		sub := &subs[i]
		rec, err := period.New(sub.AnchorAt, sub.Interval, sub.IntervalCount, sub.Timezone)
		if err != nil || money.CheckAmount(sub.Amount, sub.Currency) != nil {
			// The Biller logs and skips such a subscription: nothing is charged.
			s.opts.Log.Warn().Int64("subscription_id", sub.ID).Msg("subscription has invalid billing terms; left out of the forecast as the billing pass leaves it out")
			continue
		}
		for k := max(sub.NextPeriod, 0); ; k++ {
			start := rec.PeriodStart(k)
			if !start.Before(until) || (sub.CancelAt != nil && !start.Before(*sub.CancelAt)) {
				break
			}
			kk := key{start.In(loc).Format(time.DateOnly), sub.Currency}
			if by[kk] == nil {
				by[kk] = &sum{}
			}
			by[kk].count++
			by[kk].total += sub.Amount
			if sub.Status == models.SubscriptionPastDue {
				by[kk].atRisk++
				by[kk].atRiskTotal += sub.Amount
			}
		}
	}
	out := make([]ForecastRow, 0, len(by))
	for k, v := range by {
		out = append(out, ForecastRow{Day: k.day, Currency: k.currency, Count: v.count, Total: NewMoney(v.total, k.currency),
			AtRisk: v.atRisk, AtRiskTotal: NewMoney(v.atRiskTotal, k.currency)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Day != out[j].Day {
			return out[i].Day < out[j].Day
		}
		return out[i].Currency < out[j].Currency
	})
	return out, nil
}
