// Package invariant checks billingd's money-safety promises against the gateway's
// own record (the simulator's ledger): at most one successful charge per invoice,
// every due period invoiced exactly once and with the bounds the subscription's
// own calendar gives it (no gap or overlap between consecutive invoices), every
// invoice paid or visibly in some other state, and paid totals equal to what the
// gateway captured. Tests, the restart test and the kill soak all use this one
// checker.
package invariant

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
	"gorm.io/gorm"
)

// Report holds the figures of one check. Violations lists every broken invariant
// in words; an empty list means the database and the gateway agree.
type Report struct {
	Invoices        int
	PaidInvoices    int
	Succeeded       int            // succeeded PaymentIntents in the ledger
	DoubleCharges   int            // merchant_order_ids with more than one succeeded PaymentIntent
	ChargedNotPaid  int            // succeeded PaymentIntents whose invoice is not paid
	PaidNotCharged  int            // paid invoices without exactly one matching succeeded PaymentIntent
	MissedPeriods   int            // due periods without an invoice
	WrongPeriods    int            // invoices whose bounds are not their period's in the subscription's zone
	PeriodGaps      int            // consecutive invoices with time between one's end and the next's start
	PeriodOverlaps  int            // consecutive invoices where one ends after the next starts
	Unaccounted     int            // open invoices with neither an attempt nor a scheduled one
	Unresolved      int            // attempts pending/unknown/processing
	NeedsReview     int            // attempts needs_review/failed
	AttemptsByState map[string]int // charge_attempts by status
	PaidTotals      map[string]int64
	LedgerTotals    map[string]int64
	Violations      []string
}

// OK reports whether no invariant is broken.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invoices %d (paid %d), ledger succeeded %d, double charges %d, charged-not-paid %d, paid-not-charged %d, missed periods %d, wrong periods %d, gaps %d, overlaps %d, unaccounted %d, unresolved %d, needs review %d",
		r.Invoices, r.PaidInvoices, r.Succeeded, r.DoubleCharges, r.ChargedNotPaid, r.PaidNotCharged, r.MissedPeriods, r.WrongPeriods, r.PeriodGaps, r.PeriodOverlaps, r.Unaccounted, r.Unresolved, r.NeedsReview)
	for i, v := range r.Violations {
		if i == 20 {
			fmt.Fprintf(&b, "\n  … and %d more", len(r.Violations)-20)
			break
		}
		b.WriteString("\n  " + v)
	}
	return b.String()
}

// Options say what "due" means for the missed-period check.
type Options struct {
	Now time.Time
	// Location is ignored: every subscription's periods are checked in its own
	// stored time zone, as the billing pass computes them.
	//
	// Deprecated: kept so existing callers compile; remove it from them.
	Location *time.Location
	// AllowUnresolved tolerates attempts still pending/unknown/processing (for a
	// check taken mid-flight); otherwise a charged-but-unpaid invoice whose attempt
	// is unresolved is still reported.
	AllowUnresolved bool
}

// Check compares the database with the gateway's ledger.
func Check(ctx context.Context, st *store.Store, ledger []sim.LedgerEntry, opts Options) (*Report, error) {
	db := st.DB().WithContext(ctx)
	r := &Report{AttemptsByState: map[string]int{}, PaidTotals: map[string]int64{}, LedgerTotals: map[string]int64{}}
	violate := func(format string, args ...any) { r.Violations = append(r.Violations, fmt.Sprintf(format, args...)) }

	var invoices []models.Invoice
	if err := db.Order("id").Find(&invoices).Error; err != nil {
		return nil, err
	}
	var attempts []models.ChargeAttempt
	if err := db.Order("id").Find(&attempts).Error; err != nil {
		return nil, err
	}
	var subs []models.Subscription
	if err := db.Order("id").Find(&subs).Error; err != nil {
		return nil, err
	}

	succeeded := map[string][]sim.LedgerEntry{}
	for _, e := range ledger {
		if e.Status == "succeeded" {
			r.Succeeded++
			succeeded[e.MerchantOrderID] = append(succeeded[e.MerchantOrderID], e)
			r.LedgerTotals[e.Currency] += e.Amount
		}
	}
	for order, es := range succeeded {
		if len(es) > 1 {
			r.DoubleCharges++
			violate("DOUBLE CHARGE: %s has %d succeeded payment intents", order, len(es))
		}
	}

	unresolvedByInvoice := map[int64]bool{}
	latest := map[int64]models.ChargeAttempt{}
	for _, a := range attempts {
		r.AttemptsByState[string(a.Status)]++
		switch {
		case a.Status.Unresolved():
			r.Unresolved++
			unresolvedByInvoice[a.InvoiceID] = true
		case a.Status == models.AttemptNeedsReview || a.Status == models.AttemptFailed:
			r.NeedsReview++
		}
		if prev, ok := latest[a.InvoiceID]; !ok || a.AttemptNo > prev.AttemptNo {
			latest[a.InvoiceID] = a
		}
	}

	// One subscription, one queue: an open invoice behind an earlier open one
	// of its subscription, or on a card the gateway called dead, waits
	// uncharged by design; it is accounted for.
	var pms []models.PaymentMethod
	if err := db.Order("id").Find(&pms).Error; err != nil {
		return nil, err
	}
	deadPM := map[int64]bool{}
	for _, pm := range pms {
		if pm.DeadAt != nil {
			deadPM[pm.ID] = true
		}
	}
	deadSub := map[int64]bool{}
	for _, s := range subs {
		deadSub[s.ID] = deadPM[s.PaymentMethodID]
	}
	headOf := map[int64]int{}
	for _, inv := range invoices {
		if k, ok := headOf[inv.SubscriptionID]; inv.Status == models.InvoiceOpen && (!ok || inv.PeriodIndex < k) {
			headOf[inv.SubscriptionID] = inv.PeriodIndex
		}
	}
	waiting := func(inv models.Invoice) bool {
		return deadSub[inv.SubscriptionID] || inv.PeriodIndex > headOf[inv.SubscriptionID]
	}

	byOrder := map[string]models.Invoice{}
	for _, inv := range invoices {
		r.Invoices++
		byOrder[inv.PublicID] = inv
		switch inv.Status {
		case models.InvoicePaid:
			r.PaidInvoices++
			r.PaidTotals[inv.Currency] += inv.Amount
			es := succeeded[inv.PublicID]
			if len(es) != 1 || es[0].ID != inv.PaymentIntentID || es[0].Amount != inv.Amount || es[0].Currency != inv.Currency {
				r.PaidNotCharged++
				violate("invoice %s is paid by %q but the gateway has %d succeeded payment intents for it", inv.PublicID, inv.PaymentIntentID, len(es))
			}
		case models.InvoiceOpen:
			if _, ok := latest[inv.ID]; !ok && inv.NextAttemptAt == nil {
				r.Unaccounted++
				violate("invoice %s is open with no attempt and nothing scheduled", inv.PublicID)
			}
			if _, ok := latest[inv.ID]; !ok && inv.NextAttemptAt != nil && !inv.NextAttemptAt.After(opts.Now) && !waiting(inv) {
				r.Unaccounted++
				violate("invoice %s is due since %s but was never attempted", inv.PublicID, inv.NextAttemptAt.Format(time.RFC3339))
			}
		}
	}
	for order := range succeeded {
		inv, ok := byOrder[order]
		if !ok {
			r.ChargedNotPaid++
			violate("the gateway charged %s, which is no invoice of this database", order)
			continue
		}
		if inv.Status != models.InvoicePaid {
			if opts.AllowUnresolved && unresolvedByInvoice[inv.ID] {
				continue
			}
			r.ChargedNotPaid++
			violate("the gateway charged invoice %s but the database has it %s", order, inv.Status)
		}
	}
	if !opts.AllowUnresolved && r.Unresolved > 0 {
		violate("%d attempt(s) are still pending/unknown/processing", r.Unresolved)
	}
	for cur, total := range r.LedgerTotals {
		if !opts.AllowUnresolved && r.PaidTotals[cur] != total {
			violate("paid invoices total %d %s but the gateway captured %d %s", r.PaidTotals[cur], cur, total, cur)
		}
	}

	skipped, err := pausedPeriods(db, subs)
	if err != nil {
		return nil, err
	}
	bySub := map[int64][]models.Invoice{}
	for _, inv := range invoices {
		bySub[inv.SubscriptionID] = append(bySub[inv.SubscriptionID], inv)
	}
	for i := range subs {
		s := &subs[i]
		rec, err := period.New(s.AnchorAt, s.Interval, s.IntervalCount, s.Timezone)
		if err != nil {
			violate("subscription %s: %v", s.Reference, err)
			continue
		}
		got := bySub[s.ID]
		sort.SliceStable(got, func(a, b int) bool { return got[a].PeriodIndex < got[b].PeriodIndex })
		skip := skipped[s.ID]
		checkPeriods(r, violate, s, rec, got, skip)
		if len(got)+len(skip) != s.NextPeriod {
			r.MissedPeriods++
			violate("subscription %s: next_period is %d but %d period(s) are invoiced and %d skipped while paused", s.Reference, s.NextPeriod, len(got), len(skip))
		}
		if s.Status.Billable() {
			due := rec.IndexAt(opts.Now)
			if len(got)+len(skip) < due {
				r.MissedPeriods += due - len(got) - len(skip)
				violate("subscription %s: %d period(s) started by %s but only %d invoiced (%d skipped while paused)", s.Reference, due, opts.Now.Format(time.RFC3339), len(got), len(skip))
			}
		}
	}
	return r, nil
}

// checkPeriods checks one subscription's invoices, sorted by period index: they
// are periods 0, 1, 2, … each once; each covers exactly its period of the
// subscription's calendar in its own zone; and each ends where the next begins.
// The last two are reported separately from the calendar check so that a report
// says whether customers were billed for time twice (overlap) or not at all (gap).
//
// Periods in skip were never invoiced by a recorded rule (an operator's resume
// after a pause, in audit_log): the index sequence jumps over them, and the
// invoices on either side of a skip are not expected to touch.
func checkPeriods(r *Report, violate func(string, ...any), s *models.Subscription, rec period.Recurrence, invs []models.Invoice, skip map[int]bool) {
	want := 0
	for skip[want] {
		want++
	}
	for k, inv := range invs {
		if inv.PeriodIndex != want {
			r.MissedPeriods++
			violate("subscription %s: period %d has no invoice (or one is doubled)", s.Reference, want)
			return
		}
		want++
		for skip[want] {
			want++
		}
		start, end := rec.Period(inv.PeriodIndex)
		if !inv.PeriodStart.Equal(start) || !inv.PeriodEnd.Equal(end) {
			r.WrongPeriods++
			violate("subscription %s: invoice %s (period %d) covers [%s, %s), its calendar in %s says [%s, %s)", s.Reference, inv.PublicID, inv.PeriodIndex,
				inv.PeriodStart.UTC().Format(time.RFC3339Nano), inv.PeriodEnd.UTC().Format(time.RFC3339Nano), s.Timezone,
				start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano))
		}
		if k == 0 || skip[inv.PeriodIndex-1] {
			continue
		}
		prev := invs[k-1]
		switch {
		case prev.PeriodEnd.Before(inv.PeriodStart):
			r.PeriodGaps++
			violate("subscription %s: gap between period %d (ends %s) and period %d (starts %s)", s.Reference, prev.PeriodIndex,
				prev.PeriodEnd.UTC().Format(time.RFC3339Nano), inv.PeriodIndex, inv.PeriodStart.UTC().Format(time.RFC3339Nano))
		case prev.PeriodEnd.After(inv.PeriodStart):
			r.PeriodOverlaps++
			violate("subscription %s: period %d (ends %s) overlaps period %d (starts %s)", s.Reference, prev.PeriodIndex,
				prev.PeriodEnd.UTC().Format(time.RFC3339Nano), inv.PeriodIndex, inv.PeriodStart.UTC().Format(time.RFC3339Nano))
		}
	}
}

// pausedPeriods reads, from the audit log, the periods each subscription
// skipped by an operator's resume: those that started while it was paused,
// from its next_billing_at before the resume up to (not including) the one
// after. They are never invoiced, by a recorded rule.
func pausedPeriods(db *gorm.DB, subs []models.Subscription) (map[int64]map[int]bool, error) {
	var entries []models.AuditEntry
	if err := db.Where("target_type = ? AND action = ?", "subscription", "subscription.resume").Order("id").Find(&entries).Error; err != nil {
		return nil, err
	}
	byID := map[int64]*models.Subscription{}
	for i := range subs {
		byID[subs[i].ID] = &subs[i]
	}
	out := map[int64]map[int]bool{}
	for _, e := range entries {
		s := byID[e.TargetID]
		if s == nil {
			continue
		}
		var before, after struct {
			NextBillingAt time.Time `json:"next_billing_at"`
		}
		if json.Unmarshal([]byte(e.BeforeJSON), &before) != nil || json.Unmarshal([]byte(e.AfterJSON), &after) != nil {
			return nil, fmt.Errorf("invariant: audit row %d: unreadable before/after", e.ID)
		}
		rec, err := period.New(s.AnchorAt, s.Interval, s.IntervalCount, s.Timezone)
		if err != nil {
			continue
		}
		// IndexAt counts the periods started by t: the period starting
		// exactly at t is the last of them.
		from, to := rec.IndexAt(before.NextBillingAt)-1, rec.IndexAt(after.NextBillingAt)-1
		for k := from; k < to; k++ {
			if out[s.ID] == nil {
				out[s.ID] = map[int]bool{}
			}
			out[s.ID][k] = true
		}
	}
	return out, nil
}
