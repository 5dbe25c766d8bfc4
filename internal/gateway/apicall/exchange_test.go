package apicall

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// received is what the test server saw of one request.
type received struct {
	method string
	uri    string
	header http.Header
	body   string
}

func TestDoSendsRequest(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		want    received
		noCType bool
		noKey   string
	}{
		{
			name: "JSON body with key",
			req: Request{Method: http.MethodPost, Body: map[string]int{"amount": 100},
				Authorization: "Bearer sk", UserAgent: "billingd-test/1",
				IdempotencyHeader: "Cko-Idempotency-Key", IdempotencyKey: "k-1"},
			want: received{method: http.MethodPost, uri: "/v1/things?a=1", body: `{"amount":100}`,
				header: http.Header{"Authorization": {"Bearer sk"}, "Accept": {"application/json"},
					"User-Agent": {"billingd-test/1"}, "Content-Type": {"application/json"},
					"Cko-Idempotency-Key": {"k-1"}}},
		},
		{
			name: "GET without body or key",
			req: Request{Method: http.MethodGet, Authorization: "Basic x", UserAgent: "ua",
				IdempotencyHeader: "Idempotency-Key"},
			want: received{method: http.MethodGet, uri: "/v1/things?a=1",
				header: http.Header{"Authorization": {"Basic x"}, "Accept": {"application/json"}, "User-Agent": {"ua"}}},
			noCType: true,
			noKey:   "Idempotency-Key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan received, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- received{method: r.Method, uri: r.RequestURI, header: r.Header, body: string(b)}
				w.Header().Set("X-Answer", "yes")
				w.WriteHeader(http.StatusCreated)
				_, _ = io.WriteString(w, `{"ok":true}`)
			}))
			defer srv.Close()
			req := tt.req
			req.URL = srv.URL + "/v1/things?a=1"
			a := Do(context.Background(), srv.Client(), 5*time.Second, req, Limits{MaxBody: 1 << 10, MaxDrain: 1 << 10})
			require.NoError(t, a.Err)
			require.False(t, a.NotSent)
			require.Equal(t, http.StatusCreated, a.Status)
			require.Equal(t, "yes", a.Header.Get("X-Answer"))
			require.Equal(t, `{"ok":true}`, string(a.Body))
			require.False(t, a.TooLarge)
			r := <-got
			require.Equal(t, tt.want.method, r.method)
			require.Equal(t, tt.want.uri, r.uri)
			require.Equal(t, tt.want.body, r.body)
			for k, v := range tt.want.header {
				require.Equal(t, v, r.header.Values(k), k)
			}
			if tt.noCType {
				require.Empty(t, r.header.Get("Content-Type"))
			}
			if tt.noKey != "" {
				require.Empty(t, r.header.Values(tt.noKey))
			}
		})
	}
}

func TestDoBoundsTheBody(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		tooLarge bool
		kept     int
	}{
		{name: "under the cap", size: 99, kept: 99},
		{name: "at the cap", size: 100, kept: 100},
		{name: "over the cap", size: 5000, tooLarge: true, kept: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, strings.Repeat("x", tt.size))
			}))
			defer srv.Close()
			a := Do(context.Background(), srv.Client(), 5*time.Second,
				Request{Method: http.MethodGet, URL: srv.URL}, Limits{MaxBody: 100, MaxDrain: 10})
			require.NoError(t, a.Err)
			require.Equal(t, tt.tooLarge, a.TooLarge)
			require.Len(t, a.Body, tt.kept)
		})
	}
}

func TestDoNotSent(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want error
	}{
		{name: "body cannot be encoded", req: Request{Method: http.MethodPost, URL: "http://127.0.0.1:1/", Body: func() {}}, want: ErrRequestEncoding},
		{name: "method cannot be sent", req: Request{Method: "BAD METHOD", URL: "http://127.0.0.1:1/"}, want: ErrRequestBuild},
		{name: "URL cannot be parsed", req: Request{Method: http.MethodGet, URL: "http://[::1"}, want: ErrRequestBuild},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				t.Fatal("a request that cannot be built must not be sent")
				return nil, nil
			})}
			a := Do(context.Background(), hc, time.Second, tt.req, Limits{MaxBody: 10, MaxDrain: 10})
			require.True(t, a.NotSent)
			require.ErrorIs(t, a.Err, tt.want)
			require.Zero(t, a.Status)
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDoTransportAndBodyErrors(t *testing.T) {
	boom := errors.New("connection reset")
	tests := []struct {
		name       string
		rt         roundTripFunc
		wantStatus int
	}{
		{name: "transport fails", rt: func(*http.Request) (*http.Response, error) { return nil, boom }},
		{name: "body read fails", wantStatus: http.StatusOK, rt: func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(io.MultiReader(strings.NewReader("{"), errReader{boom})), Request: r}, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Do(context.Background(), &http.Client{Transport: tt.rt}, time.Second,
				Request{Method: http.MethodGet, URL: "http://127.0.0.1:1/"}, Limits{MaxBody: 10, MaxDrain: 10})
			require.ErrorIs(t, a.Err, boom)
			require.False(t, a.NotSent)
			require.Equal(t, tt.wantStatus, a.Status)
		})
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestDoAppliesTimeoutToContext(t *testing.T) {
	var deadline time.Time
	var ok bool
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		deadline, ok = r.Context().Deadline()
		return nil, errors.New("stop")
	})}
	start := time.Now()
	_ = Do(context.Background(), hc, time.Hour, Request{Method: http.MethodGet, URL: "http://127.0.0.1:1/"}, Limits{})
	require.True(t, ok)
	require.WithinDuration(t, start.Add(time.Hour), deadline, time.Minute)
}

func TestDefaultHTTPClient(t *testing.T) {
	redirected := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer redirected.Close()
	hc := DefaultHTTPClient(7 * time.Second)
	require.Equal(t, 7*time.Second, hc.Timeout)
	tr, ok := hc.Transport.(*http.Transport)
	require.True(t, ok)
	require.Equal(t, 256, tr.MaxIdleConnsPerHost)
	resp, err := hc.Post(redirected.URL, "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	// A redirected POST is not followed: it would silently become a GET.
	require.Equal(t, http.StatusFound, resp.StatusCode)
}
