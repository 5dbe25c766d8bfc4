package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// zones returns every subscription's reference → timezone.
func zones(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	var subs []models.Subscription
	require.NoError(t, st.DB().Order("id").Find(&subs).Error)
	out := map[string]string{}
	for _, s := range subs {
		out[s.Reference] = s.Timezone
	}
	return out
}

func TestMigrationGivesExistingSubscriptionsTheConfiguredZone(t *testing.T) {
	storetest.EachUnmigrated(t, func(t *testing.T, open func(store.Options) *store.Store) {
		st := open(store.Options{DefaultTimezone: "America/New_York", Exclusive: true})
		ctx := context.Background()
		applied, err := st.MigrateTo(ctx, 4)
		require.NoError(t, err)
		require.Len(t, applied, 4)
		storetest.SeedBeforeTimezones(t, st, t0, storetest.Subscription{Reference: "old-1"}, storetest.Subscription{Reference: "old-2", Interval: "week"})

		applied, err = st.Migrate(ctx)
		require.NoError(t, err)
		require.Contains(t, applied, "00005 00005_subscription_timezone.sql")
		require.Contains(t, applied, "2 existing subscription(s) given time zone America/New_York")
		require.Equal(t, map[string]string{"old-1": "America/New_York", "old-2": "America/New_York"}, zones(t, st))

		applied, err = st.Migrate(ctx)
		require.NoError(t, err)
		require.Empty(t, applied, "the fill happens once: nothing is left without a zone")

		// New rows take their own zone, or the store's default; the old rows keep theirs.
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "new-default"}, storetest.Subscription{Reference: "new-berlin", Timezone: "Europe/Berlin"})
		require.Equal(t, map[string]string{"old-1": "America/New_York", "old-2": "America/New_York",
			"new-default": "America/New_York", "new-berlin": "Europe/Berlin"}, zones(t, st))
	})
}

func TestMigrationRefusesToGuessAZone(t *testing.T) {
	for _, tc := range []struct{ name, zone, want string }{
		{"no configured zone", "", "the configured zone (schedule.timezone)"},
		{"the host's zone", "Local", "depends on the host"},
		{"unknown zone", "Mars/Olympus_Mons", "unknown time zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.EachUnmigrated(t, func(t *testing.T, open func(store.Options) *store.Store) {
				st := open(store.Options{DefaultTimezone: tc.zone, Exclusive: true})
				ctx := context.Background()
				_, err := st.MigrateTo(ctx, 4)
				require.NoError(t, err)
				storetest.SeedBeforeTimezones(t, st, t0, storetest.Subscription{Reference: "old-1"})

				_, err = st.Migrate(ctx)
				require.ErrorContains(t, err, tc.want)
				require.Equal(t, map[string]string{"old-1": ""}, zones(t, st), "nothing was filled with a guess")
				_, err = st.Migrate(ctx)
				require.ErrorContains(t, err, tc.want, "every later start refuses too, until a zone is configured")
			})
		})
	}

	t.Run("an empty database needs no zone", func(t *testing.T) {
		storetest.EachUnmigrated(t, func(t *testing.T, open func(store.Options) *store.Store) {
			_, err := open(store.Options{Exclusive: true}).Migrate(context.Background())
			require.NoError(t, err)
		})
	})

	t.Run("version 0 is not a migration", func(t *testing.T) {
		_, err := storetest.SQLite(t).MigrateTo(context.Background(), 0)
		require.ErrorContains(t, err, "versions start at 1")
	})
}

func TestImportStoresEachSubscriptionsZone(t *testing.T) {
	row := func(line int, ref, zone string) store.ImportRow {
		return store.ImportRow{Line: line, Reference: ref, Email: ref + "@example.com", Customer: "cus_" + ref, PaymentMethod: "pm_" + ref,
			Amount: 100, Currency: "USD", Interval: "month", IntervalCount: 1, Anchor: t0, FirstBilling: t0, Timezone: zone}
	}
	t.Run("without a default zone", func(t *testing.T) {
		storetest.Each(t, func(t *testing.T, st *store.Store) {
			n, err := st.ImportSubscriptions(context.Background(), []store.ImportRow{row(2, "a", ""), row(3, "b", "Australia/Sydney")}, t0)
			require.NoError(t, err)
			require.Equal(t, 2, n)
			require.Equal(t, map[string]string{"a": "UTC", "b": "Australia/Sydney"}, zones(t, st))
		})
	})
	t.Run("with a default zone", func(t *testing.T) {
		storetest.EachUnmigrated(t, func(t *testing.T, open func(store.Options) *store.Store) {
			st := open(store.Options{DefaultTimezone: "Asia/Tokyo", Exclusive: true})
			_, err := st.Migrate(context.Background())
			require.NoError(t, err)
			_, err = st.ImportSubscriptions(context.Background(), []store.ImportRow{row(2, "a", "")}, t0)
			require.NoError(t, err)
			require.Equal(t, map[string]string{"a": "Asia/Tokyo"}, zones(t, st))
		})
	})
	t.Run("a bad zone rejects the whole file", func(t *testing.T) {
		storetest.Each(t, func(t *testing.T, st *store.Store) {
			n, err := st.ImportSubscriptions(context.Background(), []store.ImportRow{row(2, "a", "Europe/Berlin"), row(3, "b", "Local"), row(4, "c", "Nowhere/Land")}, t0)
			require.Zero(t, n)
			var ie store.ImportErrors
			require.True(t, errors.As(err, &ie), "got %v", err)
			require.Len(t, ie, 2)
			require.Equal(t, store.RowError{Line: 3, Column: "timezone", Value: "Local", Message: ie[0].Message}, ie[0])
			require.Equal(t, 4, ie[1].Line)
			require.Equal(t, "timezone", ie[1].Column)
			require.Empty(t, zones(t, st))
		})
	})
}
