package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// pgCluster is several `billingd run` processes on one PostgreSQL database
// against one simulator, as several hosts of one merchant run them.
type pgCluster struct {
	dir string
	// direct is the database's DSN on the server itself (the test's own
	// reads and seeds); dsn is what the instances connect to.
	direct, dsn string
	gw          *sim.Server
	gwURL       string
	listens     []string
	procs       []*childProc
	logs        []string
	configs     []string
	cards       []storetest.Subscription
}

const pgClusterSecret, pgClusterWebhookSecret = "sk_test_cluster", "whsec_cluster"

// pgTestDatabase creates a database of its own on the test server (dropped
// when the test ends) and returns its DSN, or skips without a server. A
// database rather than a schema: a PgBouncer refuses the search_path
// startup parameter that storetest's schemas use.
func pgTestDatabase(t *testing.T) string {
	t.Helper()
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skipf("PostgreSQL cluster tests skipped: set %s (for example postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) to run them", storetest.PostgresEnv)
	}
	u, err := url.Parse(base)
	require.NoError(t, err, "%s must be a postgres:// URL for the cluster tests", storetest.PostgresEnv)
	name := fmt.Sprintf("billingd_cluster_%d_%d", time.Now().UnixNano(), os.Getpid())
	admin, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: base, MaxOpenConns: 1})
	require.NoError(t, err)
	require.NoError(t, admin.DB().Exec("CREATE DATABASE "+name).Error)
	t.Cleanup(func() {
		_ = admin.DB().Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)").Error
		_ = admin.Close()
	})
	u.Path = "/" + name
	return u.String()
}

// newPGCluster prepares n instances' configs on direct (reached through dsn,
// which may be a pooler in front of it) and a simulator whose webhooks go to
// the first instance; pgbouncer sets database.pgbouncer. Nothing runs yet.
func newPGCluster(t *testing.T, direct, dsn string, n int, pgbouncer bool) *pgCluster {
	t.Helper()
	c := &pgCluster{dir: t.TempDir(), direct: direct, dsn: dsn}
	for i := 0; i < n; i++ {
		c.listens = append(c.listens, freePort(t))
	}
	c.gw = sim.New(sim.Options{Provider: "wooshpay", SecretKey: pgClusterSecret, Seed: 16, ProcessingDelay: time.Millisecond,
		Webhook: sim.WebhookOptions{URL: "http://" + c.listens[0] + "/webhooks/wooshpay", Secret: pgClusterWebhookSecret,
			Retry: []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}}})
	ctx, cancel := context.WithCancel(context.Background())
	c.gw.Start(ctx)
	srv := httptest.NewServer(c.gw)
	t.Cleanup(func() { srv.Close(); cancel(); c.gw.Close() })
	c.gwURL = srv.URL
	for i, n := range []string{"4242424242424242", "4111111111111111", "5555555555554444"} {
		s := saveTestCards(t, "wooshpay", srv.URL, pgClusterSecret, fmt.Sprintf("c%d-", i), []string{n})[0]
		c.cards = append(c.cards, storetest.Subscription{Customer: s.Customer, PaymentMethod: s.PaymentMethod})
	}
	for i := range c.listens {
		c.configs = append(c.configs, writeFile(t, c.dir, fmt.Sprintf("config-%d.yaml", i), fmt.Sprintf(`
database: { driver: postgres, dsn: %q, pgbouncer: %t, max_open_conns: 4 }
gateway:  { base_url: %q, secret_key: %s, webhook_secret: %s, concurrency: 8, rate_limit: 1000, timeout: 5s }
retry:    { initial_interval: 10ms, max_interval: 200ms, max_elapsed_time: 10s }
schedule: { billing: "@every 1s" }
cluster:  { heartbeat: 1s }
http:     { listen: %q, public_base_url: "https://billing.example.com" }
`, dsn, pgbouncer, srv.URL, pgClusterSecret, pgClusterWebhookSecret, c.listens[i])))
		c.logs = append(c.logs, filepath.Join(c.dir, fmt.Sprintf("billingd-%d.log", i)))
	}
	return c
}

// start starts every instance at once (so that they all try to migrate at
// once) and waits until each answers /healthz.
func (c *pgCluster) start(t *testing.T) {
	t.Helper()
	for i, cfg := range c.configs {
		c.procs = append(c.procs, startChild(t, c.logs[i], nil, "run", "-c", cfg))
	}
	for i := range c.procs {
		waitHTTP(t, "http://"+c.listens[i]+"/healthz", c.procs[i], c.logs[i])
	}
}

// stop ends every instance with SIGTERM, as systemd does, and requires a
// clean exit.
func (c *pgCluster) stop(t *testing.T) {
	t.Helper()
	for _, p := range c.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, p := range c.procs {
		select {
		case <-p.done:
			require.NoError(t, p.err, "instance %d; log: %s", i, readFile(c.logs[i]))
		case <-time.After(30 * time.Second):
			t.Fatalf("instance %d did not stop; log: %s", i, readFile(c.logs[i]))
		}
	}
}

// open is the test's own connection to the database, straight to the server.
func (c *pgCluster) open(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: c.direct})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// seed writes n subscriptions due now, named prefix-0…, over the saved cards.
func (c *pgCluster) seed(t *testing.T, st *store.Store, prefix string, n int) {
	t.Helper()
	anchor := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	subs := make([]storetest.Subscription, 0, n)
	for i := 0; i < n; i++ {
		s := c.cards[i%len(c.cards)]
		s.Reference, s.Amount, s.Currency, s.Anchor = fmt.Sprintf("%s-%03d", prefix, i), int64(1000+i), "USD", anchor
		subs = append(subs, s)
	}
	storetest.Seed(t, st, anchor, subs...)
}

// paidInvoices counts paid invoices of subscriptions whose reference starts
// with prefix.
func paidInvoices(t *testing.T, st *store.Store, prefix string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, st.DB().Raw(`SELECT COUNT(*) FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
	                                 WHERE i.status = 'paid' AND s.reference LIKE ?`, prefix+"-%").Scan(&n).Error)
	return n
}

// waitPaid waits until n invoices of prefix are paid.
func (c *pgCluster) waitPaid(t *testing.T, st *store.Store, prefix string, n int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for paidInvoices(t, st, prefix) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d %s invoices paid after a minute; logs:\n%s", paidInvoices(t, st, prefix), n, prefix, c.tails())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkLedger requires every charge at the simulator to match the database:
// nothing charged twice, nothing left unresolved.
func (c *pgCluster) checkLedger(t *testing.T, st *store.Store) *invariant.Report {
	t.Helper()
	rep, err := invariant.Check(context.Background(), st, c.gw.Ledger(), invariant.Options{Now: time.Now().UTC()})
	require.NoError(t, err)
	require.Zero(t, rep.DoubleCharges, rep.String())
	require.True(t, rep.OK(), rep.String())
	return rep
}

// readyz is one instance's readiness answer.
func (c *pgCluster) readyz(t *testing.T, i int) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get("http://" + c.listens[i] + "/readyz")
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body.Checks
}

// liveInstances are the instances rows that have not expired.
func liveInstances(t *testing.T, st *store.Store) []models.Instance {
	t.Helper()
	var rows []models.Instance
	require.NoError(t, st.DB().Where("expires_at > ?", time.Now().UTC()).Order("name").Find(&rows).Error)
	return rows
}

// errorLines are the ERROR lines of instance i's log.
func (c *pgCluster) errorLines(i int) []string {
	var out []string
	for _, l := range strings.Split(readFile(c.logs[i]), "\n") {
		if strings.Contains(l, `"level":"error"`) {
			out = append(out, l)
		}
	}
	return out
}

// tails is the end of every instance's log, for a failure message.
func (c *pgCluster) tails() string {
	var b strings.Builder
	for i, l := range c.logs {
		fmt.Fprintf(&b, "--- instance %d (%s):\n%s\n", i, l, readFile(l))
	}
	return b.String()
}
