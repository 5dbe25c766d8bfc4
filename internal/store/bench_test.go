package store

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDSNWithDatabase(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/bench_1?sslmode=disable"},
		{"postgresql://u:p%40ss@db.internal/billingd", "postgresql://u:p%40ss@db.internal/bench_1"},
		{"postgres://postgres@127.0.0.1", "postgres://postgres@127.0.0.1/bench_1"},
		{"host=127.0.0.1 user=postgres dbname=postgres sslmode=disable", "host=127.0.0.1 user=postgres dbname=postgres sslmode=disable dbname=bench_1"},
	} {
		got, err := DSNWithDatabase(tc.dsn, "bench_1")
		require.NoError(t, err, tc.dsn)
		require.Equal(t, tc.want, got)
	}
	_, err := DSNWithDatabase("postgres://x@127.0.0.1:99999/db", "bench_1")
	require.Error(t, err)
}

func TestServerDDLTakesOnlyPlainNames(t *testing.T) {
	s := &Store{dialect: Postgres}
	require.NoError(t, s.serverDDL("billingd_bench_20261202_131139_27557"))
	for _, bad := range []string{"", "Bench", "a;DROP DATABASE x", "x y", `"quoted"`} {
		require.Error(t, s.serverDDL(bad), bad)
	}
	require.Error(t, (&Store{dialect: SQLite}).serverDDL("bench"))
}
