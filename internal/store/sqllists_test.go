package store

import (
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

func TestSQLSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"unresolved", sqlUnresolved.in("status"), "(status = 'pending' OR status = 'unknown' OR status = 'processing')"},
		{"open", sqlOpen.in("ca.status"), "(ca.status = 'pending' OR ca.status = 'unknown' OR ca.status = 'processing' OR ca.status = 'requires_action')"},
		{"attention", sqlAttention.in("status"), "(status = 'needs_review' OR status = 'failed')"},
		{"billable", sqlBillable.in("s.status"), "(s.status = 'active' OR s.status = 'past_due')"},
		{"replayable", sqlReplayable.in("status"), "(status = 'pending' OR status = 'unknown')"},
		{"payable invoice", sqlPayableInvoice.in("status"), "(status = 'open' OR status = 'uncollectible')"},
		{"cancelable", sqlCancelable.in("status"), "(status = 'active' OR status = 'past_due' OR status = 'unpaid')"},
		{"none of", sqlReleasedRefund.notIn("r.status"), "(r.status <> 'failed' AND r.status <> 'canceled')"},
		{"one value", newSQLSet([]models.InvoiceStatus{models.InvoicePaid}).in("status"), "(status = 'paid')"},
		{"quote doubled", newSQLSet([]string{"a'b", "c"}).in("x"), "(x = 'a''b' OR x = 'c')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.got)
		})
	}
	t.Run("empty panics", func(t *testing.T) {
		require.Panics(t, func() { newSQLSet([]models.AttemptStatus{}) })
	})
}

// partialIndexRE matches one CREATE INDEX statement with a WHERE clause in a
// migration file: its name and its condition.
var partialIndexRE = regexp.MustCompile(`(?is)CREATE\s+(?:UNIQUE\s+)?INDEX\s+(\w+)\s+ON\s+[^;]*?\sWHERE\s+([^;]*);`)

// dropIndexRE matches a DROP INDEX statement.
var dropIndexRE = regexp.MustCompile(`(?i)DROP\s+INDEX\s+(?:IF\s+EXISTS\s+)?(\w+)\s*;`)

// upSection is the +goose Up part of a migration: what the schema is after it.
func upSection(body string) string {
	if i := strings.Index(body, "-- +goose Down"); i >= 0 {
		return body[:i]
	}
	return body
}

// finalPartialIndexes replays the Up sections of a dialect's migrations in
// order and returns each partial index's condition as the last migration that
// created it left it (an index dropped and not created again is absent).
func finalPartialIndexes(t *testing.T, dialect string) map[string]string {
	t.Helper()
	files, err := fs.Glob(migrationFS, "migrations/"+dialect+"/*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	conds := map[string]string{}
	for _, f := range files { // fs.Glob returns them sorted: migration order
		body, err := fs.ReadFile(migrationFS, f)
		require.NoError(t, err)
		up := upSection(string(body))
		type event struct {
			at         int
			name, cond string
			drop       bool
		}
		var events []event
		for _, m := range dropIndexRE.FindAllStringSubmatchIndex(up, -1) {
			events = append(events, event{at: m[0], name: up[m[2]:m[3]], drop: true})
		}
		for _, m := range partialIndexRE.FindAllStringSubmatchIndex(up, -1) {
			events = append(events, event{at: m[0], name: up[m[2]:m[3]], cond: strings.Join(strings.Fields(up[m[4]:m[5]]), " ")})
		}
		sort.Slice(events, func(i, j int) bool { return events[i].at < events[j].at })
		for _, e := range events {
			if e.drop {
				delete(conds, e.name)
			} else {
				conds[e.name] = e.cond
			}
		}
	}
	return conds
}

// The partial indexes' conditions are written out in the migrations; the queries
// that rely on them build the same conditions from models. SQLite uses a partial
// index only when the query repeats its condition, so the two must stay equal: a
// status added to a models list without a migration fails here, not in
// production as a silent full scan. SQLite's conditions are chains of
// equalities (an IN list of three or more constants would build an ephemeral
// b-tree on every write of the row); PostgreSQL's stay IN lists of the same
// values, which its planner proves from the queries' chains.
func TestMigrationIndexListsMatchModels(t *testing.T) {
	// Each partial index on a status list, and the set its queries use.
	wantIndexes := map[string]sqlSet{
		"subscriptions_due":              sqlBillable,
		"charge_attempts_one_unresolved": sqlUnresolved,
		"charge_attempts_unresolved_age": sqlUnresolved,
		"charge_attempts_one_open":       sqlOpen,
		"charge_attempts_attention":      sqlAttention,
	}
	inList := func(s sqlSet) string { return "status IN (" + strings.Join(s, ",") + ")" }
	for _, dialect := range []string{SQLite, Postgres} {
		t.Run(dialect, func(t *testing.T) {
			conds := finalPartialIndexes(t, dialect)
			for name, set := range wantIndexes {
				cond, ok := conds[name]
				require.Truef(t, ok, "no migration leaves partial index %s", name)
				want := inList(set)
				if dialect == SQLite {
					want = set.in("status")
				}
				require.Truef(t, strings.Contains(cond, want), "index %s: condition %q does not contain %q", name, cond, want)
			}
			if dialect == SQLite {
				for name, cond := range conds {
					require.NotRegexpf(t, `(?i)\bIN\s*\(\s*'[^)]*,[^)]*,`, cond,
						"SQLite index %s: an IN list of three or more constants builds an ephemeral b-tree on every write of the row; write a chain of equalities", name)
				}
			}
		})
	}
	// The queries that must stay on those indexes carry the conditions verbatim.
	for _, tc := range []struct {
		query, cond string
	}{
		{dueSubscriptionsQuery, sqlBillable.in("status")},
		{claimReplayQuery, sqlUnresolved.in("status")},
		{claimNewQuery, sqlOpen.in("ca.status")},
	} {
		require.True(t, strings.Contains(tc.query, tc.cond), "query lost %q:\n%s", tc.cond, tc.query)
	}
}
