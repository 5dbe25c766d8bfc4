package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/money"
)

// Test hooks for package store_test, which (unlike package store) can import
// storetest. Compiled into tests only.

// PlannedSQL is the text of the sweep's and the claims' queries exactly as the
// store sends them on st's dialect: hints and locking suffix included.
type PlannedSQL struct {
	DueSubscriptions string // args: DueSubscriptionsArgs
	ClaimNew         string // args: now, limit
	// ClaimNewSetup is sent first in the claim's transaction ("" if none).
	ClaimNewSetup  string
	ClaimReplay    string // args: now, now, notBefore, limit
	CardReattempts string // args: gateway payment method id, since
	// Movements is the export's query, Collected and Refunded report
	// revenue's: args MovementsArgs.
	Movements, Collected, Refunded string
}

// MovementsArgs are the arguments of PlannedSQL.Movements (sums false) or
// of Collected and Refunded (sums true) over [from, to).
func MovementsArgs(from, to time.Time, sums bool) []any {
	if sums {
		c := money.Ceiling()
		return append([]any{c, c}, movementArgs(from, to)...)
	}
	return movementArgs(from, to)
}

// SQLFor builds the statements inside a transaction of st, as the real code does.
func SQLFor(st *Store) (q PlannedSQL, err error) {
	err = st.InTx(context.Background(), func(tx *Tx) error {
		q = PlannedSQL{
			DueSubscriptions: dueSubscriptionsQuery + tx.dueLockSuffix(),
			ClaimNew:         tx.claimNewSQL(),
			ClaimNewSetup:    tx.claimNewSetup(),
			ClaimReplay:      tx.claimReplaySQL(),
			CardReattempts:   cardReattemptsQuery,
			Movements:        movementsQuery,
			Collected:        collectedQuery,
			Refunded:         refundedQuery,
		}
		return nil
	})
	return q, err
}

// DueSubscriptionsArgs are the arguments DueSubscriptions binds to
// PlannedSQL.DueSubscriptions; keep it in step with DueSubscriptions.
func DueSubscriptionsArgs(now time.Time, after DueCursor, limit int) []any {
	return []any{now, after.NextBillingAt, after.ID, limit}
}

// LeaveWriterInTransaction opens a transaction on the SQLite writer connection
// and leaves it open, as a ROLLBACK that failed would.
func LeaveWriterInTransaction(st *Store) error {
	_, err := st.writer.ExecContext(context.Background(), "BEGIN")
	return err
}

// FillSQLite makes st's database full, as a full disk would for its writes:
// the writer connection may not grow the file beyond its current size
// (PRAGMA max_page_count), and rows are added until no free page is left, so
// any write that needs a new page fails with SQLITE_FULL. empty gives the
// room back.
func FillSQLite(st *Store) (empty func() error, err error) {
	ctx := context.Background()
	var pages int64
	if err := st.writer.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return nil, err
	}
	if _, err := st.writer.ExecContext(ctx, "PRAGMA max_page_count = "+strconv.FormatInt(pages, 10)); err != nil {
		return nil, err
	}
	pad := make([]byte, 512)
	for i := 0; ; i++ {
		err := st.InTx(ctx, func(tx *Tx) error {
			_, err := tx.exec(`INSERT INTO readiness_probes (pad, created_at, updated_at) VALUES (?, ?, ?)`, pad, time.Now(), time.Now())
			return err
		})
		if err != nil {
			if !strings.Contains(err.Error(), "full") {
				return nil, err
			}
			break
		}
		if i > 100000 {
			return nil, errors.New("the database never filled")
		}
	}
	return func() error {
		if _, err := st.writer.ExecContext(ctx, "PRAGMA max_page_count = 4294967294"); err != nil {
			return err
		}
		return st.InTx(ctx, func(tx *Tx) error {
			_, err := tx.exec(`DELETE FROM readiness_probes`)
			return err
		})
	}, nil
}

// ForgetWriteVerdict drops st's readiness verdict, so that the next
// CheckWritable probes at once.
func ForgetWriteVerdict(st *Store) {
	st.health.mu.Lock()
	st.health.at, st.health.err = time.Time{}, nil
	st.health.mu.Unlock()
}

func (tx *Tx) claimNewSetup() string {
	if tx.dialect == Postgres {
		return claimNewPlanSetting
	}
	return ""
}
