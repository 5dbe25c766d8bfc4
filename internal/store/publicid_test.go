package store

import (
	"fmt"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPublicIDsSortByCreationAndNeverRepeat(t *testing.T) {
	format := regexp.MustCompile(`^inv_[2-7a-z]{20}$`)
	base := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	var ids []string
	for i := 0; i < 5000; i++ {
		// 5 ids per millisecond: order between milliseconds, uniqueness within.
		id, err := newPublicIDAt("inv", base.Add(time.Duration(i/5)*time.Millisecond))
		require.NoError(t, err)
		require.Regexp(t, format, id)
		require.False(t, seen[id], "repeated id %s", id)
		seen[id] = true
		ids = append(ids, id)
	}
	for i := 5; i < len(ids); i += 5 {
		require.Less(t, ids[i-5], ids[i], "an id of a later millisecond must sort after an earlier one")
	}
	sorted := append([]string(nil), ids...)
	sort.Strings(sorted)
	require.Equal(t, ids[0][:12], sorted[0][:12], "the oldest millisecond sorts first")

	later, err := newPublicIDAt("inv", base.AddDate(10, 0, 0))
	require.NoError(t, err)
	require.Greater(t, later, ids[len(ids)-1])
}

func TestDerivedOrderIDIsStableAndDistinct(t *testing.T) {
	format := regexp.MustCompile(`^inv_[2-7a-z]{20}$`)
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

	t.Run("golden", func(t *testing.T) {
		// Computed independently of this code (Python hashlib + base32). These ids are on the gateway's ledger of every merchant that ran this
		// version: changing the derivation would charge a restored period again.
		require.Equal(t, "inv_2aktctzc244du3xg3b4h", DerivedOrderID("sub-1001", start))
		require.Equal(t, "inv_2aktctzc247zebe46vti", DerivedOrderID("sub-1002", start))
	})

	t.Run("the instant, not its zone or sub-millisecond digits", func(t *testing.T) {
		tokyo := time.FixedZone("JST", 9*3600)
		want := DerivedOrderID("sub-1001", start)
		require.Equal(t, want, DerivedOrderID("sub-1001", start.In(tokyo)))
		require.Equal(t, want, DerivedOrderID("sub-1001", start.Add(999*time.Microsecond)),
			"a database that keeps microseconds names the same period")
	})

	t.Run("distinct inputs give distinct ids", func(t *testing.T) {
		seen := map[string]string{}
		add := func(ref string, at time.Time) {
			id := DerivedOrderID(ref, at)
			require.Regexp(t, format, id)
			key := ref + "|" + at.UTC().String()
			require.NotContains(t, seen, id, "%s and %s share an id", key, seen[id])
			seen[id] = key
		}
		for s := 0; s < 200; s++ {
			for p := 0; p < 24; p++ {
				add(fmt.Sprintf("sub-%d", s), start.AddDate(0, p, 0))
			}
		}
		// The length prefix keeps a reference from running into the time.
		add("a", start.Add(time.Millisecond))
		add("a\x00", start)
		add("", start)
	})

	t.Run("ids sort by period start", func(t *testing.T) {
		require.Less(t, DerivedOrderID("zzz", start), DerivedOrderID("aaa", start.Add(time.Millisecond)))
		require.Less(t, DerivedOrderID("sub-1", start), DerivedOrderID("sub-1", start.AddDate(0, 1, 0)))
	})
}
