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
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
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

	_ gateway.PaymentLister = (*Client)(nil)
)

// New validates opts and returns a Client. It fails on a BaseURL that is not an
// absolute http(s) URL, that embeds credentials, query or fragment, or that uses
// plain http towards a host other than loopback; and on an empty or malformed
// secret key. Failing here, at startup, beats failing every charge later.
func New(opts Options) (*Client, error) {
	base, err := apicall.ParseBaseURL("wooshpay", opts.BaseURL)
	if err != nil {
		return nil, err
	}
	if opts.SecretKey == "" {
		return nil, errors.New("wooshpay: secret key is required")
	}
	if strings.ContainsRune(opts.SecretKey, ':') || !apicall.IsHeaderSafe(opts.SecretKey) {
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
	if !apicall.IsHeaderSafe(ua) {
		return nil, errors.New("wooshpay: user agent contains control characters")
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = apicall.DefaultHTTPClient(timeout)
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
	a := apicall.Do(ctx, c.http, c.timeout, apicall.Request{
		Method:            cl.method,
		URL:               apicall.JoinURL(c.base, cl.path, cl.query),
		Body:              cl.body,
		Authorization:     c.authz,
		UserAgent:         c.userAgent,
		IdempotencyHeader: "Idempotency-Key",
		IdempotencyKey:    cl.idempotencyKey,
	}, limits)
	return answer{status: a.Status, header: a.Header, body: a.Body, tooLarge: a.TooLarge, err: a.Err, notSent: a.NotSent}
}

// limits bound every exchange with the WooshPay API.
var limits = apicall.Limits{MaxBody: maxBodyBytes, MaxDrain: maxDrainBytes}

var (
	errRequestEncoding = apicall.ErrRequestEncoding
	errRequestBuild    = apicall.ErrRequestBuild
)

// keyRules: WooshPay accepts idempotency keys of up to 255 characters.
var keyRules = apicall.KeyRules{Max: maxIdempotencyKey, TooLong: "the gateway accepts at most %d"}

// checkIdempotencyKey validates a caller-supplied key before it goes into a
// header: a key net/http would refuse must not look like a network failure.
func checkIdempotencyKey(key string, required bool) error { return keyRules.Check(key, required) }

// idRules: gateway ids are prefix_alphanumerics, and some carry dots.
var idRules = apicall.IDRules{MaxLen: 255, AllowDot: true}

// checkID validates an object id that goes into a URL path, so an id can never
// change which path is requested.
func checkID(kind, id string) error { return idRules.Check(kind, id) }

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
