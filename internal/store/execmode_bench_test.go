package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// BenchmarkPostgresQueryExecMode measures the charge path's database work on
// PostgreSQL — one claim of 64 attempts, then each attempt's succeeded
// outcome in its own transaction — under each of pgx's query modes that a
// DSN's default_query_exec_mode can name: cache_statement (pgx's default,
// named prepared statements), exec (billingd's default: no named statement,
// so it works through a transaction-pooling PgBouncer) and simple_protocol.
// It skips without BILLINGD_TEST_POSTGRES_DSN.
func BenchmarkPostgresQueryExecMode(b *testing.B) {
	const batch = 64
	for _, mode := range []string{"cache_statement", "exec", "simple_protocol"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			dsn := storetest.WithParam(storetest.PostgresDSN(b), "default_query_exec_mode", mode)
			st, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: dsn})
			require.NoError(b, err)
			b.Cleanup(func() { _ = st.Close() })
			_, err = st.Migrate(ctx)
			require.NoError(b, err)
			require.NoError(b, loadtest.SeedOpenInvoices(ctx, st, b.N*batch, now))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				claimed, err := st.ClaimNewAttempts(ctx, "bench", now, now.Add(time.Hour), batch)
				if err != nil || len(claimed) != batch {
					b.Fatalf("claim %d: %d attempts, %v", i, len(claimed), err)
				}
				for j := range claimed {
					a := &claimed[j]
					err := st.InTx(ctx, func(tx *store.Tx) error {
						return tx.FinishAttempt(now, a, store.AttemptResult{Status: models.AttemptSucceeded,
							PaymentIntentID: fmt.Sprintf("pi_%d", a.ID), Tries: 1, LastHTTPStatus: 200})
					})
					if err != nil {
						b.Fatalf("finish attempt %d: %v", a.ID, err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/attempt")
		})
	}
}
