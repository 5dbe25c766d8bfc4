// Package storetest opens migrated databases for tests: a fresh SQLite file in
// t.TempDir() always, and a fresh PostgreSQL schema when BILLINGD_TEST_POSTGRES_DSN
// is set. Each test gets its own database, because CI shares one PostgreSQL server
// with whatever earlier runs left behind.
package storetest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// PostgresEnv names the variable holding the test server's DSN.
const PostgresEnv = "BILLINGD_TEST_POSTGRES_DSN"

// SQLite opens a migrated SQLite database in a temporary directory, holding the
// instance lock like the daemon does.
func SQLite(t testing.TB) *store.Store {
	t.Helper()
	return SQLiteAt(t, filepath.Join(t.TempDir(), "billingd.db"))
}

// SQLiteAt opens (and migrates) the SQLite file at path.
func SQLiteAt(t testing.TB, path string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: path, Exclusive: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.Migrate(context.Background())
	require.NoError(t, err)
	return st
}

// PostgresDSN returns a DSN for a new, empty schema on the test server (dropped
// when the test ends), or skips the test when no server is configured.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skipf("PostgreSQL tests skipped: set %s (for example postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) to run them", PostgresEnv)
	}
	schema := fmt.Sprintf("billingd_test_%d_%d", time.Now().UnixNano(), os.Getpid())
	admin, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: base, MaxOpenConns: 1})
	require.NoError(t, err, "connect to %s", PostgresEnv)
	require.NoError(t, admin.DB().Exec("CREATE SCHEMA "+schema).Error)
	t.Cleanup(func() {
		_ = admin.DB().Exec("DROP SCHEMA " + schema + " CASCADE").Error
		_ = admin.Close()
	})
	return WithSearchPath(base, schema)
}

// Postgres opens a migrated store on a fresh schema, or skips.
func Postgres(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: PostgresDSN(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.Migrate(context.Background())
	require.NoError(t, err)
	return st
}

// WithSearchPath points a URL or key=value DSN at schema.
func WithSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}

// Each runs fn against SQLite and, when configured, PostgreSQL, as subtests.
func Each(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// Subscription describes a subscription to seed; zero fields get defaults.
type Subscription struct {
	Reference     string
	Customer      string
	PaymentMethod string
	Amount        int64
	Currency      string
	Interval      string
	IntervalCount int
	Anchor        time.Time
}

// Seed imports subscriptions through the real import path.
func Seed(t testing.TB, st *store.Store, now time.Time, subs ...Subscription) {
	t.Helper()
	rows := make([]store.ImportRow, len(subs))
	for i, s := range subs {
		if s.Reference == "" {
			s.Reference = fmt.Sprintf("sub-%d", i+1)
		}
		if s.Customer == "" {
			s.Customer = fmt.Sprintf("cus_%s", s.Reference)
		}
		if s.PaymentMethod == "" {
			s.PaymentMethod = fmt.Sprintf("pm_%s", s.Reference)
		}
		if s.Amount == 0 {
			s.Amount = 1000
		}
		if s.Currency == "" {
			s.Currency = "USD"
		}
		if s.Interval == "" {
			s.Interval = "month"
		}
		if s.IntervalCount == 0 {
			s.IntervalCount = 1
		}
		if s.Anchor.IsZero() {
			s.Anchor = now
		}
		rows[i] = store.ImportRow{Line: i + 2, Reference: s.Reference, Email: s.Reference + "@example.com", Customer: s.Customer,
			PaymentMethod: s.PaymentMethod, Amount: s.Amount, Currency: s.Currency, Interval: s.Interval,
			IntervalCount: s.IntervalCount, Anchor: s.Anchor, FirstBilling: s.Anchor}
	}
	_, err := st.ImportSubscriptions(context.Background(), rows, now)
	require.NoError(t, err)
}
