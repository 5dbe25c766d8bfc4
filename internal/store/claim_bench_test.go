package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// BenchmarkClaimNewAttempts measures claiming new attempts in claims of 64 (the
// default concurrency), per attempt claimed (one op = one attempt, so one
// charge): the claim query on invoices_chargeable, the targets join, the
// invoice update and the attempt inserts, committed. The table of open
// invoices shrinks as the benchmark claims; a claim must cost the same at the
// end as at the start (the query-plan test checks why). SQLite with
// synchronous=FULL, and PostgreSQL when BILLINGD_TEST_POSTGRES_DSN is set.
// cpu-ns/op is this process's CPU time per op (not a PostgreSQL server's).
func BenchmarkClaimNewAttempts(b *testing.B) {
	const batch = 64
	for _, db := range []string{store.SQLite, store.Postgres} {
		b.Run("db="+db, func(b *testing.B) {
			ctx := context.Background()
			now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			st := storetest.Open(b, db)
			require.NoError(b, loadtest.SeedOpenInvoices(ctx, st, b.N, now))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := loadtest.CPUTime()
			for done, claims := 0, 0; done < b.N; claims++ {
				want := min(batch, b.N-done)
				claimed, err := st.ClaimNewAttempts(ctx, "bench", now, now.Add(time.Hour), batch)
				if err != nil || len(claimed) != want {
					b.Fatalf("claim %d: %d attempts, want %d, %v", claims, len(claimed), want, err)
				}
				done += len(claimed)
			}
			b.StopTimer()
			b.ReportMetric(float64(loadtest.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
