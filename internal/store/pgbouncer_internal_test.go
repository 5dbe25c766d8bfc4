package store

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestPgBouncerDSN checks that database.pgbouncer turns pgx's named prepared
// statements off in both DSN forms, and leaves a mode the DSN names itself.
func TestPgBouncerDSN(t *testing.T) {
	tests := []struct {
		name, dsn string
		mode      pgx.QueryExecMode
	}{
		{"url", "postgres://billingd@db:5432/billingd?sslmode=disable", pgx.QueryExecModeExec},
		{"url without query", "postgresql://billingd@db/billingd", pgx.QueryExecModeExec},
		{"key=value", "host=db user=billingd dbname=billingd", pgx.QueryExecModeExec},
		{"url naming simple protocol", "postgres://db/billingd?default_query_exec_mode=simple_protocol", pgx.QueryExecModeSimpleProtocol},
		{"key=value naming simple protocol", "host=db dbname=billingd default_query_exec_mode=simple_protocol", pgx.QueryExecModeSimpleProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := pgx.ParseConfig(tt.dsn)
			require.NoError(t, err)
			cfg, err := pgx.ParseConfig(pgBouncerDSN(tt.dsn))
			require.NoError(t, err)
			require.Equal(t, tt.mode, cfg.DefaultQueryExecMode)
			require.Equal(t, before.Host, cfg.Host)
			require.Equal(t, before.Database, cfg.Database)
			require.Equal(t, before.RuntimeParams, cfg.RuntimeParams, "no other parameter changes")
		})
	}
}
