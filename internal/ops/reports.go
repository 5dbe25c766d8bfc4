package ops

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
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
// two. Finance reads it instead of hand-written SQL over minor units. The
// movements it sums are exactly the rows of Export (one SQL definition in the
// store), so the two reports agree on every range.
func (s *Service) Revenue(ctx context.Context, from, to time.Time) ([]RevenueRow, error) {
	if err := checkRange(from, to); err != nil {
		return nil, err
	}
	collected, err := s.opts.Store.RevenueCollected(ctx, from, to)
	if err != nil {
		return nil, err
	}
	refunded, err := s.opts.Store.RevenueRefunded(ctx, from, to)
	if err != nil {
		return nil, err
	}
	sums := revenueSums{}
	for _, c := range collected {
		r := sums.of(c.Currency)
		r.collected += c.Amount
		r.payments += int(c.N)
	}
	for _, c := range refunded {
		r := sums.of(c.Currency)
		r.refunded += c.Amount
		r.refunds += int(c.N)
	}
	return sums.rows(), nil
}

// checkRange refuses an empty or reversed report range, naming "to".
func checkRange(from, to time.Time) error {
	if !from.Before(to) {
		return &FieldError{Field: "to", Value: to.Format(time.RFC3339), Message: "must be after from (" + from.Format(time.RFC3339) + ")"}
	}
	return nil
}

// revenueSums gathers a report's money per currency.
type revenueSums map[string]*currencySums

type currencySums struct {
	collected, refunded int64
	payments, refunds   int
}

func (r revenueSums) of(currency string) *currencySums {
	if r[currency] == nil {
		r[currency] = &currencySums{}
	}
	return r[currency]
}

// rows are the sums as report rows, by currency code.
func (r revenueSums) rows() []RevenueRow {
	out := make([]RevenueRow, 0, len(r))
	for cur, c := range r {
		out = append(out, RevenueRow{
			Currency:  cur,
			Collected: NewMoney(c.collected, cur),
			Refunded:  NewMoney(c.refunded, cur),
			Net:       NewMoney(c.collected-c.refunded, cur),
			Payments:  c.payments,
			Refunds:   c.refunds,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Currency < out[j].Currency })
	return out
}

// Kinds of ExportRow: what moved the money.
const (
	// ExportCharge is a payment that took money: a succeeded charge, or a
	// second payment the gateway took for an invoice already paid (its
	// refund is the ExportDuplicateRefund row with the same payment).
	ExportCharge = store.MovementCharge
	// ExportRefund is a refund that gave money back: an operator's refund,
	// or the automatic refund of a payment that succeeded after its invoice
	// was voided.
	ExportRefund = store.MovementRefund
	// ExportDuplicateRefund is the automatic refund of a second payment for
	// one invoice.
	ExportDuplicateRefund = store.MovementDuplicateRefund
)

// ExportRow is one money movement of the accounting export. Its JSON names
// are the CSV header of `billingd report export --csv`, a public contract.
type ExportRow struct {
	Kind string `json:"kind"`
	// At is when the money moved, in UTC to the second: a charge's or
	// refund's finished time; for a second payment no attempt of billingd's
	// made, when billingd recorded it.
	At time.Time `json:"at"`
	// Invoice is the invoice's order id (merchant_order_id at the gateway).
	Invoice string `json:"invoice"`
	// Subscription is the subscription's reference.
	Subscription string `json:"subscription"`
	// Customer is the gateway customer id.
	Customer string `json:"customer"`
	Email    string `json:"email"`
	// Payment is the gateway payment the money moved on; Refund the gateway
	// refund id (empty for a charge).
	Payment string `json:"payment"`
	Refund  string `json:"refund"`
	// Amount is in minor units: positive for money in (charges), negative
	// for money out (refunds), so the column sums to the net.
	Amount int64 `json:"amount"`
	// Display is Amount in the currency's exponent ("-12.50 USD").
	Display  string `json:"display"`
	Currency string `json:"currency"`
}

// Export calls each with every money movement in [from, to), in time order
// (ties by charge before refund, then row), streamed from the database rather
// than loaded at once, and returns their totals per currency: collected (the
// charges), refunded (the refunds, positive) and net. The movements are the
// ones Revenue sums, so the totals equal Revenue's over the same range (and
// the gateway's books: every payment that succeeded, every refund that did).
// An error from each stops the export and is returned.
func (s *Service) Export(ctx context.Context, from, to time.Time, each func(ExportRow) error) ([]RevenueRow, error) {
	if err := checkRange(from, to); err != nil {
		return nil, err
	}
	sums := revenueSums{}
	err := s.opts.Store.EachMovement(ctx, from, to, func(m store.Movement) error {
		c := sums.of(m.Currency)
		amount := m.Amount
		counted := amount
		if !store.InSumBounds(amount) {
			counted = 0 // as the revenue sums leave it out (store.InSumBounds)
		}
		if m.Kind == store.MovementCharge {
			c.collected += counted
			c.payments++
		} else {
			c.refunded += counted
			c.refunds++
			amount = -amount
		}
		return each(ExportRow{
			Kind: m.Kind, At: m.At.UTC().Truncate(time.Second), Invoice: m.Invoice, Subscription: m.Subscription,
			Customer: m.Customer, Email: m.Email, Payment: m.Payment, Refund: m.Refund,
			Amount: amount, Display: money.Format(amount, m.Currency), Currency: m.Currency,
		})
	})
	if err != nil {
		return nil, err
	}
	return sums.rows(), nil
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
