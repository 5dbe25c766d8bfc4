package schedule_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/subscriptioncsv"
	"github.com/stretchr/testify/require"
)

// stressZone is a zone of the stress test and the wall-clock times at which its
// DST changes skip or repeat an hour (or half hour), where anchors are likeliest
// to go wrong.
type stressZone struct {
	name   string
	tricky [][2]int // hour, minute
}

var stressZones = []stressZone{
	{"UTC", [][2]int{{0, 0}, {23, 30}}},
	{"Europe/Berlin", [][2]int{{2, 30}, {2, 0}, {3, 0}, {0, 30}}},
	{"America/New_York", [][2]int{{2, 30}, {1, 30}, {23, 30}}},
	{"Australia/Sydney", [][2]int{{2, 30}, {2, 0}, {3, 0}}},
	{"Australia/Lord_Howe", [][2]int{{2, 15}, {1, 45}}},
	{"America/Santiago", [][2]int{{0, 0}, {0, 30}, {23, 30}}},
	{"Pacific/Chatham", [][2]int{{2, 50}, {3, 0}, {3, 30}}},
	{"Europe/London", [][2]int{{1, 30}, {0, 30}}},
	{"Asia/Kolkata", [][2]int{{0, 0}, {5, 30}}},
}

// TestTimezoneStress imports 150 subscriptions in zones with DST changes (some
// at import, some later), anchored on the 29th-31st, at DST-prone wall times, on
// every interval, and bills them through two simulated years of irregular passes
// while schedule.timezone changes at random between passes: the biller's zone
// and the import default switch, and subscriptions imported without a timezone
// take the default of their import. Every subscription must keep the calendar
// of the zone it was imported with: no invoice overlaps or leaves a gap before
// the next, no period is skipped or invoiced twice, each starts where its own
// zone's calendar says, and nothing due is left uninvoiced.
func TestTimezoneStress(t *testing.T) {
	// SQLite without an fsync per commit: this test is about calendars, and
	// thousands of synced commits would make it slow for nothing.
	eachDB(t, func(t *testing.T, st *store.Store) {
		t.Parallel() // SQLite and PostgreSQL side by side: each waits on its database most of the time
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(20261201, 31))
		start := time.Date(2026, 1, 10, 6, 0, 0, 0, time.UTC)
		end := start.AddDate(2, 0, 0)
		// SQLite without an fsync per commit: this test is about calendars, and
		// thousands of synced commits would make it slow for nothing.
		s := stackWith(t, st, daemontest.Options{Start: start, NoWebhooks: true, NoMail: true, Configure: func(c *config.Config) {
			c.Database.Synchronous = "normal"
		}})
		cus, pm := s.saveCard(t, "4242424242424242")

		locs := map[string]*time.Location{}
		for _, z := range stressZones {
			loc, err := period.LoadZone(z.name)
			require.NoError(t, err)
			locs[z.name] = loc
		}
		current := "UTC" // schedule.timezone
		// An operator switching schedule.timezone and reloading: the cron and
		// the default of later imports change, nothing else.
		setDefault := func(name string) {
			current = name
			s.reload(t, func(c *config.Config) { c.Schedule.Timezone = name })
		}
		setDefault("Europe/Berlin")

		wantZone := map[string]string{} // reference → the zone it must keep
		n := 0
		// importBatch writes count subscriptions into one CSV and imports it the
		// way `billingd subscriptions import` does, with the current default.
		importBatch := func(count int) {
			var csv strings.Builder
			csv.WriteString("reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor,timezone\n")
			now := s.clk.Now()
			for range count {
				n++
				ref := fmt.Sprintf("tz-%03d", n)
				z := stressZones[rng.IntN(len(stressZones))]
				loc := locs[z.name]
				column := z.name
				if rng.IntN(3) == 0 {
					// No timezone in the file: the row takes the default, and
					// its anchor's calendar must be read there instead.
					column, loc = "", locs[current]
					z = stressZones[0]
					for _, cand := range stressZones {
						if cand.name == current {
							z = cand
						}
					}
				}
				wantZone[ref] = z.name
				if column == "" {
					wantZone[ref] = current
				}
				// Long cycles keep the number of charges (the slow part) down
				// while every interval still crosses many month ends and DST
				// changes in two years.
				iv, count := "month", 1+rng.IntN(6)
				switch r := rng.IntN(10); {
				case r < 2:
					iv, count = "day", 20+rng.IntN(41)
				case r < 4:
					iv, count = "week", 4+rng.IntN(9)
				case r < 5:
					iv, count = "year", 1
				}
				// An anchor 0-40 days ahead, moved to the 29th-31st of a month
				// long enough, at a DST-prone wall time two times in three.
				a := now.In(loc).AddDate(0, 0, rng.IntN(40))
				y, m, _ := a.Date()
				d := 29 + rng.IntN(3)
				for time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day() < d {
					m++
				}
				hh, mm := rng.IntN(24), rng.IntN(60)
				if rng.IntN(3) > 0 {
					tr := z.tricky[rng.IntN(len(z.tricky))]
					hh, mm = tr[0], tr[1]
				}
				anchor := time.Date(y, m, d, hh, mm, 0, 0, loc)
				if anchor.Before(now) {
					anchor = anchor.AddDate(0, 1, 0)
				}
				written := anchor.Format(time.RFC3339)
				if rng.IntN(4) == 0 {
					written = anchor.UTC().Format(time.RFC3339) // the same instant, written in UTC
				}
				fmt.Fprintf(&csv, "%s,%s@example.com,%s,%s,%d,USD,%s,%d,%s,%s\n", ref, ref, cus, pm, 100+n, iv, count, written, column)
			}
			rows, err := subscriptioncsv.Parse(strings.NewReader(csv.String()), subscriptioncsv.Options{Location: locs[current], Now: now})
			require.NoError(t, err)
			_, err = s.st.ImportSubscriptions(ctx, rows, now)
			require.NoError(t, err)
		}

		importBatch(100)
		// Passes 1 to 12 days apart (log-uniform): some periods are billed
		// the moment they start, others caught up after a long pause.
		lo, hi := math.Log(float64(24*time.Hour)), math.Log(float64(12*24*time.Hour))
		passes, switches := 0, 0
		for s.clk.Now().Before(end) {
			s.clk.Advance(time.Duration(math.Exp(lo + rng.Float64()*(hi-lo))))
			if rng.IntN(3) == 0 {
				setDefault(stressZones[rng.IntN(len(stressZones))].name)
				switches++
			}
			if n < 150 && (rng.IntN(8) == 0 || s.clk.Now().After(start.AddDate(1, 6, 0))) {
				importBatch(min(5, 150-n))
			}
			_, err := s.biller.Pass(ctx, ctx, "stress")
			require.NoError(t, err)
			passes++
		}
		require.Equal(t, 150, n, "every subscription was imported")
		_, err := s.biller.Pass(ctx, ctx, "stress")
		require.NoError(t, err)
		s.settle(t)

		rep := s.check(t, false)
		require.Zero(t, rep.DoubleCharges)
		require.Zero(t, rep.MissedPeriods)
		require.Zero(t, rep.WrongPeriods)
		require.Zero(t, rep.PeriodGaps)
		require.Zero(t, rep.PeriodOverlaps)
		t.Logf("%d passes, %d zone switches, %d invoices", passes, switches, rep.Invoices)

		var subs []models.Subscription
		require.NoError(t, s.st.DB().Order("id").Find(&subs).Error)
		require.Len(t, subs, 150)
		for _, sub := range subs {
			require.Equal(t, wantZone[sub.Reference], sub.Timezone, "subscription %s keeps the zone of its import", sub.Reference)
			var invs []models.Invoice
			require.NoError(t, s.st.DB().Where("subscription_id = ?", sub.ID).Order("period_index").Find(&invs).Error)
			require.NotEmpty(t, invs, "subscription %s", sub.Reference)
			require.Equal(t, sub.NextPeriod, len(invs))
			checkCalendarOf(t, sub, invs, locs[sub.Timezone])
		}
	})
}

// checkCalendarOf checks, without the period package, that the invoices of sub
// follow its anchor's calendar in loc: consecutive invoices meet exactly; month
// and year periods start on the anchor's day clamped to the month's length, day
// and week periods a whole number of cycles of calendar days after the anchor's
// date; and each starts at the anchor's wall-clock time, or at most an hour
// after it when that time did not exist that day (the end of a DST gap).
func checkCalendarOf(t *testing.T, sub models.Subscription, invs []models.Invoice, loc *time.Location) {
	t.Helper()
	a := sub.AnchorAt.In(loc)
	ay, am, ad := a.Date()
	wall := func(x time.Time) time.Duration {
		h, m, s := x.Clock()
		return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second
	}
	for k, inv := range invs {
		require.Equal(t, k, inv.PeriodIndex, "subscription %s", sub.Reference)
		if k > 0 {
			require.True(t, invs[k-1].PeriodEnd.Equal(inv.PeriodStart), "subscription %s: period %d ends %s, period %d starts %s",
				sub.Reference, k-1, invs[k-1].PeriodEnd, k, inv.PeriodStart)
		}
		require.True(t, inv.PeriodStart.Before(inv.PeriodEnd))
		if k == 0 {
			require.True(t, inv.PeriodStart.Equal(sub.AnchorAt), "subscription %s: period 0 starts at the anchor", sub.Reference)
			continue
		}
		p := inv.PeriodStart.In(loc)
		y, m, d := p.Date()
		n := k * sub.IntervalCount
		switch sub.Interval {
		case "month", "year":
			months := n
			if sub.Interval == "year" {
				months = 12 * n
			}
			ty, tm := ay+(int(am)-1+months)/12, time.Month((int(am)-1+months)%12+1)
			last := time.Date(ty, tm+1, 0, 0, 0, 0, 0, time.UTC).Day()
			require.Equal(t, [3]int{ty, int(tm), min(ad, last)}, [3]int{y, int(m), d}, "subscription %s period %d (%s in %s)", sub.Reference, k, p, loc)
		default:
			days := n
			if sub.Interval == "week" {
				days = 7 * n
			}
			want := time.Date(ay, am, ad+days, 0, 0, 0, 0, time.UTC)
			require.Equal(t, want.Format(time.DateOnly), p.Format(time.DateOnly), "subscription %s period %d (%s in %s)", sub.Reference, k, p, loc)
		}
		late := wall(p) - wall(a)
		require.True(t, late >= 0 && late <= time.Hour, "subscription %s period %d starts at %s local, the anchor's wall clock is %s", sub.Reference, k, p, a)
	}
}
