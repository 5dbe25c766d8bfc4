package store

import (
	"context"
	"time"
)

// Test hooks for package store_test, which (unlike package store) can import
// storetest. Compiled into tests only.

// PlannedSQL is the text of the sweep's and the claims' queries exactly as the
// store sends them on st's dialect: hints and locking suffix included.
type PlannedSQL struct {
	DueSubscriptions string // args: DueSubscriptionsArgs
	ClaimNew         string // args: now, limit
	ClaimReplay      string // args: now, now, notBefore, limit
	CardReattempts   string // args: gateway payment method id, since
}

// SQLFor builds the statements inside a transaction of st, as the real code does.
func SQLFor(st *Store) (q PlannedSQL, err error) {
	err = st.InTx(context.Background(), func(tx *Tx) error {
		q = PlannedSQL{
			DueSubscriptions: dueSubscriptionsQuery + tx.dueLockSuffix(),
			ClaimNew:         tx.claimNewSQL(),
			ClaimReplay:      tx.claimReplaySQL(),
			CardReattempts:   cardReattemptsQuery,
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
