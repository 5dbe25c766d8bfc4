package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
)

// Every statement the store sends is counted once, on each dialect, however it
// is sent (GORM, the SQLite writer's prepared statements, a database/sql
// transaction's BEGIN and COMMIT, the writer's own BEGIN IMMEDIATE and
// COMMIT), and every transaction's end once by its outcome.
func TestDBCountsCountEachStatementOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		errUndo := errors.New("undo")
		update := `UPDATE billing_runs SET error = 'x' WHERE id = -1`
		for _, tc := range []struct {
			name string
			run  func() error
			want store.DBCounts
		}{
			{"a statement outside a transaction", func() error {
				return st.DB().WithContext(ctx).Exec(update).Error
			}, store.DBCounts{Statements: 1, Autocommit: 1}},
			{"a query outside a transaction", func() error {
				var n int64
				return st.DB().WithContext(ctx).Raw(`SELECT COUNT(*) FROM billing_runs`).Scan(&n).Error
			}, store.DBCounts{Statements: 1, Autocommit: 1}},
			{"a committed write transaction of two statements: BEGIN, both, COMMIT", func() error {
				return st.InTx(ctx, func(tx *store.Tx) error {
					if err := tx.DB().Exec(update).Error; err != nil {
						return err
					}
					return tx.DB().Exec(update).Error
				})
			}, store.DBCounts{Statements: 4, Committed: 1}},
			{"the same statement again, prepared already on SQLite's writer", func() error {
				return st.InTx(ctx, func(tx *store.Tx) error { return tx.DB().Exec(update).Error })
			}, store.DBCounts{Statements: 3, Committed: 1}},
			{"a transaction its function undoes: BEGIN, the statement, ROLLBACK", func() error {
				err := st.InTx(ctx, func(tx *store.Tx) error {
					if err := tx.DB().Exec(update).Error; err != nil {
						return err
					}
					return errUndo
				})
				if errors.Is(err, errUndo) {
					return nil
				}
				return err
			}, store.DBCounts{Statements: 3, RolledBack: 1}},
			{"a database/sql transaction on the pool", func() error {
				return st.DB().WithContext(ctx).Transaction(func(db *gorm.DB) error { return db.Exec(update).Error })
			}, store.DBCounts{Statements: 3, Committed: 1}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := st.DBCounts()
				require.NoError(t, tc.run())
				require.Equal(t, tc.want, st.DBCounts().Sub(before))
			})
		}
	})
}
