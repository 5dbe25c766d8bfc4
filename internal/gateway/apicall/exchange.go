package apicall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/gateway/budget"
)

// ErrRequestEncoding and ErrRequestBuild mark a request that never left the
// process (Answer.NotSent): a provider client reports them as a refusal of its
// own data, never as a network failure that the engine would retry.
var (
	ErrRequestEncoding = errors.New("cannot encode request body")
	ErrRequestBuild    = errors.New("cannot build request")
)

// Request is one HTTP request to a provider, already addressed.
type Request struct {
	// Method and URL (absolute, with any query) say what is requested.
	Method string
	URL    string
	// Body, when non-nil, is sent JSON-encoded with Content-Type
	// application/json.
	Body any
	// Authorization and UserAgent are sent as those headers.
	Authorization string
	UserAgent     string
	// IdempotencyHeader names the header that carries IdempotencyKey; neither
	// is sent when IdempotencyKey is empty.
	IdempotencyHeader string
	IdempotencyKey    string
}

// Limits bound what one exchange reads, so a misbehaving or hostile server can
// neither exhaust memory nor keep a pooled connection busy.
type Limits struct {
	// MaxBody is the most of a response body that is kept; a longer one is
	// cut and marked Answer.TooLarge, which a client treats as an unknown
	// outcome rather than decoding half an object.
	MaxBody int
	// MaxDrain is how much of an unread remainder is discarded before the
	// body is closed so the connection can be reused; beyond that it is
	// cheaper to drop the connection.
	MaxDrain int64
}

// Answer is what came back from one exchange, uninterpreted: deciding what it
// means is each provider's own job.
type Answer struct {
	Status   int
	Header   http.Header
	Body     []byte
	TooLarge bool
	// Err is a transport or body-read error; Status is set when only the
	// body failed.
	Err error
	// NotSent reports that Err happened while building the request: nothing
	// left this process, so the outcome is definite.
	NotSent bool
}

// Do sends req through hc within timeout and reads the answer with the caps of
// lim, always draining a little and closing the body. One call is one request:
// Do never retries, because only the caller knows whether a resend is safe.
func Do(ctx context.Context, hc *http.Client, timeout time.Duration, req Request, lim Limits) Answer {
	var body io.Reader
	if req.Body != nil {
		b, err := json.Marshal(req.Body)
		if err != nil {
			return Answer{Err: ErrRequestEncoding, NotSent: true}
		}
		body = bytes.NewReader(b)
	}
	// Each request takes its turn in this instance's share of the gateway's
	// rate (a call through budget.Client), before its own timeout starts.
	if err := budget.Request(ctx); err != nil {
		return Answer{Err: err}
	}
	gate := &sendGate{check: budget.SendCheck(ctx)}
	if gate.check != nil {
		failpoint.Hit(failpoint.GatewayAfterSendCheck)
	}
	rctx, cancel := context.WithTimeout(withSendGate(ctx, gate), timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(rctx, req.Method, req.URL, body)
	if err != nil {
		return Answer{Err: ErrRequestBuild, NotSent: true}
	}
	hr.Header.Set("Authorization", req.Authorization)
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", req.UserAgent)
	if req.Body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if req.IdempotencyKey != "" {
		hr.Header.Set(req.IdempotencyHeader, req.IdempotencyKey)
	}
	resp, err := hc.Do(hr)
	if err != nil {
		if refused := gate.refusal(); refused != nil {
			// The connection's last check refused the request: nothing
			// was written, and the caller learns why in its own terms.
			return Answer{Err: refused}
		}
		return Answer{Err: err}
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, lim.MaxDrain)
		_ = resp.Body.Close()
	}()
	a := Answer{Status: resp.StatusCode, Header: resp.Header}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(lim.MaxBody)+1))
	if err != nil {
		a.Err = err
		return a
	}
	if len(b) > lim.MaxBody {
		a.TooLarge = true
		b = b[:lim.MaxBody]
	}
	a.Body = b
	return a
}

// DefaultHTTPClient is the client a provider uses when none is configured. It
// applies timeout, keeps enough idle connections per host for the charge
// engine's concurrency, and does not follow redirects: a redirected POST would
// silently become a GET, and a charge must never be turned into something else.
//
// Its connections run a leased request's send check (budget.WithSendCheck)
// once more right before the request's first byte is written, so what is
// left between the last check and the bytes leaving is one write call. It
// speaks HTTP/1.1 only: one request at a time on a connection is what lets
// that check belong to one request.
func DefaultHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dial := t.DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &guardedConn{Conn: c}, nil
	}
	t.ForceAttemptHTTP2 = false
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
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

// JoinURL appends an escaped request path (built only from checked ids) and an
// optional query to a base URL that ParseBaseURL returned. The path is taken
// as it is, never re-escaped, so an id cannot change which path is requested.
func JoinURL(base *url.URL, path string, query url.Values) string {
	u := *base
	u.Path = base.Path + path
	u.RawPath = ""
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	return u.String()
}
