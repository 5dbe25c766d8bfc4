package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestClusterKeepsToTheGatewayLimits: three daemons on one PostgreSQL
// database, configured with the cluster's gateway.rate_limit, bill one
// simulator that refuses (429) whatever goes over that rate. The later two
// join while the first holds the whole share; all three start their passes
// at once, while the shares re-balance. The simulator refuses nothing, the
// published shares never add up to more than the limits, and each instance
// ends at its third.
func TestClusterKeepsToTheGatewayLimits(t *testing.T) {
	const limit, concurrency, subs = 30, 6, 60
	configure := func(c *config.Config) {
		c.Gateway.RateLimit, c.Gateway.Concurrency = limit, concurrency
		c.Cluster.Heartbeat = config.Duration(time.Second)
	}
	first := daemontest.New(t, daemontest.Options{Postgres: true, NoMail: true, NoWebhooks: true, Name: "node-a:1:t",
		Sim: sim.Options{RateLimit: limit}, Configure: configure})
	bundles := []*daemontest.Bundle{first}
	for i := 0; i < 2; i++ {
		bundles = append(bundles, daemontest.New(t, daemontest.Options{Postgres: true, NoMail: true, NoWebhooks: true,
			Name: fmt.Sprintf("node-%c:1:t", 'b'+i), Configure: func(c *config.Config) {
				configure(c)
				c.Database.DSN = first.Config.Database.DSN
				c.Gateway.BaseURL = first.Config.Gateway.BaseURL
			}}))
	}
	require.Equal(t, limit, int(bundles[0].D.Shares().Use.Rate+0.5), "the first took the whole rate")
	require.Zero(t, bundles[2].D.Shares().Use.Rate, "a joining instance starts at nothing while the others hold the limit")

	// Every instance beats on the wall clock, as the instances job does.
	ctx, stop := context.WithCancel(context.Background())
	var beats sync.WaitGroup
	var mu sync.Mutex
	var overLimit []string
	for _, b := range bundles {
		beats.Add(1)
		go func() {
			defer beats.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if err := b.D.Heartbeat(ctx); err != nil && ctx.Err() == nil {
					t.Errorf("heartbeat: %v", err)
				}
				rows, err := b.Store.Instances(ctx)
				if err != nil {
					continue
				}
				var rate float64
				var conc int
				for _, r := range rows {
					rate += r.RateShare
					conc += r.ConcurrencyShare
				}
				if rate > limit+1e-6 || conc > concurrency {
					mu.Lock()
					overLimit = append(overLimit, fmt.Sprintf("%.2f/s, %d in flight", rate, conc))
					mu.Unlock()
				}
			}
		}()
	}
	defer func() { stop(); beats.Wait() }()

	var cards [][2]string
	for i := 0; i < 3; i++ {
		cus, pm := first.SaveCard(t, "4242424242424242")
		cards = append(cards, [2]string{cus, pm})
	}
	var seed []storetest.Subscription
	for i := 0; i < subs; i++ {
		c := cards[i%len(cards)]
		seed = append(seed, storetest.Subscription{Reference: fmt.Sprintf("sub-%03d", i), Customer: c[0], PaymentMethod: c[1],
			Amount: 1000, Currency: "USD", Interval: "month", Anchor: first.Clock.Now().Add(-time.Minute)})
	}
	first.Seed(t, seed...)
	before := first.Sim.Stats()

	started := time.Now()
	var passes sync.WaitGroup
	for _, b := range bundles {
		passes.Add(1)
		go func() {
			defer passes.Done()
			_, err := b.D.Pass(context.Background(), context.Background(), "test")
			require.NoError(t, err)
		}()
	}
	passes.Wait()
	took := time.Since(started)

	paid, err := first.Store.CountInvoices(context.Background(), models.InvoicePaid)
	require.NoError(t, err)
	require.EqualValues(t, subs, paid)
	stats := first.Sim.Stats()
	require.Zero(t, stats.RateLimited, "the simulator refused requests over the cluster's rate")
	sent := stats.Requests - before.Requests
	t.Logf("%d requests in %s: %.1f/s against a cluster limit of %d/s", sent, took.Round(time.Millisecond), float64(sent)/took.Seconds(), limit)
	mu.Lock()
	require.Empty(t, overLimit, "published shares over the limits")
	mu.Unlock()

	// Once settled, each instance has its third, and /metrics says so.
	require.Eventually(t, func() bool {
		for _, b := range bundles {
			if s := b.D.Shares().Use; s.Rate < limit/3.0-0.01 || s.Concurrency != concurrency/3 {
				return false
			}
		}
		return true
	}, 10*time.Second, 100*time.Millisecond)
	resp, err := http.Get(bundles[1].URL + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `billingd_instances{state="live"} 3`)
	require.Contains(t, string(body), "billingd_gateway_concurrency_share 2")
	require.True(t, strings.Contains(string(body), "billingd_gateway_rate_share 9.99"), "rate share of a third: %s", body)
}

// TestExpiredShareIsRenewedBeforeSending: an instance whose last heartbeat
// is older than its expiry (here: its clock jumped, as a process resumed
// from SIGSTOP finds) uses nothing; the first gateway request it makes beats
// first, takes the share back from the headroom, and is sent.
func TestExpiredShareIsRenewedBeforeSending(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{Postgres: true, NoMail: true, Configure: func(c *config.Config) {
		c.Gateway.RateLimit, c.Gateway.Concurrency = 50, 4
	}})
	cus, pm := b.SaveCard(t, "4242424242424242")
	require.InDelta(t, 50, b.D.Shares().Use.Rate, 1e-6)

	b.Clock.Advance(b.Config.Cluster.Expiry())
	require.Zero(t, b.D.Shares().Use.Rate, "a share whose heartbeat is an expiry old is not this instance's any more")

	b.Seed(t, storetest.Subscription{Reference: "resumed", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
	_, err := b.D.Pass(context.Background(), context.Background(), "test")
	require.NoError(t, err)
	paid, err := b.Store.CountInvoices(context.Background(), models.InvoicePaid)
	require.NoError(t, err)
	require.EqualValues(t, 1, paid, "the charge waited for the renewed share, then went out")
	require.InDelta(t, 50, b.D.Shares().Use.Rate, 1e-6)
}

// TestStarvedInstanceBeatsForItsShare: a process that runs no scheduler
// (`billingd once` beside a running cluster) joins at nothing; its requests
// ask for a heartbeat once one is due, which finds the headroom the other
// instance left after lowering, and the pass charges.
func TestStarvedInstanceBeatsForItsShare(t *testing.T) {
	configure := func(c *config.Config) { c.Gateway.RateLimit, c.Gateway.Concurrency = 40, 4 }
	first := daemontest.New(t, daemontest.Options{Postgres: true, NoMail: true, Name: "node-a:1:t", Configure: configure})
	second := daemontest.New(t, daemontest.Options{Postgres: true, NoMail: true, Name: "node-b:1:t", Configure: func(c *config.Config) {
		configure(c)
		c.Database.DSN = first.Config.Database.DSN
		c.Gateway.BaseURL = first.Config.Gateway.BaseURL
	}})
	require.Zero(t, second.D.Shares().Use.Rate, "joined while the first held everything")
	require.NoError(t, first.D.Heartbeat(context.Background()))
	require.InDelta(t, 20, first.D.Shares().Use.Rate, 1e-6, "the first lowered to its half")

	cus, pm := first.SaveCard(t, "4242424242424242")
	second.Seed(t, storetest.Subscription{Reference: "once", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: second.Clock.Now()})
	second.Clock.Advance(second.Config.Cluster.Heartbeat.D())
	_, err := second.D.Pass(context.Background(), context.Background(), "once")
	require.NoError(t, err)
	paid, err := second.Store.CountInvoices(context.Background(), models.InvoicePaid)
	require.NoError(t, err)
	require.EqualValues(t, 1, paid)
	require.InDelta(t, 20, second.D.Shares().Use.Rate, 1e-6)
}
