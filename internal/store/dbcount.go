package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// The store counts what it sends to its database in one place: a wrapper
// around the database/sql driver's connections, under the pool (and so under
// the SQLite writer connection taken from it, GORM, its prepared statements,
// the store's exec helpers and the migrations alike). Each statement passes
// it exactly once; counting is an atomic add. It exists so that the cost of a
// charge can be read as statements and transactions (`billingd bench`,
// /metrics), not guessed from CPU time.

// DBCounts are the statements and transactions a Store sent to its database
// since it was opened.
type DBCounts struct {
	// Statements is every statement sent: each Exec and Query call, whether
	// it came through GORM, a prepared statement or the store's own helpers,
	// and each BEGIN, COMMIT and ROLLBACK, whether the store sent it as a
	// statement (SQLite's writer: BEGIN IMMEDIATE … COMMIT) or the driver did
	// for a database/sql transaction (the pool's, all of PostgreSQL's). SET
	// LOCAL inside a transaction is a statement like any other. Preparing a
	// statement, a ping, and the driver's own connection checks are not
	// counted; an Exec of several statements in one string (a migration file)
	// counts once.
	Statements int64
	// Committed is the transactions whose COMMIT succeeded, read-only ones
	// included.
	Committed int64
	// RolledBack is the ROLLBACKs sent. On SQLite, the ROLLBACK the store
	// sends after a COMMIT that failed counts here too.
	RolledBack int64
	// CommitFailed is the COMMITs that returned an error.
	CommitFailed int64
	// Autocommit is the statements sent outside BEGIN … COMMIT: each is a
	// transaction of its own for the database (PostgreSQL's xact_commit
	// counts it; on SQLite a write of that kind syncs like a COMMIT).
	Autocommit int64
}

// Sub is c minus earlier: what was sent between two readings.
func (c DBCounts) Sub(earlier DBCounts) DBCounts {
	return DBCounts{
		Statements:   c.Statements - earlier.Statements,
		Committed:    c.Committed - earlier.Committed,
		RolledBack:   c.RolledBack - earlier.RolledBack,
		CommitFailed: c.CommitFailed - earlier.CommitFailed,
		Autocommit:   c.Autocommit - earlier.Autocommit,
	}
}

// DBCounts reads the store's statement and transaction counts: four atomic
// loads, cheap enough to read at every scrape or around a billing pass.
func (s *Store) DBCounts() DBCounts {
	c := s.counts
	if c == nil {
		return DBCounts{}
	}
	return DBCounts{
		Statements:   c.statements.Load(),
		Committed:    c.committed.Load(),
		RolledBack:   c.rolledBack.Load(),
		CommitFailed: c.commitFailed.Load(),
		Autocommit:   c.autocommit.Load(),
	}
}

// dbCounter is the counts of one Store, shared by all its connections.
type dbCounter struct {
	statements   atomic.Int64
	committed    atomic.Int64
	rolledBack   atomic.Int64
	commitFailed atomic.Int64
	autocommit   atomic.Int64
}

// sent counts one statement other than BEGIN, COMMIT or ROLLBACK on cc.
func (cc *countingConn) sent() {
	cc.c.statements.Add(1)
	if !cc.inTx {
		cc.c.autocommit.Add(1)
	}
}

// textStatement counts one statement sent as text on cc. BEGIN, COMMIT and
// ROLLBACK sent that way (the SQLite writer's) start or end a transaction
// too. Testing the length or the first byte first keeps this to a
// comparison or two for every other statement.
func (cc *countingConn) textStatement(query string, err error) {
	switch {
	case len(query) == len("COMMIT") && strings.EqualFold(query, "COMMIT"):
		cc.c.statements.Add(1)
		cc.c.commit(err)
		// A COMMIT SQLite refused (busy) leaves the transaction open; the
		// store's ROLLBACK follows.
		cc.inTx = err != nil && cc.inTx
	case len(query) == len("ROLLBACK") && strings.EqualFold(query, "ROLLBACK"):
		cc.c.statements.Add(1)
		cc.c.rolledBack.Add(1)
		cc.inTx = false
	case len(query) >= len("BEGIN") && (query[0] == 'B' || query[0] == 'b') && strings.EqualFold(query[:len("BEGIN")], "BEGIN"):
		cc.c.statements.Add(1)
		cc.inTx = cc.inTx || err == nil
	default:
		cc.sent()
	}
}

func (c *dbCounter) commit(err error) {
	if err == nil {
		c.committed.Add(1)
	} else {
		c.commitFailed.Add(1)
	}
}

// openCountingSQLite opens a pool on the registered go-sqlite3 driver (the
// one GORM's SQLite dialector opens by name) whose connections count into c.
func openCountingSQLite(dsn string, c *dbCounter) (*sql.DB, error) {
	probe, err := sql.Open("sqlite3", "")
	if err != nil {
		return nil, err
	}
	drv := probe.Driver()
	_ = probe.Close()
	return sql.OpenDB(countingConnector{Connector: dsnConnector{dsn: dsn, drv: drv}, c: c}), nil
}

// openCountingPostgres opens a pool on pgx, configured from dsn as GORM's
// PostgreSQL dialector does when it opens the pool itself (billingd's schema
// has no timestamp-without-time-zone column, so the dialector's extra codec
// for a DSN that names a time zone does not apply), whose connections count
// into c.
func openCountingPostgres(dsn string, c *dbCounter) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(countingConnector{Connector: stdlib.GetConnector(*cfg), c: c}), nil
}

// dsnConnector is database/sql's own connector for a driver without
// driver.DriverContext: Open(dsn) for each connection.
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (d dsnConnector) Connect(context.Context) (driver.Conn, error) { return d.drv.Open(d.dsn) }
func (d dsnConnector) Driver() driver.Driver                        { return d.drv }

type countingConnector struct {
	driver.Connector
	c *dbCounter
}

func (cc countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{conn: conn, c: cc.c}, nil
}

// Close closes the wrapped connector if it holds resources (sql.DB.Close
// calls it).
func (cc countingConnector) Close() error {
	if cl, ok := cc.Connector.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// countingConn passes every call to the driver's connection and counts the
// statements. Each optional interface database/sql looks for is implemented
// and falls back exactly as database/sql itself would when the driver lacks
// it (driver.ErrSkip, no reset, valid), so the pool behaves as before.
type countingConn struct {
	conn driver.Conn
	c    *dbCounter
	// inTx says a transaction is open on the connection. database/sql uses
	// a connection, and its statements, from one goroutine at a time.
	inTx bool
}

var (
	_ driver.ExecerContext      = (*countingConn)(nil)
	_ driver.QueryerContext     = (*countingConn)(nil)
	_ driver.ConnPrepareContext = (*countingConn)(nil)
	_ driver.ConnBeginTx        = (*countingConn)(nil)
	_ driver.Pinger             = (*countingConn)(nil)
	_ driver.SessionResetter    = (*countingConn)(nil)
	_ driver.Validator          = (*countingConn)(nil)
	_ driver.NamedValueChecker  = (*countingConn)(nil)
)

func (cc *countingConn) Prepare(query string) (driver.Stmt, error) {
	st, err := cc.conn.Prepare(query)
	if err != nil {
		return nil, err
	}
	return &countingStmt{stmt: st, cc: cc}, nil
}

func (cc *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	p, ok := cc.conn.(driver.ConnPrepareContext)
	if !ok {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return cc.Prepare(query)
	}
	st, err := p.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &countingStmt{stmt: st, cc: cc}, nil
}

func (cc *countingConn) Close() error { return cc.conn.Close() }

// Begin is driver.Conn's deprecated Begin; database/sql calls BeginTx.
func (cc *countingConn) Begin() (driver.Tx, error) {
	return cc.BeginTx(context.Background(), driver.TxOptions{})
}

func (cc *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var tx driver.Tx
	var err error
	if b, ok := cc.conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		if opts.Isolation != driver.IsolationLevel(sql.LevelDefault) || opts.ReadOnly {
			return nil, errors.New("sql: driver does not support non-default isolation level or read-only transactions")
		}
		tx, err = cc.conn.Begin()
	}
	cc.c.statements.Add(1) // BEGIN
	if err != nil {
		return nil, err
	}
	cc.inTx = true
	return countingTx{tx: tx, cc: cc}, nil
}

func (cc *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := cc.conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := e.ExecContext(ctx, query, args)
	if err != driver.ErrSkip { // database/sql compares it the same way
		cc.textStatement(query, err)
	}
	return res, err
}

func (cc *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := cc.conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != driver.ErrSkip {
		cc.sent()
	}
	return rows, err
}

func (cc *countingConn) Ping(ctx context.Context) error {
	if p, ok := cc.conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (cc *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := cc.conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (cc *countingConn) IsValid() bool {
	if v, ok := cc.conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (cc *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := cc.conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// countingTx counts the COMMIT or ROLLBACK the driver sends for a
// database/sql transaction.
type countingTx struct {
	tx driver.Tx
	cc *countingConn
}

func (t countingTx) Commit() error {
	err := t.tx.Commit()
	t.cc.inTx = false
	t.cc.c.statements.Add(1)
	t.cc.c.commit(err)
	return err
}

func (t countingTx) Rollback() error {
	err := t.tx.Rollback()
	t.cc.inTx = false
	t.cc.c.statements.Add(1)
	t.cc.c.rolledBack.Add(1)
	return err
}

// countingStmt counts each execution of a prepared statement (the SQLite
// writer's statement cache, PostgreSQL statements database/sql prepares).
// Neither driver's statements are column converters, so it is not one.
type countingStmt struct {
	stmt driver.Stmt
	cc   *countingConn
}

var (
	_ driver.StmtExecContext   = (*countingStmt)(nil)
	_ driver.StmtQueryContext  = (*countingStmt)(nil)
	_ driver.NamedValueChecker = (*countingStmt)(nil)
)

func (s *countingStmt) Close() error  { return s.stmt.Close() }
func (s *countingStmt) NumInput() int { return s.stmt.NumInput() }

// Exec is driver.Stmt's deprecated Exec; database/sql calls ExecContext.
func (s *countingStmt) Exec(args []driver.Value) (driver.Result, error) {
	s.cc.sent()
	return s.stmt.Exec(args)
}

// Query is driver.Stmt's deprecated Query; database/sql calls QueryContext.
func (s *countingStmt) Query(args []driver.Value) (driver.Rows, error) {
	s.cc.sent()
	return s.stmt.Query(args)
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := s.stmt.(driver.StmtExecContext); ok {
		s.cc.sent()
		return e.ExecContext(ctx, args)
	}
	values, err := plainValues(args)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Exec(values)
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := s.stmt.(driver.StmtQueryContext); ok {
		s.cc.sent()
		return q.QueryContext(ctx, args)
	}
	values, err := plainValues(args)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Query(values)
}

// CheckNamedValue asks the statement, then its connection, as database/sql
// does when the statement itself is no NamedValueChecker (pgx's connection
// takes every Go value as it is).
func (s *countingStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := s.stmt.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	if n, ok := s.cc.conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// plainValues is database/sql's fallback for a statement without the
// context methods: positional values only.
func plainValues(named []driver.NamedValue) ([]driver.Value, error) {
	values := make([]driver.Value, len(named))
	for i, nv := range named {
		if nv.Name != "" {
			return nil, errors.New("sql: driver does not support the use of Named Parameters")
		}
		values[i] = nv.Value
	}
	return values, nil
}
