package store

import (
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
