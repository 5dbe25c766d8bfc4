package config

import (
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgxQueryExecMode is the DSN parameter the PostgreSQL driver reads to choose
// how statements are sent (database.pgbouncer sets it to exec).
const pgxQueryExecMode = "default_query_exec_mode"

// checkPgBouncer refuses database.pgbouncer where it cannot hold: on SQLite,
// and with a DSN that asks the driver for named prepared statements, which a
// transaction-pooling PgBouncer loses between transactions.
func (c *Config) checkPgBouncer(v *validator) {
	d := c.Database
	if !d.PgBouncer {
		return
	}
	if d.Driver != DriverPostgres {
		v.add("database.pgbouncer", strconv.FormatBool(d.PgBouncer), "applies only to database.driver postgres")
		return
	}
	pc, err := pgconn.ParseConfig(d.DSN)
	if err != nil {
		return // database.dsn's own error says why
	}
	switch mode := pc.RuntimeParams[pgxQueryExecMode]; mode {
	case "", "exec", "simple_protocol":
	default:
		v.add("database.pgbouncer", strconv.FormatBool(d.PgBouncer),
			"cannot hold with database.dsn's %s=%s, which keeps prepared statements on one server connection; remove it (billingd then uses exec) or use exec or simple_protocol", pgxQueryExecMode, mode)
	}
}
