package schedule_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestUpgradeKeepsEachSubscriptionsCalendar starts from a database as billingd
// left it before subscriptions had their own zone (schema version 4), with
// subscriptions already billed for a few periods in the configured zone
// (schedule.timezone = America/New_York), exactly as the old billing pass did.
// After the new Migrate every subscription carries that zone, and billing goes
// on on the old calendar even though schedule.timezone is then changed to
// Europe/Berlin: every later period starts where the old code, with New York,
// said it would.
func TestUpgradeKeepsEachSubscriptionsCalendar(t *testing.T) {
	const configured = "America/New_York"
	ny, err := period.LoadZone(configured)
	require.NoError(t, err)
	berlin, err := period.LoadZone("Europe/Berlin")
	require.NoError(t, err)
	at := func(s string) time.Time {
		ts, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return ts
	}
	// Anchors whose calendar differs between New York, UTC and Berlin: month
	// ends late in the evening (already the next day in UTC), a Sunday night,
	// the repeated hour of November, an evening yearly anchor.
	subs := []storetest.Subscription{
		{Reference: "month-31st-2330", Interval: "month", Anchor: at("2026-01-31T23:30:00-05:00")},
		{Reference: "month-30th-2100", Interval: "month", Anchor: at("2026-01-30T21:00:00-05:00")},
		{Reference: "every-2-months-29th", Interval: "month", IntervalCount: 2, Anchor: at("2026-01-29T22:15:00-05:00")},
		{Reference: "week-sunday-2200", Interval: "week", Anchor: at("2026-01-25T22:00:00-05:00")},
		{Reference: "every-3-days-0130", Interval: "day", IntervalCount: 3, Anchor: at("2026-01-26T01:30:00-05:00")},
		{Reference: "year-evening", Interval: "year", Anchor: at("2025-04-30T20:00:00-04:00")},
	}

	for _, driver := range []string{store.SQLite, store.Postgres} {
		t.Run(driver, func(t *testing.T) { upgradeKeepsCalendar(t, driver, subs, configured, ny, berlin, at) })
	}
}

func upgradeKeepsCalendar(t *testing.T, driver string, subs []storetest.Subscription, configured string, ny, berlin *time.Location, at func(string) time.Time) {
	ctx := context.Background()
	dsn := filepath.Join(t.TempDir(), "billingd.db")
	if driver == store.Postgres {
		dsn = storetest.PostgresDSN(t)
	}
	type cursor struct {
		next int
		at   time.Time
	}
	cursors := func(st *store.Store) map[int64]cursor {
		var rows []models.Subscription
		require.NoError(t, st.DB().Order("id").Find(&rows).Error)
		out := map[int64]cursor{}
		for _, r := range rows {
			out[r.ID] = cursor{r.NextPeriod, r.NextBillingAt.UTC()}
		}
		return out
	}
	var (
		ids    []int64
		seed   = make([]storetest.Subscription, len(subs))
		oldRec = make([]period.Recurrence, len(subs))
		next   = make([]int, len(subs))
		before map[int64]cursor
		log    bytes.Buffer
	)
	// The old billingd writes the database at schema 4, billing in the
	// configured zone; then the new binary — daemon.New, configured with the
	// same schedule.timezone — is started on it and migrates it.
	b := daemontest.New(t, daemontest.Options{Start: at("2026-01-20T12:00:00Z"), Postgres: driver == store.Postgres,
		NoWebhooks: true, NoMail: true, Log: &log,
		Configure: func(c *config.Config) { c.Database.DSN = dsn; c.Schedule.Timezone = configured },
		Prepare: func(b *daemontest.Bundle) {
			old, err := store.Open(ctx, store.Options{Driver: driver, DSN: dsn})
			require.NoError(t, err)
			defer old.Close()
			_, err = old.MigrateTo(ctx, 4)
			require.NoError(t, err)
			cus, pm := b.SaveCard(t, "4242424242424242")
			for i, sub := range subs {
				sub.Customer, sub.PaymentMethod = cus, pm
				seed[i] = sub
			}
			ids = storetest.SeedBeforeTimezones(t, old, b.Clock.Now(), seed...)
			// The old billing pass: periods in the configured zone, invoiced
			// and advanced in one transaction per pass.
			for i, sub := range seed {
				iv, err := period.ParseInterval(sub.Interval)
				require.NoError(t, err)
				oldRec[i] = period.Recurrence{Anchor: sub.Anchor, Interval: iv, Count: max(sub.IntervalCount, 1), Location: ny}
			}
			for _, now := range []time.Time{at("2026-02-05T12:00:00Z"), at("2026-03-03T12:00:00Z"), at("2026-04-02T12:00:00Z")} {
				require.NoError(t, old.InTx(ctx, func(tx *store.Tx) error {
					var invs []store.NewInvoice
					for i, rec := range oldRec {
						due := rec.Due(next[i], now, 0)
						for _, k := range due {
							start, end := rec.Period(k)
							invs = append(invs, store.NewInvoice{SubscriptionID: ids[i], Reference: seed[i].Reference, PeriodIndex: k, PeriodStart: start, PeriodEnd: end, Amount: 1000, Currency: "USD"})
						}
						if err := tx.AdvanceSubscription(now, ids[i], next[i], next[i]+len(due), rec.PeriodStart(next[i]+len(due))); err != nil {
							return err
						}
						next[i] += len(due)
					}
					_, err := tx.CreateInvoices(now, invs)
					return err
				}))
			}
			for i := range subs {
				require.Positive(t, next[i], "%s was billed before the upgrade", subs[i].Reference)
			}
			before = cursors(old)
			b.Clock.Set(at("2026-04-02T12:00:00Z"))
		},
	})
	s := stackOf(t, b)
	st := s.st

	// The upgrade happened in daemon.New.
	require.Contains(t, log.String(), "6 existing subscription(s) given time zone America/New_York")
	var rows []models.Subscription
	require.NoError(t, st.DB().Order("id").Find(&rows).Error)
	for _, r := range rows {
		require.Equal(t, configured, r.Timezone, r.Reference)
	}
	require.Equal(t, before, cursors(st), "the migration moves no subscription")
	var err error

	// Then the operator changes schedule.timezone.
	s.reload(t, func(c *config.Config) { c.Schedule.Timezone = "Europe/Berlin" })
	s.clk.Set(at("2026-04-02T12:00:01Z"))
	_, err = s.biller.Pass(ctx, ctx, "after upgrade")
	require.NoError(t, err)
	require.Equal(t, before, cursors(st), "a pass with nothing due moves no subscription")

	// Billing goes on for half a year; every period starts on the old calendar.
	end := at("2026-10-15T00:00:00Z")
	for s.clk.Now().Before(end) {
		s.clk.Advance(97 * time.Hour)
		_, err = s.biller.Pass(ctx, ctx, "after upgrade")
		require.NoError(t, err)
	}
	s.settle(t)
	rep := s.check(t, false)
	require.Zero(t, rep.WrongPeriods)
	require.Zero(t, rep.PeriodGaps)
	require.Zero(t, rep.PeriodOverlaps)

	differs := 0
	for i, sub := range subs {
		var invs []models.Invoice
		require.NoError(t, st.DB().Where("subscription_id = ?", ids[i]).Order("period_index").Find(&invs).Error)
		want := oldRec[i].IndexAt(s.clk.Now())
		require.Len(t, invs, want, sub.Reference)
		require.Greater(t, want, next[i], "%s was billed after the upgrade too", sub.Reference)
		for k := next[i]; k < want; k++ {
			require.True(t, oldRec[i].PeriodStart(k).Equal(invs[k].PeriodStart), "%s period %d starts %s, the old calendar says %s",
				sub.Reference, k, invs[k].PeriodStart, oldRec[i].PeriodStart(k))
			for _, other := range []*time.Location{time.UTC, berlin} {
				r := oldRec[i]
				r.Location = other
				if !r.PeriodStart(k).Equal(invs[k].PeriodStart) {
					differs++
				}
			}
		}
	}
	// Without this the test could not tell the old calendar from UTC's or
	// Berlin's (the one schedule.timezone names now).
	require.Greater(t, differs, 20)
}

// TestSubscriptionWithoutAValidZoneIsNotBilled: a subscription whose stored
// zone cannot be loaded is never billed in a guessed one (the configured zone,
// or UTC); it waits, due, while the others are billed.
func TestSubscriptionWithoutAValidZoneIsNotBilled(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		start := time.Date(2026, 3, 31, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start)
		cus, pm := s.saveCard(t, "4242424242424242")
		s.b.SeedAt(t, start,
			storetest.Subscription{Reference: "good", Customer: cus, PaymentMethod: pm, Timezone: "Europe/Berlin"},
			storetest.Subscription{Reference: "empty", Customer: cus, PaymentMethod: pm},
			storetest.Subscription{Reference: "unknown", Customer: cus, PaymentMethod: pm})
		for ref, zone := range map[string]string{"empty": "", "unknown": "Mars/Olympus_Mons"} {
			require.NoError(t, s.st.DB().Model(&models.Subscription{}).Where("reference = ?", ref).Update("timezone", zone).Error)
		}
		run, err := s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		require.Equal(t, 1, run.InvoicesCreated)
		var subs []models.Subscription
		require.NoError(t, s.st.DB().Order("id").Find(&subs).Error)
		next := map[string]int{}
		for _, sub := range subs {
			next[sub.Reference] = sub.NextPeriod
		}
		require.Equal(t, map[string]int{"good": 1, "empty": 0, "unknown": 0}, next)
	})
}
