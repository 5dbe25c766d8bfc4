package store

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

func TestSQLList(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"unresolved", sqlUnresolved, "('pending','unknown','processing')"},
		{"open", sqlOpen, "('pending','unknown','processing','requires_action')"},
		{"attention", sqlAttention, "('needs_review','failed')"},
		{"billable", sqlBillable, "('active','past_due')"},
		{"replayable", sqlReplayable, "('pending','unknown')"},
		{"payable invoice", sqlPayableInvoice, "('open','uncollectible')"},
		{"cancelable", sqlCancelable, "('active','past_due','unpaid')"},
		{"one value", sqlList([]models.InvoiceStatus{models.InvoicePaid}), "('paid')"},
		{"quote doubled", sqlList([]string{"a'b", "c"}), "('a''b','c')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.got)
		})
	}
	t.Run("empty panics", func(t *testing.T) {
		require.Panics(t, func() { sqlList([]models.AttemptStatus{}) })
	})
}

// partialIndexRE matches one CREATE INDEX statement with a WHERE clause in a
// migration file: its name and its condition.
var partialIndexRE = regexp.MustCompile(`(?is)CREATE\s+(?:UNIQUE\s+)?INDEX\s+(\w+)\s+ON\s+[^;]*?\sWHERE\s+([^;]*);`)

// statusInRE matches a `status IN (...)` inside an index condition.
var statusInRE = regexp.MustCompile(`(?i)\bstatus\s+IN\s*(\([^)]*\))`)

// The partial indexes' conditions are written out in the migrations; the queries
// that rely on them build the same lists from models. SQLite uses a partial index
// only when the query repeats its condition, so the two texts must stay byte-equal:
// a status added to a models list without a migration fails here, not in
// production as a silent full scan.
func TestMigrationIndexListsMatchModels(t *testing.T) {
	generated := map[string]string{
		sqlUnresolved: "sqlUnresolved",
		sqlOpen:       "sqlOpen",
		sqlAttention:  "sqlAttention",
		sqlBillable:   "sqlBillable",
	}
	// Each partial index on a status list, and the list its queries use.
	wantIndexes := map[string]string{
		"subscriptions_due":              sqlBillable,
		"charge_attempts_one_unresolved": sqlUnresolved,
		"charge_attempts_unresolved_age": sqlUnresolved,
		"charge_attempts_one_open":       sqlOpen,
		"charge_attempts_attention":      sqlAttention,
	}
	for _, dialect := range []string{SQLite, Postgres} {
		t.Run(dialect, func(t *testing.T) {
			files, err := fs.Glob(migrationFS, "migrations/"+dialect+"/*.sql")
			require.NoError(t, err)
			require.NotEmpty(t, files)
			seen := map[string]bool{}
			for _, f := range files {
				body, err := fs.ReadFile(migrationFS, f)
				require.NoError(t, err)
				for _, m := range partialIndexRE.FindAllStringSubmatch(string(body), -1) {
					name, cond := m[1], m[2]
					for _, in := range statusInRE.FindAllStringSubmatch(cond, -1) {
						_, ok := generated[in[1]]
						require.Truef(t, ok, "%s: index %s: status IN %s is none of the lists the store generates", f, name, in[1])
						if want, ok := wantIndexes[name]; ok {
							require.Equalf(t, want, in[1], "%s: index %s", f, name)
						}
						seen[name] = true
					}
				}
			}
			for name := range wantIndexes {
				require.Truef(t, seen[name], "no migration creates partial index %s with a status list", name)
			}
		})
	}
	// The queries that must stay on those indexes carry the conditions verbatim.
	for _, tc := range []struct {
		query, cond string
	}{
		{dueSubscriptionsQuery, "status IN ('active','past_due')"},
		{claimReplayQuery, "status IN ('pending','unknown','processing')"},
		{claimNewQuery, "ca.status IN ('pending','unknown','processing','requires_action')"},
	} {
		require.True(t, strings.Contains(tc.query, tc.cond), "query lost %q:\n%s", tc.cond, tc.query)
	}
}
