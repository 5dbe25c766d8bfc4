package period

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
	_ "time/tzdata" // the tests must not depend on the host's zoneinfo

	"github.com/stretchr/testify/require"
)

func loadLoc(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(tb, err)
	return loc
}

func mustTime(tb testing.TB, s string) time.Time {
	tb.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(tb, err)
	return ts
}

func TestParseInterval(t *testing.T) {
	for _, s := range []string{"day", "week", "month", "year"} {
		t.Run(s, func(t *testing.T) {
			got, err := ParseInterval(s)
			require.NoError(t, err)
			require.Equal(t, Interval(s), got)
		})
	}
	for _, s := range []string{"", "Month", "DAY", "days", "monthly", " week", "quarter"} {
		t.Run("invalid "+s, func(t *testing.T) {
			_, err := ParseInterval(s)
			require.ErrorContains(t, err, "day, week, month, year")
		})
	}
}

func TestRecurrenceValidate(t *testing.T) {
	anchor := mustTime(t, "2024-01-31T09:00:00+01:00")
	tests := []struct {
		name    string
		r       Recurrence
		wantErr []string // substrings; empty means valid
	}{
		{"month", Recurrence{Anchor: anchor, Interval: Month, Count: 1, Location: time.UTC}, nil},
		{"nil location means UTC", Recurrence{Anchor: anchor, Interval: Day, Count: 1}, nil},
		{"max day", Recurrence{Anchor: anchor, Interval: Day, Count: MaxDayCount}, nil},
		{"max week", Recurrence{Anchor: anchor, Interval: Week, Count: MaxWeekCount}, nil},
		{"max month", Recurrence{Anchor: anchor, Interval: Month, Count: MaxMonthCount}, nil},
		{"max year", Recurrence{Anchor: anchor, Interval: Year, Count: MaxYearCount}, nil},
		{"zero count", Recurrence{Anchor: anchor, Interval: Month, Count: 0}, []string{"interval_count: 0 outside 1..36"}},
		{"negative count", Recurrence{Anchor: anchor, Interval: Week, Count: -1}, []string{"interval_count: -1 outside 1..156"}},
		{"too many days", Recurrence{Anchor: anchor, Interval: Day, Count: MaxDayCount + 1}, []string{"interval_count: 1096 outside 1..1095"}},
		{"too many years", Recurrence{Anchor: anchor, Interval: Year, Count: 4}, []string{"interval_count: 4 outside 1..3"}},
		{"bad interval", Recurrence{Anchor: anchor, Interval: "Month", Count: 1}, []string{`interval: invalid interval "Month"`}},
		{"zero anchor", Recurrence{Interval: Month, Count: 1}, []string{"anchor: required"}},
		{"anchor year 10000", Recurrence{Anchor: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Interval: Month, Count: 1}, []string{"anchor: year 10000"}},
		{"everything wrong", Recurrence{Interval: "fortnight"}, []string{"anchor: required", "interval: invalid"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			if len(tc.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tc.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestLoadZone(t *testing.T) {
	for _, name := range []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Etc/GMT+5"} {
		t.Run(name, func(t *testing.T) {
			loc, err := LoadZone(name)
			require.NoError(t, err)
			require.Equal(t, name, loc.String())
			again, err := LoadZone(name)
			require.NoError(t, err)
			require.Same(t, loc, again, "loaded once, then cached")
		})
	}
	for _, tc := range []struct{ name, want string }{
		{"", "time zone is required"},
		{"Local", "depends on the host"},
		{"Mars/Olympus_Mons", `unknown time zone "Mars/Olympus_Mons"`},
		{"europe/berlin", "unknown time zone"},
		{"+01:00", "unknown time zone"},
		{"../../etc/passwd", "unknown time zone"},
	} {
		t.Run("invalid "+tc.name, func(t *testing.T) {
			_, err := LoadZone(tc.name)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestNew(t *testing.T) {
	anchor := mustTime(t, "2024-01-31T23:30:00-05:00")
	t.Run("valid terms read the calendar in the zone", func(t *testing.T) {
		r, err := New(anchor, "month", 1, "America/New_York")
		require.NoError(t, err)
		require.Equal(t, "America/New_York", r.Location.String())
		require.Equal(t, "2024-02-29T23:30:00-05:00", r.PeriodStart(1).In(r.Location).Format(time.RFC3339))
		utc, err := New(anchor, "month", 1, "UTC")
		require.NoError(t, err)
		require.Equal(t, "2024-03-01T04:30:00Z", utc.PeriodStart(1).Format(time.RFC3339), "the same instant on UTC's calendar is the 1st")
	})
	for _, tc := range []struct {
		name, interval string
		count          int
		zone, want     string
	}{
		{"bad interval", "monthly", 1, "UTC", "interval: invalid interval"},
		{"bad count", "month", 0, "UTC", "interval_count: 0 outside 1..36"},
		{"missing zone", "month", 1, "", "timezone: time zone is required"},
		{"bad zone", "month", 1, "Nowhere/Land", "timezone: unknown time zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(anchor, tc.interval, tc.count, tc.zone)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestInvalidRecurrencePanics(t *testing.T) {
	anchor := mustTime(t, "2024-01-31T09:00:00Z")
	for _, r := range []Recurrence{
		{Anchor: anchor, Interval: Month, Count: 0},
		{Anchor: anchor, Interval: "", Count: 1},
	} {
		require.Panics(t, func() { r.PeriodStart(1) })
		require.Panics(t, func() { r.IndexAt(anchor.Add(time.Hour)) })
	}
}

// expectStarts asserts PeriodStart(k) for k = 0, 1, … against want (RFC 3339,
// with the local offset), and that every result is in UTC.
func expectStarts(t *testing.T, r Recurrence, want []string) {
	t.Helper()
	for k, w := range want {
		got := r.PeriodStart(k)
		require.Equal(t, time.UTC, got.Location(), "period %d", k)
		require.Equal(t, w, got.In(r.location()).Format(time.RFC3339Nano), "period %d", k)
	}
}

func TestPeriodStartMonthEndClamping(t *testing.T) {
	tests := []struct {
		name   string
		anchor string
		iv     Interval
		count  int
		want   []string
	}{
		{
			name: "Jan 31 monthly through a non-leap and a leap year", anchor: "2023-01-31T10:00:00Z", iv: Month, count: 1,
			want: []string{
				"2023-01-31T10:00:00Z", "2023-02-28T10:00:00Z", "2023-03-31T10:00:00Z", "2023-04-30T10:00:00Z",
				"2023-05-31T10:00:00Z", "2023-06-30T10:00:00Z", "2023-07-31T10:00:00Z", "2023-08-31T10:00:00Z",
				"2023-09-30T10:00:00Z", "2023-10-31T10:00:00Z", "2023-11-30T10:00:00Z", "2023-12-31T10:00:00Z",
				"2024-01-31T10:00:00Z", "2024-02-29T10:00:00Z", "2024-03-31T10:00:00Z", "2024-04-30T10:00:00Z",
			},
		},
		{
			name: "Jan 30 monthly", anchor: "2025-01-30T00:00:00Z", iv: Month, count: 1,
			want: []string{"2025-01-30T00:00:00Z", "2025-02-28T00:00:00Z", "2025-03-30T00:00:00Z", "2025-04-30T00:00:00Z"},
		},
		{
			name: "Jan 29 monthly, non-leap", anchor: "2023-01-29T23:59:59.5Z", iv: Month, count: 1,
			want: []string{"2023-01-29T23:59:59.5Z", "2023-02-28T23:59:59.5Z", "2023-03-29T23:59:59.5Z"},
		},
		{
			name: "Jan 31 every 3 months", anchor: "2023-01-31T10:00:00Z", iv: Month, count: 3,
			want: []string{
				"2023-01-31T10:00:00Z", "2023-04-30T10:00:00Z", "2023-07-31T10:00:00Z", "2023-10-31T10:00:00Z",
				"2024-01-31T10:00:00Z", "2024-04-30T10:00:00Z",
			},
		},
		{
			name: "Nov 30 every 3 months hits Feb 29", anchor: "2023-11-30T08:00:00Z", iv: Month, count: 3,
			want: []string{"2023-11-30T08:00:00Z", "2024-02-29T08:00:00Z", "2024-05-30T08:00:00Z", "2024-08-30T08:00:00Z", "2024-11-30T08:00:00Z", "2025-02-28T08:00:00Z"},
		},
		{
			name: "Aug 31 every 6 months", anchor: "2024-08-31T12:00:00Z", iv: Month, count: 6,
			want: []string{"2024-08-31T12:00:00Z", "2025-02-28T12:00:00Z", "2025-08-31T12:00:00Z", "2026-02-28T12:00:00Z"},
		},
		{
			name: "Feb 29 yearly", anchor: "2024-02-29T12:00:00Z", iv: Year, count: 1,
			want: []string{"2024-02-29T12:00:00Z", "2025-02-28T12:00:00Z", "2026-02-28T12:00:00Z", "2027-02-28T12:00:00Z", "2028-02-29T12:00:00Z", "2029-02-28T12:00:00Z"},
		},
		{
			name: "Feb 29 every 2 years", anchor: "2096-02-29T12:00:00Z", iv: Year, count: 2,
			want: []string{"2096-02-29T12:00:00Z", "2098-02-28T12:00:00Z", "2100-02-28T12:00:00Z", "2102-02-28T12:00:00Z", "2104-02-29T12:00:00Z"},
		},
		{
			name: "Dec 31 monthly crosses the year", anchor: "2024-12-31T06:00:00Z", iv: Month, count: 1,
			want: []string{"2024-12-31T06:00:00Z", "2025-01-31T06:00:00Z", "2025-02-28T06:00:00Z", "2025-03-31T06:00:00Z"},
		},
		{
			name: "Dec 31 every 14 months", anchor: "2024-12-31T06:00:00Z", iv: Month, count: 14,
			want: []string{"2024-12-31T06:00:00Z", "2026-02-28T06:00:00Z", "2027-04-30T06:00:00Z", "2028-06-30T06:00:00Z"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Recurrence{Anchor: mustTime(t, tc.anchor), Interval: tc.iv, Count: tc.count, Location: time.UTC}
			require.NoError(t, r.Validate())
			expectStarts(t, r, tc.want)
		})
	}

	t.Run("no drift: period k does not depend on the clamped periods before it", func(t *testing.T) {
		r := Recurrence{Anchor: mustTime(t, "2023-01-31T10:00:00Z"), Interval: Month, Count: 1}
		require.Equal(t, mustTime(t, "2033-01-31T10:00:00Z"), r.PeriodStart(120))
		require.Equal(t, mustTime(t, "2032-02-29T10:00:00Z"), r.PeriodStart(109))
	})
}

func TestPeriodStartDST(t *testing.T) {
	// 2024 transitions:
	//   Europe/Berlin     spring 03-31 02:00 CET→03:00 CEST (01:00Z); fall 10-27 03:00 CEST→02:00 CET (01:00Z)
	//   America/New_York  spring 03-10 02:00 EST→03:00 EDT (07:00Z); fall 11-03 02:00 EDT→01:00 EST (06:00Z)
	type row struct{ local, utc string }
	tests := []struct {
		name   string
		tz     string
		anchor string
		iv     Interval
		want   []row
	}{
		{
			name: "Berlin daily 09:00 across spring forward (23h day)", tz: "Europe/Berlin", anchor: "2024-03-30T09:00:00+01:00", iv: Day,
			want: []row{{"2024-03-30T09:00:00+01:00", "2024-03-30T08:00:00Z"}, {"2024-03-31T09:00:00+02:00", "2024-03-31T07:00:00Z"}, {"2024-04-01T09:00:00+02:00", "2024-04-01T07:00:00Z"}},
		},
		{
			name: "Berlin daily 09:00 across fall back (25h day)", tz: "Europe/Berlin", anchor: "2024-10-26T09:00:00+02:00", iv: Day,
			want: []row{{"2024-10-26T09:00:00+02:00", "2024-10-26T07:00:00Z"}, {"2024-10-27T09:00:00+01:00", "2024-10-27T08:00:00Z"}, {"2024-10-28T09:00:00+01:00", "2024-10-28T08:00:00Z"}},
		},
		{
			name: "Berlin daily 02:30: gap → first instant after it", tz: "Europe/Berlin", anchor: "2024-03-30T02:30:00+01:00", iv: Day,
			want: []row{{"2024-03-30T02:30:00+01:00", "2024-03-30T01:30:00Z"}, {"2024-03-31T03:00:00+02:00", "2024-03-31T01:00:00Z"}, {"2024-04-01T02:30:00+02:00", "2024-04-01T00:30:00Z"}},
		},
		{
			name: "Berlin daily 02:30: repeated hour → first occurrence", tz: "Europe/Berlin", anchor: "2024-10-26T02:30:00+02:00", iv: Day,
			want: []row{{"2024-10-26T02:30:00+02:00", "2024-10-26T00:30:00Z"}, {"2024-10-27T02:30:00+02:00", "2024-10-27T00:30:00Z"}, {"2024-10-28T02:30:00+01:00", "2024-10-28T01:30:00Z"}},
		},
		{
			name: "Berlin monthly 09:00 keeps local time all year", tz: "Europe/Berlin", anchor: "2024-01-15T09:00:00+01:00", iv: Month,
			want: []row{
				{"2024-01-15T09:00:00+01:00", "2024-01-15T08:00:00Z"}, {"2024-02-15T09:00:00+01:00", "2024-02-15T08:00:00Z"},
				{"2024-03-15T09:00:00+01:00", "2024-03-15T08:00:00Z"}, {"2024-04-15T09:00:00+02:00", "2024-04-15T07:00:00Z"},
				{"2024-05-15T09:00:00+02:00", "2024-05-15T07:00:00Z"}, {"2024-06-15T09:00:00+02:00", "2024-06-15T07:00:00Z"},
				{"2024-07-15T09:00:00+02:00", "2024-07-15T07:00:00Z"}, {"2024-08-15T09:00:00+02:00", "2024-08-15T07:00:00Z"},
				{"2024-09-15T09:00:00+02:00", "2024-09-15T07:00:00Z"}, {"2024-10-15T09:00:00+02:00", "2024-10-15T07:00:00Z"},
				{"2024-11-15T09:00:00+01:00", "2024-11-15T08:00:00Z"},
			},
		},
		{
			name: "Berlin monthly 02:30 on the 31st lands in the March gap", tz: "Europe/Berlin", anchor: "2024-01-31T02:30:00+01:00", iv: Month,
			want: []row{{"2024-01-31T02:30:00+01:00", "2024-01-31T01:30:00Z"}, {"2024-02-29T02:30:00+01:00", "2024-02-29T01:30:00Z"}, {"2024-03-31T03:00:00+02:00", "2024-03-31T01:00:00Z"}, {"2024-04-30T02:30:00+02:00", "2024-04-30T00:30:00Z"}},
		},
		{
			name: "Berlin monthly 02:30 on the 27th hits the repeated hour", tz: "Europe/Berlin", anchor: "2024-09-27T02:30:00+02:00", iv: Month,
			want: []row{{"2024-09-27T02:30:00+02:00", "2024-09-27T00:30:00Z"}, {"2024-10-27T02:30:00+02:00", "2024-10-27T00:30:00Z"}, {"2024-11-27T02:30:00+01:00", "2024-11-27T01:30:00Z"}},
		},
		{
			name: "Berlin anchor on the second occurrence: period 0 is the anchor itself", tz: "Europe/Berlin", anchor: "2024-10-27T02:30:00+01:00", iv: Day,
			want: []row{{"2024-10-27T02:30:00+01:00", "2024-10-27T01:30:00Z"}, {"2024-10-28T02:30:00+01:00", "2024-10-28T01:30:00Z"}},
		},
		{
			name: "New York daily 09:00 across spring forward", tz: "America/New_York", anchor: "2024-03-09T09:00:00-05:00", iv: Day,
			want: []row{{"2024-03-09T09:00:00-05:00", "2024-03-09T14:00:00Z"}, {"2024-03-10T09:00:00-04:00", "2024-03-10T13:00:00Z"}, {"2024-03-11T09:00:00-04:00", "2024-03-11T13:00:00Z"}},
		},
		{
			name: "New York daily 09:00 across fall back", tz: "America/New_York", anchor: "2024-11-02T09:00:00-04:00", iv: Day,
			want: []row{{"2024-11-02T09:00:00-04:00", "2024-11-02T13:00:00Z"}, {"2024-11-03T09:00:00-05:00", "2024-11-03T14:00:00Z"}, {"2024-11-04T09:00:00-05:00", "2024-11-04T14:00:00Z"}},
		},
		{
			// time.Date alone would answer 01:30 EST here, before the gap.
			name: "New York daily 02:30: gap → first instant after it", tz: "America/New_York", anchor: "2024-03-09T02:30:00-05:00", iv: Day,
			want: []row{{"2024-03-09T02:30:00-05:00", "2024-03-09T07:30:00Z"}, {"2024-03-10T03:00:00-04:00", "2024-03-10T07:00:00Z"}, {"2024-03-11T02:30:00-04:00", "2024-03-11T06:30:00Z"}},
		},
		{
			name: "New York daily 02:30 on fall-back day is unambiguous", tz: "America/New_York", anchor: "2024-11-02T02:30:00-04:00", iv: Day,
			want: []row{{"2024-11-02T02:30:00-04:00", "2024-11-02T06:30:00Z"}, {"2024-11-03T02:30:00-05:00", "2024-11-03T07:30:00Z"}, {"2024-11-04T02:30:00-05:00", "2024-11-04T07:30:00Z"}},
		},
		{
			name: "New York daily 01:30: repeated hour → first occurrence", tz: "America/New_York", anchor: "2024-11-02T01:30:00-04:00", iv: Day,
			want: []row{{"2024-11-02T01:30:00-04:00", "2024-11-02T05:30:00Z"}, {"2024-11-03T01:30:00-04:00", "2024-11-03T05:30:00Z"}, {"2024-11-04T01:30:00-05:00", "2024-11-04T06:30:00Z"}},
		},
		{
			name: "New York monthly 09:00 keeps local time", tz: "America/New_York", anchor: "2024-02-10T09:00:00-05:00", iv: Month,
			want: []row{
				{"2024-02-10T09:00:00-05:00", "2024-02-10T14:00:00Z"}, {"2024-03-10T09:00:00-04:00", "2024-03-10T13:00:00Z"},
				{"2024-04-10T09:00:00-04:00", "2024-04-10T13:00:00Z"}, {"2024-05-10T09:00:00-04:00", "2024-05-10T13:00:00Z"},
				{"2024-06-10T09:00:00-04:00", "2024-06-10T13:00:00Z"}, {"2024-07-10T09:00:00-04:00", "2024-07-10T13:00:00Z"},
				{"2024-08-10T09:00:00-04:00", "2024-08-10T13:00:00Z"}, {"2024-09-10T09:00:00-04:00", "2024-09-10T13:00:00Z"},
				{"2024-10-10T09:00:00-04:00", "2024-10-10T13:00:00Z"}, {"2024-11-10T09:00:00-05:00", "2024-11-10T14:00:00Z"},
			},
		},
		{
			name: "New York monthly 02:30 on the 10th lands in the March gap", tz: "America/New_York", anchor: "2024-02-10T02:30:00-05:00", iv: Month,
			want: []row{{"2024-02-10T02:30:00-05:00", "2024-02-10T07:30:00Z"}, {"2024-03-10T03:00:00-04:00", "2024-03-10T07:00:00Z"}, {"2024-04-10T02:30:00-04:00", "2024-04-10T06:30:00Z"}},
		},
		{
			name: "New York monthly 01:30 on the 3rd hits the repeated hour", tz: "America/New_York", anchor: "2024-10-03T01:30:00-04:00", iv: Month,
			want: []row{{"2024-10-03T01:30:00-04:00", "2024-10-03T05:30:00Z"}, {"2024-11-03T01:30:00-04:00", "2024-11-03T05:30:00Z"}, {"2024-12-03T01:30:00-05:00", "2024-12-03T06:30:00Z"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loc := loadLoc(t, tc.tz)
			r := Recurrence{Anchor: mustTime(t, tc.anchor), Interval: tc.iv, Count: 1, Location: loc}
			require.NoError(t, r.Validate())
			for k, w := range tc.want {
				got := r.PeriodStart(k)
				require.Equal(t, w.utc, got.Format(time.RFC3339), "period %d in UTC", k)
				require.Equal(t, w.local, got.In(loc).Format(time.RFC3339), "period %d local wall clock", k)
			}
		})
	}

	t.Run("day periods span 23 and 25 hours", func(t *testing.T) {
		loc := loadLoc(t, "Europe/Berlin")
		spring := Recurrence{Anchor: mustTime(t, "2024-03-30T09:00:00+01:00"), Interval: Day, Count: 1, Location: loc}
		start, end := spring.Period(0)
		require.Equal(t, 23*time.Hour, end.Sub(start))
		fall := Recurrence{Anchor: mustTime(t, "2024-10-26T09:00:00+02:00"), Interval: Day, Count: 1, Location: loc}
		start, end = fall.Period(0)
		require.Equal(t, 25*time.Hour, end.Sub(start))
	})

	t.Run("30-minute DST and +13:45 zones", func(t *testing.T) {
		lh := loadLoc(t, "Australia/Lord_Howe") // 2024-10-06 02:00 → 02:30 (+10:30 → +11); 2024-04-07 02:00 → 01:30
		r := Recurrence{Anchor: mustTime(t, "2024-10-05T02:15:00+10:30"), Interval: Day, Count: 1, Location: lh}
		require.Equal(t, "2024-10-06T02:30:00+11:00", r.PeriodStart(1).In(lh).Format(time.RFC3339))
		r = Recurrence{Anchor: mustTime(t, "2024-04-06T01:45:00+11:00"), Interval: Day, Count: 1, Location: lh}
		require.Equal(t, "2024-04-07T01:45:00+11:00", r.PeriodStart(1).In(lh).Format(time.RFC3339))
		require.Equal(t, "2024-04-08T01:45:00+10:30", r.PeriodStart(2).In(lh).Format(time.RFC3339))

		ch := loadLoc(t, "Pacific/Chatham") // 2024-09-29 02:45 → 03:45 (+12:45 → +13:45); 2024-04-07 03:45 → 02:45
		r = Recurrence{Anchor: mustTime(t, "2024-08-29T03:00:00+12:45"), Interval: Month, Count: 1, Location: ch}
		require.Equal(t, "2024-09-29T03:45:00+13:45", r.PeriodStart(1).In(ch).Format(time.RFC3339))
		r = Recurrence{Anchor: mustTime(t, "2024-03-07T02:50:00+13:45"), Interval: Month, Count: 1, Location: ch}
		require.Equal(t, "2024-04-07T02:50:00+13:45", r.PeriodStart(1).In(ch).Format(time.RFC3339))
	})
}

func TestPeriodStartDayAndWeek(t *testing.T) {
	berlin := loadLoc(t, "Europe/Berlin")
	ny := loadLoc(t, "America/New_York")
	tests := []struct {
		name   string
		loc    *time.Location
		anchor string
		iv     Interval
		count  int
		want   []string
	}{
		{
			name: "every 2 weeks", loc: time.UTC, anchor: "2024-01-01T12:00:00Z", iv: Week, count: 2,
			want: []string{"2024-01-01T12:00:00Z", "2024-01-15T12:00:00Z", "2024-01-29T12:00:00Z", "2024-02-12T12:00:00Z", "2024-02-26T12:00:00Z", "2024-03-11T12:00:00Z"},
		},
		{
			name: "weekly across spring forward keeps 09:00", loc: berlin, anchor: "2024-03-25T09:00:00+01:00", iv: Week, count: 1,
			want: []string{"2024-03-25T09:00:00+01:00", "2024-04-01T09:00:00+02:00", "2024-04-08T09:00:00+02:00"},
		},
		{
			name: "every 4 weeks across the year", loc: ny, anchor: "2024-12-20T18:00:00-05:00", iv: Week, count: 4,
			want: []string{"2024-12-20T18:00:00-05:00", "2025-01-17T18:00:00-05:00", "2025-02-14T18:00:00-05:00", "2025-03-14T18:00:00-04:00"},
		},
		{
			name: "every 10 days across Feb 29", loc: time.UTC, anchor: "2024-02-20T00:00:00Z", iv: Day, count: 10,
			want: []string{"2024-02-20T00:00:00Z", "2024-03-01T00:00:00Z", "2024-03-11T00:00:00Z", "2024-03-21T00:00:00Z"},
		},
		{
			name: "every 3 days across fall back", loc: ny, anchor: "2024-11-01T23:30:00-04:00", iv: Day, count: 3,
			want: []string{"2024-11-01T23:30:00-04:00", "2024-11-04T23:30:00-05:00", "2024-11-07T23:30:00-05:00"},
		},
		{
			name: "daily keeps sub-second anchor precision", loc: berlin, anchor: "2024-03-30T02:30:00.25+01:00", iv: Day, count: 1,
			want: []string{"2024-03-30T02:30:00.25+01:00", "2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00.25+02:00"},
		},
		{
			name: "every 365 days drifts off the date in leap years, as calendar days should", loc: time.UTC, anchor: "2023-03-01T00:00:00Z", iv: Day, count: 365,
			want: []string{"2023-03-01T00:00:00Z", "2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Recurrence{Anchor: mustTime(t, tc.anchor), Interval: tc.iv, Count: tc.count, Location: tc.loc}
			require.NoError(t, r.Validate())
			expectStarts(t, r, tc.want)
		})
	}
}

func TestNilLocationIsUTC(t *testing.T) {
	anchor := mustTime(t, "2024-01-31T09:00:00+01:00")
	withNil := Recurrence{Anchor: anchor, Interval: Month, Count: 1}
	withUTC := Recurrence{Anchor: anchor, Interval: Month, Count: 1, Location: time.UTC}
	for k := range 30 {
		require.Equal(t, withUTC.PeriodStart(k), withNil.PeriodStart(k))
	}
	require.Equal(t, mustTime(t, "2024-02-29T08:00:00Z"), withNil.PeriodStart(1))
}

func TestPeriod(t *testing.T) {
	r := Recurrence{Anchor: mustTime(t, "2024-01-31T10:00:00Z"), Interval: Month, Count: 1}
	start, end := r.Period(1)
	require.Equal(t, mustTime(t, "2024-02-29T10:00:00Z"), start)
	require.Equal(t, mustTime(t, "2024-03-31T10:00:00Z"), end)
}

func TestDue(t *testing.T) {
	berlin := loadLoc(t, "Europe/Berlin")
	// Monthly on the 15th at 09:00 Berlin.
	r := Recurrence{Anchor: mustTime(t, "2024-01-15T09:00:00+01:00"), Interval: Month, Count: 1, Location: berlin}
	at := func(s string) time.Time { return mustTime(t, s) }

	t.Run("table", func(t *testing.T) {
		tests := []struct {
			name  string
			next  int
			now   time.Time
			limit int
			want  []int
		}{
			{"before the anchor", 0, at("2024-01-15T07:59:59Z"), 0, nil},
			{"exactly at the anchor", 0, at("2024-01-15T08:00:00Z"), 0, []int{0}},
			{"first period already billed", 1, at("2024-02-01T00:00:00Z"), 0, nil},
			{"1ns before period 1", 1, at("2024-02-15T08:00:00Z").Add(-time.Nanosecond), 0, nil},
			{"exactly at period 1", 1, at("2024-02-15T08:00:00Z"), 0, []int{1}},
			{"period 3 in summer time starts at 07:00Z", 3, at("2024-04-15T07:00:00Z"), 0, []int{3}},
			{"nothing billed, far behind", 0, at("2024-06-01T00:00:00Z"), 0, []int{0, 1, 2, 3, 4}},
			{"capped", 0, at("2024-06-01T00:00:00Z"), 2, []int{0, 1}},
			{"cap larger than backlog", 3, at("2024-06-01T00:00:00Z"), 10, []int{3, 4}},
			{"negative limit means no cap", 2, at("2024-06-01T00:00:00Z"), -1, []int{2, 3, 4}},
			{"negative next is treated as 0", -5, at("2024-02-20T00:00:00Z"), 0, []int{0, 1}},
			{"next ahead of now", 7, at("2024-06-01T00:00:00Z"), 0, nil},
			{"absurd next from a corrupt row", math.MaxInt, at("2024-06-01T00:00:00Z"), 0, nil},
			{"absurd next with a cap", math.MaxInt / 2, at("2024-06-01T00:00:00Z"), 3, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				require.Equal(t, tc.want, r.Due(tc.next, tc.now, tc.limit))
			})
		}
	})

	t.Run("catch-up after 3 months of downtime", func(t *testing.T) {
		// Periods 0 and 1 were billed on time; the daemon was down from
		// 2024-02-20 until 2024-05-20.
		next := 2
		require.Nil(t, r.Due(next, at("2024-02-20T00:00:00Z"), 0))
		back := at("2024-05-20T12:00:00Z")
		due := r.Due(next, back, 0)
		require.Equal(t, []int{2, 3, 4}, due, "March, April and May, each once, in order")
		for _, k := range due {
			require.False(t, r.PeriodStart(k).After(back))
		}
		next += len(due)
		require.Nil(t, r.Due(next, back, 0), "a second sweep at the same moment bills nothing")
		require.Nil(t, r.Due(next, back.Add(24*time.Hour), 0))
		require.Equal(t, []int{5}, r.Due(next, at("2024-06-15T07:00:00Z"), 0))
	})

	t.Run("catch-up in batches", func(t *testing.T) {
		now := at("2024-05-20T12:00:00Z")
		var billed []int
		next := 0
		for range 10 {
			due := r.Due(next, now, 2)
			require.LessOrEqual(t, len(due), 2)
			billed = append(billed, due...)
			next += len(due)
		}
		require.Equal(t, []int{0, 1, 2, 3, 4}, billed)
		require.Equal(t, 5, r.IndexAt(now))
	})
}

func TestIndexAt(t *testing.T) {
	berlin := loadLoc(t, "Europe/Berlin")
	ny := loadLoc(t, "America/New_York")
	recs := []Recurrence{
		{Anchor: mustTime(t, "2024-01-31T02:30:00+01:00"), Interval: Month, Count: 1, Location: berlin},
		{Anchor: mustTime(t, "1990-03-24T02:30:00+01:00"), Interval: Day, Count: 1, Location: berlin},
		{Anchor: mustTime(t, "1985-11-02T01:30:00-04:00"), Interval: Day, Count: 3, Location: ny},
		{Anchor: mustTime(t, "1980-02-29T23:59:59-05:00"), Interval: Year, Count: 1, Location: ny},
		{Anchor: mustTime(t, "2001-12-31T00:00:00Z"), Interval: Week, Count: 5},
		{Anchor: mustTime(t, "1970-01-31T12:00:00Z"), Interval: Month, Count: 7},
	}
	for _, r := range recs {
		t.Run(string(r.Interval)+" "+r.Anchor.Format(time.RFC3339), func(t *testing.T) {
			require.Equal(t, 0, r.IndexAt(r.Anchor.Add(-time.Nanosecond)))
			require.Equal(t, 0, r.IndexAt(time.Time{}))
			require.Equal(t, 1, r.IndexAt(r.Anchor))
			// Check at, just before and just after a spread of starts, up to
			// decades after the anchor.
			for _, k := range []int{1, 2, 3, 11, 12, 13, 59, 60, 61, 365, 366, 1000, 5000, 14000} {
				s := r.PeriodStart(k)
				require.Equal(t, k, r.IndexAt(s.Add(-time.Nanosecond)), "just before period %d", k)
				require.Equal(t, k+1, r.IndexAt(s), "at period %d", k)
				require.Equal(t, k+1, r.IndexAt(s.Add(time.Nanosecond)), "just after period %d", k)
			}
		})
	}
}

// wallClock returns t's wall clock in its location as a UTC time, so wall clocks
// can be compared and subtracted.
func wallClock(t time.Time) time.Time {
	_, off := t.Zone()
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// expectedTarget computes the local date-time period k should start at,
// independently of the code under test: months via AddDate on the 1st plus an
// explicit clamp, days via AddDate on a UTC calendar date.
func expectedTarget(r Recurrence, k int) time.Time {
	a := wallClock(r.Anchor.In(r.location()))
	y, m, d := a.Date()
	clock := a.Sub(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
	lastDay := func(y int, m time.Month) int { return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day() }
	var date time.Time
	switch r.Interval {
	case Day:
		date = time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, k*r.Count)
	case Week:
		date = time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 7*k*r.Count)
	case Month:
		first := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC).AddDate(0, k*r.Count, 0)
		date = time.Date(first.Year(), first.Month(), min(d, lastDay(first.Year(), first.Month())), 0, 0, 0, 0, time.UTC)
	case Year:
		date = time.Date(y+k*r.Count, m, min(d, lastDay(y+k*r.Count, m)), 0, 0, 0, 0, time.UTC)
	}
	return date.Add(clock)
}

// checkCalendar reports why s is not the correct start of period k of r, or
// "" if it is. A start other than period 0 must be the first instant whose local
// wall clock is at or after the target: its own wall clock is >= target, and
// every earlier instant's is < target. Wall clocks rise within a zone period, so
// the latest earlier instants to check are s-1ns and the last instant before
// each transition shortly before s (which is where an earlier occurrence of a
// repeated time would be).
func checkCalendar(r Recurrence, k int, s time.Time) string {
	if k == 0 {
		if !s.Equal(r.Anchor) {
			return "period 0 is not the anchor"
		}
		return ""
	}
	loc := r.location()
	target := expectedTarget(r, k)
	if wallClock(s.In(loc)).Before(target) {
		return "starts before the target local time " + target.Format("2006-01-02 15:04:05.999999999")
	}
	if !wallClock(s.Add(-time.Nanosecond).In(loc)).Before(target) {
		return "an earlier instant already has the target local time " + target.Format("2006-01-02 15:04:05.999999999")
	}
	u := s.In(loc)
	for range 4 {
		start, _ := u.ZoneBounds()
		if start.IsZero() || s.Sub(start) > 48*time.Hour {
			break
		}
		u = start.Add(-time.Nanosecond)
		if !wallClock(u).Before(target) {
			return "not the first occurrence of the target local time " + target.Format("2006-01-02 15:04:05.999999999")
		}
	}
	return ""
}

type simZone struct {
	name   string
	tricky [][2]int // wall-clock hour, minute inside or at the edge of a DST gap or repeated hour
}

var propertyZones = []simZone{
	{"UTC", [][2]int{{0, 0}, {23, 59}}},
	{"Europe/Berlin", [][2]int{{2, 0}, {2, 30}, {2, 59}, {3, 0}}},
	{"America/New_York", [][2]int{{2, 0}, {2, 30}, {1, 30}, {1, 0}}},
	{"Australia/Lord_Howe", [][2]int{{2, 0}, {2, 15}, {1, 45}, {1, 30}}},
	{"Asia/Kolkata", [][2]int{{0, 0}, {5, 30}}},
	{"Pacific/Chatham", [][2]int{{2, 45}, {3, 0}, {3, 30}, {2, 50}}},
}

// randomRecurrence builds a valid recurrence biased towards the hard cases:
// anchors on the 28th–31st and at wall-clock times that fall into DST gaps or
// repeated hours on some later period.
func randomRecurrence(rng *rand.Rand, locs []*time.Location) (Recurrence, int) {
	zi := rng.IntN(len(locs))
	loc := locs[zi]
	y := 2000 + rng.IntN(30)
	m := time.Month(1 + rng.IntN(12))
	d := 1 + rng.IntN(31)
	if rng.IntN(2) == 0 {
		d = 28 + rng.IntN(4)
	}
	d = min(d, daysIn(y, m))
	hh, mm, ss, ns := rng.IntN(24), rng.IntN(60), rng.IntN(60), 0
	if rng.IntN(3) == 0 {
		tr := propertyZones[zi].tricky[rng.IntN(len(propertyZones[zi].tricky))]
		hh, mm, ss = tr[0], tr[1], 0
	}
	if rng.IntN(8) == 0 {
		ns = rng.IntN(1e9)
	}
	iv := []Interval{Day, Week, Month, Year}[rng.IntN(4)]
	count := 1 + rng.IntN(min(12, iv.maxCount()))
	return Recurrence{Anchor: time.Date(y, m, d, hh, mm, ss, ns, loc), Interval: iv, Count: count, Location: loc}, zi
}

// randomGap returns a log-uniform pause between sweeps, from a minute to 60
// days, so that both regular ticks and long outages occur.
func randomGap(rng *rand.Rand) time.Duration {
	lo, hi := math.Log(float64(time.Minute)), math.Log(float64(60*24*time.Hour))
	return time.Duration(math.Exp(lo + rng.Float64()*(hi-lo)))
}

// TestDueProperties simulates ten years of irregular billing sweeps for
// thousands of pseudo-random subscriptions and checks the guarantees the
// billing sweep relies on: every period is billed exactly once, in order,
// never before it starts, and at its calendar-correct instant. The work is
// split into shards with fixed seeds so it is deterministic and can use every
// core.
func TestDueProperties(t *testing.T) {
	locs := make([]*time.Location, len(propertyZones))
	for i, z := range propertyZones {
		locs[i] = loadLoc(t, z.name)
	}
	const shards, perShard = 4, 500
	for shard := range shards {
		t.Run(fmt.Sprintf("shard %d", shard), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(20240229, uint64(shard)))
			var billed, sweeps int
			for i := range perShard {
				r, _ := randomRecurrence(rng, locs)
				b, s := simulateSweeps(t, fmt.Sprintf("shard %d subscription %d", shard, i), r, rng)
				billed += b
				sweeps += s
			}
			t.Logf("%d subscriptions, %d sweeps, %d periods billed", perShard, sweeps, billed)
		})
	}
}

// simulateSweeps bills r for ten years from just before its anchor, sweeping
// at random moments, and fails t on any broken guarantee. It returns the
// number of periods billed and of sweeps made.
func simulateSweeps(t *testing.T, name string, r Recurrence, rng *rand.Rand) (int, int) {
	t.Helper()
	require.NoError(t, r.Validate())
	// Plain if/Fatalf below: require would box its arguments on every call,
	// and this loop runs hundreds of thousands of times.
	fail := func(format string, args ...any) {
		t.Helper()
		args = append([]any{name, r.Anchor.Format(time.RFC3339Nano), r.Location, r.Interval, r.Count}, args...)
		t.Fatalf("%s (anchor %s %s, every %s×%d): "+format, args...)
	}
	const years = 10
	end := r.Anchor.AddDate(years, 0, 0)
	now := r.Anchor.Add(-time.Duration(rng.IntN(30*24)) * time.Hour)
	billed := make([]int, 0, 1024) // billed[k] = times period k was billed
	next, sweeps := 0, 0
	var last time.Time
	for now.Before(end) {
		now = now.Add(randomGap(rng))
		switch rng.IntN(10) {
		case 0: // exactly when the next period starts
			if s := r.PeriodStart(next); s.After(now) {
				now = s
			}
		case 1: // a hair before it
			if s := r.PeriodStart(next).Add(-time.Nanosecond); s.After(now) {
				now = s
			}
		}
		limit := 0
		if rng.IntN(4) == 0 {
			limit = 1 + rng.IntN(3)
		}
		due := r.Due(next, now, limit)
		sweeps++
		if limit > 0 && len(due) > limit {
			fail("Due returned %d periods with limit %d", len(due), limit)
		}
		for j, k := range due {
			if k != next+j {
				fail("Due(%d, %s) returned %v: skipped or repeated index", next, now, due)
			}
			for len(billed) <= k {
				billed = append(billed, 0)
			}
			billed[k]++
			if billed[k] != 1 {
				fail("period %d billed %d times", k, billed[k])
			}
			s := r.PeriodStart(k)
			if s.After(now) {
				fail("period %d starting %s billed early at %s", k, s, now)
			}
			if !last.IsZero() && !s.After(last) {
				fail("period %d starts %s, not after period %d at %s", k, s, k-1, last)
			}
			if msg := checkCalendar(r, k, s); msg != "" {
				fail("period %d at %s: %s", k, s.In(r.location()).Format(time.RFC3339Nano), msg)
			}
			last = s
		}
		next += len(due)
		if limit <= 0 || len(due) < limit {
			// Nothing may be left due after a sweep that was not capped.
			if !r.PeriodStart(next).After(now) {
				fail("period %d (start %s) still due after sweep at %s", next, r.PeriodStart(next), now)
			}
			// After an empty sweep the check above already pins IndexAt down.
			if len(due) > 0 {
				if got := r.IndexAt(now); got != next {
					fail("IndexAt(%s) = %d, want %d", now, got, next)
				}
			}
		}
	}
	// A final uncapped sweep at the end of the simulation.
	for _, k := range r.Due(next, now, 0) {
		if k != next {
			fail("final sweep skipped to %d, want %d", k, next)
		}
		billed = append(billed, 1)
		next++
	}
	if got := r.IndexAt(now); got != next {
		fail("at the end %d periods were billed, IndexAt(%s) = %d", next, now, got)
	}
	if len(billed) != next {
		fail("billed %d distinct periods, next is %d", len(billed), next)
	}
	for k, n := range billed {
		if n != 1 {
			fail("period %d billed %d times", k, n)
		}
	}
	return next, sweeps
}

var fuzzZones = []string{
	"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham",
	"Pacific/Apia",      // skipped 2011-12-30 entirely (24h gap)
	"America/Santiago",  // DST changes at midnight: the gap swallows 00:00
	"Africa/Casablanca", // DST suspended for Ramadan: several transitions a year, negative DST
	"America/St_Johns",  // -03:30
	"Europe/Dublin",     // negative DST in the tz database
}

func FuzzPeriodStart(f *testing.F) {
	locs := make([]*time.Location, len(fuzzZones))
	for i, z := range fuzzZones {
		locs[i] = loadLoc(f, z)
	}
	seed := func(s string, iv uint8, count uint16, k uint32, tz uint8) {
		f.Add(mustTime(f, s).Unix(), iv, count, k, tz)
	}
	seed("2024-01-31T02:30:00+01:00", 2, 0, 2, 1)     // Berlin monthly into the March gap
	seed("2024-03-30T02:30:00-05:00", 0, 0, 1, 2)     // New York daily into the gap
	seed("2024-11-02T01:30:00-04:00", 0, 0, 1, 2)     // New York daily into the repeated hour
	seed("2024-02-29T12:00:00Z", 3, 0, 1, 0)          // Feb 29 yearly
	seed("2024-10-05T02:15:00+10:30", 0, 0, 1, 3)     // Lord Howe 30-minute gap
	seed("2024-08-29T03:00:00+12:45", 2, 0, 1, 5)     // Chatham gap
	seed("2011-12-29T09:00:00-10:00", 0, 0, 1, 6)     // Apia's missing day
	seed("2024-09-07T00:00:00-04:00", 0, 0, 1, 7)     // Santiago midnight gap
	seed("2023-03-19T02:30:00+01:00", 1, 3, 100, 8)   // Casablanca, weekly
	seed("1970-01-01T00:00:00Z", 0, 1094, 2399, 0)    // longest span
	seed("1901-12-13T20:45:52Z", 2, 35, 200, 4)       // early LMT transitions
	seed("2099-12-31T23:59:59+01:00", 2, 1, 1000, 10) // far future, beyond the transition tables
	f.Fuzz(func(t *testing.T, anchorUnix int64, iv uint8, count uint16, k uint32, tz uint8) {
		const lo, hi = -2208988800, 4102444800 // 1900-01-01 .. 2100-01-01
		span := int64(hi - lo)
		anchorUnix = lo + ((anchorUnix%span)+span)%span
		loc := locs[int(tz)%len(locs)]
		interval := []Interval{Day, Week, Month, Year}[iv%4]
		r := Recurrence{
			Anchor:   time.Unix(anchorUnix, 0).In(loc),
			Interval: interval,
			Count:    1 + int(count)%interval.maxCount(),
			Location: loc,
		}
		require.NoError(t, r.Validate())
		n := int(k % 2400)

		s0, s1 := r.PeriodStart(n), r.PeriodStart(n+1)
		require.True(t, s0.Before(s1), "PeriodStart(%d)=%s not before PeriodStart(%d)=%s", n, s0, n+1, s1)
		start, end := r.Period(n)
		require.Equal(t, s0, start)
		require.Equal(t, s1, end)
		require.Equal(t, time.UTC, s0.Location())
		require.Equal(t, r.Anchor.UTC(), r.PeriodStart(0))

		require.Equal(t, 0, r.IndexAt(r.Anchor.Add(-time.Nanosecond)))
		require.Equal(t, n, r.IndexAt(s0.Add(-time.Nanosecond)))
		require.Equal(t, n+1, r.IndexAt(s0))
		require.Equal(t, n+1, r.IndexAt(s1.Add(-time.Nanosecond)))
		require.Equal(t, n+2, r.IndexAt(s1))

		require.Empty(t, checkCalendar(r, n, s0), "period %d at %s", n, s0.In(loc))
		require.Empty(t, checkCalendar(r, n+1, s1), "period %d at %s", n+1, s1.In(loc))

		due := r.Due(n, s1, 0)
		require.Equal(t, []int{n, n + 1}, due)
	})
}

var sinkTime time.Time
var sinkInts []int

func BenchmarkPeriodStart(b *testing.B) {
	loc := loadLoc(b, "Europe/Berlin")
	r := Recurrence{Anchor: time.Date(2024, 1, 31, 9, 0, 0, 0, loc), Interval: Month, Count: 1, Location: loc}
	b.ReportAllocs()
	k := 0
	for b.Loop() {
		sinkTime = r.PeriodStart(k%240 + 1)
		k++
	}
}

func BenchmarkDue(b *testing.B) {
	loc := loadLoc(b, "Europe/Berlin")
	r := Recurrence{Anchor: time.Date(2024, 1, 31, 9, 0, 0, 0, loc), Interval: Month, Count: 1, Location: loc}
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC) // period 28 (May 31) is the next to start
	b.Run("nothing due", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkInts = r.Due(28, now, 0)
		}
	})
	b.Run("one due", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkInts = r.Due(27, now, 0)
		}
	})
	b.Run("catch up 28 periods", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkInts = r.Due(0, now, 0)
		}
	})
}
