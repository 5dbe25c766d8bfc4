// Package checkout is billingd's client for the Checkout.com payments API
// (docs/gateway-checkout.md).
//
// Like every provider client it turns each HTTP exchange into a gateway.Result
// in one place (decide, in outcome.go), so the charge engine reasons only about
// the outcome kinds of package gateway. Checkout.com differs from the
// Stripe-shaped WooshPay in three ways that shape this package: a charge is a
// payment with a five-digit response_code rather than an intent with a
// decline_code (codes.go classifies them); an idempotency key replays only a
// request that was processed, so a possibly-sent request is looked up by its
// reference before it is sent again (Replay); and amounts travel in
// Checkout.com's own wire units (units.Checkout), not ISO minor units.
//
// The client has no retry loop: one method call is at most one lookup and one
// request. Retrying, with the same key, is the charge engine's job. The client
// never logs and never puts the secret key or card data in errors.
package checkout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
	"github.com/billingd/billingd/internal/gateway/units"
)

const (
	// DefaultTimeout bounds one request when Options.Timeout is zero. It is
	// generous because a charge cut short becomes an unknown outcome that must
	// be looked up and perhaps replayed.
	DefaultTimeout = 30 * time.Second

	// userAgent identifies billingd in Checkout.com's request logs.
	userAgent = "billingd-checkout/1"

	// IdempotencyHeader carries the caller's idempotency key on payment and
	// refund requests.
	IdempotencyHeader = "Cko-Idempotency-Key"

	// maxBodyBytes caps how much of a response is read: a list of 100
	// payments is far below it.
	maxBodyBytes = 1 << 20
	// maxDrainBytes is how much of an unread remainder is discarded so the
	// connection can be reused.
	maxDrainBytes = 64 << 10
	// maxIdempotencyKey bounds a key; Checkout.com recommends UUIDs and
	// documents no limit, so billingd keeps keys as short as WooshPay's.
	maxIdempotencyKey = 255
	// maxReference is the documented length limit of a payment's and a
	// refund's reference.
	maxReference = 50
)

// Options configures a Client. BaseURL and SecretKey are required.
type Options struct {
	// BaseURL is the API root, e.g. https://api.sandbox.checkout.com, a
	// https://{prefix}.api.checkout.com address, or the simulator's loopback
	// address. Plain http is accepted only for loopback hosts, because every
	// request carries the secret key.
	BaseURL string
	// SecretKey (sk_sbox_…, sk_…) is sent as "Authorization: Bearer <key>";
	// a previous-platform key (sk_test_<uuid>, sk_<uuid>) as the header's
	// value itself, as that platform expects.
	SecretKey string
	// Timeout bounds each request including reading the body. Default
	// DefaultTimeout.
	Timeout time.Duration
	// HTTPClient, when set, is used as is. The default one applies Timeout,
	// does not follow redirects (a redirected POST would become a GET) and
	// keeps enough idle connections for the charge engine's concurrency.
	HTTPClient *http.Client
}

// Client talks to one Checkout.com account. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	authz   string
	secret  string // kept only to scrub it from anything echoed back
	http    *http.Client
	timeout time.Duration
	units   *units.Table
	now     func() time.Time
}

var (
	_ gateway.Gateway       = (*Client)(nil)
	_ gateway.Refunds       = (*Client)(nil)
	_ gateway.Accounts      = (*Client)(nil)
	_ gateway.SetupSessions = (*Client)(nil)
)

// New validates opts and returns a Client. A base URL that is not an absolute
// http(s) URL, carries credentials, a query or a fragment, or uses plain http
// towards a non-loopback host is refused, as is an empty secret key or one
// that is not a single printable token: failing at startup beats failing every
// charge later. Errors never quote the key.
func New(opts Options) (*Client, error) {
	base, err := apicall.ParseBaseURL("checkout", opts.BaseURL)
	if err != nil {
		return nil, err
	}
	if opts.SecretKey == "" {
		return nil, errors.New("checkout: secret key is required")
	}
	if strings.TrimSpace(opts.SecretKey) != opts.SecretKey || strings.ContainsAny(opts.SecretKey, " \t") || !apicall.IsHeaderSafe(opts.SecretKey) {
		return nil, errors.New("checkout: secret key must be one token without spaces or control characters")
	}
	if strings.HasPrefix(opts.SecretKey, "pk_") {
		return nil, errors.New("checkout: the public key (pk_…) was given where the secret key (sk_…) is needed")
	}
	if opts.Timeout < 0 {
		return nil, errors.New("checkout: timeout must not be negative")
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = apicall.DefaultHTTPClient(timeout)
	}
	authz := "Bearer " + opts.SecretKey
	if previousPlatformKey.MatchString(opts.SecretKey) {
		authz = opts.SecretKey
	}
	return &Client{
		base:    base,
		authz:   authz,
		secret:  opts.SecretKey,
		http:    hc,
		timeout: timeout,
		units:   units.Checkout,
		now:     time.Now,
	}, nil
}

// previousPlatformKey matches a secret key of Checkout.com's previous
// platform (sk_test_<uuid>, sk_<uuid>), which is sent as the Authorization
// value itself; current keys (sk_sbox_…, sk_…) are sent as a Bearer token.
var previousPlatformKey = regexp.MustCompile(`^sk_(test_)?\w{8}-\w{4}-\w{4}-\w{4}-\w{12}$`)

// call is one request to make.
type call struct {
	method         string
	path           string // below the base URL, built only from checked ids
	query          url.Values
	body           any
	idempotencyKey string
	// charge marks a request that may move money for a charge: a 422 that
	// blames billingd's ids is then gateway.OurDataError, not Invalid.
	charge bool
}

// op names the call in errors: method and path, never query or body.
func (c call) op() string { return c.method + " " + c.path }

// answer is what one exchange produced.
type answer struct {
	status   int
	header   http.Header
	body     []byte
	tooLarge bool
	err      error // transport or body-read failure
}

// do sends cl and reads the answer with a size cap. It never interprets it.
func (c *Client) do(ctx context.Context, cl call) answer {
	a := apicall.Do(ctx, c.http, c.timeout, apicall.Request{
		Method:            cl.method,
		URL:               apicall.JoinURL(c.base, cl.path, cl.query),
		Body:              cl.body,
		Authorization:     c.authz,
		UserAgent:         userAgent,
		IdempotencyHeader: IdempotencyHeader,
		IdempotencyKey:    cl.idempotencyKey,
	}, limits)
	return answer{status: a.Status, header: a.Header, body: a.Body, tooLarge: a.TooLarge, err: a.Err}
}

// limits bound every exchange with the Checkout.com API.
var limits = apicall.Limits{MaxBody: maxBodyBytes, MaxDrain: maxDrainBytes}

var (
	errRequestEncoding = apicall.ErrRequestEncoding
	errRequestBuild    = apicall.ErrRequestBuild
)

// keyRules: Checkout.com documents no key limit, so billingd sends at most
// maxIdempotencyKey characters.
var keyRules = apicall.KeyRules{Max: maxIdempotencyKey, TooLong: "at most %d are sent"}

// checkIdempotencyKey validates a key before it goes into a header.
func checkIdempotencyKey(key string, required bool) error { return keyRules.Check(key, required) }

// idRules: Checkout.com ids are prefix_base32 (pay_…, act_…, cus_…, src_…);
// accepting only letters, digits, '_' and '-' means an id can never change
// which path is requested.
var idRules = apicall.IDRules{MaxLen: 100}

// checkID validates an id that goes into a URL path.
func checkID(kind, id string) error { return idRules.Check(kind, id) }

// checkReference validates a payment or refund reference: Checkout.com
// documents at most 50 characters, and billingd later finds payments by it.
func checkReference(what, ref string) error {
	if ref == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(ref) > maxReference {
		return fmt.Errorf("%s is %d characters long, Checkout.com takes at most %d", what, len(ref), maxReference)
	}
	if !apicall.IsHeaderSafe(ref) {
		return fmt.Errorf("%s contains control characters", what)
	}
	return nil
}

// refuse is the Result of a call refused before anything was sent: definite,
// nothing reached the gateway. kind is Invalid or OurDataError.
func refuse(cl call, kind gateway.Kind, err error) gateway.Result {
	return gateway.Result{Kind: kind, Err: fmt.Errorf("checkout: %s: %w", cl.op(), err)}
}

// Error is returned by the calls that answer with an object rather than a
// gateway.Result (customers, instruments, hosted pages, lists); see
// apicall.Error.
type Error = apicall.Error

// errorStyle: an object call whose Result claims success but could not be
// used has an unknown effect, so it is reported as Transient.
var errorStyle = apicall.ErrorStyle{Prefix: "checkout", SucceededIsTransient: true}

func asError(cl call, r gateway.Result) error { return errorStyle.Wrap(cl.op(), r) }
