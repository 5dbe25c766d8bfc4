package store

// Where the state changes of the event catalogue emit their events: each
// store method that writes a transition calls one of these, so that no path
// to the transition can skip its event and a write that changed nothing
// emits nothing. docs/state-machines.md lists which transition emits which
// event.

import (
	"database/sql"
	"sort"

	"github.com/billingd/billingd/internal/models"
)

// execEmitting runs q, a write of the rows whose change typ reports, and
// returns how many rows it changed. With events off it is the plain
// statement through exec (a hot path stays one lean statement); with events
// on q runs with RETURNING id (both dialects) and typ is emitted for exactly
// the rows it changed, in id order. Like exec, q takes no slice arguments
// (execEmittingIn does).
func (tx *Tx) execEmitting(typ models.EventType, q string, args ...any) (int64, error) {
	if !tx.EventsOn() {
		return tx.exec(q, args...)
	}
	rows, err := tx.query(q+" RETURNING id", args...)
	if err != nil {
		return 0, err
	}
	ids, err := scanIDs(rows)
	if err != nil {
		return 0, err
	}
	tx.emitAll(typ, ids)
	return int64(len(ids)), nil
}

// execEmittingIn is execEmitting for a statement GORM expands ("id IN ?"
// with a slice).
func (tx *Tx) execEmittingIn(typ models.EventType, q string, args ...any) (int64, error) {
	if !tx.EventsOn() {
		res := tx.db.Exec(q, args...)
		return res.RowsAffected, res.Error
	}
	var ids []int64
	if err := tx.db.Raw(q+" RETURNING id", args...).Scan(&ids).Error; err != nil {
		return 0, err
	}
	tx.emitAll(typ, ids)
	return int64(len(ids)), nil
}

// scanIDs reads a RETURNING id result and closes it.
func scanIDs(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// emitAll emits typ about each of ids, in ascending order (the order a
// multi-row statement returns its rows in is not defined).
func (tx *Tx) emitAll(typ models.EventType, ids []int64) {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		tx.Emit(EventRef{Type: typ, ObjectID: id})
	}
}

// emitIf emits typ about objectID when changed is set: the caller's write
// changed the row.
func (tx *Tx) emitIf(changed bool, typ models.EventType, objectID int64) {
	if changed {
		tx.Emit(EventRef{Type: typ, ObjectID: objectID})
	}
}
