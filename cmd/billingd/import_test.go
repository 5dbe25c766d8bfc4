package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

const importSimKey = "sk_test_importcheck"

// importGateway serves the simulator in-process and counts the API requests
// it receives.
type importGateway struct {
	srv      *httptest.Server
	sim      *sim.Server
	client   *wooshpay.Client
	requests atomic.Int64
}

func newImportGateway(t *testing.T) *importGateway {
	t.Helper()
	g := &importGateway{sim: sim.New(sim.Options{SecretKey: importSimKey, Seed: 1})}
	ctx, cancel := context.WithCancel(context.Background())
	g.sim.Start(ctx)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			g.requests.Add(1)
		}
		g.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { g.srv.Close(); cancel(); g.sim.Close() })
	c, err := wooshpay.New(wooshpay.Options{BaseURL: g.srv.URL, SecretKey: importSimKey, Timeout: 5 * time.Second})
	require.NoError(t, err)
	g.client = c
	return g
}

// saveCard creates a customer with a saved card at the gateway.
func (g *importGateway) saveCard(t *testing.T, email string) (cus, pm string) {
	t.Helper()
	ctx := context.Background()
	c, err := g.client.CreateCustomer(ctx, wooshpay.CustomerParams{Email: email}, "")
	require.NoError(t, err)
	si, err := g.client.CreateSetupIntent(ctx, wooshpay.SetupIntentParams{Customer: c.ID,
		Card: wooshpay.CardData{Number: "4242424242424242", ExpMonth: "12", ExpYear: "2035", CVC: "123"}}, "")
	require.NoError(t, err)
	return c.ID, si.PaymentMethod
}

// importDatabases yields a database section and a way to open the same
// database, for SQLite and (when configured) PostgreSQL.
func importDatabases(t *testing.T, fn func(t *testing.T, dbYAML string, open func() *store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		fn(t, fmt.Sprintf("{ driver: sqlite, dsn: %q }", path), func() *store.Store {
			st, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: path})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := storetest.PostgresDSN(t)
		fn(t, fmt.Sprintf("{ driver: postgres, dsn: %q }", dsn), func() *store.Store {
			st, err := store.Open(context.Background(), store.Options{Driver: store.Postgres, DSN: dsn})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st
		})
	})
}

func importConfig(t *testing.T, dir, dbYAML, baseURL string) string {
	return writeFile(t, dir, "config.yaml", fmt.Sprintf(`
database: %s
gateway:  { base_url: %q, secret_key: %s, webhook_secret: whsec_x, rate_limit: 50 }
http:     { public_base_url: "https://billing.example.com" }
`, dbYAML, baseURL, importSimKey))
}

func TestImportVerifiesIDsWithTheGateway(t *testing.T) {
	importDatabases(t, func(t *testing.T, dbYAML string, open func() *store.Store) {
		g := newImportGateway(t)
		cusA, pmA := g.saveCard(t, "a@example.com")
		cusB, pmB := g.saveCard(t, "b@example.com")
		dir := t.TempDir()
		cfg := importConfig(t, dir, dbYAML, g.srv.URL)
		anchor := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
		row := func(ref, cus, pm string) string {
			return fmt.Sprintf("%s,%s@example.com,%s,%s,1999,USD,month,1,%s\n", ref, ref, cus, pm, anchor)
		}
		bad := writeFile(t, dir, "bad.csv", csvHeader+
			row("unknown-customer", "cus_nope", pmA)+ // line 2
			row("foreign-card", cusA, pmB)) // line 3: pm_B belongs to customer B

		t.Run("bad ids are named by line and column; nothing is imported", func(t *testing.T) {
			code, out, errOut := runMain(t, nil, "subscriptions", "import", bad, "-c", cfg)
			require.Equal(t, exitUsage, code, "stdout %s stderr %s", out, errOut)
			require.Contains(t, errOut, bad)
			require.Contains(t, errOut, `line 2: customer: the gateway has no such customer (got "cus_nope")`)
			require.Contains(t, errOut, fmt.Sprintf(`line 3: payment_method: the payment method belongs to customer %s at the gateway, not to %s (got %q)`, cusB, cusA, pmB))
			require.NotContains(t, out, "imported")
			var n int64
			require.NoError(t, open().DB().Raw(`SELECT COUNT(*) FROM subscriptions`).Scan(&n).Error)
			require.Zero(t, n)
		})

		t.Run("good ids are verified once and remembered", func(t *testing.T) {
			good := writeFile(t, dir, "good.csv", csvHeader+row("a-1", cusA, pmA)+row("a-2", cusA, pmA)+row("b-1", cusB, pmB))
			before := g.requests.Load()
			code, out, errOut := runMain(t, nil, "subscriptions", "import", good, "-c", cfg)
			require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
			require.Contains(t, out, "imported 3 subscription(s)")
			require.EqualValues(t, 4, g.requests.Load()-before, "two customers and two cards, each asked once")
			st := open()
			var cs []models.Customer
			require.NoError(t, st.DB().Find(&cs).Error)
			require.Len(t, cs, 2)
			for _, c := range cs {
				require.NotNil(t, c.VerifiedAt, c.GatewayID)
			}
			var pms []models.PaymentMethod
			require.NoError(t, st.DB().Find(&pms).Error)
			require.Len(t, pms, 2)
			for _, p := range pms {
				require.NotNil(t, p.VerifiedAt, p.GatewayID)
			}

			more := writeFile(t, dir, "more.csv", csvHeader+row("a-3", cusA, pmA))
			before = g.requests.Load()
			code, out, errOut = runMain(t, nil, "subscriptions", "import", more, "-c", cfg)
			require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
			require.Equal(t, before, g.requests.Load(), "verified ids are not asked about again")
		})
	})
}

func TestImportWithoutVerificationCallsNoGateway(t *testing.T) {
	importDatabases(t, func(t *testing.T, dbYAML string, open func() *store.Store) {
		var calls atomic.Int64
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			calls.Add(1)
			http.Error(w, "no call expected", http.StatusTeapot)
		}))
		t.Cleanup(gw.Close)
		dir := t.TempDir()
		cfg := importConfig(t, dir, dbYAML, gw.URL)
		anchor := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
		f := writeFile(t, dir, "subs.csv", csvHeader+
			fmt.Sprintf("unknown-customer,u@example.com,cus_nope,pm_nope,1999,USD,month,1,%s\n", anchor)+
			fmt.Sprintf("foreign-card,f@example.com,cus_a,pm_b,1999,USD,month,1,%s\n", anchor))
		code, out, errOut := runMain(t, nil, "subscriptions", "import", f, "--no-verify", "-c", cfg)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		require.Contains(t, out, "imported 2 subscription(s)")
		require.Zero(t, calls.Load(), "--no-verify makes no gateway call")
		var verified int64
		require.NoError(t, open().DB().Raw(`SELECT COUNT(*) FROM payment_methods WHERE verified_at IS NOT NULL`).Scan(&verified).Error)
		require.Zero(t, verified, "nothing unverified is remembered as verified")
	})
}

func TestImportFailsWhenTheGatewayCannotBeAsked(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","code":"api_key_invalid","message":"Invalid API Key provided."}}`))
	}))
	t.Cleanup(gw.Close)
	dir := t.TempDir()
	cfg := importConfig(t, dir, fmt.Sprintf("{ driver: sqlite, dsn: %q }", filepath.Join(dir, "billingd.db")), gw.URL)
	anchor := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
	f := writeFile(t, dir, "subs.csv", csvHeader+fmt.Sprintf("r-1,r@example.com,cus_a,pm_a,1999,USD,month,1,%s\n", anchor))
	code, out, errOut := runMain(t, nil, "subscriptions", "import", f, "-c", cfg)
	require.Equal(t, exitRuntime, code, "stdout %s stderr %s", out, errOut)
	require.Contains(t, errOut, "could not verify")
	require.NotContains(t, out, "imported")
}
