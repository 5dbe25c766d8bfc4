// Package period is billingd's billing period math: which instants a
// subscription's periods start at, given its anchor, interval and time zone. It is
// pure (no database, no clock, no network), so that the CSV import, the billing
// pass and the invariant checker all call the one implementation of each rule.
// docs/billing-periods.md states the rules for operators.
//
// A subscription is billed once per period. Period k (k = 0, 1, 2, …) covers
// [PeriodStart(k), PeriodStart(k+1)). Every start is computed directly from the
// anchor and k, never by stepping from the previous start: stepping would let a
// clamped day (Jan 31 → Feb 28) or a DST-shifted hour leak into every later period
// and drift, and it would make the start of period k depend on how many sweeps ran.
// Because the result is a pure function of (anchor, interval, count, location, k),
// any instance of billingd, at any time, agrees on which period an invoice belongs
// to, which is what makes the (subscription, period_start) UNIQUE index a reliable
// guard against double charges.
package period

import (
	"errors"
	"fmt"
	"time"
)

// Interval is the unit of a subscription's billing cycle, as written in the
// subscription CSV's `interval` column.
type Interval string

// The billing cycle units. The string values are part of the CSV and database
// contract; do not change them.
const (
	Day   Interval = "day"
	Week  Interval = "week"
	Month Interval = "month"
	Year  Interval = "year"
)

// Upper bounds for Recurrence.Count, per interval. Every bound is three years,
// the longest cycle card gateways commonly accept for a recurring plan (Stripe's
// limit is "3 years, 36 months or 156 weeks"). Longer cycles are almost always a
// data-entry slip (interval_count meant for another unit), and a bound keeps the
// period arithmetic far from integer and calendar overflow.
const (
	MaxDayCount   = 1095
	MaxWeekCount  = 156
	MaxMonthCount = 36
	MaxYearCount  = 3
)

// ParseInterval parses the CSV/config spelling of an interval. It is
// case-sensitive: the stored value is the contract, and accepting "Month" on
// import would let two spellings of the same plan into the database.
func ParseInterval(s string) (Interval, error) {
	switch i := Interval(s); i {
	case Day, Week, Month, Year:
		return i, nil
	}
	return "", fmt.Errorf("invalid interval %q: must be one of day, week, month, year", s)
}

// maxCount returns the largest Count accepted for i, or 0 if i is not a valid
// interval.
func (i Interval) maxCount() int {
	switch i {
	case Day:
		return MaxDayCount
	case Week:
		return MaxWeekCount
	case Month:
		return MaxMonthCount
	case Year:
		return MaxYearCount
	}
	return 0
}

// Recurrence describes when a subscription is billed: every Count Intervals,
// starting at Anchor, with calendar arithmetic done in Location.
//
// The calendar rules, all evaluated in Location:
//
//   - Period 0 starts exactly at Anchor.
//   - Period k starts on the anchor's local date plus k*Count days (Day), weeks
//     (Week), months (Month) or years (Year). Days and weeks are calendar days, so
//     a one-day period that spans a DST change lasts 23 or 25 hours.
//   - Month and Year keep the anchor's day of month, clamped to the last day of
//     the target month: anchor Jan 31 gives Feb 28 (29 in leap years), Mar 31,
//     Apr 30; anchor Feb 29 billed yearly gives Feb 28 in common years.
//   - The start keeps the anchor's local wall-clock time of day (09:00 stays
//     09:00 in summer and winter). Precisely, period k starts at the first
//     instant whose local wall clock is at or after the target local date-time.
//     This has two consequences at DST changes:
//     if the time does not exist that day (spring-forward gap) the period starts
//     at the first instant after the gap, i.e. at the transition itself (02:30
//     Europe/Berlin on the last Sunday of March starts at 03:00 CEST);
//     if the time occurs twice (fall back) the period starts at its first
//     occurrence (02:30 CEST, not 02:30 CET).
//     The rule never starts a period before its local time and never later than
//     the clock allows, and it is monotonic, so period starts always increase.
//     (RFC 5545 would instead shift a gap time by the gap's length, 02:30 →
//     03:30; the transition instant is the earliest moment the period can begin.)
//     time.Date's own choice is not relied on: it is documented as unspecified
//     and is in fact inconsistent. For a gap it returns 03:30 in Europe/Berlin but
//     01:30 EST, before the gap, in America/New_York; for a repeated time it
//     returns the second occurrence in Europe/Berlin but the first in
//     America/New_York. localToInstant corrects its result.
//
// A nil Location means UTC. Billing code never relies on it: a stored
// subscription carries its own zone name, and New loads it.
//
// The methods panic if Interval is not one of the four constants or Count < 1
// (an unvalidated Recurrence is a programming error: guessing a schedule would
// bill the wrong periods). Call Validate when loading subscriptions.
type Recurrence struct {
	Anchor   time.Time
	Interval Interval
	Count    int
	Location *time.Location
}

// Validate reports every problem with r, each prefixed by the subscription CSV
// column it comes from so that import errors point at the right field.
func (r Recurrence) Validate() error {
	var errs []error
	switch {
	case r.Anchor.IsZero():
		errs = append(errs, errors.New("anchor: required"))
	case r.Anchor.Year() < 1 || r.Anchor.Year() > 9999:
		// RFC 3339 cannot express other years, so such an anchor could not be
		// exported or re-imported.
		errs = append(errs, fmt.Errorf("anchor: year %d outside 0001..9999", r.Anchor.Year()))
	}
	if most := r.Interval.maxCount(); most == 0 {
		errs = append(errs, fmt.Errorf("interval: invalid interval %q: must be one of day, week, month, year", string(r.Interval)))
	} else if r.Count < 1 || r.Count > most {
		errs = append(errs, fmt.Errorf("interval_count: %d outside 1..%d for interval %q", r.Count, most, string(r.Interval)))
	}
	return errors.Join(errs...)
}

func (r Recurrence) location() *time.Location {
	if r.Location == nil {
		return time.UTC
	}
	return r.Location
}

func (r Recurrence) mustBeValid() {
	if r.Count < 1 || r.Interval.maxCount() == 0 {
		panic(fmt.Sprintf("period: invalid Recurrence (interval %q, count %d); call Validate first", string(r.Interval), r.Count))
	}
}

// PeriodStart returns the start of period k, in UTC. See Recurrence for the
// calendar rules. It is O(1) and does not allocate, because the billing sweep
// evaluates it for every subscription on every tick.
//
// k is meant to be >= 0; a negative k extrapolates the same rules backwards
// from the anchor. Results are meaningful while the period start stays within
// the years time.Time can represent, i.e. for any realistic k.
func (r Recurrence) PeriodStart(k int) time.Time {
	r.mustBeValid()
	if k == 0 {
		// The anchor is the instant of the first charge, even when its wall
		// clock is the second occurrence of a repeated hour.
		return r.Anchor.UTC()
	}
	loc := r.location()
	// Read the anchor's local fields from a UTC copy shifted by its offset: the
	// accessors on a UTC time skip the zone lookup each would otherwise repeat.
	_, off := r.Anchor.In(loc).Zone()
	w := r.Anchor.UTC().Add(time.Duration(off) * time.Second)
	y, m, d := w.Date()
	hh, mm, ss := w.Clock()
	ns := w.Nanosecond()

	n := k * r.Count
	switch r.Interval {
	case Day:
		d += n // time.Date normalises the day overflow into later months.
	case Week:
		d += 7 * n
	case Month:
		mi := int(m) - 1 + n
		y += floorDiv(mi, 12)
		m = time.Month(mi - floorDiv(mi, 12)*12 + 1)
		d = min(d, daysIn(y, m))
	case Year:
		y += n
		d = min(d, daysIn(y, m))
	}
	return localToInstant(y, m, d, hh, mm, ss, ns, loc).UTC()
}

// Period returns the bounds of period k: [start, end), where end is the start
// of period k+1.
func (r Recurrence) Period(k int) (start, end time.Time) {
	return r.PeriodStart(k), r.PeriodStart(k + 1)
}

// Due returns the indexes of the periods that are due at now, given that
// periods [0, next) were already billed: every k >= next with
// PeriodStart(k) <= now, in increasing order, and at most limit of them
// (limit <= 0 means no cap). A capped result lets a sweep bill a subscription
// that missed many periods (the daemon was down, or the anchor was imported in
// the past) in bounded batches; the caller advances next by len(result) and
// gets the rest on the next call. A negative next is treated as 0.
//
// The common case, nothing due, costs one PeriodStart and does not allocate.
func (r Recurrence) Due(next int, now time.Time, limit int) []int {
	next = max(next, 0)
	if r.PeriodStart(next).After(now) {
		return nil
	}
	end := r.IndexAt(now)
	if end <= next {
		// Only reachable when k*Count overflows for an absurd next (a corrupt
		// row); report nothing due rather than panic inside the sweep.
		return nil
	}
	if limit > 0 && end-next > limit {
		end = next + limit
	}
	due := make([]int, 0, end-next)
	for k := next; k < end; k++ {
		due = append(due, k)
	}
	return due
}

// IndexAt returns the number of periods that have started by t: the smallest
// k with PeriodStart(k) > t (0 if t is before the anchor). A sweep uses it to
// find where to resume and how far behind a subscription is.
//
// It estimates k from the calendar distance between the anchor and t, which
// is off by at most one or two, and corrects the estimate with PeriodStart, so
// it costs a handful of PeriodStart calls whatever the age of the anchor.
func (r Recurrence) IndexAt(t time.Time) int {
	r.mustBeValid()
	if t.Before(r.Anchor) {
		return 0
	}
	loc := r.location()
	ay, am, ad := r.Anchor.In(loc).Date()
	ty, tm, td := t.In(loc).Date()
	var k int
	switch r.Interval {
	case Day:
		k = (civilDay(ty, tm, td) - civilDay(ay, am, ad)) / r.Count
	case Week:
		k = (civilDay(ty, tm, td) - civilDay(ay, am, ad)) / (7 * r.Count)
	case Month:
		k = ((ty-ay)*12 + int(tm) - int(am)) / r.Count
	case Year:
		k = (ty - ay) / r.Count
	}
	// Establish PeriodStart(k) <= t < PeriodStart(k+1). Period starts strictly
	// increase and PeriodStart(0) <= t, so both loops terminate.
	k = max(k, 0)
	for k > 0 && r.PeriodStart(k).After(t) {
		k--
	}
	for !r.PeriodStart(k + 1).After(t) {
		k++
	}
	return k + 1
}

// maxOverlap bounds how far from a zone transition a wall-clock time can be
// skipped or repeated: the size of the offset change. Today's DST changes are at
// most an hour; historical ones in the tz database (date-line moves) approach a
// day. Two days leaves margin.
const maxOverlap = 48 * 60 * 60

// localToInstant returns the first instant whose wall clock in loc is at or
// after the given local date-time (fields may overflow, as for time.Date).
// For a wall clock that exists once this is the usual conversion; for one that
// occurs twice it is the first occurrence; for one inside a gap it is the
// transition instant that ends the gap. This definition is monotonic in the
// local date-time, so later targets never map to earlier instants.
func localToInstant(y int, m time.Month, d, hh, mm, ss, ns int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, hh, mm, ss, ns, loc)
	if loc == time.UTC {
		return t
	}
	sec := t.Unix()
	start, end := t.ZoneBounds()
	if (start.IsZero() || sec-start.Unix() >= maxOverlap) && (end.IsZero() || end.Unix()-sec >= maxOverlap) {
		// No offset change near t, so the wall clock exists exactly once and
		// time.Date found it. This is the common case and costs no further
		// zone lookups.
		return t
	}
	want := time.Date(y, m, d, hh, mm, ss, 0, time.UTC).Unix() // the target wall clock, as seconds
	_, off := t.Zone()
	switch got := sec + int64(off); {
	case got < want:
		// time.Date applied the post-gap offset, landing before the
		// transition with a wall clock earlier than asked: the target is in
		// the gap that starts where t's zone period ends.
		if !end.IsZero() {
			return end
		}
	case got > want:
		// It applied the pre-gap offset, landing after the transition: the
		// gap ends where t's zone period starts.
		if !start.IsZero() {
			return start
		}
	default:
		// t has the requested wall clock. If t lies shortly after a
		// transition that turned clocks back, the same wall clock also
		// occurred under the previous offset; prefer that first occurrence.
		if start.IsZero() || sec-start.Unix() >= maxOverlap {
			return t
		}
		_, prevOff := start.Add(-time.Second).Zone()
		if prevOff <= off {
			return t
		}
		c := want - int64(prevOff)
		if c >= start.Unix() {
			return t
		}
		first := time.Unix(c, int64(ns)).In(loc)
		if _, o := first.Zone(); o == prevOff {
			return first
		}
	}
	return t
}

// daysIn returns the number of days in month m of year y (proleptic
// Gregorian, as the time package uses).
func daysIn(y int, m time.Month) int {
	switch m {
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// civilDay numbers calendar dates consecutively (days since 1970-01-01), so
// the difference of two civilDays is a number of calendar days regardless of
// DST.
func civilDay(y int, m time.Month, d int) int {
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / (24 * 60 * 60))
}

// floorDiv is integer division rounding towards negative infinity, so that
// month arithmetic for negative k still yields months 1..12.
func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// MaxCount returns the largest Count accepted for i (Validate's bound), or 0
// if i is not a valid interval.
func (i Interval) MaxCount() int { return i.maxCount() }
