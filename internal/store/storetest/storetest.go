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

// Open opens a migrated store of the driver: SQLite (the store's default
// synchronous=FULL) or PostgreSQL, which skips without a server. A benchmark's
// db=sqlite and db=postgres sub-benchmarks share one body through it.
func Open(t testing.TB, driver string) *store.Store {
	t.Helper()
	if driver == store.Postgres {
		return Postgres(t)
	}
	return SQLite(t)
}

// WithSearchPath points a URL or key=value DSN at schema.
func WithSearchPath(dsn, schema string) string { return WithParam(dsn, "search_path", schema) }

// WithParam sets one parameter of a URL or key=value DSN.
func WithParam(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " " + key + "=" + value
}

// Each runs fn against SQLite and, when configured, PostgreSQL, as subtests.
func Each(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// EachUnmigrated is Each for tests of migrations themselves. fn gets open, which
// opens a store with opts (Driver and DSN filled in) on the subtest's one
// database, empty and not migrated at first; fn migrates it as far as it wants.
// Calling open again opens the same database once more, as a second process
// (an older billingd, say) would: pass Exclusive only to one of them.
func EachUnmigrated(t *testing.T, fn func(t *testing.T, open func(opts store.Options) *store.Store)) {
	t.Helper()
	opener := func(t *testing.T, driver, dsn string) func(store.Options) *store.Store {
		return func(opts store.Options) *store.Store {
			opts.Driver, opts.DSN = driver, dsn
			st, err := store.Open(context.Background(), opts)
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st
		}
	}
	t.Run("sqlite", func(t *testing.T) { fn(t, opener(t, store.SQLite, filepath.Join(t.TempDir(), "billingd.db"))) })
	t.Run("postgres", func(t *testing.T) { fn(t, opener(t, store.Postgres, PostgresDSN(t))) })
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
	// Timezone is the subscription's IANA zone; "" takes the store's default.
	Timezone string
	// PreviousPaymentID is the card's series payment (Checkout.com's
	// previous_payment_id); "" on WooshPay.
	PreviousPaymentID string
}

// withDefaults fills the zero fields of a seeded subscription (its reference
// must be set): gateway ids derived from the reference, 10.00 USD monthly from
// now.
func (s Subscription) withDefaults(now time.Time) Subscription {
	if s.Customer == "" {
		s.Customer = "cus_" + s.Reference
	}
	if s.PaymentMethod == "" {
		s.PaymentMethod = "pm_" + s.Reference
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
	return s
}

// Seed imports subscriptions through the real import path.
func Seed(t testing.TB, st *store.Store, now time.Time, subs ...Subscription) {
	t.Helper()
	rows := make([]store.ImportRow, len(subs))
	for i, s := range subs {
		if s.Reference == "" {
			s.Reference = fmt.Sprintf("sub-%d", i+1)
		}
		s = s.withDefaults(now)
		rows[i] = store.ImportRow{Line: i + 2, Reference: s.Reference, Email: s.Reference + "@example.com", Customer: s.Customer,
			PaymentMethod: s.PaymentMethod, Amount: s.Amount, Currency: s.Currency, Interval: s.Interval,
			IntervalCount: s.IntervalCount, Anchor: s.Anchor, FirstBilling: s.Anchor, Timezone: s.Timezone,
			PreviousPaymentID: s.PreviousPaymentID}
	}
	_, err := st.ImportSubscriptions(context.Background(), rows, now)
	require.NoError(t, err)
}

// SeedBeforeTimezones inserts subscriptions the way billingd did before
// subscriptions had their own time zone (schema version 4): only the columns
// that version has, so it works on a database migrated with MigrateTo(4). Upgrade
// tests use it to start from the rows an older billingd left. It returns the
// subscriptions' ids, in order.
func SeedBeforeTimezones(t testing.TB, st *store.Store, now time.Time, subs ...Subscription) []int64 {
	t.Helper()
	db := st.DB()
	ids := make([]int64, len(subs))
	for i, s := range subs {
		if s.Reference == "" {
			s.Reference = fmt.Sprintf("old-%d", i+1)
		}
		s = s.withDefaults(now)
		// Subscriptions may share a customer and card, as imported ones do.
		require.NoError(t, db.Exec(`INSERT INTO customers (gateway_customer_id, email, created_at, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (gateway_customer_id) DO NOTHING`, s.Customer, s.Reference+"@example.com", now, now).Error)
		var cus int64
		require.NoError(t, db.Raw(`SELECT id FROM customers WHERE gateway_customer_id = ?`, s.Customer).Scan(&cus).Error)
		require.NoError(t, db.Exec(`INSERT INTO payment_methods (customer_id, gateway_payment_method_id, created_at, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (gateway_payment_method_id) DO NOTHING`, cus, s.PaymentMethod, now, now).Error)
		var pm int64
		require.NoError(t, db.Raw(`SELECT id FROM payment_methods WHERE gateway_payment_method_id = ?`, s.PaymentMethod).Scan(&pm).Error)
		require.NoError(t, db.Exec(`INSERT INTO subscriptions (reference, customer_id, payment_method_id, amount, currency, interval_unit,
			interval_count, anchor_at, next_period, next_billing_at, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 'active', ?, ?)`,
			s.Reference, cus, pm, s.Amount, s.Currency, s.Interval, s.IntervalCount, s.Anchor.UTC(), s.Anchor.UTC(), now, now).Error)
		require.NoError(t, db.Raw(`SELECT id FROM subscriptions WHERE reference = ?`, s.Reference).Scan(&ids[i]).Error)
	}
	return ids
}
