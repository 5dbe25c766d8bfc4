package store

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/pressly/goose/v3/lock"
)

// Nothing billingd does on PostgreSQL depends on the state of one server
// session, so that it runs through a transaction-pooling PgBouncer, which
// hands each transaction (and each statement outside one) to whichever server
// connection is free: it sends no SET and uses no advisory lock, temporary
// table or LISTEN, and the two pieces of session state the libraries would
// use are replaced here — goose's migration lock (a session advisory lock)
// by a lock row, and, when database.pgbouncer is set, pgx's named prepared
// statements by statements sent whole each time.

// QueryExecModeParam is the pgx DSN parameter that says how statements are
// sent. pgx's default, cache_statement, prepares each statement once per
// connection under a name and runs it by that name afterwards: a
// transaction-pooling PgBouncer before 1.21 (Debian 12 ships 1.18) sends the
// name to a server connection that never prepared it ("prepared statement
// … does not exist"). PgBouncerQueryExecMode sends each statement with its
// arguments in one round trip and no name.
const QueryExecModeParam = "default_query_exec_mode"

// PgBouncerQueryExecMode is the mode Options.PgBouncer sets: pgx's exec
// mode, the extended protocol with an unnamed statement, parsed and planned
// by the server on every execution. On a direct connection it costs a
// fraction of a millisecond of server CPU per statement more than prepared
// statements (docs/performance.md), which is why it is not the default.
const PgBouncerQueryExecMode = "exec"

var kvExecMode = regexp.MustCompile(`(?:^|\s)` + QueryExecModeParam + `\s*=\s*'?([A-Za-z_]*)`)

// dsnQueryExecMode is the QueryExecModeParam a URL or key=value DSN names,
// or "" when it names none.
func dsnQueryExecMode(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return ""
		}
		return u.Query().Get(QueryExecModeParam)
	}
	if m := kvExecMode.FindStringSubmatch(dsn); m != nil {
		return m[1]
	}
	return ""
}

// pgBouncerDSN adds QueryExecModeParam=PgBouncerQueryExecMode to dsn unless
// it names a mode of its own.
func pgBouncerDSN(dsn string) string {
	if dsnQueryExecMode(dsn) != "" {
		return dsn
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		q := u.Query()
		q.Set(QueryExecModeParam, PgBouncerQueryExecMode)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return strings.TrimSpace(dsn) + " " + QueryExecModeParam + "=" + PgBouncerQueryExecMode
}

// Migration lock timings. Several instances starting at once all try to
// migrate; one holds the lock row while the others try again every
// migrationLockRetry, for up to migrationLockWait. A process killed while
// migrating leaves the row, which the next one takes once its lease
// (migrationLockLease, renewed every migrationLockRenew while the
// migrations run) has run out.
const (
	migrationLockRetry = time.Second
	migrationLockWait  = 5 * time.Minute
	migrationLockLease = 30 * time.Second
	migrationLockRenew = 5 * time.Second
)

// MigrationLockTable is the table of goose's lock row on PostgreSQL.
const MigrationLockTable = lock.DefaultLockTableName

// migrationLocker is the PostgreSQL migration lock: a row in
// MigrationLockTable with a lease, taken and renewed by ordinary
// statements, instead of goose's session advisory lock, which a
// transaction-pooling PgBouncer would take on one server connection and try
// to release on another.
func migrationLocker() (lock.Locker, error) {
	return lock.NewPostgresTableLocker(
		lock.WithTableName(MigrationLockTable),
		lock.WithTableLeaseDuration(migrationLockLease),
		lock.WithTableHeartbeatInterval(migrationLockRenew),
		lock.WithTableLockTimeout(migrationLockRetry, uint64(migrationLockWait/migrationLockRetry)),
	)
}

// goose's version table.
const gooseVersionTable = "goose_db_version"

// schemaVersion reads the newest applied migration straight from goose's
// version table (0 when it does not exist yet), without goose's provider,
// which would take the migration lock for it: every heartbeat of every
// instance reads it.
func (s *Store) schemaVersion(ctx context.Context) (int64, error) {
	exists := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '` + gooseVersionTable + `'`
	if s.dialect == Postgres {
		exists = `SELECT COUNT(*) FROM (SELECT to_regclass('` + gooseVersionTable + `') AS t) r WHERE t IS NOT NULL`
	}
	var n int
	if err := s.sqlDB.QueryRowContext(ctx, exists).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var v int64
	if err := s.sqlDB.QueryRowContext(ctx, `SELECT COALESCE(MAX(version_id), 0) FROM `+gooseVersionTable).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}
