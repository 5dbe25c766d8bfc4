package daemon_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/store/storetest"
)

// /metrics exports the store's statement and transaction counts, read at the
// scrape: a charge's statements and its committed transactions show there.
func TestMetricsCountDatabaseStatements(t *testing.T) {
	daemontest.Each(t, daemontest.Options{NoMail: true}, func(t *testing.T, b *daemontest.Bundle) {
		cus, pm := b.SaveCard(t, "4242424242424242")
		b.Seed(t, storetest.Subscription{Reference: "counted-1", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
		idle := scrape(t, b)
		b.Run(t, time.Second, time.Second)
		before := b.D.Store().DBCounts()
		charged := scrape(t, b)
		after := b.D.Store().DBCounts()

		require.Equal(t, 1.0, charged[`billingd_charge_attempts_total{outcome="succeeded"}`])
		for _, tc := range []struct {
			series        string
			before, after int64
		}{
			{"billingd_db_statements_total", before.Statements, after.Statements},
			{`billingd_db_transactions_total{outcome="committed"}`, before.Committed, after.Committed},
			{`billingd_db_transactions_total{outcome="rolled_back"}`, before.RolledBack, after.RolledBack},
			{`billingd_db_transactions_total{outcome="commit_failed"}`, before.CommitFailed, after.CommitFailed},
			{`billingd_db_transactions_total{outcome="autocommit"}`, before.Autocommit, after.Autocommit},
		} {
			t.Run(tc.series, func(t *testing.T) {
				v, ok := charged[tc.series]
				require.True(t, ok, "%s is exported", tc.series)
				require.GreaterOrEqual(t, v, float64(tc.before), "the scrape reads the store's count")
				require.LessOrEqual(t, v, float64(tc.after), "the scrape reads the store's count")
			})
		}
		require.Greater(t, charged["billingd_db_statements_total"], idle["billingd_db_statements_total"], "charging sent statements")
		require.Greater(t, charged[`billingd_db_transactions_total{outcome="committed"}`], idle[`billingd_db_transactions_total{outcome="committed"}`],
			"charging committed transactions")
	})
}
