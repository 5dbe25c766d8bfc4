package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ---- faults ----

type faultKind uint8

const (
	faultNone faultKind = iota
	fault5xxBefore
	faultRateLimit
	fault5xxAfter
	faultDrop
)

func (k faultKind) String() string {
	switch k {
	case fault5xxBefore:
		return "5xx-before"
	case faultRateLimit:
		return "429"
	case fault5xxAfter:
		return "5xx-after"
	case faultDrop:
		return "drop"
	}
	return ""
}

// faultDecision is what the RNG decided for one API request.
type faultDecision struct {
	kind       faultKind
	slow       bool
	slowDelay  time.Duration
	retryAfter time.Duration
}

type faultKey struct{}

// drawFault makes the fault decision for one request. It always consumes exactly
// two numbers, so the sequence of decisions depends only on the seed and the order
// of requests, not on the settings in force for earlier ones.
func (s *Server) drawFault() faultDecision {
	s.faultMu.Lock()
	u, v := s.rng.Float64(), s.rng.Float64()
	f := s.faults
	s.faultMu.Unlock()

	d := faultDecision{slowDelay: f.SlowDelay, retryAfter: f.RetryAfter}
	if d.retryAfter <= 0 {
		d.retryAfter = defaultRetryAfter
	}
	switch edge := f.Error5xxBefore; {
	case u < edge:
		d.kind = fault5xxBefore
	case u < edge+f.RateLimit:
		d.kind = faultRateLimit
	case u < edge+f.RateLimit+f.Error5xxAfter:
		d.kind = fault5xxAfter
	case u < edge+f.RateLimit+f.Error5xxAfter+f.Drop:
		d.kind = faultDrop
	}
	d.slow = v < f.Slow && f.SlowDelay > 0
	return d
}

// ---- results ----

// result is a handler's answer before it is written, in the provider's
// encoding (wooshpay.go, ckowire.go). store says whether the request began
// executing; wireLayer.keepReplay decides from it, the status and the fault
// whether the answer is kept under its idempotency key.
type result struct {
	status   int
	body     []byte
	value    any // marshaled into body by materialize, outside the state lock
	store    bool
	replayed bool
}

// materialize marshals a result's value. Handlers return wire snapshots built
// under the lock (they share only immutable data with the live objects), so the
// JSON encoding can happen after the lock is released.
func (r *result) materialize() {
	if r.body == nil && r.value != nil {
		r.body = mustJSON(r.value)
		r.value = nil
	}
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ---- the API pipeline ----

// serveAPI is the order of events for an API request: count, check the rate
// limit (Options.RateLimit, at the edge like a real gateway's, so a refused
// request draws no fault and reaches nothing), draw faults, answer the
// before-faults, authenticate, then route. After-faults are applied by respond,
// once the request has executed and its answer is stored. Every answer waits for
// Options.Latency, counted from arrival (awaitLatency).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	s.mu.Lock()
	s.stats.Requests++
	s.mu.Unlock()

	// answer writes an answer that comes before routing, once the latency has
	// passed.
	answer := func(status int, body []byte, format string, args ...any) {
		if !s.awaitLatency(r, arrived) {
			return
		}
		s.logf(format, args...)
		writeJSON(w, status, body)
	}

	if retryAfter, ok := s.admit(arrived); !ok {
		s.rateLimited.Add(1)
		answer(http.StatusTooManyRequests, s.rateLimitBody(w, retryAfter, "Too many requests hit the API too quickly."),
			"sim: %s %s -> 429 (over the rate limit of %g/s)", r.Method, r.URL.Path, s.opts.RateLimit)
		return
	}

	d := s.drawFault()
	switch d.kind {
	case fault5xxBefore:
		s.countFault(func(c *FaultCounts) { c.Error5xxBefore++ })
		answer(http.StatusInternalServerError, s.wire.serverError(false),
			"sim: %s %s -> 500 (fault 5xx-before)", r.Method, r.URL.Path)
		return
	case faultRateLimit:
		s.countFault(func(c *FaultCounts) { c.RateLimit++ })
		answer(http.StatusTooManyRequests, s.rateLimitBody(w, d.retryAfter, "Too many requests hit the API too quickly (simulated)."),
			"sim: %s %s -> 429 (fault)", r.Method, r.URL.Path)
		return
	}

	if body, ok := s.wire.authenticate(w, r); !ok {
		answer(http.StatusUnauthorized, body, "sim: %s %s -> 401", r.Method, r.URL.Path)
		return
	}
	ctx := context.WithValue(r.Context(), faultKey{}, d)
	ctx = context.WithValue(ctx, arrivedKey{}, arrived)
	s.api.ServeHTTP(w, r.WithContext(ctx))
}

// maxRateLimitWait bounds the Retry-After of the rate limit, so that a tiny
// limit cannot overflow a Duration.
const maxRateLimitWait = 24 * time.Hour

// arrivedKey carries the wall-clock arrival time of an API request to respond,
// for Options.Latency.
type arrivedKey struct{}

// admit takes a token from the rate limiter. When the request is over the limit
// it returns false and how long until a request would be admitted. It never
// takes mu.
func (s *Server) admit(now time.Time) (retryAfter time.Duration, ok bool) {
	if s.limiter == nil || s.limiter.AllowN(now, 1) {
		return 0, true
	}
	secs := (1 - s.limiter.TokensAt(now)) / float64(s.limiter.Limit())
	return time.Duration(min(secs, maxRateLimitWait.Seconds()) * float64(time.Second)), false
}

// rateLimitBody prepares a 429 answer, the same for the rate limit and the 429
// fault: it sets Retry-After (whole seconds, rounded up, at least 1) and returns
// the provider's rate-limit body.
func (s *Server) rateLimitBody(w http.ResponseWriter, retryAfter time.Duration, msg string) []byte {
	secs := int64((retryAfter + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	return s.wire.rateLimited(msg)
}

// awaitLatency holds an answer until Options.Latency has passed since the
// request arrived. It holds no lock, so any number of answers can wait at once.
// It reports false, at once, when the client has gone away first: the caller
// then writes nothing.
func (s *Server) awaitLatency(r *http.Request, arrived time.Time) bool {
	if s.opts.Latency <= 0 {
		return true
	}
	wait := s.opts.Latency - time.Since(arrived)
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
	}
	if r.Context().Err() != nil {
		s.logf("sim: %s %s -> client gone before the latency passed", r.Method, r.URL.Path)
		return false
	}
	return true
}

func (s *Server) countFault(f func(*FaultCounts)) {
	s.mu.Lock()
	f(&s.stats.Faults)
	s.mu.Unlock()
}

// authenticate checks the secret key (Basic auth user name; a Bearer token is
// accepted too, as Stripe does). It returns an error message, or "" when the
// request may proceed. Messages never echo the key.
func (s *Server) authenticate(r *http.Request) string {
	key, _, ok := r.BasicAuth()
	if !ok {
		if v, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found {
			key, ok = strings.TrimSpace(v), true
		}
	}
	if !ok || key == "" {
		return "You did not provide an API key. Provide your secret key as the user name of HTTP Basic auth."
	}
	if s.opts.SecretKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.SecretKey)) != 1 {
		return "Invalid API Key provided."
	}
	return ""
}

// call is one request as a handler sees it.
type call struct {
	r    *http.Request
	body []byte // the JSON object of a POST ("{}" when empty)
}

type handlerFunc func(c *call) result

// route adapts a handler to the mux: it parses the body, applies idempotency,
// runs the handler and writes the answer with any after-fault.
func (s *Server) route(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, _ := r.Context().Value(faultKey{}).(faultDecision)
		key := r.Header.Get(s.wire.idempotencyHeader())
		var res result
		if r.Method == http.MethodPost {
			res = s.execPost(r, key, d, h)
		} else {
			key = "" // keys only mean something on POST
			res = h(&call{r: r})
		}
		res.materialize()
		s.respond(w, r, d, key, res)
	}
}

func (s *Server) execPost(r *http.Request, key string, d faultDecision, h handlerFunc) result {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return s.wire.badRequest("Could not read the request body.")
	}
	if len(raw) > maxBodyBytes {
		return s.wire.badRequest(fmt.Sprintf("The request body is larger than %d bytes.", maxBodyBytes))
	}
	body, canon, err := canonicalJSON(raw)
	if err != nil {
		return s.wire.badRequest(fmt.Sprintf("Invalid JSON body: %v.", err))
	}
	c := &call{r: r, body: body}
	if key == "" {
		return h(c)
	}
	if len(key) > maxIdempotencyKeyLen {
		return s.wire.badRequest(fmt.Sprintf("%s must be at most %d characters long.", s.wire.idempotencyHeader(), maxIdempotencyKeyLen))
	}
	keep := func(res result) bool { return s.wire.keepReplay(res, d) }
	return s.idempotent(idemKey{path: r.URL.Path, key: key}, sha256.Sum256(canon), keep, func() result { return h(c) })
}

// canonicalJSON checks that raw is one JSON object and returns it (with "{}" for
// an empty body) and a canonical form for comparing parameters: key order and
// whitespace do not make two requests different, values do.
func canonicalJSON(raw []byte) (body, canon []byte, err error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("unexpected data after the JSON object")
	}
	if _, isObj := v.(map[string]any); !isObj {
		return nil, nil, errors.New("the body must be a JSON object")
	}
	canon, err = json.Marshal(v)
	return raw, canon, err
}

// respond writes a handler's answer, after the after-faults had their say: slow
// delays, a drop closes the connection silently, 5xx-after hides the real answer
// (which is already stored under the idempotency key). The request has executed
// by now; the answer (or the drop) then waits for whatever remains of
// Options.Latency, after any slow fault's delay.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, d faultDecision, key string, res result) {
	h := w.Header()
	reqID := "Request-Id"
	if s.wire.name() == ProviderCheckout {
		reqID = "Cko-Request-Id"
	}
	h.Set(reqID, "req_"+strconv.FormatUint(s.reqSeq.Add(1), 10))
	if key != "" {
		h.Set(s.wire.idempotencyHeader(), key)
	}
	fault := ""
	if d.slow {
		s.countFault(func(c *FaultCounts) { c.Slow++ })
		fault = "slow "
		t := time.NewTimer(d.slowDelay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.logf("sim: %s %s -> client gone during slow fault", r.Method, r.URL.Path)
			return
		}
	}
	arrived, _ := r.Context().Value(arrivedKey{}).(time.Time)
	if !s.awaitLatency(r, arrived) {
		return
	}
	switch d.kind {
	case faultDrop:
		s.countFault(func(c *FaultCounts) { c.Drop++ })
		s.logf("sim: %s %s -> %d dropped (fault drop)", r.Method, r.URL.Path, res.status)
		dropConnection(w)
		return
	case fault5xxAfter:
		s.countFault(func(c *FaultCounts) { c.Error5xxAfter++ })
		s.logf("sim: %s %s -> %d hidden behind 500 (fault 5xx-after)", r.Method, r.URL.Path, res.status)
		writeJSON(w, http.StatusInternalServerError, s.wire.serverError(true))
		return
	}
	replay := ""
	if res.replayed {
		// Only on the real answer: a faulted one is not a replay of anything.
		h.Set("Idempotent-Replayed", "true")
		replay = " replayed"
	}
	s.logf("sim: %s %s -> %d%s %skey=%q", r.Method, r.URL.Path, res.status, replay, fault, key)
	writeJSON(w, res.status, res.body)
}

// dropConnection closes the client's connection without writing a response. It
// hijacks the connection when it can; otherwise (HTTP/2, or a ResponseWriter that
// cannot be hijacked) it aborts the handler, which net/http turns into a reset
// stream or a closed connection.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// ---- idempotency ----

type idemKey struct {
	path string
	key  string
}

type idemEntry struct {
	hash     [32]byte
	created  time.Time
	inFlight bool
	status   int
	body     []byte
}

type idemQueued struct {
	key   idemKey
	entry *idemEntry
}

// idempotent runs exec under an idempotency key following Stripe's rules: a key
// whose first request began executing replays that answer to identical requests,
// rejects different parameters with 400 and concurrent use with 409, and is
// forgotten 24 hours (of Now) after first use.
func (s *Server) idempotent(k idemKey, hash [32]byte, keep func(result) bool, exec func() result) result {
	s.mu.Lock()
	now := s.now()
	e := s.idem[k]
	if e != nil && !e.inFlight && now.Sub(e.created) >= idempotencyTTL {
		delete(s.idem, k)
		e = nil
	}
	if e != nil {
		var res result
		switch {
		case e.inFlight:
			s.stats.Conflicts++
			res = s.wire.idemConflict()
		case e.hash != hash && !s.wire.replaysMismatch():
			s.stats.IdempotencyMismatches++
			res = s.wire.idemMismatch(k.key)
		default:
			s.stats.Replays++
			res = result{status: e.status, body: e.body, replayed: true}
		}
		s.mu.Unlock()
		return res
	}
	e = &idemEntry{hash: hash, created: now, inFlight: true}
	s.idem[k] = e
	hook := s.testHookExecuting
	s.mu.Unlock()

	if hook != nil {
		hook()
	}
	res := s.runReleasing(k, e, exec)
	res.materialize()

	s.mu.Lock()
	defer s.mu.Unlock()
	if !keep(res) {
		delete(s.idem, k)
		return res
	}
	e.inFlight = false
	e.status = res.status
	e.body = res.body
	s.idemQueue = append(s.idemQueue, idemQueued{key: k, entry: e})
	return res
}

// runReleasing runs exec and, should it panic, frees the key so that it is not
// stuck in flight forever.
func (s *Server) runReleasing(k idemKey, e *idemEntry, exec func() result) result {
	defer func() {
		if p := recover(); p != nil {
			s.mu.Lock()
			if s.idem[k] == e {
				delete(s.idem, k)
			}
			s.mu.Unlock()
			panic(p)
		}
	}()
	return exec()
}

// expireIdempotencyKeys forgets stored keys older than 24 hours of Now. Entries
// are queued in first-use order, so this only looks at the expired ones.
func (s *Server) expireIdempotencyKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for _, q := range s.idemQueue {
		if now.Sub(q.entry.created) < idempotencyTTL {
			break
		}
		if s.idem[q.key] == q.entry {
			delete(s.idem, q.key)
		}
		n++
	}
	if n > 0 {
		s.idemQueue = s.idemQueue[n:]
	}
}

// flexInt accepts 12 or "12": WooshPay's examples send card expiry as strings
// (Checkout.com's card sources take the integers).
type flexInt struct {
	set bool
	v   int
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if uq, err := strconv.Unquote(s); err == nil {
		s = strings.TrimSpace(uq)
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "non-integer " + string(b), Type: reflect.TypeFor[int]()}
	}
	f.set, f.v = true, v
	return nil
}
