package store

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3"
)

// sqliteOperations is migration 00012 on SQLite: it rebuilds subscriptions,
// emails and pay_links to widen their CHECK constraints (a paused status, an
// email about a subscription rather than an invoice) and adds the audit log,
// the admin API's idempotency rows and the card expiry columns.
//
//go:embed rebuilds/sqlite_00012_operations.sql
var sqliteOperations string

// sqliteRebuilds are the SQLite migrations that must rebuild a table: SQLite
// cannot alter a CHECK constraint, and renaming a table aside keeps the
// other tables' foreign keys pointing at it only while foreign keys are off,
// which SQLite allows only outside a transaction. goose would run a SQL file
// either inside its transaction or statement by statement on any pooled
// connection, so these run as Go migrations on one connection of their own.
func sqliteRebuilds() []*goose.Migration {
	return []*goose.Migration{
		goose.NewGoMigration(12, &goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error {
			return rebuildMigration(ctx, db, "audit_log", sqliteOperations)
		}}, nil),
	}
}

// rebuildMigration runs script in one transaction on one connection with
// foreign keys off, checks every foreign key before committing, and turns
// them back on. A script whose marker table exists already was applied by a
// process that died before goose recorded the version: it is not run again.
func rebuildMigration(ctx context.Context, db *sql.DB, marker, script string) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, marker).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return err
	}
	defer func() {
		if _, e := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`); e != nil && err == nil {
			err = e
		}
	}()
	if _, err := conn.ExecContext(ctx, `PRAGMA legacy_alter_table = ON`); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA legacy_alter_table = OFF`) //nolint:errcheck // a connection setting, reset best effort; the connection is closed next
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		}
	}()
	if _, err := conn.ExecContext(ctx, script); err != nil {
		return err
	}
	rows, err := conn.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return err
	}
	var broken []string
	for rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fk int
		if err := rows.Scan(&table, &rowid, &parent, &fk); err != nil {
			rows.Close()
			return err
		}
		broken = append(broken, fmt.Sprintf("%s row %d → %s", table, rowid.Int64, parent))
	}
	rows.Close()
	if len(broken) > 0 {
		return fmt.Errorf("store: rebuild left foreign keys broken: %v", broken)
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return errors.Join(errors.New("store: rebuild commit"), err)
	}
	committed = true
	return nil
}
