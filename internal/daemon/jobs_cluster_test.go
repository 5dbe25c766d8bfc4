package daemon_test

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// clusterCards are the lifecycle cards the three-instance test runs: a
// success, a payment settled later (processing), a 3-D Secure challenge
// never answered (canceled by the intents job), a soft decline retried to
// the end of the schedule, a hard decline and a soft decline recovered.
var clusterCards = []string{"visa", "processing", "3ds", "insufficient-funds", "expired", "topped-up"}

// TestPeriodicJobsOnThreeInstances runs lifecycle cards for 17 simulated
// days (the default dunning schedule ends on day 16) twice on PostgreSQL: once with one daemon, once with three daemons on
// one database whose due jobs — billing, dunning wake, reconciler, intents,
// cards, mail, events — all run at the same moments (each Tick on all three at
// once). The three must do exactly what the one does: the same attempts,
// invoices, dunning cases and steps, emails and payments, no step, email or
// charge twice; the jobs that run on one instance at a time took their lease.
func TestPeriodicJobsOnThreeInstances(t *testing.T) {
	start := time.Now()
	single := daemontest.New(t, daemontest.Options{Postgres: true})
	want := runCluster(t, single, nil)

	b := daemontest.New(t, daemontest.Options{Postgres: true})
	var peers []*daemon.Daemon
	for i := 0; i < 2; i++ {
		d, err := daemon.New(context.Background(), b.Config, daemon.Options{Clock: b.Clock, Log: io.Discard})
		require.NoError(t, err)
		t.Cleanup(func() { _ = d.Close() })
		peers = append(peers, d)
	}
	got := runCluster(t, b, peers)
	t.Logf("one instance and three instances did the same in %s:\n%s", time.Since(start).Round(time.Millisecond), got)
	require.Equal(t, want, got, "three instances do what one does")

	var leases []models.JobLease
	require.NoError(t, b.Store.DB().Order("name").Find(&leases).Error)
	names := map[string]int64{}
	for _, l := range leases {
		names[l.Name] = l.LeaseVersion
		require.Nil(t, l.LeaseUntil, "%s: released after each run", l.Name)
	}
	for _, job := range []string{"dunning", "reconcile", "intents", "cards"} {
		require.Positive(t, names[job], "%s ran under its job lease", job)
	}
	require.NotContains(t, names, "billing", "the billing pass is fenced by its claims and runs everywhere")
}

// runCluster seeds the clusterCards at b, runs 17 days in one-day steps
// with b's daemon and peers ticking at once, and returns what they did,
// without ids or times.
func runCluster(t *testing.T, b *daemontest.Bundle, peers []*daemon.Daemon) string {
	t.Helper()
	ctx := context.Background()
	pms := map[string]string{}
	var subs []storetest.Subscription
	var cards []cardCase
	for _, c := range lifecycleCards {
		for _, n := range clusterCards {
			if c.name == n {
				cards = append(cards, c)
			}
		}
	}
	require.Len(t, cards, len(clusterCards))
	for _, c := range cards {
		cus, pm := b.SaveCard(t, c.number)
		pms[c.name] = pm
		subs = append(subs, storetest.Subscription{Reference: c.name, Customer: cus, PaymentMethod: pm,
			Amount: 1500, Currency: "USD", Interval: "week", Anchor: b.Clock.Now()})
	}
	b.Seed(t, subs...)
	all := append([]*daemon.Daemon{b.D}, peers...)
	tick := func() {
		b.Sim.SettleDue()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = b.Sim.WaitWebhooks(wctx)
		cancel()
		var wg sync.WaitGroup
		for _, d := range all {
			wg.Go(func() { d.Tick(ctx) })
		}
		wg.Wait()
	}
	tick()
	require.NoError(t, b.Sim.SetCardBehaviour(pms["topped-up"], "4242424242424242"))
	for end := b.Clock.Now().Add(17 * 24 * time.Hour); b.Clock.Now().Before(end); {
		b.Clock.Advance(24 * time.Hour)
		tick()
	}
	tick()

	db := b.Store.DB()
	var out strings.Builder
	for _, c := range cards {
		sub := subscriptionByRef(t, b, c.name)
		fmt.Fprintf(&out, "%s: %s\n", c.name, sub.Status)
		var invoices []models.Invoice
		require.NoError(t, db.Where("subscription_id = ?", sub.ID).Order("period_index").Find(&invoices).Error)
		for _, inv := range invoices {
			var attempts []models.ChargeAttempt
			require.NoError(t, db.Where("invoice_id = ?", inv.ID).Order("attempt_no").Find(&attempts).Error)
			var as []string
			for _, a := range attempts {
				as = append(as, fmt.Sprintf("%d:%s", a.AttemptNo, a.Status))
			}
			fmt.Fprintf(&out, "  period %d %s attempts %v\n", inv.PeriodIndex, inv.Status, as)
		}
		var cases []models.DunningCase
		require.NoError(t, db.Where("subscription_id = ?", sub.ID).Order("id").Find(&cases).Error)
		for _, dc := range cases {
			var steps []models.DunningStep
			require.NoError(t, db.Where("case_id = ?", dc.ID).Order("id").Find(&steps).Error)
			var ss []string
			for _, s := range steps {
				ss = append(ss, fmt.Sprintf("%d:%s", s.Step, s.Action))
			}
			fmt.Fprintf(&out, "  case %s %s steps %v\n", dc.Reason, dc.Status, ss)
		}
		var emails []models.Email
		require.NoError(t, db.Where("to_address = ?", c.name+"@example.com").Find(&emails).Error)
		var es []string
		for _, e := range emails {
			es = append(es, string(e.Kind)+":"+string(e.Status))
		}
		sort.Strings(es)
		fmt.Fprintf(&out, "  emails %v\n", es)
	}

	// Every email reached the SMTP server once; the books equal the ledger.
	var sent int64
	require.NoError(t, db.Model(&models.Email{}).Where("status = ?", models.EmailSent).Count(&sent).Error)
	require.EqualValues(t, sent, b.SMTP.Count(), "each email sent once")
	byOrder := map[string]int{}
	var ledger []string
	for _, e := range b.Sim.Ledger() {
		if e.Status == "succeeded" {
			byOrder[e.MerchantOrderID]++
			require.Equal(t, 1, byOrder[e.MerchantOrderID], "order %s paid twice", e.MerchantOrderID)
		}
		ledger = append(ledger, e.Status)
	}
	sort.Strings(ledger)
	fmt.Fprintf(&out, "ledger %v\n", ledger)
	return out.String()
}
