package wooshpay

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

const (
	testKey  = "sk_test_51SuperSecretKeyDoNotLeak"
	testCard = "4000000000009995"
)

// recorded is one request as the test server saw it.
type recorded struct {
	Method  string
	Path    string
	Query   string
	Header  http.Header
	Body    []byte
	BodyMap map[string]any
}

// fakeGateway is an httptest server whose answer each test sets.
type fakeGateway struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	handler http.HandlerFunc
}

func newFake(t *testing.T, h http.HandlerFunc) *fakeGateway {
	t.Helper()
	f := &fakeGateway{t: t, handler: h}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec := recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: b}
		if len(b) > 0 {
			_ = json.Unmarshal(b, &rec.BodyMap)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		h := f.handler
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGateway) client(opts ...func(*Options)) *Client {
	f.t.Helper()
	o := Options{BaseURL: f.srv.URL, SecretKey: testKey, Timeout: 5 * time.Second}
	for _, fn := range opts {
		fn(&o)
	}
	c, err := New(o)
	require.NoError(f.t, err)
	return c
}

func (f *fakeGateway) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func (f *fakeGateway) last() recorded {
	f.t.Helper()
	r := f.requests()
	require.NotEmpty(f.t, r, "no request reached the server")
	return r[len(r)-1]
}

// reply answers with status, JSON content type, optional headers and body.
func reply(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func chargeRequest() gateway.PaymentIntentRequest {
	return gateway.PaymentIntentRequest{
		Amount:          2500,
		Currency:        "USD",
		Customer:        "cus_123",
		PaymentMethod:   "pm_456",
		OffSession:      true,
		MerchantOrderID: "inv_789",
		Description:     "Pro plan, November",
		ReturnURL:       "https://billing.example.com/pay/tok/return",
		Metadata:        map[string]string{"invoice": "inv_789"},
		IdempotencyKey:  "inv_789-a1",
	}
}

// requireClean asserts an error text carries neither the secret key nor a card number.
func requireClean(t *testing.T, s string) {
	t.Helper()
	require.NotContains(t, s, testKey)
	require.NotContains(t, s, "SuperSecret")
	require.NotContains(t, s, testCard)
	require.NotContains(t, s, "4242424242424242")
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"https", Options{BaseURL: "https://api.wooshpay.com", SecretKey: testKey}, ""},
		{"https with path prefix and slash", Options{BaseURL: "https://gw.example.com/wooshpay/", SecretKey: testKey}, ""},
		{"http loopback ip", Options{BaseURL: "http://127.0.0.1:12111", SecretKey: testKey}, ""},
		{"http localhost", Options{BaseURL: "http://localhost:12111", SecretKey: testKey}, ""},
		{"http ipv6 loopback", Options{BaseURL: "http://[::1]:12111", SecretKey: testKey}, ""},
		{"empty base", Options{SecretKey: testKey}, "base URL is required"},
		{"relative", Options{BaseURL: "api.wooshpay.com", SecretKey: testKey}, "scheme"},
		{"ftp", Options{BaseURL: "ftp://api.wooshpay.com", SecretKey: testKey}, "scheme"},
		{"http remote", Options{BaseURL: "http://api.wooshpay.com", SecretKey: testKey}, "loopback"},
		{"credentials in url", Options{BaseURL: "https://sk_live_abc:x@api.wooshpay.com", SecretKey: testKey}, "credentials"},
		{"query", Options{BaseURL: "https://api.wooshpay.com/?x=1", SecretKey: testKey}, "query"},
		{"no host", Options{BaseURL: "https://", SecretKey: testKey}, "host"},
		{"bad url", Options{BaseURL: "https://a b\x7f", SecretKey: testKey}, "not a valid URL"},
		{"empty key", Options{BaseURL: "https://api.wooshpay.com"}, "secret key is required"},
		{"key with colon", Options{BaseURL: "https://api.wooshpay.com", SecretKey: testKey + ":x"}, "secret key"},
		{"key with newline", Options{BaseURL: "https://api.wooshpay.com", SecretKey: testKey + "\n"}, "secret key"},
		{"negative timeout", Options{BaseURL: "https://api.wooshpay.com", SecretKey: testKey, Timeout: -time.Second}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, c)
				require.Equal(t, DefaultTimeout, c.timeout)
				require.Equal(t, DefaultUserAgent, c.userAgent)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.wantErr)
			requireClean(t, err.Error())
			require.NotContains(t, err.Error(), "sk_live_abc")
		})
	}
}

func TestDefaultHTTPClient(t *testing.T) {
	c, err := New(Options{BaseURL: "https://api.wooshpay.com", SecretKey: testKey, Timeout: 7 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 7*time.Second, c.http.Timeout)
	tr, ok := c.http.Transport.(*http.Transport)
	require.True(t, ok)
	require.GreaterOrEqual(t, tr.MaxIdleConnsPerHost, 256)
	require.NotNil(t, c.http.CheckRedirect, "redirects must not be followed: a redirected POST becomes a GET")

	own := &http.Client{}
	c, err = New(Options{BaseURL: "https://api.wooshpay.com", SecretKey: testKey, HTTPClient: own})
	require.NoError(t, err)
	require.Same(t, own, c.http)
}

func basicAuth(t *testing.T, h http.Header) (string, string) {
	t.Helper()
	r := &http.Request{Header: h}
	user, pass, ok := r.BasicAuth()
	require.True(t, ok, "Basic auth header missing")
	return user, pass
}

func TestRequestShape(t *testing.T) {
	f := newFake(t, reply(200, intentJSON("pi_1", "succeeded", "")))
	c := f.client(func(o *Options) { o.UserAgent = "billingd-test/1" })
	ctx := context.Background()

	t.Run("create", func(t *testing.T) {
		r := c.CreatePaymentIntent(ctx, chargeRequest())
		require.Equal(t, gateway.Succeeded, r.Kind, "%v", r.Err)
		got := f.last()
		require.Equal(t, http.MethodPost, got.Method)
		require.Equal(t, "/v1/payment_intents", got.Path)
		user, pass := basicAuth(t, got.Header)
		require.Equal(t, testKey, user)
		require.Empty(t, pass)
		require.Equal(t, "application/json", got.Header.Get("Content-Type"))
		require.Equal(t, "application/json", got.Header.Get("Accept"))
		require.Equal(t, "billingd-test/1", got.Header.Get("User-Agent"))
		require.Equal(t, "inv_789-a1", got.Header.Get("Idempotency-Key"))
		require.Equal(t, map[string]any{
			"amount":            float64(2500),
			"currency":          "USD",
			"confirm":           true,
			"off_session":       true,
			"customer":          "cus_123",
			"payment_method":    "pm_456",
			"merchant_order_id": "inv_789",
			"description":       "Pro plan, November",
			"metadata":          map[string]any{"invoice": "inv_789"},
			"return_url":        "https://billing.example.com/pay/tok/return",
		}, got.BodyMap)
	})

	t.Run("create on-session keeps off_session false", func(t *testing.T) {
		req := chargeRequest()
		req.OffSession = false
		req.Description, req.Metadata, req.ReturnURL = "", nil, ""
		c.CreatePaymentIntent(ctx, req)
		got := f.last()
		require.Equal(t, false, got.BodyMap["off_session"])
		require.NotContains(t, got.BodyMap, "description")
		require.NotContains(t, got.BodyMap, "metadata")
		require.NotContains(t, got.BodyMap, "return_url")
	})

	t.Run("retrieve", func(t *testing.T) {
		r := c.RetrievePaymentIntent(ctx, "pi_1")
		require.Equal(t, gateway.Succeeded, r.Kind)
		got := f.last()
		require.Equal(t, http.MethodGet, got.Method)
		require.Equal(t, "/v1/payment_intents/pi_1", got.Path)
		require.Empty(t, got.Body)
		require.Empty(t, got.Header.Get("Idempotency-Key"))
		require.Empty(t, got.Header.Get("Content-Type"))
		user, _ := basicAuth(t, got.Header)
		require.Equal(t, testKey, user)
	})

	t.Run("confirm", func(t *testing.T) {
		r := c.ConfirmPaymentIntent(ctx, "pi_1", gateway.ConfirmRequest{
			PaymentMethod: "pm_9", OffSession: false, ReturnURL: "https://b.example/r", IdempotencyKey: "inv_1-a2-confirm",
		})
		require.Equal(t, gateway.Succeeded, r.Kind)
		got := f.last()
		require.Equal(t, http.MethodPost, got.Method)
		require.Equal(t, "/v1/payment_intents/pi_1/confirm", got.Path)
		require.Equal(t, "inv_1-a2-confirm", got.Header.Get("Idempotency-Key"))
		require.Equal(t, map[string]any{"payment_method": "pm_9", "off_session": false, "return_url": "https://b.example/r"}, got.BodyMap)
	})

	t.Run("cancel", func(t *testing.T) {
		c.CancelPaymentIntent(ctx, "pi_1", "cancel-pi_1")
		got := f.last()
		require.Equal(t, http.MethodPost, got.Method)
		require.Equal(t, "/v1/payment_intents/pi_1/cancel", got.Path)
		require.Equal(t, "cancel-pi_1", got.Header.Get("Idempotency-Key"))
		require.Equal(t, "application/json", got.Header.Get("Content-Type"))
		require.Equal(t, map[string]any{"cancellation_reason": "abandoned"}, got.BodyMap)
	})

	t.Run("cancel without key sends no header", func(t *testing.T) {
		c.CancelPaymentIntent(ctx, "pi_1", "")
		_, present := f.last().Header["Idempotency-Key"]
		require.False(t, present)
	})
}

func TestBaseURLPathPrefix(t *testing.T) {
	f := newFake(t, reply(200, intentJSON("pi_1", "succeeded", "")))
	c, err := New(Options{BaseURL: f.srv.URL + "/gw/", SecretKey: testKey})
	require.NoError(t, err)
	c.RetrievePaymentIntent(context.Background(), "pi_1")
	require.Equal(t, "/gw/v1/payment_intents/pi_1", f.last().Path)
}

func TestSearchRequest(t *testing.T) {
	f := newFake(t, reply(200, `{"object":"search_result","data":[],"has_more":false}`))
	c := f.client()
	for _, id := range []string{"inv_789", "inv a&b=c+d/é#?%"} {
		t.Run(id, func(t *testing.T) {
			got, err := c.SearchPaymentIntentsByOrder(context.Background(), id)
			require.NoError(t, err)
			require.NotNil(t, got)
			require.Empty(t, got)
			req := f.last()
			require.Equal(t, http.MethodGet, req.Method)
			require.Equal(t, "/v1/payment_intents/search", req.Path)
			q, err := url.ParseQuery(req.Query)
			require.NoError(t, err)
			require.Equal(t, "merchant_order_id:'"+id+"'", q.Get("query"))
			require.Equal(t, "100", q.Get("limit"))
			require.NotContains(t, req.Query, "'", "quotes must be percent-encoded")
			require.Contains(t, req.Query, "%27")
			require.Empty(t, req.Header.Get("Idempotency-Key"))
		})
	}
}

func TestRefusedLocally(t *testing.T) {
	f := newFake(t, reply(200, intentJSON("pi_1", "succeeded", "")))
	c := f.client()
	ctx := context.Background()
	noKey := chargeRequest()
	noKey.IdempotencyKey = ""
	longKey := chargeRequest()
	longKey.IdempotencyKey = strings.Repeat("k", 256)
	crlfKey := chargeRequest()
	crlfKey.IdempotencyKey = "inv_1\r\nX-Evil: 1"
	zero := chargeRequest()
	zero.Amount = 0
	noCur := chargeRequest()
	noCur.Currency = ""

	results := map[string]gateway.Result{
		"create without key":  c.CreatePaymentIntent(ctx, noKey),
		"create long key":     c.CreatePaymentIntent(ctx, longKey),
		"create crlf key":     c.CreatePaymentIntent(ctx, crlfKey),
		"create zero amount":  c.CreatePaymentIntent(ctx, zero),
		"create no currency":  c.CreatePaymentIntent(ctx, noCur),
		"confirm without key": c.ConfirmPaymentIntent(ctx, "pi_1", gateway.ConfirmRequest{}),
		"confirm empty id":    c.ConfirmPaymentIntent(ctx, "", gateway.ConfirmRequest{IdempotencyKey: "k"}),
		"retrieve empty id":   c.RetrievePaymentIntent(ctx, ""),
		"retrieve slash id":   c.RetrievePaymentIntent(ctx, "pi_1/../../v1/customers"),
		"cancel query id":     c.CancelPaymentIntent(ctx, "pi_1?x=1", ""),
		"retrieve dot-dot id": c.RetrievePaymentIntent(ctx, ".."),
		"retrieve space id":   c.RetrievePaymentIntent(ctx, "pi 1"),
	}
	for name, r := range results {
		t.Run(name, func(t *testing.T) {
			want := gateway.Invalid
			if strings.HasPrefix(name, "create") || strings.HasPrefix(name, "confirm") {
				// A charge billingd could not even build is billingd's data.
				want = gateway.OurDataError
			}
			require.Equal(t, want, r.Kind)
			require.Zero(t, r.HTTPStatus)
			require.Error(t, r.Err)
			require.True(t, strings.HasPrefix(r.Err.Error(), "wooshpay: "), r.Err.Error())
		})
	}
	for _, id := range []string{"", "inv_1' OR status:'succeeded", `inv_1\`, "inv\n1"} {
		t.Run("search "+id, func(t *testing.T) {
			_, err := c.SearchPaymentIntentsByOrder(ctx, id)
			require.Error(t, err)
			var we *Error
			require.ErrorAs(t, err, &we)
			require.Equal(t, gateway.Invalid, we.Result.Kind)
			require.False(t, we.Retryable())
		})
	}
	require.Empty(t, f.requests(), "a locally refused call must not reach the gateway")
}

// TestConnectionReuse checks that bodies are drained and closed: sequential calls,
// including failed ones with bodies, share one connection.
func TestConnectionReuse(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(reply(500, `{"error":{"type":"api_error","message":"boom"}}`+strings.Repeat(" ", 4096)))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL, SecretKey: testKey})
	require.NoError(t, err)
	const calls = 6
	for i := 0; i < calls; i++ {
		r := c.RetrievePaymentIntent(context.Background(), "pi_1")
		require.Equal(t, gateway.Transient, r.Kind)
		// The transport hands a finished connection back to its pool from another
		// goroutine; give it a moment so the next call can find it.
		time.Sleep(5 * time.Millisecond)
	}
	// Without draining and closing, every call would need a new connection.
	require.LessOrEqual(t, n.Load(), int32(2))
}

func TestConcurrentUse(t *testing.T) {
	f := newFake(t, reply(200, intentJSON("pi_1", "succeeded", "")))
	c := f.client()
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.CreatePaymentIntent(context.Background(), chargeRequest())
			assert.Equal(t, gateway.Succeeded, r.Kind)
		}()
	}
	wg.Wait()
	require.Len(t, f.requests(), 32)
}
