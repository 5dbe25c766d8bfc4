package checkout

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testKey = "sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e"

// seen is one request the fake API received.
type seen struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

// reply is one canned answer.
type reply struct {
	status int
	body   string
	header map[string]string
}

// fakeAPI answers by "METHOD /path" (query ignored) and records requests.
type fakeAPI struct {
	mu     sync.Mutex
	routes map[string][]reply // consumed in order; the last one repeats
	reqs   []seen
	srv    *httptest.Server
}

func newFake(t *testing.T) (*Client, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{routes: map[string][]reply{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	c, err := New(Options{BaseURL: f.srv.URL, SecretKey: testKey, Timeout: 5 * time.Second})
	require.NoError(t, err)
	c.now = func() time.Time { return time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC) }
	return c, f
}

func (f *fakeAPI) on(route string, replies ...reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[route] = append(f.routes[route], replies...)
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	key := r.Method + " " + r.URL.Path
	rs := f.routes[key]
	var rp reply
	switch {
	case len(rs) == 0:
		rp = reply{status: http.StatusNotFound}
	case len(rs) == 1:
		rp = rs[0]
	default:
		rp = rs[0]
		f.routes[key] = rs[1:]
	}
	f.mu.Unlock()
	for k, v := range rp.header {
		w.Header().Set(k, v)
	}
	if rp.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(rp.status)
	_, _ = io.WriteString(w, rp.body)
}

func (f *fakeAPI) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// count returns how many requests matched method and path.
func (f *fakeAPI) count(method, path string) int {
	n := 0
	for _, r := range f.requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return string(b)
}

func decodeMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// paymentJSON builds a payment body for outcome tests.
func paymentJSON(fields map[string]any) string {
	base := map[string]any{
		"id":        "pay_abcdefghijklmnopqrstuvwxyz",
		"amount":    1200,
		"currency":  "USD",
		"reference": "ord-1",
		"source":    map[string]any{"id": "src_card1", "type": "card", "last4": "4242"},
		"customer":  map[string]any{"id": "cus_1"},
		"metadata":  map[string]any{"idempotency_key": "ord-1-a1"},
	}
	for k, v := range fields {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	b, _ := json.Marshal(base)
	return string(b)
}

func redirectLinks(href string) map[string]any {
	return map[string]any{"self": map[string]any{"href": "https://x/payments/p"}, "redirect": map[string]any{"href": href}}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
