package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testKey = "sk_test_simulator"

// fakeClock is a manually advanced clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a simulator behind a real HTTP server, driven with net/http.
type harness struct {
	t      *testing.T
	sim    *Server
	srv    *httptest.Server
	client *http.Client
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	if opts.SecretKey == "" {
		opts.SecretKey = testKey
	}
	s := New(opts)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return &harness{t: t, sim: s, srv: srv, client: &http.Client{Timeout: 10 * time.Second}}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

// obj decodes the body as a JSON object.
func (r resp) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// errObj returns the "error" object of an error answer.
func (r resp) errObj(t *testing.T) map[string]any {
	t.Helper()
	e, ok := r.obj(t)["error"].(map[string]any)
	require.True(t, ok, "no error object in %s", r.body)
	return e
}

func encodeBody(t *testing.T, body any) io.Reader {
	t.Helper()
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return strings.NewReader(b)
	case []byte:
		return bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		return bytes.NewReader(raw)
	}
}

func (h *harness) newRequest(method, path string, body any, key string) *http.Request {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, encodeBody(h.t, body))
	require.NoError(h.t, err)
	req.SetBasicAuth(testKey, "")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return req
}

func (h *harness) send(client *http.Client, req *http.Request) (resp, error) {
	res, err := client.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}, err
}

func (h *harness) do(method, path string, body any, key string) resp {
	h.t.Helper()
	r, err := h.send(h.client, h.newRequest(method, path, body, key))
	require.NoError(h.t, err)
	return r
}

func (h *harness) post(path string, body any, key string) resp {
	h.t.Helper()
	return h.do(http.MethodPost, path, body, key)
}

func (h *harness) get(path string) resp {
	h.t.Helper()
	return h.do(http.MethodGet, path, nil, "")
}

func (h *harness) customer() string {
	h.t.Helper()
	r := h.post("/v1/customers", map[string]any{"email": "a@example.com", "name": "A B"}, "")
	require.Equal(h.t, http.StatusOK, r.status, "%s", r.body)
	return r.obj(h.t)["id"].(string)
}

func setupBody(cus, number string) map[string]any {
	return map[string]any{
		"confirm": true, "customer": cus, "payment_method_types": []string{"card"},
		"payment_method_data": map[string]any{"type": "card", "card": map[string]any{
			"number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123", "name": "A B",
		}},
		"usage": "off_session", "return_url": "https://merchant.example/return",
	}
}

// saveCard saves a card for cus through a confirmed SetupIntent and returns pm_.
func (h *harness) saveCard(cus, number string) string {
	h.t.Helper()
	r := h.post("/v1/setup_intents", setupBody(cus, number), "")
	require.Equal(h.t, http.StatusOK, r.status, "%s", r.body)
	m := r.obj(h.t)
	require.Equal(h.t, "succeeded", m["status"])
	return m["payment_method"].(string)
}

func chargeBody(cus, pm string, amount int64, order string) map[string]any {
	return map[string]any{
		"amount": amount, "currency": "USD", "confirm": true, "off_session": true,
		"customer": cus, "payment_method": pm, "merchant_order_id": order,
		"description": "subscription", "metadata": map[string]string{"invoice": order},
		"return_url": "https://merchant.example/pay/return",
	}
}

func (h *harness) charge(cus, pm string, amount int64, order, key string) resp {
	h.t.Helper()
	return h.post("/v1/payment_intents", chargeBody(cus, pm, amount, order), key)
}

// chargeTarget saves a card and returns a customer and its payment method.
func (h *harness) chargeTarget(number string) (cus, pm string) {
	h.t.Helper()
	cus = h.customer()
	return cus, h.saveCard(cus, number)
}

func eventTypes(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// nonHijackable hides http.Hijacker, like an HTTP/2 ResponseWriter.
type nonHijackable struct{ http.ResponseWriter }

func httpRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
