// Package wooshpay is billingd's client for the WooshPay API (docs/gateway-wooshpay.md).
//
// It turns every HTTP exchange into a gateway.Result in exactly one place (decide),
// so the charge engine only ever reasons about the outcome kinds of package gateway
// and never about status codes or provider JSON. The client deliberately has no
// retry loop: one method call is one HTTP request. Retrying with backoff, and with
// the same idempotency key, is the charge engine's job, because only the engine
// knows the attempt's deadline and has recorded the attempt before the call.
//
// The client never logs and never echoes the secret key or card data in errors.
package wooshpay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
)

const (
	// DefaultTimeout bounds one request (connect, send, wait, read) when
	// Options.Timeout is zero. It is generous because a charge that is cut short
	// becomes an unknown outcome that has to be replayed.
	DefaultTimeout = 30 * time.Second

	// DefaultUserAgent identifies billingd to the gateway when Options.UserAgent
	// is empty, so the provider's support can find our requests in their logs.
	DefaultUserAgent = "billingd-wooshpay/1"

	// maxBodyBytes caps how much of a response is read. A search answer with 100
	// intents is well under this; anything larger is not a WooshPay object.
	maxBodyBytes = 1 << 20
	// maxDrainBytes is how much of an unread remainder is discarded so the
	// connection can be reused; beyond that it is cheaper to drop the connection.
	maxDrainBytes = 64 << 10
	// maxIdempotencyKey is the longest key the gateway accepts.
	maxIdempotencyKey = 255
)

// Options configures a Client. Only BaseURL and SecretKey are required.
type Options struct {
	// BaseURL is the API root, e.g. https://api.wooshpay.com or the simulator's
	// loopback address. Plain http is only accepted for loopback hosts, because
	// every request carries the secret key.
	BaseURL string
	// SecretKey (sk_test_… / sk_live_…) is sent as the HTTP Basic user name.
	SecretKey string
	// HTTPClient, when set, is used as is (its redirect policy included). The
	// default client has Timeout set, does not follow redirects (a redirected
	// POST would silently become a GET), and keeps enough idle connections per
	// host for the charge engine's concurrency.
	HTTPClient *http.Client
	// Timeout bounds each request, including reading the body. Default 30s.
	Timeout time.Duration
	// UserAgent is sent as User-Agent. Default DefaultUserAgent.
	UserAgent string
}

// Client talks to one WooshPay account. It is safe for concurrent use; create one
// per process and share it, so connections are pooled.
type Client struct {
	base      *url.URL
	authz     string // precomputed Authorization header value
	secret    string // kept only to scrub it from anything the gateway echoes
	http      *http.Client
	timeout   time.Duration
	userAgent string
	now       func() time.Time // for Retry-After dates; replaced in tests
}

var (
	_ gateway.Gateway  = (*Client)(nil)
	_ gateway.Accounts = (*Client)(nil)
)

// New validates opts and returns a Client. It fails on a BaseURL that is not an
// absolute http(s) URL, that embeds credentials, query or fragment, or that uses
// plain http towards a host other than loopback; and on an empty or malformed
// secret key. Failing here, at startup, beats failing every charge later.
func New(opts Options) (*Client, error) {
	base, err := parseBaseURL(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	if opts.SecretKey == "" {
		return nil, errors.New("wooshpay: secret key is required")
	}
	if strings.ContainsRune(opts.SecretKey, ':') || !isHeaderSafe(opts.SecretKey) {
		// Do not print the key, not even a part of it.
		return nil, errors.New("wooshpay: secret key contains characters not allowed in a Basic auth user name")
	}
	if opts.Timeout < 0 {
		return nil, errors.New("wooshpay: timeout must not be negative")
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	if !isHeaderSafe(ua) {
		return nil, errors.New("wooshpay: user agent contains control characters")
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(timeout)
	}
	req := &http.Request{Header: http.Header{}}
	req.SetBasicAuth(opts.SecretKey, "")
	return &Client{
		base:      base,
		authz:     req.Header.Get("Authorization"),
		secret:    opts.SecretKey,
		http:      hc,
		timeout:   timeout,
		userAgent: ua,
		now:       time.Now,
	}, nil
}

func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("wooshpay: base URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the input; a mistyped URL could hold a credential,
		// so report only that it is malformed.
		return nil, errors.New("wooshpay: base URL is not a valid URL")
	}
	if u.User != nil {
		return nil, errors.New("wooshpay: base URL must not contain credentials; use the secret key option")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("wooshpay: base URL scheme must be https or http, not %q", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("wooshpay: base URL has no host")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, errors.New("wooshpay: base URL must not have a query or fragment")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("wooshpay: plain http is only allowed for loopback hosts, not %q: the secret key would travel in clear text", u.Hostname())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isHeaderSafe reports whether s can be put in a header value without being
// rejected by net/http (which would otherwise surface as a bogus transient error).
func isHeaderSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func defaultHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ExpectContinueTimeout = time.Second
	return &http.Client{
		Timeout:   timeout,
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// call is one request to make.
type call struct {
	method         string
	path           string     // escaped path below the base URL, e.g. /v1/payment_intents
	query          url.Values // optional
	body           any        // JSON-encoded when non-nil
	idempotencyKey string
	// charge marks a request that may move money (create or confirm a
	// PaymentIntent): its refusals of billingd's own data are classified as
	// gateway.OurDataError, so the charge path can tell them from a decline.
	charge bool
}

// op names the call in error messages: method and path, never query or body.
func (c call) op() string { return c.method + " " + c.path }

// answer is what came back from one exchange, as read by do.
type answer struct {
	status   int
	header   http.Header
	body     []byte
	tooLarge bool
	err      error // transport or body-read error; status may be set when the body failed
	notSent  bool  // err happened while building the request: nothing left this process
}

// exchange performs one request and reads its answer, then lets decide say what
// it means. into, when non-nil, receives the decoded 2xx body.
func (c *Client) exchange(ctx context.Context, cl call, into wireObject) gateway.Result {
	a := c.do(ctx, cl)
	return c.decide(ctx, cl, a, into)
}

// do sends cl and reads the response with a size cap, always closing the body.
// It never interprets the answer.
func (c *Client) do(ctx context.Context, cl call) answer {
	u := *c.base
	u.Path = c.base.Path + cl.path
	u.RawPath = ""
	if len(cl.query) > 0 {
		u.RawQuery = cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			// The request types marshal infallibly; this guards future edits.
			return answer{err: errRequestEncoding, notSent: true}
		}
		body = bytes.NewReader(b)
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, cl.method, u.String(), body)
	if err != nil {
		return answer{err: errRequestBuild, notSent: true}
	}
	req.Header.Set("Authorization", c.authz)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", cl.idempotencyKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrainBytes)
		_ = resp.Body.Close()
	}()
	a := answer{status: resp.StatusCode, header: resp.Header}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		a.err = err
		return a
	}
	if len(b) > maxBodyBytes {
		a.tooLarge = true
		b = b[:maxBodyBytes]
	}
	a.body = b
	return a
}

var (
	errRequestEncoding = errors.New("cannot encode request body")
	errRequestBuild    = errors.New("cannot build request")
)

// checkIdempotencyKey validates a caller-supplied key before it goes into a
// header: a key net/http would refuse must not look like a network failure.
func checkIdempotencyKey(key string, required bool) error {
	if key == "" {
		if required {
			return errors.New("idempotency key is required for a call that may move money")
		}
		return nil
	}
	if len(key) > maxIdempotencyKey {
		return fmt.Errorf("idempotency key is %d characters long, the gateway accepts at most %d", len(key), maxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= 0x20 || c >= 0x7f {
			return errors.New("idempotency key must be printable ASCII without spaces")
		}
	}
	return nil
}

// checkID validates an object id that goes into a URL path. Gateway ids are
// prefix_alphanumerics; accepting only that alphabet means an id can never change
// which path is requested, and needs no escaping.
func checkID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%s id is empty", kind)
	}
	if len(id) > 255 {
		return fmt.Errorf("%s id is too long", kind)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%s id contains a character not allowed in an id", kind)
		}
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%s id is not an id", kind)
	}
	return nil
}

// invalidLocally is the Result of a call refused before any request was sent:
// definite, nothing reached the gateway.
//
// For a charge, a request billingd could not even build (an empty key, a
// non-positive amount) is an error in billingd's data: OurDataError.
func invalidLocally(cl call, err error) gateway.Result {
	kind := gateway.Invalid
	if cl.charge {
		kind = gateway.OurDataError
	}
	return gateway.Result{Kind: kind, Err: fmt.Errorf("wooshpay: %s: %w", cl.op(), err)}
}
