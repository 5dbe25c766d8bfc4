package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type delivered struct {
	header http.Header
	body   []byte
	status int
}

// receiver is a webhook endpoint that records every delivery and answers 500 to
// the first failFirst of them (negative: always).
type receiver struct {
	srv       *httptest.Server
	mu        sync.Mutex
	got       []delivered
	failFirst int
}

func newReceiver(t *testing.T, secret string, failFirst int) *receiver {
	rc := &receiver{failFirst: failFirst}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		status := http.StatusOK
		if rc.failFirst < 0 || len(rc.got) < rc.failFirst {
			status = http.StatusInternalServerError
		}
		rc.got = append(rc.got, delivered{header: r.Header.Clone(), body: body, status: status})
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) all() []delivered {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivered(nil), rc.got...)
}

// verify checks a Wooshpay-Signature header the way a receiver must, without
// using Sign, and returns its timestamp.
func verify(t *testing.T, secret, header string, body []byte) int64 {
	t.Helper()
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, found := strings.Cut(part, "=")
		require.True(t, found, header)
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	require.NotEmpty(t, ts, header)
	require.Len(t, sigs, 1, header)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := mac.Sum(nil)
	got, err := hex.DecodeString(sigs[0])
	require.NoError(t, err)
	require.True(t, hmac.Equal(want, got), "bad signature %s", header)
	n, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	return n
}

func TestSignKnownVector(t *testing.T) {
	// printf '%s' '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
	require.Equal(t,
		"t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925",
		Sign("whsec_test", 1700000000, []byte(`{"id":"evt_1"}`)))
}

func TestWebhooksSignedAndRetried(t *testing.T) {
	for _, millis := range []bool{false, true} {
		t.Run("millis="+strconv.FormatBool(millis), func(t *testing.T) {
			clock := newFakeClock()
			rc := newReceiver(t, "whsec_1", 1)
			h := newHarness(t, Options{Now: clock.Now, Webhook: WebhookOptions{
				URL: rc.srv.URL, Secret: "whsec_1", Retry: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond},
				TimestampMillis: millis,
			}})
			h.sim.Start(t.Context())
			cus, pm := h.chargeTarget("4242424242424242")
			require.Equal(t, http.StatusOK, h.charge(cus, pm, 100, "inv_1", "").status)

			require.Eventually(t, func() bool { return h.sim.Stats().WebhooksDelivered == 3 }, 5*time.Second, 5*time.Millisecond)
			evs := h.sim.Events()
			require.Len(t, evs, 3)
			bodies := map[string]string{}
			for _, ev := range evs {
				bodies[ev.ID] = string(ev.Body)
			}

			got := rc.all()
			require.Len(t, got, 4, "one failed attempt, then three deliveries")
			require.Equal(t, http.StatusInternalServerError, got[0].status)
			okIDs := map[string]int{}
			for _, d := range got {
				require.Equal(t, "application/json", d.header.Get("Content-Type"))
				ts := verify(t, "whsec_1", d.header.Get("Wooshpay-Signature"), d.body)
				want := clock.Now().Unix()
				if millis {
					want = clock.Now().UnixMilli()
				}
				require.Equal(t, want, ts)
				var ev struct {
					ID     string `json:"id"`
					Object string `json:"object"`
					Type   string `json:"type"`
				}
				require.NoError(t, json.Unmarshal(d.body, &ev))
				require.Equal(t, "event", ev.Object)
				require.Equal(t, bodies[ev.ID], string(d.body), "the POSTed body is the recorded event")
				if d.status == http.StatusOK {
					okIDs[ev.ID]++
				}
			}
			require.Len(t, okIDs, 3, "every event delivered")

			st := h.sim.Stats()
			require.EqualValues(t, 4, st.WebhookAttempts)
			require.EqualValues(t, 1, st.WebhookRetries)
			require.EqualValues(t, 0, st.WebhooksFailed)
			require.EqualValues(t, 0, st.WebhooksPending)
		})
	}
}

func TestWebhookGivesUp(t *testing.T) {
	t.Run("non-2xx", func(t *testing.T) {
		rc := newReceiver(t, "s", -1)
		h := newHarness(t, Options{Webhook: WebhookOptions{URL: rc.srv.URL, Secret: "s", Retry: []time.Duration{5 * time.Millisecond, 5 * time.Millisecond}}})
		h.sim.Start(t.Context())
		h.chargeTarget("4242424242424242") // one setup_intent.succeeded event
		require.Eventually(t, func() bool { return h.sim.Stats().WebhooksFailed == 1 }, 5*time.Second, 5*time.Millisecond)
		st := h.sim.Stats()
		require.EqualValues(t, 3, st.WebhookAttempts)
		require.EqualValues(t, 2, st.WebhookRetries)
		require.EqualValues(t, 0, st.WebhooksDelivered)
		require.EqualValues(t, 0, st.WebhooksPending)
		require.Len(t, rc.all(), 3)
	})
	t.Run("connection refused", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL
		dead.Close()
		h := newHarness(t, Options{Webhook: WebhookOptions{URL: url, Secret: "s", Retry: []time.Duration{5 * time.Millisecond}}})
		h.sim.Start(t.Context())
		h.chargeTarget("4242424242424242")
		require.Eventually(t, func() bool { return h.sim.Stats().WebhooksFailed == 1 }, 5*time.Second, 5*time.Millisecond)
		require.EqualValues(t, 2, h.sim.Stats().WebhookAttempts)
	})
}

func TestWebhooksQueuedUntilStart(t *testing.T) {
	rc := newReceiver(t, "s", 0)
	h := newHarness(t, Options{Webhook: WebhookOptions{URL: rc.srv.URL, Secret: "s"}})
	h.chargeTarget("4242424242424242")
	require.EqualValues(t, 1, h.sim.Stats().WebhooksPending)
	require.Empty(t, rc.all())
	h.sim.Start(t.Context())
	require.Eventually(t, func() bool { return len(rc.all()) == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestNoWebhookURLStillRecordsEvents(t *testing.T) {
	h := newHarness(t, Options{})
	h.sim.Start(t.Context())
	h.chargeTarget("4242424242424242")
	require.Len(t, h.sim.Events(), 1)
	st := h.sim.Stats()
	require.EqualValues(t, 1, st.Events)
	require.EqualValues(t, 0, st.WebhooksPending)
	require.EqualValues(t, 0, st.WebhookAttempts)
}

func TestEventHistoryBounded(t *testing.T) {
	h := newHarness(t, Options{EventHistory: 3})
	cus := h.customer()
	for range 5 {
		h.saveCard(cus, "4242424242424242")
	}
	evs := h.sim.Events()
	require.Len(t, evs, 3)
	require.EqualValues(t, 5, h.sim.Stats().Events)
	require.Less(t, evs[0].ID, evs[2].ID, "oldest first")
}

func TestCloseStopsBackgroundWork(t *testing.T) {
	rc := newReceiver(t, "s", -1)
	s := New(Options{Webhook: WebhookOptions{URL: rc.srv.URL, Secret: "s", Retry: []time.Duration{time.Hour}}})
	s.Start(t.Context())
	srv := httptest.NewServer(s)
	defer srv.Close()
	h := &harness{t: t, sim: s, srv: srv, client: http.DefaultClient}
	h.chargeTarget("4242424242424242")
	require.Eventually(t, func() bool { return s.Stats().WebhookRetries == 1 }, 5*time.Second, 5*time.Millisecond)
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	require.EqualValues(t, 0, s.Stats().WebhooksPending)
	s.Close() // twice is fine
	s.Start(t.Context())
}
