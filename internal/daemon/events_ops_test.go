package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/events"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/billingd/billingd/internal/web"
)

// emitFor records one event of typ about the subscription ref, as a state
// change's transaction does.
func emitFor(t *testing.T, b *daemontest.Bundle, typ models.EventType, ref string) {
	t.Helper()
	ctx := context.Background()
	subs, err := b.Store.ListSubscriptions(ctx, store.SubscriptionFilter{Reference: ref})
	require.NoError(t, err)
	require.Len(t, subs, 1)
	require.NoError(t, b.Store.InTx(ctx, func(tx *store.Tx) error {
		tx.Emit(store.EventRef{Type: typ, ObjectID: subs[0].ID})
		return nil
	}))
}

// The events through the admin API, against docs/openapi.yaml: listing
// with filters and cursor paging, one event with its body, redelivery
// (recorded, audited as the token, replayed without a second POST under its
// Idempotency-Key, refused for a pending event), and the events gauges on
// /metrics following the outbox: pending with its age, then failed, then
// delivered.
func TestAdminAPIEvents(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			sink := newEventSink(t)
			a := newAdminAPI(t, daemontest.Options{Postgres: pg, NoMail: true, Configure: func(c *config.Config) {
				c.Events.URL, c.Events.Secret = sink.srv.URL+"/hooks", config.Secret(testEventsSecret)
			}}, "backoffice")
			b := a.b
			ctx := context.Background()
			b.Seed(t, storetest.Subscription{Reference: "api-ev-1"}, storetest.Subscription{Reference: "api-ev-2"})
			// Whatever seeding recorded (subscription.created) is delivered
			// first: the test follows the events it emits next.
			_, err := b.D.DeliverEvents(ctx)
			require.NoError(t, err)
			delivered0 := scrape(t, b)[`billingd_events{status="delivered"}`]
			sink.mu.Lock()
			sink.bodies, sink.headers = nil, nil
			sink.mu.Unlock()
			emitFor(t, b, models.EventSubscriptionPaused, "api-ev-1")
			emitFor(t, b, models.EventSubscriptionResumed, "api-ev-1")
			emitFor(t, b, models.EventSubscriptionCanceled, "api-ev-2")

			b.Clock.Advance(10 * time.Minute)
			m := scrape(t, b)
			require.Equal(t, 3.0, m[`billingd_events{status="pending"}`])
			require.Equal(t, 0.0, m[`billingd_events{status="failed"}`])
			require.Equal(t, 600.0, m["billingd_events_oldest_undelivered_seconds"])

			// A pending event is the queue's.
			res := a.call(t, "backoffice", "GET", "/v1/events?status=pending", "", nil, true)
			require.Equal(t, http.StatusOK, res.status, string(res.body))
			var list struct{ Data []ops.Event }
			res.decode(t, &list)
			require.Len(t, list.Data, 3)
			require.NotNil(t, list.Data[0].NextAttemptAt)
			res = a.call(t, "backoffice", "POST", "/v1/events/"+list.Data[0].ID+"/redeliver", "redeliver-pending", map[string]any{"reason": "x"}, true)
			require.Equal(t, http.StatusConflict, res.status, string(res.body))

			// The receiver is down past events.retry_for: all three fail.
			sink.mu.Lock()
			sink.status = func() int { return http.StatusBadGateway }
			sink.mu.Unlock()
			for i := 0; i < 3; i++ {
				_, err := b.D.DeliverEvents(ctx)
				require.NoError(t, err)
				b.Clock.Advance(73 * time.Hour)
			}
			m = scrape(t, b)
			require.Equal(t, 3.0, m[`billingd_events{status="failed"}`])
			require.Equal(t, 0.0, m[`billingd_events{status="pending"}`])
			require.Equal(t, 0.0, m["billingd_events_oldest_undelivered_seconds"], "a failed event no longer waits")
			require.GreaterOrEqual(t, m[`billingd_events_total{outcome="failed"}`], 3.0)

			// Filters and paging.
			res = a.call(t, "backoffice", "GET", "/v1/events?status=failed&subscription=api-ev-1&limit=1", "", nil, true)
			require.Equal(t, http.StatusOK, res.status, string(res.body))
			res.decode(t, &list)
			require.Len(t, list.Data, 1)
			first := list.Data[0]
			require.Equal(t, "subscription.paused", first.Type)
			require.Equal(t, "failed", first.Status)
			require.Equal(t, http.StatusBadGateway, first.LastStatus)
			res = a.call(t, "backoffice", "GET", "/v1/events?subscription=api-ev-1&after="+first.ID, "", nil, true)
			require.Equal(t, http.StatusOK, res.status, string(res.body))
			res.decode(t, &list)
			require.Len(t, list.Data, 1)
			require.Equal(t, "subscription.resumed", list.Data[0].Type)
			res = a.call(t, "backoffice", "GET", "/v1/events?type=subscription.canceled,subscription.paused", "", nil, true)
			require.Equal(t, http.StatusOK, res.status, string(res.body))
			res.decode(t, &list)
			require.Len(t, list.Data, 2)
			for q, field := range map[string]string{"type=subscription.gone": "type", "status=lost": "status", "after=evt_nope": "after", "limit=0": "limit", "color=red": "color"} {
				res = a.call(t, "backoffice", "GET", "/v1/events?"+q, "", nil, false)
				require.Equal(t, http.StatusBadRequest, res.status, q)
				require.Equal(t, field, res.errorField(t), q)
			}

			// One event, with its exact body.
			res = a.call(t, "backoffice", "GET", "/v1/events/"+first.ID, "", nil, true)
			require.Equal(t, http.StatusOK, res.status, string(res.body))
			var shown ops.Event
			res.decode(t, &shown)
			stored, err := b.Store.EventByPublicID(ctx, first.ID)
			require.NoError(t, err)
			require.JSONEq(t, stored.Body, string(shown.Body))
			res = a.call(t, "backoffice", "GET", "/v1/events/evt_nope", "", nil, true)
			require.Equal(t, http.StatusNotFound, res.status)

			// Redelivery to a receiver that is back.
			sink.mu.Lock()
			sink.status, sink.bodies, sink.headers = nil, nil, nil
			sink.mu.Unlock()
			res = a.call(t, "backoffice", "POST", "/v1/events/"+first.ID+"/redeliver", "redeliver-1", map[string]any{"reason": "receiver fixed"}, true)
			require.Equal(t, http.StatusOK, res.status, string(res.body))
			var r ops.Redelivery
			res.decode(t, &r)
			require.True(t, r.Delivered)
			require.Equal(t, http.StatusOK, r.HTTPStatus)
			require.Equal(t, "delivered", r.Event.Status)
			again := a.call(t, "backoffice", "POST", "/v1/events/"+first.ID+"/redeliver", "redeliver-1", map[string]any{"reason": "receiver fixed"}, true)
			require.Equal(t, string(res.body), string(again.body))
			require.Equal(t, "true", again.header.Get(web.HeaderReplayed))
			sink.mu.Lock()
			require.Len(t, sink.bodies, 1, "the replayed request POSTed nothing")
			require.Equal(t, stored.Body, string(sink.bodies[0]))
			require.NoError(t, events.Verify(sink.headers[0].Get(events.SignatureHeader), sink.bodies[0], testEventsSecret, b.Clock.Now(), 5*time.Minute),
				"signed at the daemon's clock")
			sink.mu.Unlock()

			var audit models.AuditEntry
			require.NoError(t, b.Store.DB().Where("action = ?", ops.ActionEventRedeliver).First(&audit).Error)
			require.Equal(t, "backoffice", audit.Actor)
			require.Equal(t, models.ViaAdminAPI, audit.Via)
			require.Equal(t, first.ID, audit.TargetRef)
			var after struct {
				Delivered  bool `json:"delivered"`
				HTTPStatus int  `json:"http_status"`
			}
			require.NoError(t, json.Unmarshal([]byte(audit.AfterJSON), &after))
			require.True(t, after.Delivered)
			require.Equal(t, http.StatusOK, after.HTTPStatus)

			m = scrape(t, b)
			require.Equal(t, 2.0, m[`billingd_events{status="failed"}`])
			require.Equal(t, delivered0+1, m[`billingd_events{status="delivered"}`])
		})
	}
}

// A reload cannot turn events on or off (the store records them from its
// start): events.url keeps its running value and is named as needing a
// restart, while a new secret applies to the next delivery.
func TestReloadEventsURLNeedsRestart(t *testing.T) {
	sink := newEventSink(t)
	b := daemontest.New(t, daemontest.Options{NoMail: true, Configure: func(c *config.Config) {
		c.Events.URL, c.Events.Secret = sink.srv.URL+"/hooks", config.Secret(testEventsSecret)
	}})
	cfg := b.D.Config().Clone()
	cfg.Events.URL = ""
	const rotated = "whsec_events_rotated_0123456789"
	cfg.Events.Secret = config.Secret(rotated)
	res, err := b.D.Reload(cfg)
	require.NoError(t, err)
	require.Contains(t, res.NeedRestart, "events.url")
	require.Contains(t, res.Applied, "events.secret")
	require.Equal(t, sink.srv.URL+"/hooks", b.D.Config().Events.URL)

	b.Seed(t, storetest.Subscription{Reference: "reload-ev"})
	emitFor(t, b, models.EventSubscriptionPaused, "reload-ev")
	_, err = b.D.DeliverEvents(context.Background())
	require.NoError(t, err)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	require.NotEmpty(t, sink.bodies, "still delivered to the running url")
	require.NoError(t, events.Verify(sink.headers[0].Get(events.SignatureHeader), sink.bodies[0], rotated, b.Clock.Now(), time.Minute),
		"signed with the reloaded secret")
}
