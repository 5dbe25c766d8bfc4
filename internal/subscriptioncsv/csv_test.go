package subscriptioncsv

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const header = "reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor\n"

func parse(t *testing.T, body string, opts ...func(*Options)) ([]store.ImportRow, store.ImportErrors) {
	t.Helper()
	o := Options{Location: time.UTC, Now: now}
	for _, f := range opts {
		f(&o)
	}
	rows, err := Parse(strings.NewReader(body), o)
	if err == nil {
		return rows, nil
	}
	var ie store.ImportErrors
	require.True(t, errors.As(err, &ie), "unexpected error type: %v", err)
	require.Nil(t, rows, "no rows come back when any line is bad")
	return nil, ie
}

func TestParseValidFile(t *testing.T) {
	body := "\ufeff" + strings.TrimSuffix(header, "\n") + ",description\n" +
		"gold-1,a@example.com,cus_1,pm_1,1999,USD,month,1,2026-11-30T09:00:00Z,Gold plan\n" +
		"yen-1, b@example.com ,cus_2,pm_2,1200,JPY,week,2,2026-11-23T11:00:00+09:00,\n"
	rows, errs := parse(t, body)
	require.Nil(t, errs)
	require.Len(t, rows, 2)
	require.Equal(t, store.ImportRow{Line: 2, Reference: "gold-1", Email: "a@example.com", Customer: "cus_1", PaymentMethod: "pm_1",
		Amount: 1999, Currency: "USD", Interval: "month", IntervalCount: 1,
		Anchor: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC), FirstBilling: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC),
		Description: "Gold plan", Timezone: "UTC"}, rows[0])
	require.Equal(t, 3, rows[1].Line)
	require.Equal(t, "b@example.com", rows[1].Email)
	require.Equal(t, time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC), rows[1].Anchor, "anchors are stored in UTC")
}

func TestParseReportsEveryBadLine(t *testing.T) {
	body := header +
		"ok-1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T00:00:00Z\n" + // line 2 fine
		",a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T00:00:00Z\n" + // 3 reference
		"r4,not-an-email,cus_1,pm_1,100,USD,month,1,2026-12-01T00:00:00Z\n" + // 4 email
		"r5,a@example.com,1234,pm_1,100,USD,month,1,2026-12-01T00:00:00Z\n" + // 5 customer
		"r6,a@example.com,cus_1,card_1,100,USD,month,1,2026-12-01T00:00:00Z\n" + // 6 payment_method
		"r7,a@example.com,cus_1,pm_1,10.50,USD,month,1,2026-12-01T00:00:00Z\n" + // 7 amount
		"r8,a@example.com,cus_1,pm_1,-5,USD,month,1,2026-12-01T00:00:00Z\n" + // 8 amount
		"r9,a@example.com,cus_1,pm_1,100,usd,month,1,2026-12-01T00:00:00Z\n" + // 9 currency
		"r10,a@example.com,cus_1,pm_1,100,USD,fortnight,1,2026-12-01T00:00:00Z\n" + // 10 interval
		"r11,a@example.com,cus_1,pm_1,100,USD,month,0,2026-12-01T00:00:00Z\n" + // 11 interval_count
		"r12,a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01\n" + // 12 anchor
		"ok-1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T00:00:00Z\n" + // 13 duplicate reference
		"r14,a@example.com,cus_1,pm_1,100,USD,month,1\n" + // 14 field count
		"r15,a@example.com,cus_1,pm_1,100,USD,month,1,2025-01-01T00:00:00Z\n" // 15 anchor far in the past
	_, errs := parse(t, body)
	got := map[int]string{}
	for _, e := range errs {
		got[e.Line] = e.Column
	}
	require.Equal(t, map[int]string{3: "reference", 4: "email", 5: "customer", 6: "payment_method", 7: "amount", 8: "amount",
		9: "currency", 10: "interval", 11: "interval_count", 12: "anchor", 13: "reference", 14: "", 15: "anchor"}, got)
	require.Contains(t, errs.Error(), "line 13: reference: duplicates line 2")
	require.Contains(t, errs.Error(), "nothing was imported")
}

func TestBackfillAllowsPastAnchors(t *testing.T) {
	body := header + "old,a@example.com,cus_1,pm_1,100,USD,month,1,2026-01-31T09:00:00Z\n"
	_, errs := parse(t, body)
	require.Len(t, errs, 1)
	require.Contains(t, errs[0].Message, "--backfill")
	rows, errs := parse(t, body, func(o *Options) { o.Backfill = true })
	require.Nil(t, errs)
	require.Len(t, rows, 1)

	// One period in the past is a normal "bill it now".
	recent := header + "recent,a@example.com,cus_1,pm_1,100,USD,month,1,2026-11-20T09:00:00Z\n"
	rows, errs = parse(t, recent)
	require.Nil(t, errs)
	require.Len(t, rows, 1)
}

func TestHeaderProblems(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty file", "", "the file is empty"},
		{"header only", header, "no subscriptions"},
		{"missing column", "reference,email,customer,payment_method,amount,currency,interval,anchor\n", "interval_count: required column is missing"},
		{"unknown column", strings.TrimSuffix(header, "\n") + ",plan\n", "plan: unknown column"},
		{"duplicate column", strings.TrimSuffix(header, "\n") + ",email\n", "email: column appears twice"},
		{"bad quoting", header + "r1,\"a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T00:00:00Z\n", "malformed CSV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := parse(t, tc.body)
			require.NotEmpty(t, errs)
			require.Contains(t, errs.Error(), tc.want)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(header + "r1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T00:00:00Z\n")
	f.Add(header + "r1,\"x\"\"y\",cus_1,pm_1,1e3,USD,year,99999,2026-02-29T00:00:00Z\n")
	f.Add("\ufeff" + header)
	f.Add("a,b\n\"unterminated\n")
	f.Add(strings.TrimSuffix(header, "\n") + ",timezone\nr1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-03-29T02:30:00+01:00,Europe/Berlin\n")
	f.Fuzz(func(t *testing.T, body string) {
		rows, err := Parse(strings.NewReader(body), Options{Location: time.UTC, Now: now, Backfill: true})
		if err != nil {
			require.Nil(t, rows)
			return
		}
		require.NotEmpty(t, rows)
		for _, r := range rows {
			require.Positive(t, r.Amount)
			require.GreaterOrEqual(t, r.IntervalCount, 1)
			require.NotEmpty(t, r.Reference)
			_, err := period.New(r.Anchor, r.Interval, r.IntervalCount, r.Timezone)
			require.NoError(t, err, "an accepted row's terms load again from the database")
		}
	})
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := period.LoadZone(name)
	require.NoError(t, err)
	return loc
}

func TestTimezoneColumn(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	const tzHeader = "reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor,timezone\n"
	line := func(ref, anchor, tz string) string {
		return ref + ",a@example.com,cus_1,pm_1,100,USD,month,1," + anchor + "," + tz + "\n"
	}
	tests := []struct {
		name     string
		body     string
		def      *time.Location
		wantZone string
	}{
		{"named zone", tzHeader + line("r1", "2026-12-01T09:00:00+01:00", "America/New_York"), berlin, "America/New_York"},
		{"empty cell takes the default", tzHeader + line("r1", "2026-12-01T09:00:00+01:00", ""), berlin, "Europe/Berlin"},
		{"blank cell takes the default", tzHeader + line("r1", "2026-12-01T09:00:00+01:00", "  "), berlin, "Europe/Berlin"},
		{"no timezone column takes the default", header + "r1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T09:00:00Z\n", berlin, "Europe/Berlin"},
		{"nil default is UTC", header + "r1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T09:00:00Z\n", nil, "UTC"},
		{"column header in capitals", strings.Replace(tzHeader, "timezone", "Timezone", 1) + line("r1", "2026-12-01T09:00:00Z", "Asia/Tokyo"), time.UTC, "Asia/Tokyo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, errs := parse(t, tc.body, func(o *Options) { o.Location = tc.def })
			require.Nil(t, errs)
			require.Len(t, rows, 1)
			require.Equal(t, tc.wantZone, rows[0].Timezone)
		})
	}

	t.Run("bad names are errors naming line and column", func(t *testing.T) {
		body := tzHeader +
			line("ok", "2026-12-01T09:00:00Z", "Europe/Berlin") + // line 2
			line("r3", "2026-12-01T09:00:00Z", "Mars/Olympus_Mons") + // 3 unknown
			line("r4", "2026-12-01T09:00:00Z", "Local") + // 4 the host's zone
			line("r5", "2026-12-01T09:00:00Z", "europe/berlin") + // 5 names are case-sensitive
			line("r6", "2026-12-01T09:00:00Z", "+01:00") // 6 an offset is not a zone
		_, errs := parse(t, body)
		require.Len(t, errs, 4)
		for i, want := range []struct {
			line  int
			value string
		}{{3, "Mars/Olympus_Mons"}, {4, "Local"}, {5, "europe/berlin"}, {6, "+01:00"}} {
			require.Equal(t, want.line, errs[i].Line)
			require.Equal(t, "timezone", errs[i].Column)
			require.Equal(t, want.value, errs[i].Value)
			require.Contains(t, errs[i].Message, "IANA")
		}
		require.Contains(t, errs.Error(), `line 3: timezone: must be an IANA time zone name such as UTC or Europe/Berlin (got "Mars/Olympus_Mons")`)
	})

	t.Run("a default that is not an IANA zone is refused", func(t *testing.T) {
		_, err := Parse(strings.NewReader(header+"r1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T09:00:00Z\n"), Options{Location: time.Local, Now: now})
		require.ErrorContains(t, err, "default time zone")
		_, err = Parse(strings.NewReader(header+"r1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-12-01T09:00:00Z\n"), Options{Location: time.FixedZone("X", 3600), Now: now})
		require.ErrorContains(t, err, "default time zone")
	})
}

// TestAnchorIsTheInstantWritten pins how the anchor's written offset is read:
// the instant is exactly the one written (offset included), and the row's zone
// alone decides which calendar day and wall-clock time later periods keep.
func TestAnchorIsTheInstantWritten(t *testing.T) {
	tests := []struct {
		name      string
		anchor    string
		zone      string
		instant   string // the anchor, in UTC
		nextLocal string // period 1's start, in the row's zone
	}{
		{"Z anchor in UTC", "2026-12-31T09:00:00Z", "UTC", "2026-12-31T09:00:00Z", "2027-01-31T09:00:00Z"},
		{"offset matches the zone", "2026-12-31T23:30:00-05:00", "America/New_York", "2027-01-01T04:30:00Z", "2027-01-31T23:30:00-05:00"},
		{"same instant, UTC calendar: the 1st", "2026-12-31T23:30:00-05:00", "UTC", "2027-01-01T04:30:00Z", "2027-02-01T04:30:00Z"},
		{"Z anchor read in Tokyo", "2026-12-30T15:30:00Z", "Asia/Tokyo", "2026-12-30T15:30:00Z", "2027-01-31T00:30:00+09:00"},
		{"offset unlike the zone's", "2026-12-31T09:00:00+05:30", "Europe/Berlin", "2026-12-31T03:30:00Z", "2027-01-31T04:30:00+01:00"},
		{"fraction of a second kept", "2026-12-31T09:00:00.25+01:00", "Europe/Berlin", "2026-12-31T08:00:00.25Z", "2027-01-31T09:00:00.25+01:00"},
		{"anchor in Berlin summer, next period in winter", "2026-10-24T09:00:00+02:00", "Europe/Berlin", "2026-10-24T07:00:00Z", "2026-11-24T09:00:00+01:00"},
	}
	now := time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := "reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor,timezone\n" +
				"r1,a@example.com,cus_1,pm_1,100,USD,month,1," + tc.anchor + "," + tc.zone + "\n"
			rows, err := Parse(strings.NewReader(body), Options{Location: time.UTC, Now: now})
			require.NoError(t, err)
			want, err := time.Parse(time.RFC3339Nano, tc.instant)
			require.NoError(t, err)
			require.True(t, want.Equal(rows[0].Anchor), "anchor %s, want %s", rows[0].Anchor, want)
			require.Equal(t, time.UTC, rows[0].Anchor.Location())
			require.True(t, want.Equal(rows[0].FirstBilling), "period 0 starts at the anchor")

			rec, err := period.New(rows[0].Anchor, rows[0].Interval, rows[0].IntervalCount, rows[0].Timezone)
			require.NoError(t, err)
			require.Equal(t, tc.nextLocal, rec.PeriodStart(1).In(mustZone(t, tc.zone)).Format(time.RFC3339Nano))
		})
	}
}

func TestPastAnchorsAreCountedInTheRowsZone(t *testing.T) {
	// Monthly from Oct 31 23:30 New York (Nov 1 03:30Z). In New York period 1
	// starts Nov 30 23:30 EST (Dec 1 04:30Z); read in UTC it would start Dec 1
	// 03:30Z. At Dec 1 04:00Z the row is one period old in its own zone (a
	// normal import) and would be two periods old in UTC (refused).
	now := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	body := func(zone string) string {
		return "reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor,timezone\n" +
			"r1,a@example.com,cus_1,pm_1,100,USD,month,1,2026-10-31T23:30:00-04:00," + zone + "\n"
	}
	rows, err := Parse(strings.NewReader(body("America/New_York")), Options{Location: time.UTC, Now: now})
	require.NoError(t, err)
	require.Len(t, rows, 1)

	_, err = Parse(strings.NewReader(body("UTC")), Options{Location: time.UTC, Now: now})
	var ie store.ImportErrors
	require.True(t, errors.As(err, &ie), "got %v", err)
	require.Len(t, ie, 1)
	require.Equal(t, "anchor", ie[0].Column)
	require.Contains(t, ie[0].Message, "is 2 periods in the past")
}

// Finding 7: an amount no currency allows (int64's largest, Stripe's bound
// times a thousand) is refused by line and column, before anything is written.
func TestParseRefusesAmountsAboveTheBound(t *testing.T) {
	for _, tc := range []struct{ amount, currency string }{
		{"9223372036854775807", "USD"},
		{"99999999999", "USD"},
		{"100000000", "USD"},
		{"100000000", "JPY"},
		{"92233720368547758070", "USD"}, // beyond int64
		{"99999999999", "usd"},          // a bad currency does not hide it
	} {
		t.Run(tc.amount+" "+tc.currency, func(t *testing.T) {
			_, errs := parse(t, header+"big,a@example.com,cus_1,pm_1,"+tc.amount+","+tc.currency+",month,1,2026-12-01T00:00:00Z\n")
			var amount *store.RowError
			for i := range errs {
				if errs[i].Column == "amount" {
					amount = &errs[i]
				}
			}
			require.NotNil(t, amount, "got %v", errs)
			require.Equal(t, 2, amount.Line)
			require.Contains(t, amount.Message, "at most")
		})
	}
	rows, errs := parse(t, header+"max,a@example.com,cus_1,pm_1,99999999,USD,month,1,2026-12-01T00:00:00Z\n")
	require.Nil(t, errs)
	require.EqualValues(t, 99_999_999, rows[0].Amount)
}

// Finding 12: bytes that are not UTF-8, control characters and over-long
// values are refused with line and column.
func TestParseRefusesUnhygienicFields(t *testing.T) {
	ok := []string{"r1", "a@example.com", "cus_1", "pm_1", "100", "USD", "month", "1", "2026-12-01T00:00:00Z", "Gold"}
	cols := []string{"reference", "email", "customer", "payment_method", "amount", "currency", "interval", "interval_count", "anchor", "description"}
	for _, tc := range []struct {
		name, column, value, want string
	}{
		{"invalid UTF-8 in the description", "description", "caf\xe9", "not valid UTF-8"},
		{"invalid UTF-8 in the reference", "reference", "r\xff1", "not valid UTF-8"},
		{"NUL in the description", "description", "a\x00b", "control character"},
		{"escape in the email", "email", "a\x1b@example.com", "control character"},
		{"quoted line break in the description", "description", "\"two\nlines\"", "control character"},
		{"C1 control in the customer", "customer", "cus_\u00851", "control character"},
		{"right-to-left override in the description", "description", "Plan \u202egnp.exe", "bidirectional formatting character (U+202E"},
		{"isolate in the reference", "reference", "ref\u2066x", "bidirectional formatting character"},
		{"DEL in the reference", "reference", "r\x7f", "control character"},
		{"a 100 KB description", "description", strings.Repeat("x", 100_000), "at most 500"},
		{"a 201-character reference", "reference", strings.Repeat("r", 201), "at most 200"},
		{"a 300-character email", "email", strings.Repeat("a", 288) + "@example.com", "at most 254"},
		{"a 300-character payment method", "payment_method", "pm_" + strings.Repeat("1", 297), "at most 255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row := append([]string(nil), ok...)
			for i, c := range cols {
				if c == tc.column {
					row[i] = tc.value
				}
			}
			_, errs := parse(t, strings.Join(cols, ",")+"\n"+strings.Join(row, ",")+"\n")
			require.Len(t, errs, 1, "%v", errs)
			require.Equal(t, 2, errs[0].Line)
			require.Equal(t, tc.column, errs[0].Column)
			require.Contains(t, errs[0].Message, tc.want)
			require.True(t, utf8.ValidString(errs[0].Error()), "the error itself is printable")
			require.LessOrEqual(t, len(errs[0].Error()), 300, "the error does not repeat a huge value")
		})
	}
	// At the limit is fine.
	row := append([]string(nil), ok...)
	row[9] = strings.Repeat("é", 500)
	rows, errs := parse(t, strings.Join(cols, ",")+"\n"+strings.Join(row, ",")+"\n")
	require.Nil(t, errs)
	require.Len(t, rows, 1)
}

// Finding 12: a bad currency no longer hides the same row's out-of-range
// interval_count, and no message repeats its column name.
func TestParseReportsEveryProblemOfARow(t *testing.T) {
	_, errs := parse(t, header+"r1,a@example.com,cus_1,pm_1,100,usd,month,9999,2026-12-01T00:00:00Z\n")
	cols := []string{}
	for _, e := range errs {
		cols = append(cols, e.Column)
		require.NotContains(t, e.Message, e.Column+":", "no repeated prefix: %s", e.Error())
	}
	require.Equal(t, []string{"currency", "interval_count"}, cols, "%v", errs)
	require.Contains(t, errs.Error(), "line 2: interval_count: must be at most")
	require.NotContains(t, errs.Error(), "interval_count: interval_count")

	_, errs = parse(t, header+"r1,nope,1234,card,-1,usd,fortnight,x,yesterday\n")
	cols = cols[:0]
	for _, e := range errs {
		cols = append(cols, e.Column)
	}
	require.Equal(t, []string{"email", "customer", "payment_method", "currency", "amount", "interval", "interval_count", "anchor"}, cols)
}
