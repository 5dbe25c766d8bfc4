package sim

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
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
	ev.Body = mustJSON(eventWire{
		ID: ev.ID, Object: "event", Created: ev.Created, Type: typ, Data: eventDataWire{Object: obj},
	})
	s.stats.Events++
	s.events = append(s.events, ev)
	if limit := s.opts.EventHistory; limit > 0 && len(s.events) >= 2*limit {
		// Trim in batches so that appending stays amortized O(1); Events
		// returns only the last limit.
		s.events = append(make([]Event, 0, 2*limit), s.events[len(s.events)-limit:]...)
	}
	if s.opts.Webhook.URL != "" {
		s.wh.enqueue(s.wh.plan(ev))
	}
}

// delivery is one planned POST of an event and its progress through retries.
// Future Delivery modes (duplicates, bad signatures, stale timestamps, extra
// delay) become fields here, set by plan and honoured by send.
type delivery struct {
	ev       Event
	attempts int
}

// webhooks is the delivery pipeline: plan → queue → workers send → retry timers
// put failures back on the queue → give up after the last retry.
type webhooks struct {
	opts   WebhookOptions
	client *http.Client

	mu       sync.Mutex
	queue    []*delivery
	waiting  map[*delivery]*time.Timer
	inFlight int
	stopped  bool
	notify   chan struct{}
}

func (wh *webhooks) init(opts WebhookOptions) {
	wh.opts = opts
	tr := http.DefaultTransport.(*http.Transport).Clone()
	wh.client = &http.Client{Transport: tr, Timeout: opts.Timeout}
	wh.waiting = map[*delivery]*time.Timer{}
	wh.notify = make(chan struct{}, 1)
}

// plan turns an event into the deliveries to make: today exactly one.
func (wh *webhooks) plan(ev Event) []*delivery {
	return []*delivery{{ev: ev}}
}

func (wh *webhooks) enqueue(ds []*delivery) {
	wh.mu.Lock()
	if !wh.stopped {
		wh.queue = append(wh.queue, ds...)
	}
	wh.mu.Unlock()
	wh.signal()
}

func (wh *webhooks) signal() {
	select {
	case wh.notify <- struct{}{}:
	default:
	}
}

func (wh *webhooks) pending() int64 {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return int64(len(wh.queue) + len(wh.waiting) + wh.inFlight)
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

// retryLater parks d until its next try, or reports false when there is none.
func (wh *webhooks) retryLater(d *delivery) bool {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	wh.inFlight--
	if wh.stopped || d.attempts > len(wh.opts.Retry) {
		return false
	}
	delay := wh.opts.Retry[d.attempts-1]
	wh.waiting[d] = time.AfterFunc(delay, func() {
		wh.mu.Lock()
		if _, ok := wh.waiting[d]; !ok {
			wh.mu.Unlock()
			return
		}
		delete(wh.waiting, d)
		wh.queue = append(wh.queue, d)
		wh.mu.Unlock()
		wh.signal()
	})
	return true
}

func (wh *webhooks) done() {
	wh.mu.Lock()
	wh.inFlight--
	wh.mu.Unlock()
}

func (wh *webhooks) stop() {
	wh.mu.Lock()
	wh.stopped = true
	for d, t := range wh.waiting {
		t.Stop()
		delete(wh.waiting, d)
	}
	wh.queue = nil
	wh.mu.Unlock()
	wh.client.CloseIdleConnections()
}

// send makes one delivery attempt; no lock is held during the POST.
func (s *Server) send(d *delivery) {
	wh := &s.wh
	d.attempts++
	now := s.now()
	t := now.Unix()
	if wh.opts.TimestampMillis {
		t = now.UnixMilli()
	}
	status, err := s.post(d.ev.Body, Sign(wh.opts.Secret, t, d.ev.Body))
	success := err == nil && status >= 200 && status < 300

	s.mu.Lock()
	s.stats.WebhookAttempts++
	if success {
		s.stats.WebhooksDelivered++
	}
	s.mu.Unlock()

	what := "status " + strconv.Itoa(status)
	if err != nil {
		what = err.Error()
	}
	switch {
	case success:
		wh.done()
		s.logf("sim: webhook %s %s delivered (attempt %d)", d.ev.Type, d.ev.ID, d.attempts)
	case s.ctx.Err() != nil:
		wh.done() // shutting down: abandon quietly
	case wh.retryLater(d):
		s.mu.Lock()
		s.stats.WebhookRetries++
		s.mu.Unlock()
		s.logf("sim: webhook %s %s attempt %d failed (%s); will retry", d.ev.Type, d.ev.ID, d.attempts, what)
	default:
		s.mu.Lock()
		s.stats.WebhooksFailed++
		s.mu.Unlock()
		s.logf("sim: webhook %s %s given up after %d attempts (%s)", d.ev.Type, d.ev.ID, d.attempts, what)
	}
}

func (s *Server) post(body []byte, signature string) (int, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.wh.opts.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "WooshPay-Simulator/1.0 (billingd)")
	req.Header.Set("Wooshpay-Signature", signature)
	resp, err := s.wh.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
