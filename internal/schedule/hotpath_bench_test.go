package schedule

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// BenchmarkInvoicePage measures the invoicing half of a pass, per subscription
// invoiced (one op = one due subscription, so one future charge): the Biller's
// own invoiceDue, pages of 500 (the default schedule.page_size), each page one
// transaction of DueSubscriptions, the period math, an AdvanceSubscription
// per subscription and one CreateInvoices. It runs the pass's code rather than
// a copy of its statements, so that a change to how a page is written shows
// here. SQLite with synchronous=FULL in b.TempDir(), and PostgreSQL on a
// schema of its own when BILLINGD_TEST_POSTGRES_DSN is set. cpu-ns/op is this
// process's CPU time per op (a PostgreSQL server's is not in it): on a shared
// machine it moves less with the load than ns/op.
func BenchmarkInvoicePage(b *testing.B) {
	for _, db := range []string{store.SQLite, store.Postgres} {
		b.Run("db="+db, func(b *testing.B) {
			ctx := context.Background()
			now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			st := storetest.Open(b, db)
			cards := []loadtest.Card{{Customer: "cus_bench", PaymentMethod: "pm_bench", Email: "bench@example.com"}}
			require.NoError(b, loadtest.SeedDueSubscriptions(ctx, st, cards, b.N, 1999, "USD", now.Add(-time.Hour), now))
			biller := &Biller{Store: st, Clock: clock.NewFake(now), Location: time.UTC, PageSize: 500, Owner: "bench", Log: zerolog.Nop()}
			run := &models.BillingRun{}
			invoiced := make(chan struct{}, 1)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := loadtest.CPUTime()
			err := biller.invoiceDue(ctx, run, zerolog.Nop(), invoiced)
			b.StopTimer()
			b.ReportMetric(float64(loadtest.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
			require.NoError(b, err)
			require.Equal(b, b.N, run.InvoicesCreated, "every seeded subscription invoiced once")
			require.Equal(b, b.N, run.SubscriptionsDue)
		})
	}
}
