package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestPassGoesOnWhileAPeerStillInvoices: on several instances a pass that
// finds nothing to claim does not end while a live peer's pass still
// invoices — the peer's pages become chargeable as they commit, and this
// instance's share of the gateway's limits charges them. Once the peer's
// invoicing is over (or the peer is dead) the pass ends.
func TestPassGoesOnWhileAPeerStillInvoices(t *testing.T) {
	first := daemontest.New(t, daemontest.Options{Postgres: true, NoMail: true, Name: "node-a:1:t"})
	second := daemontest.New(t, daemontest.Options{Postgres: true, NoMail: true, Name: "node-b:1:t", Configure: func(c *config.Config) {
		c.Database.DSN = first.Config.Database.DSN
		c.Gateway.BaseURL = first.Config.Gateway.BaseURL
	}})
	ctx := context.Background()
	// The second instance's pass is under way and has not finished invoicing.
	peer, err := second.Store.StartRun(ctx, "schedule", "node-b:1:t", second.Clock.Now())
	require.NoError(t, err)

	done := make(chan *models.BillingRun, 1)
	go func() {
		run, err := first.D.Pass(ctx, ctx, "schedule")
		require.NoError(t, err)
		done <- run
	}()
	select {
	case <-done:
		t.Fatal("the pass ended while a peer still invoiced")
	case <-time.After(time.Second):
	}

	// The peer commits a page of invoices: the waiting pass charges them.
	cus, pm := first.SaveCard(t, "4242424242424242")
	now := first.Clock.Now()
	first.Seed(t, storetest.Subscription{Reference: "peer-page", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: now.AddDate(0, 1, 0)})
	var subID int64
	require.NoError(t, first.Store.DB().Raw(`SELECT id FROM subscriptions WHERE reference = 'peer-page'`).Scan(&subID).Error)
	require.NoError(t, second.Store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.CreateInvoices(now, []store.NewInvoice{{SubscriptionID: subID, Reference: "peer-page", PeriodIndex: 0,
			PeriodStart: now, PeriodEnd: now.AddDate(0, 1, 0), Amount: 1000, Currency: "USD"}})
		return err
	}))
	require.Eventually(t, func() bool {
		paid, err := first.Store.CountInvoices(ctx, models.InvoicePaid)
		return err == nil && paid == 1
	}, 10*time.Second, 50*time.Millisecond, "the waiting pass charged the peer's invoice")

	require.NoError(t, second.Store.MarkRunInvoiced(ctx, peer, second.Clock.Now()))
	select {
	case run := <-done:
		require.Equal(t, 1, run.AttemptsStarted)
		require.Equal(t, 1, run.Succeeded)
	case <-time.After(10 * time.Second):
		t.Fatal("the pass did not end once the peer's invoicing was over")
	}

	// A dead peer's unfinished pass holds nobody back.
	_, err = second.Store.StartRun(ctx, "schedule", "node-b:1:t", second.Clock.Now())
	require.NoError(t, err)
	second.Stop(t) // a clean stop deletes its instances row
	run, err := first.D.Pass(ctx, ctx, "schedule")
	require.NoError(t, err)
	require.Zero(t, run.AttemptsStarted)
}
