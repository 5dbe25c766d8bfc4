package sim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Event is one webhook event the simulator generated. Body is exactly the JSON
// that is POSTed to the webhook endpoint (and signed), so a test can feed it to
// billingd's webhook handler directly.
type Event struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Created  int64           `json:"created"` // Unix milliseconds
	ObjectID string          `json:"object_id"`
	Body     json.RawMessage `json:"body"`
}

type eventWire struct {
	ID       string        `json:"id"`
	Object   string        `json:"object"`
	Created  int64         `json:"created"`
	Livemode bool          `json:"livemode"`
	Type     string        `json:"type"`
	Data     eventDataWire `json:"data"`
}

type eventDataWire struct {
	Object any `json:"object"`
}

// Sign returns the Wooshpay-Signature header value for body signed at timestamp
// t (Unix seconds or milliseconds, whichever the receiver is told to expect):
// "t=<t>,v1=<hex HMAC-SHA256(secret, t + "." + body)>". Tests use it to forge
// valid (or, with another secret, invalid) deliveries.
func Sign(secret string, t int64, body []byte) string {
	ts := strconv.FormatInt(t, 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// emitLocked records an event with a snapshot of obj and queues its delivery.
func (s *Server) emitLocked(typ, objectID string, obj any) {
	now := s.now()
	ev := Event{ID: s.newIDLocked("evt"), Type: typ, Created: now.UnixMilli(), ObjectID: objectID}
	ev.Body = s.wire.envelope(ev.ID, typ, now, obj)
	s.stats.Events++
	s.events = append(s.events, ev)
	if limit := s.opts.EventHistory; limit > 0 && len(s.events) >= 2*limit {
		// Trim in batches so that appending stays amortized O(1); Events
		// returns only the last limit.
		s.events = append(make([]Event, 0, 2*limit), s.events[len(s.events)-limit:]...)
	}
	if s.opts.Webhook.URL != "" && !s.wh.emit(ev) {
		s.stats.WebhooksSuppressed++
	}
}

// webhooks is the delivery pipeline: plan (draw the Delivery decisions) → wait
// for the first try → queue → workers send → retry timers put failures back on
// the queue → give up after the last retry.
type webhooks struct {
	opts   WebhookOptions // fixed after New; opts.Delivery is the initial modes
	client *http.Client

	mu       sync.Mutex
	modes    Delivery   // current modes, see SetWebhookDelivery
	rng      *rand.Rand // seeds one stream per event; separate from the API fault source
	evPCG    *rand.PCG  // the current event's stream, reseeded per event
	evRNG    *rand.Rand
	queue    []*delivery
	waiting  map[*delivery]*time.Timer // before a first try or a retry
	inFlight int
	stopped  bool
	notify   chan struct{}
	idle     chan struct{} // closed while nothing is queued, waiting or in flight
	isIdle   bool
}

func (wh *webhooks) init(opts WebhookOptions, seed uint64) {
	wh.opts = opts
	tr := http.DefaultTransport.(*http.Transport).Clone()
	wh.client = &http.Client{Transport: tr, Timeout: opts.Timeout}
	wh.modes = opts.Delivery
	wh.rng = rand.New(rand.NewPCG(seed, 0x3eb0_0c5d_e11e))
	wh.evPCG = rand.NewPCG(0, 0)
	wh.evRNG = rand.New(wh.evPCG)
	wh.waiting = map[*delivery]*time.Timer{}
	wh.notify = make(chan struct{}, 1)
	wh.idle = make(chan struct{})
	close(wh.idle)
	wh.isIdle = true
}

// emit plans the deliveries of ev and schedules them. It reports false when
// delivery is disabled. The event's random stream is drawn even then, so that
// turning delivery off and on again does not change the decisions for later
// events.
func (wh *webhooks) emit(ev Event) bool {
	wh.mu.Lock()
	ds := wh.planLocked(ev)
	if wh.modes.Disabled {
		wh.mu.Unlock()
		return false
	}
	if !wh.stopped {
		for _, d := range ds {
			wh.scheduleLocked(d, d.wait)
		}
		wh.changedLocked()
	}
	wh.mu.Unlock()
	wh.signal()
	return true
}

// planLocked draws the decisions for the next event from its own stream.
func (wh *webhooks) planLocked(ev Event) []*delivery {
	wh.evPCG.Seed(wh.rng.Uint64(), wh.rng.Uint64())
	return planEvent(wh.evRNG, wh.modes, ev)
}

// scheduleLocked queues d now, or after wait on a timer.
func (wh *webhooks) scheduleLocked(d *delivery, wait time.Duration) {
	if wait <= 0 {
		wh.queue = append(wh.queue, d)
		return
	}
	wh.waiting[d] = time.AfterFunc(wait, func() {
		wh.mu.Lock()
		if _, ok := wh.waiting[d]; !ok {
			wh.mu.Unlock()
			return // stopped meanwhile
		}
		delete(wh.waiting, d)
		wh.queue = append(wh.queue, d)
		wh.mu.Unlock()
		wh.signal()
	})
}

// changedLocked keeps the idle channel in step with the pending count; call it
// after every change to the queue, the timers or the in-flight count.
func (wh *webhooks) changedLocked() {
	busy := wh.pendingLocked() > 0
	switch {
	case !busy && !wh.isIdle:
		close(wh.idle)
		wh.isIdle = true
	case busy && wh.isIdle:
		wh.idle = make(chan struct{})
		wh.isIdle = false
	}
}

func (wh *webhooks) signal() {
	select {
	case wh.notify <- struct{}{}:
	default:
	}
}

func (wh *webhooks) pendingLocked() int {
	return len(wh.queue) + len(wh.waiting) + wh.inFlight
}

func (wh *webhooks) pending() int64 {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return int64(wh.pendingLocked())
}

// wait blocks until nothing is pending or ctx is done.
func (wh *webhooks) wait(ctx context.Context) error {
	for {
		wh.mu.Lock()
		if wh.pendingLocked() == 0 {
			wh.mu.Unlock()
			return nil
		}
		idle := wh.idle
		wh.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (wh *webhooks) start(s *Server) {
	if wh.opts.URL == "" {
		return
	}
	for range wh.opts.Delivery.Workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				d := wh.next(s)
				if d == nil {
					return
				}
				s.send(d)
			}
		}()
	}
}

// next blocks until a delivery is queued or the server stops.
func (wh *webhooks) next(s *Server) *delivery {
	for {
		wh.mu.Lock()
		if n := len(wh.queue); n > 0 && !wh.stopped {
			d := wh.queue[0]
			wh.queue[0] = nil
			wh.queue = wh.queue[1:]
			wh.inFlight++
			wh.mu.Unlock()
			if n > 1 {
				wh.signal()
			}
			return d
		}
		wh.mu.Unlock()
		select {
		case <-s.ctx.Done():
			return nil
		case <-wh.notify:
		}
	}
}

// retryDelay is the wait after d's latest attempt: the schedule step for that
// attempt, its last step once spoiled attempts have taken it past the end, or no
// wait when there is no schedule.
func (wh *webhooks) retryDelay(d *delivery) time.Duration {
	n := len(wh.opts.Retry)
	if n == 0 {
		return 0
	}
	return wh.opts.Retry[min(d.attempts-1, n-1)]
}

// finish ends d's attempt: it is done, or parked until its next try.
func (wh *webhooks) finish(d *delivery, retry bool) {
	wh.mu.Lock()
	wh.inFlight--
	if retry && !wh.stopped {
		wh.scheduleLocked(d, wh.retryDelay(d))
	}
	wh.changedLocked()
	wh.mu.Unlock()
	if retry {
		wh.signal()
	}
}

func (wh *webhooks) stop() {
	wh.mu.Lock()
	wh.stopped = true
	for d, t := range wh.waiting {
		t.Stop()
		delete(wh.waiting, d)
	}
	wh.queue = nil
	wh.changedLocked()
	wh.mu.Unlock()
	wh.client.CloseIdleConnections()
}

// errLost is the outcome of an attempt the Lose mode never sent.
var errLost = errors.New("lost in the network (simulated)")

// forgedSecretPrefix turns the real secret into a wrong one for BadSignature
// attempts, so a forged signature is well-formed but never verifies.
const forgedSecretPrefix = "forged_"

// send makes one delivery attempt; no lock is held during the POST. Counters are
// updated before the pipeline learns the outcome, so that whoever waits for
// quiescence sees final Stats.
func (s *Server) send(d *delivery) {
	wh := &s.wh
	d.attempts++
	sp := spoilNone
	if len(d.spoils) > 0 {
		sp, d.spoils = d.spoils[0], d.spoils[1:]
	}
	var (
		status int
		err    error
	)
	if sp == spoilLost {
		err = errLost
	} else {
		name, value := s.signature(sp, d, s.now())
		status, err = s.post(d.ev.Body, name, value)
	}
	acked := err == nil && status >= 200 && status < 300

	var delivered, retry, gaveUp bool
	switch {
	case acked && sp == spoilNone:
		delivered = true
	case s.ctx.Err() != nil:
		// Shutting down: abandon quietly.
	case sp != spoilNone:
		retry = true // even if accepted: the correctly signed attempt must follow
	default:
		d.failures++
		retry = d.failures <= len(wh.opts.Retry)
		gaveUp = !retry
	}

	s.mu.Lock()
	st := &s.stats
	st.WebhookAttempts++
	if d.copy > 0 && d.attempts == 1 {
		st.WebhookDuplicates++
	}
	switch sp {
	case spoilLost:
		st.WebhooksLost++
	case spoilBadSignature:
		st.WebhookBadSignatures++
	case spoilStale:
		st.WebhookStaleTimestamps++
	}
	switch {
	case err != nil:
	case status >= 400 && status < 500:
		st.WebhookRejections++
	case status >= 500:
		st.WebhookServerErrors++
	case acked && sp != spoilNone:
		st.WebhookSpoofsAccepted++
	}
	if delivered {
		st.WebhooksDelivered++
	}
	if retry {
		st.WebhookRetries++
	}
	if gaveUp {
		st.WebhooksFailed++
	}
	s.mu.Unlock()

	// d belongs to the pipeline again after finish (a retry without delay may be
	// in another worker's hands at once): log from copies.
	ev, copyN, attempt := d.ev, d.copy, d.attempts
	wh.finish(d, retry)

	what := "status " + strconv.Itoa(status)
	if err != nil {
		what = err.Error()
	}
	if sp != spoilNone {
		what = sp.String() + ", " + what
	}
	switch {
	case delivered:
		s.logf("sim: webhook %s %s copy %d delivered (attempt %d)", ev.Type, ev.ID, copyN, attempt)
	case retry:
		s.logf("sim: webhook %s %s copy %d attempt %d failed (%s); will retry", ev.Type, ev.ID, copyN, attempt, what)
	case gaveUp:
		s.logf("sim: webhook %s %s copy %d given up after %d attempts (%s)", ev.Type, ev.ID, copyN, attempt, what)
	}
}

// signature signs body at now for an attempt spoiled as sp.
func (s *Server) signature(sp spoil, d *delivery, now time.Time) (name, value string) {
	secret := s.wh.opts.Secret
	switch sp {
	case spoilBadSignature:
		secret = forgedSecretPrefix + secret
	case spoilStale:
		now = now.Add(-d.staleAge)
	}
	return s.wire.signHeader(secret, now, d.ev.Body, sp == spoilStale)
}

func (s *Server) post(body []byte, sigHeader, signature string) (int, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.wh.opts.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.wire.userAgent())
	if signature != "" {
		req.Header.Set(sigHeader, signature)
	}
	resp, err := s.wh.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// SetWebhookDelivery replaces the delivery modes at runtime, Disabled included,
// typically to turn duplicates or forgeries off so that a run can settle. The new
// modes apply to events generated from now on; deliveries already planned keep
// theirs. Workers cannot change at runtime and is ignored. Modes are used as given; see
// Delivery.Validate.
func (s *Server) SetWebhookDelivery(d Delivery) {
	wh := &s.wh
	wh.mu.Lock()
	d.Workers = wh.modes.Workers
	wh.modes = d.withDefaults()
	wh.mu.Unlock()
}

// SetWebhooksEnabled switches delivery off and on while keeping the other modes
// (Delivery.Disabled): while off, events are recorded but never sent, which is
// how a test makes "the webhook never comes" certain.
func (s *Server) SetWebhooksEnabled(enabled bool) {
	wh := &s.wh
	wh.mu.Lock()
	wh.modes.Disabled = !enabled
	wh.mu.Unlock()
	s.logf("sim: webhook delivery enabled=%t", enabled)
}

// WebhookDelivery returns the current delivery modes.
func (s *Server) WebhookDelivery() Delivery {
	s.wh.mu.Lock()
	defer s.wh.mu.Unlock()
	return s.wh.modes
}

// WebhooksIdle reports whether no delivery is queued, waiting for its first try
// or a retry, or in flight: every event generated so far has been delivered,
// given up, suppressed or abandoned by Close. Deliveries queued before Start are
// pending, so it is false until they are sent.
func (s *Server) WebhooksIdle() bool {
	return s.wh.pending() == 0
}

// WaitWebhooks blocks until WebhooksIdle would report true or ctx is done, and
// returns ctx's error in the latter case. Tests call it instead of sleeping; it
// never returns nil before Start if deliveries are queued, and returns at once
// after Close.
func (s *Server) WaitWebhooks(ctx context.Context) error {
	return s.wh.wait(ctx)
}
