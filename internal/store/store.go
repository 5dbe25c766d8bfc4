// Package store owns billingd's database: opening it (SQLite as the embedded default,
// PostgreSQL for several instances), its versioned migrations, and every query,
// claim and lease. Callers compose state transitions from Tx methods inside one
// InTx call, so that each transition is a single transaction.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule/period"
)

// Dialects billingd supports.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// Options say which database to open and how.
type Options struct {
	Driver string // sqlite | postgres
	DSN    string // a file path (sqlite) or a PostgreSQL URL / key=value DSN
	// Synchronous is SQLite's synchronous pragma: "full" (default: a committed
	// charge survives power loss) or "normal".
	Synchronous string
	// BusyTimeout is how long a SQLite writer waits for the write lock.
	BusyTimeout time.Duration
	// MaxOpenConns caps the pool; 0 picks a default per driver.
	MaxOpenConns int
	// PgBouncer (database.pgbouncer) says the PostgreSQL DSN reaches the
	// server through a transaction-pooling PgBouncer: statements are sent
	// without named prepared statements (PgBouncerQueryExecMode) unless the
	// DSN names its own QueryExecModeParam.
	PgBouncer bool
	// Exclusive takes the SQLite instance lock: only one billing process may work
	// on a SQLite file, because SQLite claims cannot fence a second writer the way
	// PostgreSQL's row locks do. Read-only tools (status) leave it false.
	Exclusive bool
	// OnAttemptSettled, when set, is told of every charge attempt that moved into
	// a new status, after the transaction that moved it committed — whichever
	// path moved it (the attempt's own answer, a webhook, the reconciler, a pay
	// page). It is the one place outcomes are counted (the /metrics counter), so
	// that a count can never miss a path or count a rolled-back write.
	OnAttemptSettled func(models.AttemptStatus)
	// OnRefundSettled, like OnAttemptSettled, is told of every refund that
	// moved into a final status (succeeded, failed, canceled, needs_review),
	// after the commit: the /metrics refund counter.
	OnRefundSettled func(models.RefundReason, models.RefundStatus)
	// DefaultTimezone is the configured default zone (schedule.timezone), an
	// IANA name. Each subscription keeps its own zone; this one is given to
	// subscriptions that existed before they had one (Migrate, once: their
	// periods were computed in the configured zone until then) and to imported
	// rows that name none (UTC when this is empty).
	DefaultTimezone string
	// Events, when set, turns the outbox to the merchant's systems on: every
	// Tx.Emit of a committed transaction becomes an events row.
	Events *EventOptions
}

// Store is an open database.
type Store struct {
	db      *gorm.DB
	sqlDB   *sql.DB
	dialect string
	lock    *os.File
	path    string
	// writeMu queues this process's SQLite write transactions in Go. SQLite has
	// one write lock; without this, connections that find it taken back off in
	// its busy handler with sleeps of milliseconds, which under load costs more
	// than the transactions themselves. PostgreSQL does not take it.
	writeMu sync.Mutex
	// lockWait is how long, in all, a SQLite BEGIN keeps trying when another
	// process holds the write lock past busy_timeout (SetLockWait); 0 tries
	// once.
	lockWait atomic.Int64
	// writer is the one SQLite connection transactions run on, and wdb the
	// GORM handle over it that keeps its statements prepared: database/sql
	// re-prepares a statement in every transaction, and parsing the same few
	// statements again for every charge was a quarter of billingd's CPU.
	writer *sql.Conn
	wdb    *gorm.DB
	// onSettled is Options.OnAttemptSettled.
	onSettled func(models.AttemptStatus)
	// onRefund is Options.OnRefundSettled.
	onRefund func(models.RefundReason, models.RefundStatus)
	// defaultZone is Options.DefaultTimezone.
	defaultZone string
	// fileNotices say which database files Open tightened to 0600.
	fileNotices []string
	// health is the verdict on whether the database takes writes (health.go).
	health writeHealth
	// events is Options.Events (nil: the outbox is off).
	events *EventOptions
	// counts is what the pool's connections sent (DBCounts).
	counts *dbCounter
}

// ErrClosed means the store was closed (the process is shutting down): the
// write did not happen.
var ErrClosed = errors.New("store: database closed")

// ErrLocked means another billingd process holds the SQLite instance lock.
var ErrLocked = errors.New("database is in use by another billingd process")

// Open connects to the database. It does not migrate.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Events != nil && opts.Events.Renderer == nil {
		return nil, errors.New("store: events are on but no renderer was given")
	}
	s := &Store{dialect: opts.Driver, onSettled: opts.OnAttemptSettled, onRefund: opts.OnRefundSettled, defaultZone: opts.DefaultTimezone,
		events: opts.Events, counts: &dbCounter{}}
	var dialector gorm.Dialector
	// pool is the connection pool, opened here (not by GORM) so that it
	// counts every statement (dbcount.go).
	var pool *sql.DB
	switch opts.Driver {
	case SQLite, "":
		s.dialect = SQLite
		if opts.DSN == "" {
			return nil, errors.New("store: sqlite needs a database file path")
		}
		path, dsn, err := sqliteDSN(opts)
		if err != nil {
			return nil, err
		}
		s.path = path
		notices, err := prepareSQLiteFiles(path, sqliteReadOnly(dsn))
		if err != nil {
			return nil, err
		}
		s.fileNotices = notices
		if opts.Exclusive {
			if err := s.takeInstanceLock(); err != nil {
				return nil, err
			}
		}
		if pool, err = openCountingSQLite(dsn, s.counts); err != nil {
			s.releaseInstanceLock()
			return nil, fmt.Errorf("store: open %s: %w", s.dialect, err)
		}
		dialector = sqlite.New(sqlite.Config{Conn: pool})
	case Postgres:
		if opts.DSN == "" {
			return nil, errors.New("store: postgres needs a DSN")
		}
		dsn := opts.DSN
		if opts.PgBouncer {
			dsn = pgBouncerDSN(dsn)
		}
		var err error
		if pool, err = openCountingPostgres(dsn, s.counts); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", s.dialect, err)
		}
		dialector = postgres.New(postgres.Config{Conn: pool})
	default:
		return nil, fmt.Errorf("store: unknown driver %q", opts.Driver)
	}
	db, err := gorm.Open(dialector, &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
		TranslateError:         true,
	})
	if err != nil {
		_ = pool.Close()
		s.releaseInstanceLock()
		return nil, fmt.Errorf("store: open %s: %w", s.dialect, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		s.releaseInstanceLock()
		return nil, err
	}
	s.db, s.sqlDB = db, sqlDB
	maxConns := opts.MaxOpenConns
	if maxConns == 0 {
		maxConns = 16
		if s.dialect == SQLite {
			// Writers serialize on SQLite's single write lock anyway; a few
			// connections let readers proceed beside the writer under WAL.
			maxConns = 4
		}
	}
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("store: connect %s: %w", s.dialect, err)
	}
	if s.dialect == SQLite {
		if err := s.openWriter(ctx); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("store: connect %s: %w", s.dialect, err)
		}
	}
	return s, nil
}

// openWriter sets aside the SQLite connection that runs every transaction, with
// a statement cache. The LRU bound keeps IN (?,?,…) lists of varying length from
// growing the cache without end.
func (s *Store) openWriter(ctx context.Context) error {
	conn, err := s.sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	wdb, err := gorm.Open(sqlite.Dialector{Conn: conn}, &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
		TranslateError:         true,
		PrepareStmt:            true,
		PrepareStmtMaxSize:     256,
		DisableAutomaticPing:   true, // a *sql.Conn cannot be pinged through GORM
	})
	if err != nil {
		_ = conn.Close()
		return err
	}
	s.writer, s.wdb = conn, wdb
	return nil
}

// translateError maps a driver error to GORM's (ErrDuplicatedKey…), as errors of
// statements run through GORM already are.
func translateError(d gorm.Dialector, err error) error {
	if t, ok := d.(gorm.ErrorTranslator); err != nil && ok {
		return t.Translate(err)
	}
	return err
}

// inSQLiteTx runs fn in BEGIN IMMEDIATE … COMMIT on the writer connection, whose
// statements stay prepared from one transaction to the next. The caller holds
// writeMu.
func (s *Store) inSQLiteTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	if err := s.begin(ctx); err != nil {
		return translateError(s.wdb.Dialector, err)
	}
	done := false
	defer func() {
		if !done {
			// fn failed or panicked: undo everything it wrote.
			_, _ = s.writer.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	tx := &Tx{db: s.wdb.WithContext(ctx), dialect: s.dialect, events: s.events}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.flushEvents(); err != nil {
		return err
	}
	if _, err := s.writer.ExecContext(ctx, "COMMIT"); err != nil {
		return translateError(s.wdb.Dialector, err)
	}
	done = true
	s.committed(tx)
	return nil
}

// begin opens the writer's transaction. If an earlier transaction was left open
// (its ROLLBACK failed, say on an I/O error), nothing of it was committed and its
// caller was told so: roll it back and begin again, instead of failing every
// write from then on with "cannot start a transaction within a transaction".
//
// A BEGIN that finds another process's transaction holding the lock past
// database.busy_timeout (a subscription import: one transaction for the whole
// file, about 40 s for a million rows) is tried again, until ctx ends or the
// lock wait (SetLockWait) has passed, so the daemon's writes wait for the
// import to commit instead of failing with "database is locked". Nothing was
// written before BEGIN, so trying again is safe.
func (s *Store) begin(ctx context.Context) error {
	deadline := time.Now().Add(time.Duration(s.lockWait.Load()))
	for {
		err := s.beginOnce(ctx)
		if err == nil || !isBusy(err) || !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// DaemonLockWait is the lock wait `billingd run` sets: long enough for a
// million-row import to commit, short enough that a lock nobody releases
// still ends in an error.
const DaemonLockWait = 10 * time.Minute

// SetLockWait makes SQLite write transactions of this Store keep trying to
// begin, for up to d in all, while another process holds the write lock past
// busy_timeout. The long-running daemon sets DaemonLockWait; one-shot commands
// leave 0 (one try) and fail fast, naming the database, so a stuck lock shows.
func (s *Store) SetLockWait(d time.Duration) { s.lockWait.Store(int64(d)) }

// isBusy reports SQLITE_BUSY ("database is locked"): another connection holds
// the write lock.
func isBusy(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "database is locked") || strings.Contains(err.Error(), "SQLITE_BUSY"))
}

func (s *Store) beginOnce(ctx context.Context) error {
	_, err := s.writer.ExecContext(ctx, "BEGIN IMMEDIATE")
	if err == nil || !strings.Contains(err.Error(), "within a transaction") {
		return err
	}
	if _, rerr := s.writer.ExecContext(ctx, "ROLLBACK"); rerr != nil {
		return errors.Join(err, rerr)
	}
	_, err = s.writer.ExecContext(ctx, "BEGIN IMMEDIATE")
	return err
}

// sqliteDSN turns a file path (optionally with its own query) into a go-sqlite3 DSN
// with the pragmas billingd relies on: WAL so readers never block the writer,
// busy_timeout so writers queue instead of failing, IMMEDIATE transactions so a
// write transaction takes the lock at BEGIN (no upgrade deadlocks), FULL sync by
// default so a committed attempt survives a power cut, and foreign keys on.
func sqliteDSN(opts Options) (path, dsn string, err error) {
	path, query, _ := strings.Cut(strings.TrimPrefix(opts.DSN, "file:"), "?")
	if path == "" || path == ":memory:" {
		return "", "", errors.New("store: sqlite needs a database file path (in-memory databases lose money state)")
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return "", "", fmt.Errorf("store: sqlite dsn query: %w", err)
	}
	sync := strings.ToUpper(opts.Synchronous)
	if sync == "" {
		sync = "FULL"
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	set := func(k, v string) {
		if params.Get(k) == "" {
			params.Set(k, v)
		}
	}
	set("_journal_mode", "WAL")
	set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	set("_txlock", "immediate")
	set("_synchronous", sync)
	set("_foreign_keys", "1")
	// 16 MiB of page cache per connection instead of SQLite's 2 MiB: a pass
	// touches the right edges of a dozen indexes in every transaction, and with
	// the default the writer re-read them from the OS (an attempt's result
	// UPDATE took 86µs instead of 47µs).
	set("_cache_size", "-16384")
	return path, "file:" + path + "?" + params.Encode(), nil
}

// sqliteReadOnly reports whether a go-sqlite3 DSN opens the file read-only.
func sqliteReadOnly(dsn string) bool {
	_, query, _ := strings.Cut(dsn, "?")
	params, _ := url.ParseQuery(query)
	return params.Get("mode") == "ro"
}

// takeInstanceLock holds an exclusive flock on "<db>.lock" for the life of the Store.
func (s *Store) takeInstanceLock() error {
	lockPath := s.path + ".lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return fmt.Errorf("store: open lock file %s: %w", lockPath, err)
	}
	// Exactly 0600 whatever the umask (prepareSQLiteFiles tightened an older,
	// looser lock file already).
	_ = f.Chmod(FileMode)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lockPath)
		_ = f.Close()
		pid := strings.TrimSpace(string(holder))
		if pid == "" {
			pid = "unknown"
		}
		return fmt.Errorf("%w: %s is locked by pid %s (lock file %s); only one billingd may run on a SQLite database — use PostgreSQL to run several", ErrLocked, s.path, pid, lockPath)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	s.lock = f
	return nil
}

func (s *Store) releaseInstanceLock() {
	if s.lock != nil {
		_ = syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
		_ = s.lock.Close()
		s.lock = nil
	}
}

// Close closes the pool and releases the instance lock.
func (s *Store) Close() error {
	var err error
	// A write still running finishes first; a write that comes later gets
	// ErrClosed instead of a closed connection.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.wdb != nil {
		if p, ok := s.wdb.ConnPool.(*gorm.PreparedStmtDB); ok {
			// GORM closes evicted statements in goroutines; close them here
			// first, or SQLite keeps the file open (a "zombie" connection)
			// until those goroutines run.
			for _, key := range p.Stmts.Keys() {
				if st, ok := p.Stmts.Get(key); ok {
					_ = st.Close()
				}
			}
			p.Close()
		}
		_ = s.writer.Close()
		s.wdb, s.writer = nil, nil
	}
	if s.sqlDB != nil {
		err = s.sqlDB.Close()
	}
	s.releaseInstanceLock()
	return err
}

// Dialect is "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

// Exclusive reports whether this process is the only one allowed to work on the
// database (SQLite with the instance lock). Then every lease in the database was
// written by a dead process and can be reclaimed at once.
func (s *Store) Exclusive() bool { return s.lock != nil }

// Path is the SQLite file path ("" for PostgreSQL).
func (s *Store) Path() string { return s.path }

// DB exposes the GORM handle for read-only reporting and tests.
func (s *Store) DB() *gorm.DB { return s.db }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.sqlDB.PingContext(ctx) }

func (s *Store) migrationProvider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrationFS, "migrations/"+s.dialect)
	if err != nil {
		return nil, err
	}
	dialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	if s.dialect == SQLite {
		opts = append(opts, goose.WithGoMigrations(sqliteRebuilds()...))
	}
	if s.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Several instances may start at once; only one migrates. The lock
		// is a row, not a session advisory lock (pgbouncer.go).
		locker, err := migrationLocker()
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithLocker(locker))
	}
	return goose.NewProvider(dialect, s.sqlDB, sub, opts...)
}

// Migrate applies every pending migration of this dialect, then gives the
// subscriptions that have no time zone yet the configured default
// (Options.DefaultTimezone; see fillTimezones). It returns what it did, one line
// per migration and one for the time zone fill, if any.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	return s.migrate(ctx, 0)
}

// MigrateTo is Migrate stopping after the given migration version. It brings a
// database to the schema an older billingd left, so that upgrades can be tested
// from the real starting point.
func (s *Store) MigrateTo(ctx context.Context, version int64) ([]string, error) {
	if version <= 0 {
		return nil, fmt.Errorf("store: migrate to version %d: versions start at 1", version)
	}
	return s.migrate(ctx, version)
}

// migrate runs goose up to version (0: the latest), then fillTimezones.
func (s *Store) migrate(ctx context.Context, version int64) ([]string, error) {
	p, err := s.migrationProvider()
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	var results []*goose.MigrationResult
	if version == 0 {
		results, err = p.Up(ctx)
	} else {
		results, err = p.UpTo(ctx, version)
	}
	var applied []string
	for _, r := range results {
		if r != nil && r.Source != nil {
			name := baseName(r.Source.Path)
			if name == "" {
				name = "(SQLite table rebuild, internal/store/rebuilds)"
			}
			applied = append(applied, fmt.Sprintf("%05d %s", r.Source.Version, name))
		}
	}
	if err != nil {
		return applied, fmt.Errorf("store: migrate: %w", err)
	}
	current, err := s.schemaVersion(ctx)
	if err != nil {
		return applied, fmt.Errorf("store: migrate: %w", err)
	}
	if current >= timezoneMigration {
		n, err := s.fillTimezones(ctx)
		if err != nil {
			return applied, err
		}
		if n > 0 {
			applied = append(applied, fmt.Sprintf("%d existing subscription(s) given time zone %s", n, s.defaultZone))
		}
	}
	return applied, nil
}

// timezoneMigration is the migration that adds subscriptions.timezone.
const timezoneMigration = 5

// fillTimezones gives every subscription whose timezone is still empty (it existed
// before migration 00005, or an older billingd inserted it since) the configured
// default zone: until now its periods were computed in the configured zone, so
// that zone keeps its calendar where it was. From then on the subscription's
// zone is its own and a change of the configured zone no longer moves it. It
// runs after every migration, so a process that died between the migration and
// the fill leaves nothing unfilled for long; a row without a zone is never billed. With
// no DefaultTimezone configured it refuses rather than guess a zone, because a
// wrong zone would move every existing subscription's periods.
func (s *Store) fillTimezones(ctx context.Context) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		if err := tx.db.Raw(`SELECT COUNT(*) FROM subscriptions WHERE timezone = ''`).Scan(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if s.defaultZone == "" {
			return fmt.Errorf("store: %d subscription(s) have no time zone yet; the store needs the configured zone (schedule.timezone) their periods were computed in to fill it", n)
		}
		if _, err := period.LoadZone(s.defaultZone); err != nil {
			return fmt.Errorf("store: default time zone for existing subscriptions: %w", err)
		}
		return tx.db.Exec(`UPDATE subscriptions SET timezone = ?, updated_at = ? WHERE timezone = ''`, s.defaultZone, time.Now().UTC()).Error
	})
	if err != nil {
		return 0, fmt.Errorf("store: fill subscriptions.timezone: %w", err)
	}
	return n, nil
}

// MigrationsCurrent reports whether every embedded migration has been applied.
func (s *Store) MigrationsCurrent(ctx context.Context) (bool, error) {
	p, err := s.migrationProvider()
	if err != nil {
		return false, err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, err
	}
	return !pending, nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// Tx is one database transaction. Its methods are the building blocks of state
// transitions; a transition is one InTx call.
type Tx struct {
	db      *gorm.DB
	dialect string
	// settled collects the statuses attempts moved into, reported to
	// Options.OnAttemptSettled once the transaction committed.
	settled []models.AttemptStatus
	// refunds collects the refunds that reached a final status, reported to
	// Options.OnRefundSettled once the transaction committed.
	refunds []refundMove
	// events is the store's outbox options (nil: off); emitted the events
	// of this transaction not yet written (events.go).
	events  *EventOptions
	emitted []EventRef
}

type refundMove struct {
	reason models.RefundReason
	status models.RefundStatus
}

// refundMoved notes that a refund moved into status in this transaction; only
// final statuses count.
func (tx *Tx) refundMoved(reason models.RefundReason, status models.RefundStatus) {
	if status.Open() {
		return
	}
	tx.refunds = append(tx.refunds, refundMove{reason, status})
}

// attemptMoved notes that an attempt moved into status in this transaction.
// Only outcomes count: pending, unknown and processing are on the way to one.
func (tx *Tx) attemptMoved(status models.AttemptStatus) {
	if status.Unresolved() {
		return
	}
	tx.settled = append(tx.settled, status)
}

// committed reports the transaction's attempt transitions after its commit.
func (s *Store) committed(tx *Tx) {
	if s.onRefund != nil {
		for _, m := range tx.refunds {
			s.onRefund(m.reason, m.status)
		}
	}
	if s.onSettled == nil {
		return
	}
	for _, st := range tx.settled {
		s.onSettled(st)
	}
}

// InTx runs fn in a transaction (BEGIN IMMEDIATE on SQLite) and commits if it
// returns nil. No HTTP call may happen inside fn, and fn must not call Store
// methods that write: on SQLite every write of this process queues on one writer,
// so such a call would wait for itself. Writes inside fn go through tx.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	defer func() {
		if err != nil {
			s.noteWriteFailure(err)
		}
	}()
	if s.dialect == SQLite {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		if s.writer == nil {
			return ErrClosed
		}
		return s.inSQLiteTx(ctx, fn)
	}
	var tx *Tx
	err = s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		tx = &Tx{db: db, dialect: s.dialect, events: s.events}
		if err := fn(tx); err != nil {
			return err
		}
		return tx.flushEvents()
	})
	if err == nil && tx != nil {
		s.committed(tx)
	}
	return err
}

// read runs fn's reads in a read transaction on the pool, outside the
// writer's queue: fn must not write (the Tx methods that read serve both).
func (s *Store) read(ctx context.Context, fn func(tx *Tx) error) error {
	return s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		return fn(&Tx{db: db, dialect: s.dialect})
	})
}

// DB exposes the transaction's GORM handle for queries the Tx methods do not cover.
func (tx *Tx) DB() *gorm.DB { return tx.db }

// exec runs one of the hot statements of a charge straight on the transaction's
// connection, without GORM building the statement: q uses ? placeholders (turned
// into $n for PostgreSQL) and args are plain driver values. On SQLite the writer
// connection's statement cache still applies. Returns the rows affected.
func (tx *Tx) exec(q string, args ...any) (int64, error) {
	res, err := tx.db.Statement.ConnPool.ExecContext(tx.db.Statement.Context, tx.dialectSQL(q), args...)
	if err != nil {
		return 0, translateError(tx.db.Dialector, err)
	}
	return res.RowsAffected()
}

// query is exec for a statement that returns rows; the caller closes them.
func (tx *Tx) query(q string, args ...any) (*sql.Rows, error) {
	rows, err := tx.db.Statement.ConnPool.QueryContext(tx.db.Statement.Context, tx.dialectSQL(q), args...)
	return rows, translateError(tx.db.Dialector, err)
}

// queryID runs a hot single-value lookup like exec does; found is false when it
// returned no row.
func (tx *Tx) queryID(q string, args ...any) (id int64, found bool, err error) {
	err = tx.db.Statement.ConnPool.QueryRowContext(tx.db.Statement.Context, tx.dialectSQL(q), args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return id, err == nil, err
}

func (tx *Tx) dialectSQL(q string) string {
	if tx.dialect == Postgres {
		return numberPlaceholders(q)
	}
	return q
}

// numberPlaceholders rewrites ? as $1, $2, … (the statements passed to exec
// have no ? inside string literals).
func numberPlaceholders(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// forUpdateSkipLocked returns the locking clause for claims: PostgreSQL rows are
// locked so concurrent instances skip each other's work; SQLite's IMMEDIATE
// transaction already holds the database's single write lock.
func (tx *Tx) forUpdateSkipLocked() string {
	if tx.dialect == Postgres {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// probeFence ends a correlated EXISTS probe of a claim query on PostgreSQL:
// OFFSET 0 keeps the planner from pulling the subquery up into a semi or anti
// join, so it stays a subplan run for each candidate row (index lookups) and
// the claim's cost follows its LIMIT instead of the table statistics, which a
// pass outruns by creating the rows it claims. SQLite plans EXISTS per row
// anyway (and allows OFFSET only after a LIMIT), so it gets nothing.
func (tx *Tx) probeFence() string {
	if tx.dialect == Postgres {
		return " OFFSET 0"
	}
	return ""
}

// claimRows runs a claim query q (which must lock its rows on PostgreSQL, see
// forUpdateSkipLocked) and leases every row it returns to owner until until,
// bumping each row's lease_version so that writes of an older claim are fenced.
func claimRows[T any, P interface {
	*T
	models.Leased
}](tx *Tx, table, q string, args []any, owner string, until, now time.Time) ([]T, error) {
	var rows []T
	if err := tx.db.Raw(q, args...).Scan(&rows).Error; err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(rows))
	for i := range rows {
		p := P(&rows[i])
		ids[i] = p.RowID()
		p.TakeLease(owner, until)
	}
	err := tx.db.Exec(`UPDATE `+table+` SET lease_owner = ?, lease_until = ?, lease_version = lease_version + 1, updated_at = ?
	                    WHERE id IN ?`, owner, until, now, ids).Error
	return rows, err
}
