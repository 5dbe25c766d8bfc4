package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// BenchmarkClaimNewAttempts measures one claim of 64 attempts (the default
// concurrency): the claim query on invoices_chargeable, the targets join, the
// invoice update and the attempt inserts, committed. The table of open invoices
// shrinks as the benchmark claims; a claim must cost the same at the end as at
// the start (the query-plan test checks why).
func BenchmarkClaimNewAttempts(b *testing.B) {
	const batch = 64
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	st := storetest.SQLite(b)
	require.NoError(b, loadtest.SeedOpenInvoices(ctx, st, b.N*batch, now))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		claimed, err := st.ClaimNewAttempts(ctx, "bench", now, now.Add(time.Hour), batch)
		if err != nil || len(claimed) != batch {
			b.Fatalf("claim %d: %d attempts, %v", i, len(claimed), err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/attempt")
}
