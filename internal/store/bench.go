package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/jackc/pgx/v5/pgconn"
)

// What `billingd bench --driver postgres` asks of the server beyond the
// billing schema: a fresh database of its own (created and dropped through a
// store opened on the DSN it was given), and the figures it prints about the
// server — its backends' process ids, committed transactions, size.

// benchDatabaseName is what CreateDatabase and DropDatabase accept: a plain
// lower-case identifier, so that it needs no quoting.
var benchDatabaseName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates an empty PostgreSQL database named name on the
// store's server.
func (s *Store) CreateDatabase(ctx context.Context, name string) error {
	if err := s.serverDDL(name); err != nil {
		return err
	}
	_, err := s.sqlDB.ExecContext(ctx, "CREATE DATABASE "+name)
	return err
}

// DropDatabase drops the PostgreSQL database name, disconnecting whoever is
// still connected to it (WITH (FORCE), PostgreSQL 13 and later).
func (s *Store) DropDatabase(ctx context.Context, name string) error {
	if err := s.serverDDL(name); err != nil {
		return err
	}
	_, err := s.sqlDB.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	return err
}

func (s *Store) serverDDL(name string) error {
	if s.dialect != Postgres {
		return errors.New("store: databases are created on PostgreSQL only")
	}
	if !benchDatabaseName.MatchString(name) {
		return fmt.Errorf("store: %q is not a plain database name", name)
	}
	return nil
}

// DSNWithDatabase is dsn (a URL or key=value DSN) pointed at database name
// on the same server, with the same user and options.
func DSNWithDatabase(dsn, name string) (string, error) {
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return "", err
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path, u.RawPath = "/"+name, ""
		return u.String(), nil
	}
	// In a key=value DSN the last value of a key wins.
	return strings.TrimSpace(dsn) + " dbname=" + name, nil
}

// ServerBackends are the process ids of the PostgreSQL backends serving
// clients of the store's database, except the caller's own connection, and
// the id of that connection's backend (whose parent is the postmaster).
func (s *Store) ServerBackends(ctx context.Context) (pids []int, self int, err error) {
	if s.dialect != Postgres {
		return nil, 0, errors.New("store: server backends exist on PostgreSQL only")
	}
	conn, err := s.sqlDB.Conn(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	if err := conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&self); err != nil {
		return nil, 0, err
	}
	rows, err := conn.QueryContext(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, 0, err
		}
		pids = append(pids, pid)
	}
	return pids, self, rows.Err()
}

// CommittedTransactions is PostgreSQL's count of transactions committed in
// the store's database (pg_stat_database.xact_commit), as of the statistics
// the backends last reported (they report at most once a second while busy,
// and when they exit).
func (s *Store) CommittedTransactions(ctx context.Context) (int64, error) {
	if s.dialect != Postgres {
		return 0, errors.New("store: transaction statistics exist on PostgreSQL only")
	}
	var n int64
	err := s.sqlDB.QueryRowContext(ctx, `SELECT pg_stat_get_db_xact_commit(oid) FROM pg_database WHERE datname = current_database()`).Scan(&n)
	return n, err
}

// ServerVersion is the PostgreSQL server's version string (server_version).
func (s *Store) ServerVersion(ctx context.Context) (string, error) {
	var v string
	err := s.sqlDB.QueryRowContext(ctx, `SHOW server_version`).Scan(&v)
	return v, err
}

// DatabaseSize is the PostgreSQL database's size on disk in bytes.
func (s *Store) DatabaseSize(ctx context.Context) (int64, error) {
	if s.dialect != Postgres {
		return 0, errors.New("store: DatabaseSize is for PostgreSQL; a SQLite database is its files")
	}
	var n int64
	err := s.sqlDB.QueryRowContext(ctx, `SELECT pg_database_size(current_database())`).Scan(&n)
	return n, err
}

// AttemptTime is when a charge attempt was claimed (created) and when its
// outcome was recorded (zero while unresolved).
type AttemptTime struct {
	Created, Finished time.Time
}

// AttemptTimes lists every charge attempt's claim and outcome times: the
// load tool's latency and throughput-over-time figures.
func (s *Store) AttemptTimes(ctx context.Context) ([]AttemptTime, error) {
	var rows []struct {
		CreatedAt  time.Time
		FinishedAt *time.Time
	}
	if err := s.db.WithContext(ctx).Model(&models.ChargeAttempt{}).Select("created_at, finished_at").Order("id").Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]AttemptTime, len(rows))
	for i, r := range rows {
		out[i].Created = r.CreatedAt
		if r.FinishedAt != nil {
			out[i].Finished = *r.FinishedAt
		}
	}
	return out, nil
}
