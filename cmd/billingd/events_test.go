package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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
)

const cliEventsSecret = "whsec_cli_events_0123456789"

// cliEventSink is a receiver that answers status (200 when 0) and keeps
// what it was sent.
type cliEventSink struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	got    []cliDelivery
}

type cliDelivery struct {
	header http.Header
	body   []byte
}

func newCLIEventSink(t *testing.T) *cliEventSink {
	s := &cliEventSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, cliDelivery{r.Header.Clone(), body})
		s.mu.Unlock()
		code := int(s.status.Load())
		if code == 0 {
			code = http.StatusOK
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *cliEventSink) deliveries() []cliDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]cliDelivery(nil), s.got...)
}

// eventsConfig is bundleConfig with the events section; secret "" leaves
// the signing secret out.
func eventsConfig(t *testing.T, b *daemontest.Bundle, url, secret string) string {
	t.Helper()
	c := b.Config
	body := fmt.Sprintf(`
database: { driver: %q, dsn: %q }
gateway:  { provider: %q, base_url: %q, secret_key: %q, webhook_secret: %q, timeout: 5s }
http:     { public_base_url: %q }
events:   { url: %q, secret: %q, timeout: 5s }
`, c.Database.Driver, c.Database.DSN, c.Gateway.Provider, c.Gateway.BaseURL, daemontest.SecretKey, daemontest.WebhookSecret,
		c.HTTP.PublicBaseURL, url, secret)
	return writeFile(t, t.TempDir(), "config.yaml", body)
}

// The events commands against a daemon whose receiver was down past
// events.retry_for: list filters (bad names exit 2 naming the flag and the
// catalogue), show prints the exact body, redeliver POSTs the same id and
// body freshly signed, records the answer and audits it, and exits 1 when
// the receiver still refuses.
func TestEventsCommandsEndToEnd(t *testing.T) {
	sink := newCLIEventSink(t)
	daemontest.Each(t, daemontest.Options{NoMail: true, Configure: func(c *config.Config) {
		c.Events.URL, c.Events.Secret = sink.srv.URL+"/hooks", config.Secret(cliEventsSecret)
	}}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		sink.mu.Lock()
		sink.got = nil
		sink.mu.Unlock()
		cfg := eventsConfig(t, b, sink.srv.URL+"/hooks", cliEventsSecret)
		run := func(args ...string) (int, string, string) { return runMain(t, nil, append(args, "-c", cfg)...) }

		b.Seed(t, storetest.Subscription{Reference: "evcli-1"}, storetest.Subscription{Reference: "evcli-2"})
		subs, err := b.Store.ListSubscriptions(ctx, store.SubscriptionFilter{})
		require.NoError(t, err)
		ids := map[string]int64{}
		for _, s := range subs {
			ids[s.Reference] = s.ID
		}
		// Whatever seeding recorded (subscription.created) is delivered
		// first: the test follows the events it emits next.
		_, err = b.D.DeliverEvents(ctx)
		require.NoError(t, err)
		seeded := len(sink.deliveries())
		for _, e := range []struct {
			typ models.EventType
			ref string
		}{{models.EventSubscriptionPaused, "evcli-1"}, {models.EventSubscriptionResumed, "evcli-1"}, {models.EventSubscriptionCanceled, "evcli-2"}} {
			require.NoError(t, b.Store.InTx(ctx, func(tx *store.Tx) error {
				tx.Emit(store.EventRef{Type: e.typ, ObjectID: ids[e.ref]})
				return nil
			}))
		}
		// A pending event is the queue's: redeliver refuses it.
		code, out, errOut := run("events", "list", "--status", "pending", "--json")
		require.Equal(t, exitOK, code, errOut)
		var pending []ops.Event
		require.NoError(t, json.Unmarshal([]byte(out), &pending))
		require.Len(t, pending, 3)
		code, _, errOut = run("events", "redeliver", pending[0].ID)
		require.Equal(t, exitRuntime, code)
		require.Contains(t, errOut, "is pending")
		require.Len(t, sink.deliveries(), seeded, "nothing sent")

		// The receiver is down for longer than events.retry_for (72h).
		sink.status.Store(http.StatusServiceUnavailable)
		for i := 0; i < 3; i++ {
			_, err := b.D.DeliverEvents(ctx)
			require.NoError(t, err)
			b.Clock.Advance(73 * time.Hour)
		}
		code, out, errOut = run("events", "list", "--failed", "--json")
		require.Equal(t, exitOK, code, errOut)
		var failed []ops.Event
		require.NoError(t, json.Unmarshal([]byte(out), &failed))
		require.Len(t, failed, 3, out)
		for _, e := range failed {
			require.Equal(t, "failed", e.Status)
			require.Equal(t, http.StatusServiceUnavailable, e.LastStatus)
			require.Nil(t, e.Body, "a listing leaves the bodies out")
		}
		require.Equal(t, "evcli-1", failed[0].Subscription)
		require.Equal(t, "subscription.paused", failed[0].Type)

		// The table and the filters.
		code, out, errOut = run("events", "list", "--subscription", "evcli-1")
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "SUBSCRIPTION")
		require.Contains(t, out, "subscription.resumed")
		require.NotContains(t, out, "evcli-2")
		code, out, errOut = run("events", "list", "--type", "subscription.canceled", "--csv")
		require.Equal(t, exitOK, code, errOut)
		require.Equal(t, 2, strings.Count(strings.TrimSpace(out), "\n")+1, out)
		require.Contains(t, out, "evcli-2")
		code, _, errOut = run("events", "list", "--type", "subscription.exploded")
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, `--type "subscription.exploded"`)
		require.Contains(t, errOut, "invoice.paid")
		code, _, errOut = run("events", "list", "--status", "lost")
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, `--status "lost"`)
		require.Contains(t, errOut, "pending, delivered, failed")

		// show: the exact body, pretty in the table form, JSON with --json.
		var stored models.Event
		require.NoError(t, b.Store.DB().Where("public_id = ?", failed[0].ID).First(&stored).Error)
		code, out, errOut = run("events", "show", failed[0].ID)
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "Event "+failed[0].ID+"  subscription.paused  (failed)")
		require.Contains(t, out, `"type": "subscription.paused"`)
		code, out, errOut = run("events", "show", failed[0].ID, "--json")
		require.Equal(t, exitOK, code, errOut)
		var shown ops.Event
		require.NoError(t, json.Unmarshal([]byte(out), &shown))
		require.JSONEq(t, stored.Body, string(shown.Body))
		code, _, errOut = run("events", "show", "evt_nope")
		require.Equal(t, exitRuntime, code)
		require.Contains(t, errOut, "not found")

		// Redelivery while the receiver still refuses: exit 1, the answer
		// recorded, the status kept, audited.
		code, out, errOut = run("events", "redeliver", failed[0].ID, "--reason", "try again")
		require.Equal(t, exitRuntime, code, out)
		require.Contains(t, out, "503")
		require.Contains(t, errOut, "1 of 1 events were not accepted")
		again, err := b.Store.EventByPublicID(ctx, failed[0].ID)
		require.NoError(t, err)
		require.Equal(t, models.EventFailed, again.Status)
		require.Equal(t, stored.Attempts+1, again.Attempts)

		// The receiver is back: --failed --type sends only that type.
		sink.status.Store(http.StatusOK)
		before := len(sink.deliveries())
		code, out, errOut = run("events", "redeliver", "--failed", "--type", "subscription.paused", "--reason", "receiver fixed", "--actor", "ops-anna")
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "200")
		got := sink.deliveries()[before:]
		require.Len(t, got, 1)
		require.Equal(t, stored.Body, string(got[0].body), "the same body, byte for byte")
		require.Equal(t, failed[0].ID, got[0].header.Get("Billingd-Event-Id"))
		require.Equal(t, "subscription.paused", got[0].header.Get("Billingd-Event-Type"))
		require.NoError(t, events.Verify(got[0].header.Get(events.SignatureHeader), got[0].body, cliEventsSecret, time.Now(), 5*time.Minute),
			"signed now with the configured secret")

		// The rest by id, as JSON.
		code, out, errOut = run("events", "redeliver", failed[1].ID, failed[2].ID, "--json")
		require.Equal(t, exitOK, code, errOut)
		var results []ops.Redelivery
		require.NoError(t, json.Unmarshal([]byte(out), &results))
		require.Len(t, results, 2)
		for _, r := range results {
			require.True(t, r.Delivered)
			require.Equal(t, http.StatusOK, r.HTTPStatus)
			require.Equal(t, "delivered", r.Event.Status)
		}
		code, out, errOut = run("events", "list", "--status", "delivered", "--json")
		require.Equal(t, exitOK, code, errOut)
		var delivered []ops.Event
		require.NoError(t, json.Unmarshal([]byte(out), &delivered))
		deliveredIDs := map[string]bool{}
		for _, e := range delivered {
			deliveredIDs[e.ID] = true
		}
		for _, e := range failed {
			require.True(t, deliveredIDs[e.ID], "%s is delivered", e.ID)
		}
		// Nothing failed is left: --failed sends nothing and succeeds.
		n := len(sink.deliveries())
		code, out, errOut = run("events", "redeliver", "--failed")
		require.Equal(t, exitOK, code, errOut)
		require.Contains(t, out, "(none)")
		require.Len(t, sink.deliveries(), n)

		var audits []models.AuditEntry
		require.NoError(t, b.Store.DB().Where("action = ?", ops.ActionEventRedeliver).Order("id").Find(&audits).Error)
		require.Len(t, audits, 4, "every redelivery is audited, accepted or not")
		require.Equal(t, ops.TargetEvent, audits[0].TargetType)
		require.Equal(t, failed[0].ID, audits[0].TargetRef)
		require.Equal(t, "try again", audits[0].Reason)
		require.Contains(t, audits[0].AfterJSON, `"http_status":503`)
		require.Equal(t, "ops-anna", audits[1].Actor)
		require.Contains(t, audits[1].AfterJSON, `"delivered":true`)

		// Usage and config errors change nothing.
		for _, args := range [][]string{
			{"events", "redeliver"},
			{"events", "redeliver", failed[0].ID, "--failed"},
			{"events", "redeliver", failed[0].ID, "--type", "invoice.paid"},
			{"events", "redeliver", "--failed", "--type", "invoice.unknown"},
			{"events", "list", "--failed", "--status", "pending"},
			{"events", "show"},
		} {
			code, _, errOut := run(args...)
			require.Equal(t, exitUsage, code, "%v: %s", args, errOut)
		}
		noSecret := eventsConfig(t, b, sink.srv.URL+"/hooks", "")
		code, _, errOut = runMain(t, nil, "events", "redeliver", failed[0].ID, "-c", noSecret)
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "events.secret")
		code, _, errOut = runMain(t, nil, "events", "list", "-c", noSecret)
		require.Equal(t, exitOK, code, "a listing needs no secret: %s", errOut)
		require.Len(t, sink.deliveries(), n)
	})
}
