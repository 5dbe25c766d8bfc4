package sim

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	whSecret  = "whsec_delivery"
	tolerance = 300 * time.Second
)

// post is one POST as a verifying receiver saw it.
type post struct {
	id     string
	t      int64
	status int
	reason string // "" when the signature and timestamp verified
}

// verifyingReceiver is a webhook endpoint that checks deliveries the way billingd
// must: HMAC over "t.body" with the shared secret (401 when wrong) and |now-t|
// within 300 s, t in seconds or milliseconds (400 when outside). It answers 200
// otherwise, or 500 to the first failValid correctly signed posts.
type verifyingReceiver struct {
	srv       *httptest.Server
	now       func() time.Time
	verify    bool
	mu        sync.Mutex
	posts     []post
	failValid int
}

func newVerifyingReceiver(t *testing.T, now func() time.Time) *verifyingReceiver {
	rc := &verifyingReceiver{now: now, verify: true}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *verifyingReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &ev)
	ts, reason := checkSignature(r.Header.Get("Wooshpay-Signature"), body, rc.now())
	rc.mu.Lock()
	defer rc.mu.Unlock()
	status := http.StatusOK
	switch {
	case !rc.verify:
	case reason == "bad signature":
		status = http.StatusUnauthorized
	case reason != "":
		status = http.StatusBadRequest
	case rc.failValid < 0 || rc.failValid > 0:
		rc.failValid = max(rc.failValid-1, -1)
		status = http.StatusInternalServerError
	}
	rc.posts = append(rc.posts, post{id: ev.ID, t: ts, status: status, reason: reason})
	w.WriteHeader(status)
}

func (rc *verifyingReceiver) all() []post {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.posts)
}

// byEvent groups posts by event id, each group in arrival order.
func (rc *verifyingReceiver) byEvent() map[string][]post {
	out := map[string][]post{}
	for _, p := range rc.all() {
		out[p.id] = append(out[p.id], p)
	}
	return out
}

// checkSignature verifies a Wooshpay-Signature header with HMAC directly, and
// returns its timestamp and what is wrong with it ("" when nothing is).
func checkSignature(header string, body []byte, now time.Time) (int64, string) {
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "malformed header"
	}
	mac := hmac.New(sha256.New, []byte(whSecret))
	mac.Write([]byte(ts + "." + string(body)))
	want := mac.Sum(nil)
	ok := false
	for _, sig := range sigs {
		got, err := hex.DecodeString(sig)
		ok = ok || (err == nil && hmac.Equal(want, got))
	}
	if !ok {
		return t, "bad signature"
	}
	at := time.Unix(t, 0)
	if t > 1e12 {
		at = time.UnixMilli(t)
	}
	if d := now.Sub(at); d > tolerance || d < -tolerance {
		return t, "stale timestamp"
	}
	return t, ""
}

// newDeliverySim starts a simulator delivering to rc with the given modes.
func newDeliverySim(t *testing.T, rc *verifyingReceiver, clock *fakeClock, seed int64, d Delivery, retry ...time.Duration) *Server {
	t.Helper()
	if retry == nil {
		retry = []time.Duration{}
	}
	s := New(Options{Seed: seed, Now: clock.Now, Webhook: WebhookOptions{
		URL: rc.srv.URL, Secret: whSecret, Retry: retry, Timeout: 5 * time.Second, Delivery: d,
	}})
	t.Cleanup(s.Close)
	s.Start(t.Context())
	return s
}

// emitEvents generates n events directly and returns their ids, oldest first.
func emitEvents(s *Server, n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, n)
	for i := range ids {
		s.emitLocked("test.event", fmt.Sprintf("obj_%d", i), map[string]any{"n": i})
		ids[i] = s.events[len(s.events)-1].ID
	}
	return ids
}

func waitIdle(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.WaitWebhooks(ctx))
	require.True(t, s.WebhooksIdle())
}

// requireEveryEventDelivered checks that each id got at least one correctly
// signed delivery answered 200, and that every badly signed or stale post was
// refused.
func requireEveryEventDelivered(t *testing.T, rc *verifyingReceiver, ids []string) {
	t.Helper()
	got := rc.byEvent()
	require.Len(t, got, len(ids))
	for _, id := range ids {
		ok := false
		for _, p := range got[id] {
			ok = ok || (p.reason == "" && p.status == http.StatusOK)
			if p.reason != "" {
				require.GreaterOrEqual(t, p.status, 400, "%s: %s accepted", id, p.reason)
			}
		}
		require.True(t, ok, "%s never delivered correctly: %+v", id, got[id])
	}
}

func TestWebhookDuplicates(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	s := newDeliverySim(t, rc, clock, 7, Delivery{Duplicates: 1, MaxCopies: 3})
	ids := emitEvents(s, 20)
	waitIdle(t, s)

	got := rc.byEvent()
	require.Len(t, got, 20)
	copies := map[int]int{}
	total := 0
	for _, id := range ids {
		n := len(got[id])
		require.True(t, n >= 2 && n <= 3, "%s delivered %d times", id, n)
		copies[n]++
		total += n
		for _, p := range got[id] {
			require.Empty(t, p.reason)
			require.Equal(t, http.StatusOK, p.status)
		}
	}
	require.NotZero(t, copies[2], "some events twice")
	require.NotZero(t, copies[3], "some events three times")

	st := s.Stats()
	require.EqualValues(t, total, st.WebhooksDelivered, "every copy is a delivery of its own")
	require.EqualValues(t, total-20, st.WebhookDuplicates)
	require.EqualValues(t, total, st.WebhookAttempts)
	require.Zero(t, st.WebhooksPending)

	t.Run("share", func(t *testing.T) {
		clock := newFakeClock()
		rc := newVerifyingReceiver(t, clock.Now)
		s := newDeliverySim(t, rc, clock, 7, Delivery{Duplicates: 0.5, MaxCopies: 2})
		ids := emitEvents(s, 40)
		waitIdle(t, s)
		counts := map[int]int{}
		for _, id := range ids {
			counts[len(rc.byEvent()[id])]++
		}
		require.Equal(t, 40, counts[1]+counts[2], "one or two copies: %v", counts)
		require.NotZero(t, counts[1])
		require.NotZero(t, counts[2])
		require.EqualValues(t, counts[2], s.Stats().WebhookDuplicates)
	})
}

func TestWebhookBadSignatureFirst(t *testing.T) {
	for _, retry := range [][]time.Duration{{10 * time.Millisecond}, {}} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			clock := newFakeClock()
			rc := newVerifyingReceiver(t, clock.Now)
			s := newDeliverySim(t, rc, clock, 1, Delivery{BadSignature: 1}, retry...)
			ids := emitEvents(s, 5)
			waitIdle(t, s)

			got := rc.byEvent()
			for _, id := range ids {
				require.Len(t, got[id], 2, id)
				require.Equal(t, "bad signature", got[id][0].reason)
				require.Equal(t, http.StatusUnauthorized, got[id][0].status)
				require.Equal(t, clock.Now().Unix(), got[id][0].t, "only the secret is wrong")
				require.Empty(t, got[id][1].reason)
				require.Equal(t, http.StatusOK, got[id][1].status)
			}
			st := s.Stats()
			require.EqualValues(t, 5, st.WebhookBadSignatures)
			require.EqualValues(t, 5, st.WebhookRejections)
			require.EqualValues(t, 5, st.WebhooksDelivered)
			require.EqualValues(t, 5, st.WebhookRetries)
			require.EqualValues(t, 10, st.WebhookAttempts)
			require.Zero(t, st.WebhooksFailed, "spoiled attempts do not use up the schedule")
			require.Zero(t, st.WebhookSpoofsAccepted)
		})
	}
}

func TestWebhookStaleTimestampFirst(t *testing.T) {
	for _, millis := range []bool{false, true} {
		t.Run("millis="+strconv.FormatBool(millis), func(t *testing.T) {
			clock := newFakeClock()
			rc := newVerifyingReceiver(t, clock.Now)
			s := New(Options{Now: clock.Now, Webhook: WebhookOptions{
				URL: rc.srv.URL, Secret: whSecret, Retry: []time.Duration{10 * time.Millisecond},
				TimestampMillis: millis, Delivery: Delivery{StaleTimestamp: 1},
			}})
			t.Cleanup(s.Close)
			s.Start(t.Context())
			ids := emitEvents(s, 3)
			waitIdle(t, s)

			stale, fresh := clock.Now().Add(-10*time.Minute).Unix(), clock.Now().Unix()
			if millis {
				stale, fresh = clock.Now().Add(-10*time.Minute).UnixMilli(), clock.Now().UnixMilli()
			}
			got := rc.byEvent()
			for _, id := range ids {
				require.Len(t, got[id], 2, id)
				require.Equal(t, "stale timestamp", got[id][0].reason, "correctly signed, but old")
				require.Equal(t, stale, got[id][0].t)
				require.Equal(t, http.StatusBadRequest, got[id][0].status)
				require.Empty(t, got[id][1].reason)
				require.Equal(t, fresh, got[id][1].t)
				require.Equal(t, http.StatusOK, got[id][1].status)
			}
			st := s.Stats()
			require.EqualValues(t, 3, st.WebhookStaleTimestamps)
			require.EqualValues(t, 3, st.WebhookRejections)
			require.EqualValues(t, 3, st.WebhooksDelivered)
		})
	}
}

func TestWebhookLostFirstAttempt(t *testing.T) {
	for _, retry := range [][]time.Duration{{10 * time.Millisecond}, {}} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			clock := newFakeClock()
			rc := newVerifyingReceiver(t, clock.Now)
			s := newDeliverySim(t, rc, clock, 1, Delivery{Lose: 1}, retry...)
			ids := emitEvents(s, 4)
			waitIdle(t, s)

			got := rc.byEvent()
			for _, id := range ids {
				require.Len(t, got[id], 1, "the lost attempt never reached the receiver")
				require.Equal(t, http.StatusOK, got[id][0].status)
			}
			st := s.Stats()
			require.EqualValues(t, 4, st.WebhooksLost)
			require.EqualValues(t, 8, st.WebhookAttempts, "a lost attempt is a failed attempt")
			require.EqualValues(t, 4, st.WebhookRetries)
			require.EqualValues(t, 4, st.WebhooksDelivered)
		})
	}
}

func TestWebhookSpoilsInOrderThenGood(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	s := newDeliverySim(t, rc, clock, 1, Delivery{Lose: 1, BadSignature: 1, StaleTimestamp: 1})
	ids := emitEvents(s, 3)
	waitIdle(t, s)
	got := rc.byEvent()
	for _, id := range ids {
		require.Len(t, got[id], 3)
		require.Equal(t, "bad signature", got[id][0].reason)
		require.Equal(t, "stale timestamp", got[id][1].reason)
		require.Empty(t, got[id][2].reason)
	}
	st := s.Stats()
	require.EqualValues(t, 12, st.WebhookAttempts)
	require.EqualValues(t, 3, st.WebhooksDelivered)
	require.Zero(t, st.WebhooksFailed, "no retry schedule, yet nothing is lost")
}

func TestWebhookSpoofAcceptedIsCountedAndRedelivered(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	rc.verify = false // a receiver that forgot to check signatures
	s := newDeliverySim(t, rc, clock, 1, Delivery{BadSignature: 1, StaleTimestamp: 1})
	ids := emitEvents(s, 2)
	waitIdle(t, s)
	for _, id := range ids {
		require.Len(t, rc.byEvent()[id], 3)
	}
	st := s.Stats()
	require.EqualValues(t, 4, st.WebhookSpoofsAccepted)
	require.EqualValues(t, 2, st.WebhooksDelivered)
	require.Zero(t, st.WebhookRejections)
}

func TestWebhookGivesUpOnlyOnCorrectAttempts(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	rc.failValid = -1
	s := newDeliverySim(t, rc, clock, 1, Delivery{BadSignature: 1}, time.Millisecond, time.Millisecond)
	emitEvents(s, 1)
	waitIdle(t, s)
	st := s.Stats()
	require.EqualValues(t, 4, st.WebhookAttempts, "one spoiled attempt, then the first try and two retries")
	require.EqualValues(t, 1, st.WebhookRejections)
	require.EqualValues(t, 3, st.WebhookServerErrors)
	require.EqualValues(t, 1, st.WebhooksFailed)
	require.Zero(t, st.WebhooksDelivered)
}

func TestWebhookMaxDelayReorders(t *testing.T) {
	const n = 20
	order := func(t *testing.T, d Delivery) (ids, arrived []string) {
		clock := newFakeClock()
		rc := newVerifyingReceiver(t, clock.Now)
		s := newDeliverySim(t, rc, clock, 3, d)
		ids = emitEvents(s, n)
		waitIdle(t, s)
		for _, p := range rc.all() {
			arrived = append(arrived, p.id)
		}
		require.ElementsMatch(t, ids, arrived, "each event exactly once")
		return ids, arrived
	}
	t.Run("one worker keeps creation order", func(t *testing.T) {
		ids, arrived := order(t, Delivery{Workers: 1})
		require.Equal(t, ids, arrived)
	})
	t.Run("random delays reorder", func(t *testing.T) {
		ids, arrived := order(t, Delivery{Workers: 1, MaxDelay: 100 * time.Millisecond})
		require.NotEqual(t, ids, arrived)
	})
}

// TestWebhookDecisionsDeterministic checks the decisions themselves, which
// unlike arrival times do not depend on scheduling.
func TestWebhookDecisionsDeterministic(t *testing.T) {
	modes := Delivery{Duplicates: 0.5, MaxCopies: 4, MaxDelay: time.Second, BadSignature: 0.3, StaleTimestamp: 0.3, Lose: 0.3}
	plan := func(seed int64, d Delivery) [][]*delivery {
		s := New(Options{Seed: seed, Webhook: WebhookOptions{URL: "http://127.0.0.1:1", Secret: "s", Delivery: d}})
		t.Cleanup(s.Close)
		evs := make([]Event, 50)
		for i := range evs {
			evs[i] = Event{ID: "evt_" + strconv.Itoa(i)}
		}
		s.wh.mu.Lock()
		defer s.wh.mu.Unlock()
		out := make([][]*delivery, len(evs))
		for i, ev := range evs {
			out[i] = s.wh.planLocked(ev)
		}
		return out
	}
	a := plan(11, modes)
	require.Equal(t, a, plan(11, modes), "same seed, same decisions")
	require.NotEqual(t, a, plan(12, modes), "another seed, other decisions")

	// Turning spoilers on and off leaves copies and delays alone.
	calm := plan(11, Delivery{Duplicates: 0.5, MaxCopies: 4, MaxDelay: time.Second})
	spoiled := 0
	for i := range a {
		require.Len(t, calm[i], len(a[i]))
		for j := range a[i] {
			require.Equal(t, a[i][j].wait, calm[i][j].wait)
			require.Empty(t, calm[i][j].spoils)
			spoiled += len(a[i][j].spoils)
		}
	}
	require.NotZero(t, spoiled)
}

func TestWebhookModesLeaveAPIFaultsAlone(t *testing.T) {
	statuses := func(d Delivery) []int {
		clock := newFakeClock()
		rc := newVerifyingReceiver(t, clock.Now)
		h := newHarness(t, Options{Seed: 5, Now: clock.Now,
			Webhook: WebhookOptions{URL: rc.srv.URL, Secret: whSecret, Retry: []time.Duration{}, Delivery: d}})
		h.sim.Start(t.Context())
		cus := h.customer()
		h.sim.SetFaults(Faults{Error5xxBefore: 0.4})
		var out []int
		for range 15 {
			out = append(out, h.post("/v1/setup_intents", setupBody(cus, "4242424242424242"), "").status)
		}
		waitIdle(t, h.sim)
		return out
	}
	plain := statuses(Delivery{})
	require.Contains(t, plain, http.StatusInternalServerError)
	require.Contains(t, plain, http.StatusOK)
	require.Equal(t, plain, statuses(Delivery{Duplicates: 1, MaxDelay: 5 * time.Millisecond, BadSignature: 0.5, StaleTimestamp: 0.5, Lose: 0.5}))
}

func TestWebhooksIdleAndWait(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	rc.failValid = 1
	s := New(Options{Now: clock.Now, Webhook: WebhookOptions{URL: rc.srv.URL, Secret: whSecret, Retry: []time.Duration{20 * time.Millisecond}}})
	t.Cleanup(s.Close)
	require.True(t, s.WebhooksIdle(), "nothing generated yet")
	require.NoError(t, s.WaitWebhooks(t.Context()))

	emitEvents(s, 1)
	require.False(t, s.WebhooksIdle(), "queued until Start")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	require.ErrorIs(t, s.WaitWebhooks(ctx), context.DeadlineExceeded)
	cancel()

	s.Start(t.Context())
	waitIdle(t, s)
	got := rc.all()
	require.Len(t, got, 2, "a 500, then the retry")
	require.Equal(t, http.StatusInternalServerError, got[0].status)
	require.Equal(t, http.StatusOK, got[1].status)
	st := s.Stats()
	require.EqualValues(t, 1, st.WebhooksDelivered)
	require.EqualValues(t, 1, st.WebhookServerErrors)
	require.Zero(t, st.WebhooksPending)
}

func TestWebhookDeliveryOff(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	s := newDeliverySim(t, rc, clock, 1, Delivery{Disabled: true})
	emitEvents(s, 3)
	require.True(t, s.WebhooksIdle(), "nothing is queued while delivery is off")
	require.Len(t, s.Events(), 3, "events are still recorded")
	st := s.Stats()
	require.EqualValues(t, 3, st.WebhooksSuppressed)
	require.Zero(t, st.WebhookAttempts)

	s.SetWebhooksEnabled(true)
	later := emitEvents(s, 1)
	waitIdle(t, s)
	got := rc.all()
	require.Len(t, got, 1, "events generated while off are never sent")
	require.Equal(t, later[0], got[0].id)

	s.SetWebhooksEnabled(false)
	emitEvents(s, 2)
	waitIdle(t, s)
	require.Len(t, rc.all(), 1)
	require.EqualValues(t, 5, s.Stats().WebhooksSuppressed)
}

func TestSetWebhookDeliveryAppliesToLaterEvents(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	s := newDeliverySim(t, rc, clock, 1, Delivery{Workers: 2})
	s.SetWebhookDelivery(Delivery{Workers: 9, Duplicates: 1, MaxCopies: 2})
	d := s.WebhookDelivery()
	require.Equal(t, 2, d.Workers, "workers are fixed")
	require.Equal(t, 2, d.MaxCopies)
	require.Equal(t, 10*time.Minute, d.StaleAge, "defaults applied")
	ids := emitEvents(s, 2)
	waitIdle(t, s)
	for _, id := range ids {
		require.Len(t, rc.byEvent()[id], 2)
	}
}

func TestPutWebhooks(t *testing.T) {
	h := newHarness(t, Options{})
	put := func(body string) resp {
		t.Helper()
		req, err := http.NewRequest(http.MethodPut, h.srv.URL+"/_sim/webhooks", strings.NewReader(body))
		require.NoError(t, err)
		r, err := h.send(h.client, req)
		require.NoError(t, err)
		return r
	}

	r := h.get("/_sim/webhooks")
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"enabled":true,"workers":4,"duplicates":0,"max_copies":3,"delay":"0s","max_delay":"0s",
		"bad_signature":0,"stale_timestamp":0,"stale_age":"10m0s","lose":0}`, string(r.body))

	r = put(`{"enabled":false,"duplicates":0.5,"max_copies":2,"max_delay":"250ms","delay":1000000,"bad_signature":0.1,"lose":1,"workers":4}`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, Delivery{
		Workers: 4, Disabled: true, Duplicates: 0.5, MaxCopies: 2, Delay: time.Millisecond,
		MaxDelay: 250 * time.Millisecond, BadSignature: 0.1, StaleAge: 10 * time.Minute, Lose: 1,
	}, h.sim.WebhookDelivery())
	var echoed Delivery
	require.NoError(t, json.Unmarshal(r.body, &echoed))
	require.Equal(t, h.sim.WebhookDelivery(), echoed)

	r = put(`{"stale_timestamp":0.25}`)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, Delivery{Workers: 4, MaxCopies: 3, StaleTimestamp: 0.25, StaleAge: 10 * time.Minute},
		h.sim.WebhookDelivery(), "PUT replaces; omitted enabled means on")

	for body, want := range map[string]string{
		`{"lose":1.5}`:        "lose",
		`{"duplicates":-1}`:   "duplicates",
		`{"max_copies":1}`:    "max_copies",
		`{"max_delay":"-1s"}`: "max_delay",
		`{"workers":9}`:       "workers",
		`{"shuffle":true}`:    "shuffle",
		`{"delay":"soon"}`:    "invalid",
	} {
		r := put(body)
		require.Equal(t, http.StatusBadRequest, r.status, body)
		require.Contains(t, r.errObj(t)["message"], want, body)
	}
	require.Equal(t, 0.25, h.sim.WebhookDelivery().StaleTimestamp, "rejected PUTs change nothing")
}

func TestCloseStopsDelayedDeliveries(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	s := newDeliverySim(t, rc, clock, 1, Delivery{Delay: time.Hour})
	emitEvents(s, 3)
	require.EqualValues(t, 3, s.Stats().WebhooksPending)
	start := time.Now()
	s.Close()
	require.Less(t, time.Since(start), time.Second)
	require.True(t, s.WebhooksIdle())
	require.NoError(t, s.WaitWebhooks(t.Context()))
	require.Empty(t, rc.all())
}

// TestWebhookAllModesAtLeastOnce runs every mode at once and checks that no
// event is lost and that the counters add up.
func TestWebhookAllModesAtLeastOnce(t *testing.T) {
	clock := newFakeClock()
	rc := newVerifyingReceiver(t, clock.Now)
	s := newDeliverySim(t, rc, clock, 42, Delivery{
		Duplicates: 0.3, MaxDelay: 20 * time.Millisecond, BadSignature: 0.3, StaleTimestamp: 0.3, Lose: 0.3,
	}, 5*time.Millisecond, 5*time.Millisecond)
	ids := emitEvents(s, 30)
	waitIdle(t, s)
	requireEveryEventDelivered(t, rc, ids)

	st := s.Stats()
	require.EqualValues(t, 30+st.WebhookDuplicates, st.WebhooksDelivered)
	require.EqualValues(t, st.WebhookAttempts, st.WebhooksDelivered+st.WebhookRejections+st.WebhookServerErrors+st.WebhooksLost)
	require.EqualValues(t, st.WebhookBadSignatures+st.WebhookStaleTimestamps, st.WebhookRejections)
	require.EqualValues(t, len(rc.all()), st.WebhookAttempts-st.WebhooksLost)
	for _, n := range []int64{st.WebhookDuplicates, st.WebhookBadSignatures, st.WebhookStaleTimestamps, st.WebhooksLost} {
		require.NotZero(t, n)
	}
	require.Zero(t, st.WebhooksFailed)
	require.Zero(t, st.WebhookSpoofsAccepted)
}
