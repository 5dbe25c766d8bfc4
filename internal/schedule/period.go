package schedule

// The billing period math lives in internal/schedule/period. These aliases keep
// the rest of this package (and its callers) compiling against the old names;
// they hold no logic of their own, so there is one implementation of each rule.

import "github.com/billingd/billingd/internal/schedule/period"

// Interval is period.Interval.
type Interval = period.Interval

// Recurrence is period.Recurrence.
type Recurrence = period.Recurrence

// The billing cycle units, as period defines them.
const (
	Day   = period.Day
	Week  = period.Week
	Month = period.Month
	Year  = period.Year
)

// The interval_count bounds, as period defines them.
const (
	MaxDayCount   = period.MaxDayCount
	MaxWeekCount  = period.MaxWeekCount
	MaxMonthCount = period.MaxMonthCount
	MaxYearCount  = period.MaxYearCount
)

// ParseInterval is period.ParseInterval.
var ParseInterval = period.ParseInterval

// LoadZone is period.LoadZone.
var LoadZone = period.LoadZone

// NewRecurrence is period.New: a stored subscription's Recurrence, in its own zone.
var NewRecurrence = period.New
