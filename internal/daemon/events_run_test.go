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
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
)

// delivery is one POST the receiver got.
type delivery struct {
	id, typ, signature string
	body               []byte
	code               int
	at                 time.Time
}

// receiver is the merchant's endpoint in a test: it records every POST with
// the simulated time it arrived at and answers answer(at, event id) (200
// when nil).
type receiver struct {
	mu     sync.Mutex
	got    []delivery
	answer func(at time.Time, id string) int
	clock  func() time.Time
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{clock: time.Now}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		d := delivery{id: req.Header.Get("Billingd-Event-Id"), typ: req.Header.Get("Billingd-Event-Type"),
			signature: req.Header.Get(events.SignatureHeader), body: body, code: http.StatusOK, at: r.clock()}
		if r.answer != nil {
			d.code = r.answer(d.at, d.id)
		}
		r.got = append(r.got, d)
		r.mu.Unlock()
		w.WriteHeader(d.code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// configure points events.url at the receiver.
func (r *receiver) configure(more ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Events.URL = r.srv.URL + "/billingd"
		c.Events.Secret = config.Secret(testEventsSecret)
		for _, f := range more {
			f(c)
		}
	}
}

// reset forgets what was received and answers 200 again, for the next
// database of daemontest.Each.
func (r *receiver) reset(b *daemontest.Bundle) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got, r.answer, r.clock = nil, nil, b.Clock.Now
}

// accepted returns the deliveries answered 2xx, in arrival order.
func (r *receiver) accepted() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.got {
		if d.code/100 == 2 {
			out = append(out, d)
		}
	}
	return out
}

// tries counts the POSTs of one event.
func (r *receiver) tries(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.got {
		if d.id == id {
			n++
		}
	}
	return n
}

// allEvents lists the events table in id order.
func allEvents(t *testing.T, b *daemontest.Bundle) []models.Event {
	return eventsAfter(t, b, 0)
}

// requireDeliveredOnceInOrder checks what the receiver accepted against the
// events table: every event accepted exactly once with its stored body,
// signed with the secret at the simulated time it was sent, and each
// subscription's events accepted in the order they were written.
func requireDeliveredOnceInOrder(t *testing.T, b *daemontest.Bundle, r *receiver) []models.Event {
	t.Helper()
	evs := allEvents(t, b)
	require.NotEmpty(t, evs)
	byPublic := map[string]models.Event{}
	for _, e := range evs {
		require.Equal(t, models.EventDelivered, e.Status, "event %s %s is %s", e.PublicID, e.Type, e.Status)
		byPublic[e.PublicID] = e
	}
	seen := map[string]bool{}
	last := map[int64]int64{} // subscription -> id of its last accepted event
	for _, d := range r.accepted() {
		e, ok := byPublic[d.id]
		require.True(t, ok, "the receiver got an event %s the database does not have", d.id)
		require.False(t, seen[d.id], "event %s (%s) accepted twice", d.id, d.typ)
		seen[d.id] = true
		require.Equal(t, e.Body, string(d.body))
		require.Equal(t, string(e.Type), d.typ)
		require.NoError(t, events.Verify(d.signature, d.body, testEventsSecret, d.at, 5*time.Minute), "signature of %s", d.id)
		require.Greater(t, e.ID, last[e.SubscriptionID], "subscription %d: %s (%s) arrived after a later event", e.SubscriptionID, d.id, d.typ)
		last[e.SubscriptionID] = e.ID
	}
	require.Len(t, seen, len(evs), "every event was accepted")
	return evs
}

// countByObject counts events of typ per object id.
func countByObject(evs []models.Event, typ models.EventType) map[int64]int {
	out := map[int64]int{}
	for _, e := range evs {
		if e.Type == typ {
			out[e.ObjectID]++
		}
	}
	return out
}

// requireOncePer requires exactly one event of typ for each of ids and none
// for any other object.
func requireOncePer(t *testing.T, evs []models.Event, typ models.EventType, ids []int64) {
	t.Helper()
	got := countByObject(evs, typ)
	want := map[int64]int{}
	for _, id := range ids {
		want[id] = 1
	}
	require.Equal(t, want, got, "one %s per object", typ)
}

// idsWhere returns the ids of table's rows matching where.
func idsWhere(t *testing.T, b *daemontest.Bundle, table, where string, args ...any) []int64 {
	t.Helper()
	var ids []int64
	q := `SELECT id FROM ` + table
	if where != "" {
		q += ` WHERE ` + where
	}
	require.NoError(t, b.Store.DB().Raw(q+` ORDER BY id`, args...).Scan(&ids).Error)
	return ids
}

// forty days of billing with every test card of the simulator (successes,
// 3-D Secure, soft and hard declines, a charge that settles by webhook): the
// receiver accepts every event once, each subscription's in the order they
// were written, every signature verifies, and the events match the database
// — one subscription.created per subscription, one invoice.created per
// invoice, one invoice.paid per paid invoice, one dunning.opened per case,
// one close per closed case, one invoice.uncollectible per written-off
// invoice and one subscription.canceled per canceled subscription.
func TestEventsOfFortyDaysWithEveryTestCard(t *testing.T) {
	r := newReceiver(t)
	daemontest.Each(t, daemontest.Options{NoMail: true, Configure: r.configure()}, func(t *testing.T, b *daemontest.Bundle) {
		r.reset(b)
		for i, c := range sim.TestCards {
			cus, pm := b.SaveCard(t, c.Number)
			b.Seed(t, storetest.Subscription{Reference: "card-" + c.Number, Customer: cus, PaymentMethod: pm, Amount: int64(1000 + i),
				Currency: "USD", Interval: "week", Anchor: b.Clock.Now()})
		}
		b.Run(t, 40*24*time.Hour, 4*time.Hour)
		// The last changes' events go out within the events job's next runs.
		b.Run(t, time.Minute, 5*time.Second)

		evs := requireDeliveredOnceInOrder(t, b, r)
		requireOncePer(t, evs, models.EventSubscriptionCreated, idsWhere(t, b, "subscriptions", ""))
		requireOncePer(t, evs, models.EventInvoiceCreated, idsWhere(t, b, "invoices", ""))
		requireOncePer(t, evs, models.EventInvoicePaid, idsWhere(t, b, "invoices", "status = 'paid'"))
		requireOncePer(t, evs, models.EventInvoiceUncollectible, idsWhere(t, b, "invoices", "status = 'uncollectible'"))
		requireOncePer(t, evs, models.EventDunningOpened, idsWhere(t, b, "dunning_cases", ""))
		requireOncePer(t, evs, models.EventDunningRecovered, idsWhere(t, b, "dunning_cases", "status = 'recovered'"))
		requireOncePer(t, evs, models.EventDunningExhausted, idsWhere(t, b, "dunning_cases", "status = 'exhausted'"))
		requireOncePer(t, evs, models.EventSubscriptionCanceled, idsWhere(t, b, "subscriptions", "status = 'canceled'"))
		// The run had every kind of outcome.
		for _, typ := range []models.EventType{models.EventInvoicePaid, models.EventDunningOpened, models.EventDunningExhausted,
			models.EventSubscriptionPastDue, models.EventSubscriptionCanceled, models.EventInvoiceUncollectible} {
			require.NotEmpty(t, countByObject(evs, typ), "the run had a %s", typ)
		}
		// A subscription's events tell its story in order: created first,
		// and no change of the subscription after canceled (the invoices
		// written off with it may follow).
		bySub := map[int64][]models.EventType{}
		for _, e := range evs {
			bySub[e.SubscriptionID] = append(bySub[e.SubscriptionID], e.Type)
		}
		for sub, types := range bySub {
			require.Equal(t, models.EventSubscriptionCreated, types[0], "subscription %d", sub)
			canceled := false
			for _, typ := range types {
				if canceled {
					require.NotEqual(t, models.EventObjectSubscription, typ.ObjectType(), "subscription %d after canceled: %v", sub, types)
				}
				canceled = canceled || typ == models.EventSubscriptionCanceled
			}
		}
	})
}

// A receiver that answers 500 for an hour of simulated time, then 200: the
// worker backs off (30s doubling) and every event is accepted exactly once,
// in order per subscription; the first events were tried about 7 times.
func TestEventsSurviveAnHourOfReceiverErrors(t *testing.T) {
	r := newReceiver(t)
	daemontest.Each(t, daemontest.Options{NoMail: true, Configure: r.configure()}, func(t *testing.T, b *daemontest.Bundle) {
		r.reset(b)
		down := b.Clock.Now().Add(time.Hour)
		r.mu.Lock()
		r.answer = func(at time.Time, _ string) int {
			if at.Before(down) {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		}
		r.mu.Unlock()
		for _, number := range []string{cardPays, cardDeclines, "4111111111111111"} {
			cus, pm := b.SaveCard(t, number)
			b.Seed(t, storetest.Subscription{Reference: "down-" + number, Customer: cus, PaymentMethod: pm, Currency: "USD", Anchor: b.Clock.Now()})
		}
		b.Run(t, 3*time.Hour, time.Minute)

		evs := requireDeliveredOnceInOrder(t, b, r)
		first := evs[0]
		tries := r.tries(first.PublicID)
		require.GreaterOrEqual(t, tries, 7, "an hour of 500s is about 7 tries")
		require.LessOrEqual(t, tries, 9)
		require.Equal(t, tries, first.Attempts)
		require.False(t, first.DeliveredAt.Before(down), "nothing was accepted while the receiver failed")
	})
}

// An event the receiver never accepts becomes failed once its next try
// would fall after events.retry_for, and then stops holding back the
// subscription's later events, which are delivered in order; another
// subscription's events were never held back by it.
func TestEventNeverAcceptedFailsAndReleasesTheRest(t *testing.T) {
	r := newReceiver(t)
	retryFor := time.Hour
	daemontest.Each(t, daemontest.Options{NoMail: true, Configure: r.configure(func(c *config.Config) { c.Events.RetryFor = config.Duration(retryFor) })},
		func(t *testing.T, b *daemontest.Bundle) {
			r.reset(b)
			start := b.Clock.Now()
			stuck := seedSub(t, b, "stuck", cardPays)
			created := allEvents(t, b)
			require.Len(t, created, 1)
			poison := created[0].PublicID
			r.mu.Lock()
			r.answer = func(_ time.Time, id string) int {
				if id == poison {
					return http.StatusBadRequest
				}
				return http.StatusOK
			}
			r.mu.Unlock()
			other := seedSub(t, b, "other", cardPays)
			b.Run(t, 2*time.Hour, time.Minute)

			evs := allEvents(t, b)
			var failed models.Event
			var stuckLater, otherEvents []models.Event
			for _, e := range evs {
				switch {
				case e.PublicID == poison:
					failed = e
				case e.SubscriptionID == stuck.ID:
					stuckLater = append(stuckLater, e)
				case e.SubscriptionID == other.ID:
					otherEvents = append(otherEvents, e)
				}
			}
			require.Equal(t, models.EventFailed, failed.Status)
			require.Equal(t, failed.Attempts, r.tries(poison))
			require.Less(t, failed.UpdatedAt.Sub(start), retryFor, "failed within the retry period")
			require.NotEmpty(t, stuckLater, "the stuck subscription was billed")
			require.NotEmpty(t, otherEvents)
			for _, e := range stuckLater {
				require.Equal(t, models.EventDelivered, e.Status, "%s", e.Type)
				require.False(t, e.DeliveredAt.Before(failed.UpdatedAt), "%s was held back until the event before it failed", e.Type)
			}
			for _, e := range otherEvents {
				require.Equal(t, models.EventDelivered, e.Status)
				require.LessOrEqual(t, e.DeliveredAt.Sub(e.OccurredAt), 2*time.Minute, "another subscription's %s was not held back", e.Type)
			}
			// What the receiver accepted came in order per subscription.
			last := map[int64]int64{}
			ids := map[string]models.Event{}
			for _, e := range evs {
				ids[e.PublicID] = e
			}
			for _, d := range r.accepted() {
				e := ids[d.id]
				require.Greater(t, e.ID, last[e.SubscriptionID])
				last[e.SubscriptionID] = e.ID
			}
		})
}

// eventObject is the data.object of an event's body, decoded.
func eventObject(t *testing.T, e models.Event) map[string]any {
	t.Helper()
	var body struct {
		Data struct {
			Object map[string]any `json:"object"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(e.Body), &body))
	require.NotEmpty(t, body.Data.Object)
	return body.Data.Object
}

// asJSONMap is v as its JSON object, decoded.
func asJSONMap(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

// onlyEvent is the one event of typ about objectID.
func onlyEvent(t *testing.T, b *daemontest.Bundle, typ models.EventType, objectID int64) models.Event {
	t.Helper()
	var out []models.Event
	for _, e := range allEvents(t, b) {
		if e.Type == typ && e.ObjectID == objectID {
			out = append(out, e)
		}
	}
	require.Len(t, out, 1, "%s of %d", typ, objectID)
	return out[0]
}

// An event's object is the admin API's view of it at the moment of the
// change: invoice.paid carries the invoice as GET /v1/invoices/{number}
// shows it right after the payment (status paid), subscription.created and
// subscription.paused the subscription as GET /v1/subscriptions/{reference}
// shows it then.
func TestEventPayloadIsTheAdminView(t *testing.T) {
	r := newReceiver(t)
	daemontest.Each(t, daemontest.Options{NoMail: true, Configure: r.configure()}, func(t *testing.T, b *daemontest.Bundle) {
		r.reset(b)
		ctx := context.Background()
		op := b.D.Ops()
		sub := seedSub(t, b, "snap", cardPays)
		story, err := op.SubscriptionStoryOf(ctx, sub.Reference)
		require.NoError(t, err)
		require.Equal(t, asJSONMap(t, story.Subscription), eventObject(t, onlyEvent(t, b, models.EventSubscriptionCreated, sub.ID)))

		b.Run(t, 0, 0)
		inv := invoicesOf(t, b, sub.ID)[0]
		require.Equal(t, models.InvoicePaid, inv.Status)
		invStory, err := op.InvoiceStoryOf(ctx, inv.PublicID)
		require.NoError(t, err)
		obj := eventObject(t, onlyEvent(t, b, models.EventInvoicePaid, inv.ID))
		require.Equal(t, "paid", obj["status"])
		require.Equal(t, asJSONMap(t, invStory.Invoice), obj)

		_, err = op.PauseSubscription(ctx, eventActor, sub.Reference, "snapshot")
		require.NoError(t, err)
		story, err = op.SubscriptionStoryOf(ctx, sub.Reference)
		require.NoError(t, err)
		obj = eventObject(t, onlyEvent(t, b, models.EventSubscriptionPaused, sub.ID))
		require.Equal(t, "paused", obj["status"])
		require.Equal(t, asJSONMap(t, story.Subscription), obj)
	})
}
