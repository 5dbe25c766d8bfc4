package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/events"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
)

// eventSink is a receiving server: it records every delivery, and answers
// with status() (200 when nil).
type eventSink struct {
	mu       sync.Mutex
	bodies   [][]byte
	headers  []http.Header
	status   func() int
	srv      *httptest.Server
	received int
}

func newEventSink(t *testing.T) *eventSink {
	s := &eventSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.received++
		code := http.StatusOK
		if s.status != nil {
			code = s.status()
		}
		if code/100 == 2 {
			s.bodies = append(s.bodies, body)
			s.headers = append(s.headers, r.Header.Clone())
		}
		s.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

const testEventsSecret = "whsec_events_test_0123456789"

// TestEventOutboxDeliversSignedInOrder: emitted events are written at
// commit, POSTed signed, retried while the receiver fails, and delivered in
// the order they were written per subscription; a rolled-back emit leaves
// nothing.
func TestEventOutboxDeliversSignedInOrder(t *testing.T) {
	sink := newEventSink(t)
	daemontest.Each(t, daemontest.Options{NoMail: true, Configure: func(c *config.Config) {
		c.Events.URL = sink.srv.URL + "/hooks"
		c.Events.Secret = config.Secret(testEventsSecret)
	}}, func(t *testing.T, b *daemontest.Bundle) {
		sink.mu.Lock()
		sink.bodies, sink.headers, sink.status = nil, nil, nil
		sink.mu.Unlock()
		ctx := context.Background()
		b.Seed(t, storetest.Subscription{Reference: "ev-1"}, storetest.Subscription{Reference: "ev-2"})
		subs, err := b.Store.ListSubscriptions(ctx, store.SubscriptionFilter{})
		require.NoError(t, err)
		require.Len(t, subs, 2)
		// The import emitted the subscriptions' subscription.created: they
		// are delivered first, and the test starts after them.
		_, err = b.D.DeliverEvents(ctx)
		require.NoError(t, err)
		created, err := b.Store.ListEvents(ctx, store.EventFilter{Statuses: []string{string(models.EventDelivered)}})
		require.NoError(t, err)
		require.Len(t, created, 2)
		sink.mu.Lock()
		sink.bodies, sink.headers = nil, nil
		sink.mu.Unlock()
		emit := func(typ models.EventType, id int64) {
			require.NoError(t, b.Store.InTx(ctx, func(tx *store.Tx) error {
				tx.Emit(store.EventRef{Type: typ, ObjectID: id})
				return nil
			}))
		}
		// A rolled-back transaction emits nothing.
		require.Error(t, b.Store.InTx(ctx, func(tx *store.Tx) error {
			tx.Emit(store.EventRef{Type: models.EventSubscriptionPaused, ObjectID: subs[0].ID})
			return context.Canceled
		}))
		before, err := b.Store.ListEvents(ctx, store.EventFilter{})
		require.NoError(t, err)
		require.Len(t, before, len(created), "a rolled-back transaction recorded an event")

		sink.mu.Lock()
		sink.status = func() int { return http.StatusInternalServerError }
		sink.mu.Unlock()
		emit(models.EventSubscriptionPaused, subs[0].ID)
		emit(models.EventSubscriptionResumed, subs[0].ID)
		emit(models.EventSubscriptionCanceled, subs[1].ID)
		_, err = b.D.DeliverEvents(ctx)
		require.NoError(t, err)
		sink.mu.Lock()
		require.Empty(t, sink.bodies)
		sink.status = nil
		sink.mu.Unlock()
		// The retry waits for its backoff.
		b.Clock.Advance(events.RetryDelay(1) + time.Second)
		for i := 0; i < 3; i++ {
			_, err = b.D.DeliverEvents(ctx)
			require.NoError(t, err)
		}
		sink.mu.Lock()
		defer sink.mu.Unlock()
		var types []string
		for i, body := range sink.bodies {
			require.NoError(t, events.Verify(sink.headers[i].Get(events.SignatureHeader), body, testEventsSecret, time.Now(), 0))
			var ev struct {
				ID           string `json:"id"`
				Type         string `json:"type"`
				Subscription string `json:"subscription"`
				Data         struct {
					Object struct {
						Reference string `json:"reference"`
					} `json:"object"`
				} `json:"data"`
			}
			require.NoError(t, json.Unmarshal(body, &ev))
			require.Equal(t, ev.Subscription, ev.Data.Object.Reference)
			require.Equal(t, ev.ID, sink.headers[i].Get("Billingd-Event-Id"))
			types = append(types, ev.Subscription+":"+ev.Type)
		}
		require.Len(t, types, 3)
		require.Less(t, indexOf(types, "ev-1:subscription.paused"), indexOf(types, "ev-1:subscription.resumed"))
		require.Contains(t, types, "ev-2:subscription.canceled")
		after, err := b.Store.ListEvents(ctx, store.EventFilter{Statuses: []string{string(models.EventDelivered)}})
		require.NoError(t, err)
		require.Len(t, after, len(created)+3)
	})
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}
