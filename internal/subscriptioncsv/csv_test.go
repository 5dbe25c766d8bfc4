package subscriptioncsv

import (
	"errors"
	"strings"
	"testing"
	"time"

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
		Description: "Gold plan"}, rows[0])
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
		}
	})
}
