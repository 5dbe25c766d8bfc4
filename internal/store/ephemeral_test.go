package store_test

import (
	"strings"
	"testing"

	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestSQLitePartialIndexConditionsBuildNoEphemeralTable proves, on SQLite's
// own compiler, that every partial index's condition is evaluated in place.
// SQLite evaluates an IN list of three or more constants through an ephemeral
// b-tree it builds for each evaluation, and it evaluates a partial index's
// condition for the old and the new row on every write of the table. The
// result UPDATE of a charge attempt built eight, and with several open at once
// the allocator's trimming made each write fault its pages in again: about
// 960 µs of CPU per charge on a 2-core virtual machine, against 31 µs without
// (docs/performance.md, "Status lists without IN").
func TestSQLitePartialIndexConditionsBuildNoEphemeralTable(t *testing.T) {
	st := storetest.SQLite(t)
	db := st.DB()
	type index struct {
		Name, TblName, SQL string
	}
	var indexes []index
	require.NoError(t, db.Raw(`SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'`).Scan(&indexes).Error)
	require.NotEmpty(t, indexes)
	for _, ix := range indexes {
		t.Run(ix.Name, func(t *testing.T) {
			at := strings.LastIndex(strings.ToUpper(ix.SQL), " WHERE ")
			require.Positive(t, at)
			cond := ix.SQL[at+len(" WHERE "):]
			type op struct {
				Addr   int
				Opcode string
			}
			var ops []op
			require.NoError(t, db.Raw(`EXPLAIN SELECT count(*) FROM "`+ix.TblName+`" NOT INDEXED WHERE `+cond).Scan(&ops).Error)
			require.NotEmpty(t, ops)
			for _, o := range ops {
				require.NotEqualf(t, "OpenEphemeral", o.Opcode, "index %s: its condition %s compiles to an ephemeral b-tree (address %d): write an IN list of three or more constants as a chain of equalities", ix.Name, cond, o.Addr)
			}
		})
	}
}
