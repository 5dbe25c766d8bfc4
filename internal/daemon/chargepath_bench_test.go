package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

// BenchmarkChargePath measures a whole charge through the assembled daemon,
// per charge (one op = one due subscription invoiced, claimed, sent and
// recorded as paid): b.N due subscriptions seeded over 20 cards saved at the
// in-process simulator (no latency, no rate limit, no webhooks, so every
// outcome comes from billingd's own request), then one billing pass —
// daemon.Pass, as `billingd once` and `billingd bench` run it — with
// gateway.concurrency 64 and the default page size of 500. The simulator
// runs in this process, so its work (HTTP, JSON, its ledger) is in the
// figures, as it shares the machine in `billingd bench`. SQLite with
// synchronous=FULL, and PostgreSQL when BILLINGD_TEST_POSTGRES_DSN is set.
// cpu-ns/op is this process's CPU time per charge, the simulator's included
// and a PostgreSQL server's not (divided by 10⁶: CPU-s per 1,000 charges, the
// figure `billingd bench` prints, plus the simulator's share).
func BenchmarkChargePath(b *testing.B) {
	const cards = 20
	for _, db := range []string{config.DriverSQLite, config.DriverPostgres} {
		b.Run("db="+db, func(b *testing.B) {
			ctx := context.Background()
			bundle := daemontest.New(b, daemontest.Options{Postgres: db == config.DriverPostgres, NoMail: true, NoWebhooks: true,
				Configure: func(c *config.Config) {
					c.Gateway.Concurrency = 64
					c.Gateway.RateLimit = 1e9 // none: `billingd bench` without --rate
					c.Schedule.PageSize = 500
				}})
			saved := make([]loadtest.Card, cards)
			for i := range saved {
				saved[i].Customer, saved[i].PaymentMethod = bundle.SaveCard(b, "4242424242424242")
			}
			now := bundle.Clock.Now()
			require.NoError(b, loadtest.SeedDueSubscriptions(ctx, bundle.Store, saved, b.N, 1999, "USD", now.Add(-time.Hour), now))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := loadtest.CPUTime()
			run, err := bundle.D.Pass(ctx, ctx, "bench")
			b.StopTimer()
			b.ReportMetric(float64(loadtest.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
			require.NoError(b, err)
			require.Equal(b, b.N, run.InvoicesCreated)
			require.Equal(b, b.N, run.Succeeded, "every charge succeeded: %+v", run)
			paid, err := bundle.Store.CountInvoices(ctx, models.InvoicePaid)
			require.NoError(b, err)
			require.EqualValues(b, b.N, paid)
		})
	}
}
