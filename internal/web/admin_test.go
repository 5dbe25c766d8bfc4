package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/billingd/billingd/internal/web"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// fakeAccounts is the gateway's account reads: the handler tests check the
// HTTP rules; internal/daemon's admin tests run against the simulator.
type fakeAccounts struct {
	customers map[string]bool
	methods   map[string]*gateway.PaymentMethod
}

func (f fakeAccounts) RetrieveCustomer(_ context.Context, id string) (*gateway.Customer, error) {
	if !f.customers[id] {
		return nil, gateway.ErrNotFound
	}
	return &gateway.Customer{ID: id}, nil
}

func (f fakeAccounts) RetrievePaymentMethod(_ context.Context, id string) (*gateway.PaymentMethod, error) {
	if id == "pm_down" {
		return nil, errors.New("gateway timeout")
	}
	pm, ok := f.methods[id]
	if !ok {
		return nil, gateway.ErrNotFound
	}
	return pm, nil
}

type adminFixture struct {
	url        string
	clock      *clock.Fake
	store      *store.Store
	tokensFile string
	tokens     map[string]string // name -> token
	rateLimit  float64
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	f := &adminFixture{clock: clock.NewFake(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)), store: storetest.SQLite(t),
		tokensFile: filepath.Join(t.TempDir(), "tokens.json"), tokens: map[string]string{}, rateLimit: 1000}
	var tf web.TokensFile
	for _, name := range []string{"signup-app", "backoffice"} {
		tok, err := web.MintToken()
		require.NoError(t, err)
		f.tokens[name] = tok
		tf.Tokens = append(tf.Tokens, web.AdminToken{Name: name, SHA256: web.HashToken(tok), CreatedAt: f.clock.Now()})
	}
	require.NoError(t, web.WriteTokensFile(f.tokensFile, tf))
	accounts := fakeAccounts{customers: map[string]bool{"cus_1": true, "cus_2": true}, methods: map[string]*gateway.PaymentMethod{
		"pm_1":    {ID: "pm_1", Type: "card", Customer: "cus_1", Card: &gateway.CardDetails{Brand: "visa", Last4: "4242", ExpMonth: 12, ExpYear: 2035}},
		"pm_2":    {ID: "pm_2", Type: "card", Customer: "cus_2", Card: &gateway.CardDetails{Brand: "mastercard", Last4: "4444", ExpMonth: 1, ExpYear: 2030}},
		"pm_bank": {ID: "pm_bank", Type: "sepa_debit", Customer: "cus_1"},
	}}
	svc := ops.New(ops.Options{Store: f.store, Clock: f.clock, Accounts: accounts, Provider: "wooshpay"})
	h := web.NewAdmin(web.AdminOptions{Ops: svc, Store: f.store, Clock: f.clock, Log: zerolog.Nop(),
		Settings: func() web.AdminSettings { return web.AdminSettings{TokensFile: f.tokensFile, RateLimit: f.rateLimit} }})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(a.body, &m), string(a.body))
	return m
}

func (a answer) errField(t *testing.T) string {
	t.Helper()
	e, _ := a.json(t)["error"].(map[string]any)
	require.NotNil(t, e, string(a.body))
	s, _ := e["field"].(string)
	return s
}

func (f *adminFixture) do(t *testing.T, method, path, auth, key, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if key != "" {
		req.Header.Set(web.HeaderIdempotencyKey, key)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return answer{res.StatusCode, res.Header, b}
}

func (f *adminFixture) as(name string) string { return "Bearer " + f.tokens[name] }

const createBody = `{"reference":"sub-1","email":"a@example.com","customer":"cus_1","payment_method":"pm_1",
 "amount":1250,"currency":"USD","interval":"month","interval_count":1,"anchor":"2026-03-05T09:00:00Z"}`

func TestAdminAuthentication(t *testing.T) {
	f := newAdminFixture(t)
	other, err := web.MintToken()
	require.NoError(t, err)
	for _, tc := range []struct {
		name, auth string
	}{
		{"missing", ""},
		{"not bearer", "Basic " + f.tokens["backoffice"]},
		{"malformed", "Bearer nope"},
		{"wrong", "Bearer " + other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, "GET", "/v1/subscriptions", tc.auth, "", "")
			require.Equal(t, http.StatusUnauthorized, a.status, string(a.body))
			require.Contains(t, a.header.Get("WWW-Authenticate"), "Bearer")
			require.Equal(t, "unauthorized", a.json(t)["error"].(map[string]any)["code"])
		})
	}

	t.Run("a revoke in the file applies to the next request, without a restart", func(t *testing.T) {
		// /v1/nothing answers 404 to an authenticated request, 401 otherwise.
		require.Equal(t, http.StatusNotFound, f.do(t, "GET", "/v1/nothing", f.as("backoffice"), "", "").status)
		tf, _, err := web.ReadTokensFile(f.tokensFile)
		require.NoError(t, err)
		now := f.clock.Now()
		for i := range tf.Tokens {
			if tf.Tokens[i].Name == "backoffice" {
				tf.Tokens[i].RevokedAt = &now
			}
		}
		require.NoError(t, web.WriteTokensFile(f.tokensFile, tf))
		require.Equal(t, http.StatusUnauthorized, f.do(t, "GET", "/v1/nothing", f.as("backoffice"), "", "").status)
		require.Equal(t, http.StatusNotFound, f.do(t, "GET", "/v1/nothing", f.as("signup-app"), "", "").status, "the other token still works")
		fi, err := os.Stat(f.tokensFile)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	})
}

func TestAdminCreateIsIdempotent(t *testing.T) {
	f := newAdminFixture(t)
	first := f.do(t, "POST", "/v1/subscriptions", f.as("signup-app"), "k1", createBody)
	require.Equal(t, http.StatusCreated, first.status, string(first.body))
	sub := first.json(t)["subscription"].(map[string]any)
	require.Equal(t, "sub-1", sub["reference"])
	require.Equal(t, "4242", sub["card"].(map[string]any)["last4"], "the card's details are recorded from the gateway")
	require.Equal(t, true, first.json(t)["created"])

	again := f.do(t, "POST", "/v1/subscriptions", f.as("signup-app"), "k1", createBody)
	require.Equal(t, first.status, again.status)
	require.Equal(t, first.body, again.body, "the first answer, byte for byte")
	require.Equal(t, "true", again.header.Get(web.HeaderReplayed))
	require.Empty(t, first.header.Get(web.HeaderReplayed))

	other := f.do(t, "POST", "/v1/subscriptions", f.as("signup-app"), "k1", strings.Replace(createBody, "1250", "1300", 1))
	require.Equal(t, http.StatusUnprocessableEntity, other.status, string(other.body))

	t.Run("the key is the token's: another token's same key is another request", func(t *testing.T) {
		a := f.do(t, "POST", "/v1/subscriptions", f.as("backoffice"), "k1", createBody)
		require.Equal(t, http.StatusOK, a.status, string(a.body))
		require.Equal(t, false, a.json(t)["created"], "same reference, same terms: the existing subscription")
		require.Empty(t, a.header.Get(web.HeaderReplayed))
	})
	t.Run("same reference with other terms is 409", func(t *testing.T) {
		a := f.do(t, "POST", "/v1/subscriptions", f.as("signup-app"), "k2", strings.Replace(createBody, "1250", "1300", 1))
		require.Equal(t, http.StatusConflict, a.status, string(a.body))
	})

	n, err := f.store.AuditEntries(context.Background(), store.AuditFilter{TargetType: ops.TargetSubscription})
	require.NoError(t, err)
	require.Len(t, n, 1, "one subscription, one audit row")
	require.Equal(t, "signup-app", n[0].Actor)
	require.Equal(t, models.ViaAdminAPI, n[0].Via)

	t.Run("a key expires after 24h and its row is pruned", func(t *testing.T) {
		f.clock.Advance(web.AdminRequestTTL + time.Minute)
		a := f.do(t, "POST", "/v1/subscriptions", f.as("signup-app"), "k1", strings.Replace(createBody, "1250", "1300", 1))
		require.Equal(t, http.StatusConflict, a.status, "a new request now (the reference's terms differ), not a 422: %s", a.body)
	})
}

func TestAdminIdempotencyKeyRules(t *testing.T) {
	f := newAdminFixture(t)
	t.Run("required on every POST", func(t *testing.T) {
		a := f.do(t, "POST", "/v1/subscriptions", f.as("signup-app"), "", createBody)
		require.Equal(t, http.StatusBadRequest, a.status)
		require.Equal(t, web.HeaderIdempotencyKey, a.errField(t))
	})
	t.Run("a key still in flight is 409", func(t *testing.T) {
		now := f.clock.Now()
		_, begun, err := f.store.BeginAdminRequest(context.Background(), now, "signup-app", "busy", web.AdminRequestHash("POST", "/v1/subscriptions", []byte(createBody)), "POST", "/v1/subscriptions", now.Add(time.Hour))
		require.NoError(t, err)
		require.True(t, begun)
		a := f.do(t, "POST", "/v1/subscriptions", f.as("signup-app"), "busy", createBody)
		require.Equal(t, http.StatusConflict, a.status, string(a.body))
		require.Equal(t, "request_in_flight", a.json(t)["error"].(map[string]any)["code"])
	})
	t.Run("a server error is not remembered", func(t *testing.T) {
		// Cancel is not built in this worktree's ops or fails for a missing
		// subscription; either way the key is free for the retry.
		a := f.do(t, "POST", "/v1/subscriptions/nope/cancel", f.as("signup-app"), "c1", `{"reason":"test"}`)
		require.NotEqual(t, http.StatusOK, a.status)
		b := f.do(t, "POST", "/v1/subscriptions/nope/cancel", f.as("signup-app"), "c1", `{"reason":"test"}`)
		if a.status >= 500 {
			require.Empty(t, b.header.Get(web.HeaderReplayed))
		} else {
			require.Equal(t, "true", b.header.Get(web.HeaderReplayed))
		}
	})
}

func TestAdminBadInput(t *testing.T) {
	f := newAdminFixture(t)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"unknown field", "POST", "/v1/subscriptions", strings.Replace(createBody, `"amount"`, `"amout":1,"amount"`, 1), 400, "amout"},
		{"wrong type", "POST", "/v1/subscriptions", strings.Replace(createBody, `1250`, `"1250"`, 1), 400, "amount"},
		{"bad anchor", "POST", "/v1/subscriptions", strings.Replace(createBody, `2026-03-05T09:00:00Z`, `tomorrow`, 1), 400, "anchor"},
		{"import rules: currency", "POST", "/v1/subscriptions", strings.Replace(createBody, `"USD"`, `"usd"`, 1), 400, "currency"},
		{"import rules: email", "POST", "/v1/subscriptions", strings.Replace(createBody, `a@example.com`, `not-an-email`, 1), 400, "email"},
		{"gateway: unknown card", "POST", "/v1/subscriptions", strings.Replace(createBody, `"pm_1"`, `"pm_9"`, 1), 400, "payment_method"},
		{"gateway: another customer's card", "POST", "/v1/subscriptions", strings.Replace(createBody, `"pm_1"`, `"pm_2"`, 1), 400, "payment_method"},
		{"gateway: not a card", "POST", "/v1/subscriptions", strings.Replace(createBody, `"pm_1"`, `"pm_bank"`, 1), 400, "payment_method"},
		{"gateway: unknown customer", "POST", "/v1/subscriptions", strings.Replace(strings.Replace(createBody, `"cus_1"`, `"cus_9"`, 1), `"pm_1"`, `"pm_9"`, 1), 400, "customer"},
		{"not JSON", "POST", "/v1/subscriptions", `{"reference":`, 400, "body"},
		{"two objects", "POST", "/v1/subscriptions", createBody + `{}`, 400, "body"},
		{"unknown query parameter", "GET", "/v1/invoices?stauts=open", "", 400, "stauts"},
		{"bad limit", "GET", "/v1/invoices?limit=0", "", 400, "limit"},
		{"bad date", "GET", "/v1/attempts?from=yesterday", "", 400, "from"},
		{"bad id", "POST", "/v1/attempts/abc/resolve", `{}`, 400, "id"},
		{"bad month", "GET", "/v1/reports/revenue?month=2026-13", "", 400, "month"},
		{"bad zone", "GET", "/v1/forecast?tz=Mars/Olympus", "", 400, "tz"},
		{"bad days", "GET", "/v1/forecast?days=9999", "", 400, "days"},
		{"refund reason", "POST", "/v1/invoices/INV-1/refund", `{"refund_reason":"because"}`, 400, "refund_reason"},
		{"update with nothing", "POST", "/v1/subscriptions/sub-1/update", `{"reason":"x"}`, 400, "body"},
		{"no route", "GET", "/v1/nothing", "", 404, ""},
		{"wrong method", "DELETE", "/v1/subscriptions", "", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, tc.method, tc.path, f.as("backoffice"), "key-"+strings.ReplaceAll(tc.name, " ", "_"), tc.body)
			require.Equal(t, tc.status, a.status, string(a.body))
			require.Equal(t, "application/json", a.header.Get("Content-Type"))
			if tc.field != "" {
				require.Equal(t, tc.field, a.errField(t), string(a.body))
			}
		})
	}
	t.Run("a gateway that cannot be asked is 503, and the key stays free", func(t *testing.T) {
		body := strings.Replace(createBody, `"pm_1"`, `"pm_down"`, 1)
		a := f.do(t, "POST", "/v1/subscriptions", f.as("backoffice"), "down", body)
		require.Equal(t, http.StatusServiceUnavailable, a.status, string(a.body))
		require.NotEmpty(t, a.header.Get("Retry-After"))
		b := f.do(t, "POST", "/v1/subscriptions", f.as("backoffice"), "down", body)
		require.Equal(t, http.StatusServiceUnavailable, b.status)
		require.Empty(t, b.header.Get(web.HeaderReplayed), "a 5xx is not replayed")
	})
	t.Run("a body over 64 KiB is 413", func(t *testing.T) {
		big := `{"reason":"` + strings.Repeat("x", web.MaxAdminBody) + `"}`
		a := f.do(t, "POST", "/v1/subscriptions/sub-1/pause", f.as("backoffice"), "big", big)
		require.Equal(t, http.StatusRequestEntityTooLarge, a.status, string(a.body))
	})
}

func TestAdminRateLimit(t *testing.T) {
	f := newAdminFixture(t)
	f.rateLimit = 2
	var limited *answer
	for i := 0; i < 10 && limited == nil; i++ {
		a := f.do(t, "GET", "/v1/subscriptions", f.as("backoffice"), "", "")
		if a.status == http.StatusTooManyRequests {
			limited = &a
		}
	}
	require.NotNil(t, limited, "10 requests at once exceed 2/s")
	require.NotEmpty(t, limited.header.Get("Retry-After"))
	require.Equal(t, "rate_limited", limited.json(t)["error"].(map[string]any)["code"])
	a := f.do(t, "GET", "/v1/subscriptions", f.as("signup-app"), "", "")
	require.NotEqual(t, http.StatusTooManyRequests, a.status, "the limit is per token")
}

func TestAdminTokensFile(t *testing.T) {
	t.Run("tokens are prefixed and carry at least 128 bits", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 50; i++ {
			tok, err := web.MintToken()
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(tok, web.TokenPrefix))
			require.GreaterOrEqual(t, (len(tok)-len(web.TokenPrefix))*5, 128, "base32: 5 bits a character")
			require.False(t, seen[tok])
			seen[tok] = true
		}
	})
	t.Run("the file stores hashes only", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "t.json")
		tok, err := web.MintToken()
		require.NoError(t, err)
		require.NoError(t, web.WriteTokensFile(path, web.TokensFile{Tokens: []web.AdminToken{{Name: "a", SHA256: web.HashToken(tok), CreatedAt: time.Now()}}}))
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		require.False(t, bytes.Contains(raw, []byte(tok)))
		tf, exists, err := web.ReadTokensFile(path)
		require.NoError(t, err)
		require.True(t, exists)
		require.Len(t, tf.Tokens, 1)
	})
	t.Run("names", func(t *testing.T) {
		require.NoError(t, web.CheckTokenName("signup-app"))
		require.Error(t, web.CheckTokenName(""))
		require.Error(t, web.CheckTokenName("has space"))
		require.Error(t, web.CheckTokenName(strings.Repeat("a", 65)))
	})
}
