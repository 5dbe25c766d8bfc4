package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Whether the database takes writes, for /readyz. A ping proves the database
// answers, not that it can write: a full disk, a read-only file system or a
// read-only PostgreSQL transaction let every read (and a ping) through while
// every charge outcome, webhook and email fails to commit.
//
// The verdict comes from two sources. Every transaction that fails with an
// error that means the storage refuses writes (storageFailure) records the
// failure at once. And when the last verdict is older than WriteProbeEvery,
// the next readiness check makes a probe: one tiny committed write (a row of
// readiness_probes inserted and deleted in one transaction, big enough to need
// new pages), bounded by WriteProbeTimeout; its result is the new verdict.
// Between probes the checks answer from the verdict without touching the
// database, so readiness costs at most one small write every WriteProbeEvery,
// however often it is polled. Successful transactions do not count as
// evidence: many commit nothing (a claim that found no work).

// WriteProbeEvery is the longest a readiness verdict is reused before the next
// check probes again; a failed real write's verdict stands this long too.
const WriteProbeEvery = 2 * time.Second

// WriteProbeTimeout bounds one probe: a write that takes longer (a stalled
// disk, a writer queue that does not move) is reported as not writable.
const WriteProbeTimeout = 2 * time.Second

// probePad is the probe row's payload: larger than two SQLite pages, so the
// insert needs pages of its own (it fails when none can be had, as on a full
// disk or at max_page_count) and its commit appends them to the WAL.
const probePad = 2*4096 + 1

// writeHealth is the store's current verdict on writes.
type writeHealth struct {
	mu      sync.Mutex
	at      time.Time // when the verdict was established; zero: none yet
	err     error     // nil: writable
	probing bool      // a probe is running; checks answer from the verdict
}

// ErrNotWritable wraps what made the database refuse a write.
var ErrNotWritable = errors.New("the database does not take writes")

// noteWriteFailure records a failed transaction whose error says the storage
// refuses writes.
func (s *Store) noteWriteFailure(err error) {
	if !storageFailure(err) {
		return
	}
	h := &s.health
	h.mu.Lock()
	h.at, h.err = time.Now(), err
	h.mu.Unlock()
}

// CheckWritable reports whether the database takes writes: nil, or an error
// wrapping ErrNotWritable that names the cause ("database or disk is full",
// "cannot execute INSERT in a read-only transaction"…) and how long ago it was
// seen. It probes at most every WriteProbeEvery (see the package comment above)
// and otherwise answers from the last verdict, so it is cheap to call on every
// readiness request.
func (s *Store) CheckWritable(ctx context.Context) error {
	h := &s.health
	h.mu.Lock()
	if h.probing || (!h.at.IsZero() && time.Since(h.at) < WriteProbeEvery) {
		err, at := h.err, h.at
		h.mu.Unlock()
		return describeWriteFailure(err, at)
	}
	h.probing = true
	h.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		// The probe finishes (and records its verdict) even when the check
		// stops waiting; probing keeps others from starting a second one.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), WriteProbeTimeout)
		defer cancel()
		err := s.probeWrite(pctx)
		h.mu.Lock()
		h.at, h.err, h.probing = time.Now(), err, false
		h.mu.Unlock()
		done <- err
	}()
	select {
	case err := <-done:
		return describeWriteFailure(err, time.Now())
	case <-time.After(WriteProbeTimeout):
		return fmt.Errorf("%w: a probe write did not complete within %s", ErrNotWritable, WriteProbeTimeout)
	case <-ctx.Done():
		return fmt.Errorf("%w: readiness check ended before the probe write completed: %v", ErrNotWritable, ctx.Err())
	}
}

// describeWriteFailure words a verdict for /readyz.
func describeWriteFailure(err error, at time.Time) error {
	if err == nil {
		return nil
	}
	msg := truncate(err.Error(), 300)
	age := time.Since(at).Round(100 * time.Millisecond)
	return fmt.Errorf("%w: %s (last failed write %s ago)", ErrNotWritable, msg, age)
}

// probeWrite is the probe: insert a readiness_probes row and delete it again,
// committed. Nothing stays behind.
func (s *Store) probeWrite(ctx context.Context) error {
	pad := make([]byte, probePad)
	return s.InTx(ctx, func(tx *Tx) error {
		now := time.Now().UTC()
		id, _, err := tx.queryID(`INSERT INTO readiness_probes (pad, created_at, updated_at) VALUES (?, ?, ?) RETURNING id`, pad, now, now)
		if err != nil {
			return translateError(tx.db.Dialector, err)
		}
		_, err = tx.exec(`DELETE FROM readiness_probes WHERE id = ?`, id)
		return err
	})
}

// storageFailure reports whether err means the database refuses writes — as
// opposed to billingd's own logic refusing one (a lost lease, a constraint, a
// canceled request), which says nothing about the database.
func storageFailure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrClosed) || errors.Is(err, ErrLeaseLost) {
		return false
	}
	// PostgreSQL: pgconn.PgError carries the SQLSTATE.
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		code := pg.SQLState()
		switch {
		case code == "25006", // read_only_sql_transaction
			code == "42501",                // insufficient_privilege
			strings.HasPrefix(code, "53"),  // insufficient resources: disk_full, out_of_memory, too_many_connections
			strings.HasPrefix(code, "58"),  // system error: io_error…
			strings.HasPrefix(code, "08"),  // connection exception
			strings.HasPrefix(code, "57P"): // admin_shutdown, crash_shutdown, cannot_connect_now
			return true
		}
		return false
	}
	msg := err.Error()
	for _, m := range storageMessages {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// storageMessages are SQLite's texts for the result codes that mean the
// storage refuses writes (SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR,
// SQLITE_CANTOPEN, SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_BUSY after the busy
// timeout), and a lost PostgreSQL connection's.
var storageMessages = []string{
	"database or disk is full",
	"attempt to write a readonly database",
	"disk I/O error",
	"unable to open database file",
	"database disk image is malformed",
	"file is not a database",
	"database is locked",
	"failed to connect",
	"conn closed",
	"unexpected EOF",
	"broken pipe",
	"connection reset by peer",
	"connection refused",
}

// ConnectionLost reports whether err is the database connection going away
// under a statement — the server terminated the backend (pg_terminate_backend,
// a restart, a failover), a proxy or the network dropped the connection — as
// opposed to a refused write or a bad statement: a new connection gets past
// it, so a step that failed this way may simply be tried again.
func ConnectionLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		code := pg.SQLState()
		return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "57P")
	}
	msg := err.Error()
	for _, m := range lostConnectionMessages {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// lostConnectionMessages are what the driver says when the connection went
// away without a SQLSTATE (the server's FATAL arrived as the socket closed).
var lostConnectionMessages = []string{
	"broken pipe",
	"connection reset by peer",
	"unexpected EOF",
	"conn closed",
	"connection refused",
	"terminating connection",
}
