package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/billingd/billingd/internal/web"
)

// adminAPI is the admin listener of a bundle's daemon on a real port, as
// `billingd run` starts it (daemon.StartAdmin), with a client that checks
// every request and answer against docs/openapi.yaml.
type adminAPI struct {
	b          *daemontest.Bundle
	srv        *daemon.AdminServer
	client     *http.Client
	tokensFile string
	tokens     map[string]string
	spec       *openapiCheck
}

// newAdminAPI builds a bundle with the admin API on 127.0.0.1:0 and the
// named tokens minted into its tokens file.
func newAdminAPI(t *testing.T, o daemontest.Options, names ...string) *adminAPI {
	t.Helper()
	dir := t.TempDir()
	a := &adminAPI{tokensFile: filepath.Join(dir, "admin-tokens.json"), tokens: map[string]string{}, client: &http.Client{Timeout: 30 * time.Second}}
	var tf web.TokensFile
	for _, n := range names {
		tok, err := web.MintToken()
		require.NoError(t, err)
		a.tokens[n] = tok
		tf.Tokens = append(tf.Tokens, web.AdminToken{Name: n, SHA256: web.HashToken(tok), CreatedAt: time.Now().UTC()})
	}
	require.NoError(t, web.WriteTokensFile(a.tokensFile, tf))
	configure := o.Configure
	o.Configure = func(c *config.Config) {
		c.Admin.Listen = "127.0.0.1:0"
		c.Admin.TokensFile = a.tokensFile
		if configure != nil {
			configure(c)
		}
	}
	a.b = daemontest.New(t, o)
	srv, err := a.b.D.StartAdmin()
	require.NoError(t, err)
	require.NotNil(t, srv)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	a.srv = srv
	a.spec = loadOpenAPI(t, srv.URL())
	return a
}

type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (r apiAnswer) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), string(r.body))
}

func (r apiAnswer) errorField(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Field string } `json:"error"`
	}
	r.decode(t, &e)
	return e.Error.Field
}

// call sends one request as token name (or with the raw Authorization
// value auth when name is ""), validating the request against the spec
// when it is meant to be valid (checkRequest) and the answer always.
func (a *adminAPI) call(t *testing.T, name, method, path, key string, body any, checkRequest bool) apiAnswer {
	t.Helper()
	var raw []byte
	switch v := body.(type) {
	case nil:
	case string:
		raw = []byte(v)
	default:
		var err error
		raw, err = json.Marshal(v)
		require.NoError(t, err)
	}
	req, err := http.NewRequest(method, a.srv.URL()+path, bytes.NewReader(raw))
	require.NoError(t, err)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok, ok := a.tokens[name]; ok {
		req.Header.Set("Authorization", "Bearer "+tok)
	} else if name != "" {
		req.Header.Set("Authorization", name)
	}
	if key != "" {
		req.Header.Set(web.HeaderIdempotencyKey, key)
	}
	in := a.spec.request(t, req, raw, checkRequest)
	res, err := a.client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	a.spec.response(t, in, res, got)
	return apiAnswer{res.StatusCode, res.Header, got}
}

// openapiCheck validates traffic against docs/openapi.yaml and remembers
// which operations were exercised.
type openapiCheck struct {
	doc    *openapi3.T
	router routers.Router
	mu     sync.Mutex
	seen   map[string]bool
}

func loadOpenAPI(t *testing.T, serverURL string) *openapiCheck {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../../docs/openapi.yaml")
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "docs/openapi.yaml is a valid OpenAPI document")
	doc.Servers = openapi3.Servers{{URL: serverURL}}
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	return &openapiCheck{doc: doc, router: router, seen: map[string]bool{}}
}

var validationOptions = &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}

func (s *openapiCheck) request(t *testing.T, req *http.Request, body []byte, check bool) *openapi3filter.RequestValidationInput {
	t.Helper()
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		// Not a documented route: the answer must still be an Error.
		return nil
	}
	s.mu.Lock()
	s.seen[route.Operation.OperationID] = true
	s.mu.Unlock()
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: validationOptions}
	if check {
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		require.NoError(t, openapi3filter.ValidateRequest(context.Background(), in), "request %s %s against docs/openapi.yaml", req.Method, req.URL.Path)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if body == nil {
			req.Body = http.NoBody
		}
	}
	return in
}

func (s *openapiCheck) response(t *testing.T, in *openapi3filter.RequestValidationInput, res *http.Response, body []byte) {
	t.Helper()
	if in == nil {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		require.NoError(t, json.Unmarshal(body, &e), string(body))
		require.NotEmpty(t, e.Error.Code, string(body))
		return
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(body)
	require.NoError(t, openapi3filter.ValidateResponse(context.Background(), out), "answer %d to %s %s against docs/openapi.yaml: %s",
		res.StatusCode, in.Request.Method, in.Request.URL.Path, body)
}

// newSubscription is a create request for a card saved at the simulator.
func newSubscription(t *testing.T, b *daemontest.Bundle, ref string, amount int64) map[string]any {
	t.Helper()
	cus, pm := b.SaveCard(t, "4242424242424242")
	body := map[string]any{"reference": ref, "email": ref + "@example.com", "customer": cus, "payment_method": pm,
		"amount": amount, "currency": "USD", "interval": "month", "interval_count": 1,
		"anchor": b.Clock.Now().Add(time.Hour).Format(time.RFC3339)}
	if series := b.WithSeries(storetest.Subscription{PaymentMethod: pm})[0].PreviousPaymentID; series != "" {
		body["previous_payment_id"] = series
	}
	return body
}

// TestAdminAPI creates subscriptions through the admin API on both
// providers and both databases: idempotently, with field-named errors, under
// named, revocable, rate-limited tokens.
func TestAdminAPI(t *testing.T) {
	for _, provider := range daemontest.Providers {
		for _, pg := range []bool{false, true} {
			name := provider + "/sqlite"
			if pg {
				name = provider + "/postgres"
			}
			t.Run(name, func(t *testing.T) {
				a := newAdminAPI(t, daemontest.Options{Provider: provider, Postgres: pg}, "signup-app", "backoffice")
				testAdminCreate(t, a)
			})
		}
	}
}

func testAdminCreate(t *testing.T, a *adminAPI) {
	b := a.b
	body := newSubscription(t, b, "api-sub-1", 1250)

	first := a.call(t, "signup-app", "POST", "/v1/subscriptions", "signup-1", body, true)
	require.Equal(t, http.StatusCreated, first.status, string(first.body))
	var made struct {
		Subscription ops.Subscription `json:"subscription"`
		Created      bool             `json:"created"`
	}
	first.decode(t, &made)
	require.True(t, made.Created)
	require.Equal(t, "api-sub-1", made.Subscription.Reference)
	require.Equal(t, "active", made.Subscription.Status)
	require.Equal(t, "4242", made.Subscription.Card.Last4, "the card's last 4, read from the gateway")
	require.NotEmpty(t, made.Subscription.Card.Brand)
	require.Equal(t, 2035, made.Subscription.Card.ExpYear)

	again := a.call(t, "signup-app", "POST", "/v1/subscriptions", "signup-1", body, true)
	require.Equal(t, first.status, again.status)
	require.Equal(t, string(first.body), string(again.body), "the first answer replayed byte for byte")
	require.Equal(t, "true", again.header.Get(web.HeaderReplayed))

	changed := map[string]any{}
	for k, v := range body {
		changed[k] = v
	}
	changed["amount"] = 1300
	reused := a.call(t, "signup-app", "POST", "/v1/subscriptions", "signup-1", changed, true)
	require.Equal(t, http.StatusUnprocessableEntity, reused.status, string(reused.body))

	sameTerms := a.call(t, "signup-app", "POST", "/v1/subscriptions", "signup-2", body, true)
	require.Equal(t, http.StatusOK, sameTerms.status, "a new key, same reference and terms: the existing one: %s", sameTerms.body)
	otherTerms := a.call(t, "signup-app", "POST", "/v1/subscriptions", "signup-3", changed, true)
	require.Equal(t, http.StatusConflict, otherTerms.status, string(otherTerms.body))

	var n int64
	require.NoError(t, b.Store.DB().Model(&models.Subscription{}).Where("reference = ?", "api-sub-1").Count(&n).Error)
	require.EqualValues(t, 1, n, "one subscription")
	entries, err := b.Store.AuditEntries(context.Background(), store.AuditFilter{TargetType: ops.TargetSubscription})
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "signup-app", entries[0].Actor, "the audit log names the token")
	require.Equal(t, models.ViaAdminAPI, entries[0].Via)

	t.Run("a card of another customer is a 400 naming payment_method", func(t *testing.T) {
		other := newSubscription(t, b, "api-sub-2", 900)
		_, stranger := b.SaveCard(t, "4242424242424242")
		other["payment_method"] = stranger
		delete(other, "previous_payment_id")
		if b.Provider == config.ProviderCheckout {
			other["previous_payment_id"] = b.WithSeries(storetest.Subscription{PaymentMethod: stranger})[0].PreviousPaymentID
		}
		res := a.call(t, "signup-app", "POST", "/v1/subscriptions", "signup-4", other, true)
		require.Equal(t, http.StatusBadRequest, res.status, string(res.body))
		require.Equal(t, "payment_method", res.errorField(t))
	})

	t.Run("an unknown field is a 400 naming it", func(t *testing.T) {
		bad := map[string]any{"colour": "blue"}
		for k, v := range body {
			bad[k] = v
		}
		res := a.call(t, "signup-app", "POST", "/v1/subscriptions", "signup-5", bad, false)
		require.Equal(t, http.StatusBadRequest, res.status, string(res.body))
		require.Equal(t, "colour", res.errorField(t))
	})

	t.Run("no Idempotency-Key is a 400", func(t *testing.T) {
		res := a.call(t, "signup-app", "POST", "/v1/subscriptions", "", body, false)
		require.Equal(t, http.StatusBadRequest, res.status, string(res.body))
		require.Equal(t, web.HeaderIdempotencyKey, res.errorField(t))
	})

	t.Run("missing, wrong and revoked tokens are 401", func(t *testing.T) {
		stray, err := web.MintToken()
		require.NoError(t, err)
		for _, auth := range []string{"", "Bearer " + stray, "Bearer", "Token abc"} {
			res := a.call(t, auth, "GET", "/v1/subscriptions", "", nil, false)
			require.Equal(t, http.StatusUnauthorized, res.status, "Authorization %q: %s", auth, res.body)
		}
		require.NotEqual(t, http.StatusUnauthorized, a.call(t, "backoffice", "GET", "/v1/nothing", "", nil, false).status)
		revokeToken(t, a.tokensFile, "backoffice")
		res := a.call(t, "backoffice", "GET", "/v1/nothing", "", nil, false)
		require.Equal(t, http.StatusUnauthorized, res.status, "a revoke applies to the next request, without a restart")
		require.NotEqual(t, http.StatusUnauthorized, a.call(t, "signup-app", "GET", "/v1/nothing", "", nil, false).status)
	})

	t.Run("admin.rate_limit applies on reload, per token", func(t *testing.T) {
		cfg := b.D.Config().Clone()
		cfg.Admin.RateLimit = 1
		res, err := b.D.Reload(cfg)
		require.NoError(t, err)
		require.Contains(t, res.Applied, "admin.rate_limit")
		limited := false
		for i := 0; i < 5 && !limited; i++ {
			limited = a.call(t, "signup-app", "GET", "/v1/nothing", "", nil, false).status == http.StatusTooManyRequests
		}
		require.True(t, limited, "5 requests at once exceed 1/s")
		cfg = cfg.Clone()
		cfg.Admin.RateLimit = 1000
		_, err = b.D.Reload(cfg)
		require.NoError(t, err)
	})
}

// revokeToken marks name revoked in the tokens file, as `billingd
// admin-tokens revoke NAME` does.
func revokeToken(t *testing.T, path, name string) {
	t.Helper()
	tf, _, err := web.ReadTokensFile(path)
	require.NoError(t, err)
	now := time.Now().UTC()
	found := false
	for i := range tf.Tokens {
		if tf.Tokens[i].Name == name {
			tf.Tokens[i].RevokedAt, found = &now, true
		}
	}
	require.True(t, found)
	require.NoError(t, web.WriteTokensFile(path, tf))
}

// TestAdminAPIRoutesMatchOpenAPI sends a request to every operation of
// docs/openapi.yaml: each is a route of the server (never no_route), and
// every answer — whatever the operation's state in this build — is one the
// document allows.
func TestAdminAPIRoutesMatchOpenAPI(t *testing.T) {
	a := newAdminAPI(t, daemontest.Options{}, "ops")
	// In a fixed order, the create first: every later answer (a list, the
	// forecast) then has a row whose every field the spec must describe.
	type route struct {
		path, method string
		op           *openapi3.Operation
	}
	var routes []route
	for path, item := range a.spec.doc.Paths.Map() {
		for method, op := range item.Operations() {
			routes = append(routes, route{path, method, op})
		}
	}
	sort.Slice(routes, func(i, j int) bool {
		ci, cj := routes[i].op.OperationID == "createSubscription", routes[j].op.OperationID == "createSubscription"
		if ci != cj {
			return ci
		}
		return routes[i].op.OperationID < routes[j].op.OperationID
	})
	for _, r := range routes {
		path, method, op := r.path, r.method, r.op
		{
			t.Run(op.OperationID, func(t *testing.T) {
				p := strings.NewReplacer("{reference}", "nope", "{number}", "INV-nope", "{id}", "424242").Replace(path)
				var body any
				key := ""
				if method == http.MethodPost {
					body, key = map[string]any{"reason": "openapi check"}, "route-"+op.OperationID
					switch op.OperationID {
					case "updateSubscription":
						body = map[string]any{"reason": "openapi check", "description": "x"}
					case "createSubscription":
						body = newSubscription(t, a.b, "route-check", 500)
					}
				}
				if op.OperationID == "revenueReport" || op.OperationID == "exportReport" {
					p += "?month=2026-03"
				}
				res := a.call(t, "ops", method, p, key, body, true)
				var e struct {
					Error struct{ Code string } `json:"error"`
				}
				_ = json.Unmarshal(res.body, &e)
				require.NotEqual(t, "no_route", e.Error.Code, "%s %s is documented but not served", method, p)
			})
		}
	}
	for path, item := range a.spec.doc.Paths.Map() {
		for _, op := range item.Operations() {
			require.True(t, a.spec.seen[op.OperationID], "operation %s (%s) was exercised", op.OperationID, path)
		}
	}
}

// TestAdminAPIServesTLS serves the admin API over HTTPS with a test
// certificate when admin.tls_cert_file and admin.tls_key_file are set.
func TestAdminAPIServesTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := testCertificate(t, dir)
	a := newAdminAPI(t, daemontest.Options{Configure: func(c *config.Config) {
		c.Admin.TLSCertFile, c.Admin.TLSKeyFile = certFile, keyFile
	}}, "ops")
	require.True(t, a.srv.TLS())
	require.True(t, strings.HasPrefix(a.srv.URL(), "https://"))
	a.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res := a.call(t, "ops", "GET", "/v1/nothing", "", nil, false)
	require.Equal(t, http.StatusNotFound, res.status, string(res.body))
	res = a.call(t, "", "GET", "/v1/subscriptions", "", nil, false)
	require.Equal(t, http.StatusUnauthorized, res.status)

	plain := &http.Client{Timeout: 5 * time.Second}
	r, err := plain.Get("http://" + a.srv.Addr().String() + "/v1/subscriptions")
	if err == nil {
		_ = r.Body.Close()
		require.Equal(t, http.StatusBadRequest, r.StatusCode, "plain HTTP to the TLS port is refused")
	}
}

// testCertificate writes a self-signed certificate for 127.0.0.1.
func testCertificate(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "billingd admin test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// skipUntilBuilt skips a test whose operator action is still the
// placeholder of internal/ops in this branch; once the action is merged the
// test runs.
// TestAdminAPICancelAndRefund cancels a subscription and refunds its paid
// invoice, partly then fully, through the admin API: the refund's own key
// outlives the 24 h Idempotency-Key, so the same request days later is
// applied once.
func TestAdminAPICancelAndRefund(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			a := newAdminAPI(t, daemontest.Options{Postgres: pg}, "backoffice")
			b := a.b

			body := newSubscription(t, b, "api-refund", 1000)
			res := a.call(t, "backoffice", "POST", "/v1/subscriptions", "create-1", body, true)
			require.Equal(t, http.StatusCreated, res.status, string(res.body))
			b.Run(t, 2*time.Hour, 10*time.Minute)

			res = a.call(t, "backoffice", "GET", "/v1/invoices?reference=api-refund&status=paid", "", nil, true)
			require.Equal(t, http.StatusOK, res.status, string(res.body))
			var invoices struct{ Data []ops.Invoice }
			res.decode(t, &invoices)
			require.Len(t, invoices.Data, 1, "the first period is billed and paid")
			number := invoices.Data[0].Number

			partial := map[string]any{"reason": "goodwill", "amount": 300}
			first := a.call(t, "backoffice", "POST", "/v1/invoices/"+number+"/refund", "refund-1", partial, true)
			require.Equal(t, http.StatusOK, first.status, string(first.body))
			again := a.call(t, "backoffice", "POST", "/v1/invoices/"+number+"/refund", "refund-1", partial, true)
			require.Equal(t, string(first.body), string(again.body))
			require.Equal(t, "true", again.header.Get(web.HeaderReplayed))

			// Days later, the key's 24 h are long gone: the same request is
			// still the same refund.
			b.Clock.Advance(72 * time.Hour)
			late := a.call(t, "backoffice", "POST", "/v1/invoices/"+number+"/refund", "refund-1", partial, true)
			require.Equal(t, http.StatusOK, late.status, string(late.body))
			require.Empty(t, late.header.Get(web.HeaderReplayed), "the key's row expired: the request ran again")
			var r1, r2 ops.Refund
			first.decode(t, &r1)
			late.decode(t, &r2)
			require.Equal(t, r1.ID, r2.ID, "one refund, whatever the retries")
			// The same key with other terms, after the 24 h row expired, is
			// refused by the refund's own key, not answered with the first.
			b.Clock.Advance(25 * time.Hour)
			other := a.call(t, "backoffice", "POST", "/v1/invoices/"+number+"/refund", "refund-1", map[string]any{"reason": "goodwill", "amount": 250}, true)
			require.Equal(t, http.StatusUnprocessableEntity, other.status, string(other.body))
			require.Contains(t, string(other.body), "other terms")
			zero := a.call(t, "backoffice", "POST", "/v1/invoices/"+number+"/refund", "refund-0", map[string]any{"reason": "oops", "amount": 0}, true)
			require.Equal(t, http.StatusBadRequest, zero.status, "an explicit 0 is never a full refund: %s", zero.body)

			full := a.call(t, "backoffice", "POST", "/v1/invoices/"+number+"/refund", "refund-2", map[string]any{"reason": "canceling"}, true)
			require.Equal(t, http.StatusOK, full.status, string(full.body))
			b.Run(t, time.Hour, 10*time.Minute)
			total := int64(0)
			for _, rf := range b.Sim.Refunds() {
				if rf.MerchantOrderID == number {
					total += rf.Amount
				}
			}
			require.EqualValues(t, 1000, total, "the gateway refunded 3.00 then the 7.00 left, once each")

			cancel := a.call(t, "backoffice", "POST", "/v1/subscriptions/api-refund/cancel", "cancel-1", map[string]any{"reason": "customer left"}, true)
			require.Equal(t, http.StatusOK, cancel.status, string(cancel.body))
			var sub ops.Subscription
			cancel.decode(t, &sub)
			require.Equal(t, "canceled", sub.Status)
			story := a.call(t, "backoffice", "GET", "/v1/subscriptions/api-refund", "", nil, true)
			require.Equal(t, http.StatusOK, story.status, string(story.body))
			var s ops.SubscriptionStory
			story.decode(t, &s)
			actions := []string{}
			for _, e := range s.Audit {
				require.Equal(t, "backoffice", e.Actor)
				actions = append(actions, e.Action)
			}
			require.Contains(t, actions, ops.ActionSubscriptionCreate, fmt.Sprint(actions))
		})
	}
}

// TestAdminReloadRules: the listener and its certificate need a restart,
// the tokens file and the rate limit apply at once.
func TestAdminReloadRules(t *testing.T) {
	for key, restart := range map[string]bool{
		"admin.listen": true, "admin.tls_cert_file": true, "admin.tls_key_file": true,
		"admin.tokens_file": false, "admin.rate_limit": false,
	} {
		require.Equal(t, restart, daemon.NeedsRestart(key), key)
	}
}
