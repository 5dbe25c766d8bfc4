package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/events"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// ActionEventRedeliver is the audit action of an operator's redelivery of an
// event to events.url.
const ActionEventRedeliver = "event.redeliver"

// TargetEvent is the audit target type of an event (its target_ref is the
// evt_ id).
const TargetEvent = "event"

// Event is one event of the outbox to the merchant's systems as ops read it.
// Body, the exact JSON POSTed, is filled by EventOf (a listing leaves it
// out: a listing of a thousand events is not a thousand payloads).
type Event struct {
	// ID is the event's stable id (evt_…), the receiver's dedupe key.
	ID           string `json:"id"`
	Type         string `json:"type"`
	ObjectType   string `json:"object_type"`
	Object       string `json:"object"`
	Subscription string `json:"subscription"`
	// Status is pending, delivered or failed.
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	// NextAttemptAt is the next try of a pending event.
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	// LastStatus is the HTTP status of the last try (0: no answer).
	LastStatus  int             `json:"last_status"`
	LastError   string          `json:"last_error"`
	OccurredAt  time.Time       `json:"occurred_at"`
	DeliveredAt *time.Time      `json:"delivered_at"`
	Body        json.RawMessage `json:"body,omitempty"`
}

// EventFilter narrows an events listing; zero fields match everything.
type EventFilter struct {
	// Types and Statuses are names of models.EventTypes and event statuses
	// (any of them matches); an unknown name is a FieldError.
	Types    []string
	Statuses []string
	// Subscription is a subscription's reference: its events only.
	Subscription string
	// Object is an event's object (a subscription reference, an invoice
	// number, a dunning case id).
	Object string
	// From (inclusive) and To (exclusive) bound when the events occurred.
	From, To *time.Time
	// After pages: only events written after this one (an evt_ id).
	After string
	// Limit caps the rows (0: 100).
	Limit int
}

// EventStatusNames are the statuses an events listing filters on.
var EventStatusNames = []string{string(models.EventPending), string(models.EventDelivered), string(models.EventFailed)}

// EventTypeNames are the names of models.EventTypes, for messages and help.
func EventTypeNames() []string {
	out := make([]string, len(models.EventTypes))
	for i, t := range models.EventTypes {
		out[i] = string(t)
	}
	return out
}

// CheckEventTypes refuses a name that is not in the catalogue, naming the
// known ones.
func CheckEventTypes(types []string) error {
	for _, t := range types {
		if !models.EventType(t).Known() {
			return &FieldError{Field: "type", Value: t, Message: "is not an event type; known: " + strings.Join(EventTypeNames(), ", ")}
		}
	}
	return nil
}

// checkEventStatuses refuses a status that events do not have.
func checkEventStatuses(statuses []string) error {
	for _, st := range statuses {
		known := false
		for _, k := range EventStatusNames {
			known = known || st == k
		}
		if !known {
			return &FieldError{Field: "status", Value: st, Message: "is not an event status; known: " + strings.Join(EventStatusNames, ", ")}
		}
	}
	return nil
}

// storeEventFilter checks f and turns it into the store's filter.
func (s *Service) storeEventFilter(ctx context.Context, f EventFilter) (store.EventFilter, error) {
	out := store.EventFilter{Types: f.Types, Statuses: f.Statuses, SubscriptionRef: strings.TrimSpace(f.Subscription),
		ObjectRef: strings.TrimSpace(f.Object), From: f.From, To: f.To, Limit: f.Limit}
	if err := CheckEventTypes(f.Types); err != nil {
		return out, err
	}
	if err := checkEventStatuses(f.Statuses); err != nil {
		return out, err
	}
	if f.Limit < 0 {
		return out, &FieldError{Field: "limit", Value: fmt.Sprint(f.Limit), Message: "must not be negative"}
	}
	if f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		return out, &FieldError{Field: "to", Value: f.To.UTC().Format(time.RFC3339), Message: "must be after from"}
	}
	if after := strings.TrimSpace(f.After); after != "" {
		e, err := s.opts.Store.EventByPublicID(ctx, after)
		if err != nil {
			return out, err
		}
		if e == nil {
			return out, &FieldError{Field: "after", Value: after, Message: "is not an event id"}
		}
		out.AfterID = e.ID
	}
	return out, nil
}

// ListEvents lists events oldest first (the order they were written, which
// is the order each subscription's events are delivered in).
func (s *Service) ListEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	sf, err := s.storeEventFilter(ctx, f)
	if err != nil {
		return nil, err
	}
	rows, err := s.opts.Store.ListEvents(ctx, sf)
	if err != nil {
		return nil, err
	}
	out := make([]Event, 0, len(rows))
	for i := range rows {
		out = append(out, eventView(&rows[i], false))
	}
	return out, nil
}

// EventOf is one event with its exact body.
func (s *Service) EventOf(ctx context.Context, id string) (*Event, error) {
	e, err := s.eventRow(ctx, id)
	if err != nil {
		return nil, err
	}
	v := eventView(e, true)
	return &v, nil
}

func (s *Service) eventRow(ctx context.Context, id string) (*models.Event, error) {
	id = strings.TrimSpace(id)
	e, err := s.opts.Store.EventByPublicID(ctx, id)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, notFound("event", id)
	}
	return e, nil
}

// eventView is the view of an event row; withBody adds its exact body. The
// subscription is read from the body: it is what the receiver was sent.
func eventView(e *models.Event, withBody bool) Event {
	v := Event{ID: e.PublicID, Type: string(e.Type), ObjectType: string(e.ObjectType), Object: e.ObjectRef,
		Status: string(e.Status), Attempts: e.Attempts, LastStatus: e.LastStatus, LastError: e.LastError,
		OccurredAt: e.OccurredAt.UTC(), DeliveredAt: utcp(e.DeliveredAt)}
	if e.Status == models.EventPending {
		v.NextAttemptAt = utcp(&e.NextAttemptAt)
	}
	var head struct {
		Subscription string `json:"subscription"`
	}
	if json.Unmarshal([]byte(e.Body), &head) == nil {
		v.Subscription = head.Subscription
	}
	if withBody && json.Valid([]byte(e.Body)) {
		v.Body = json.RawMessage(e.Body)
	}
	return v
}

// EventSelection names the events to redeliver: IDs, or (Failed) every
// failed event, narrowed by Types and the time they occurred.
type EventSelection struct {
	IDs      []string
	Failed   bool
	Types    []string
	From, To *time.Time
}

// Redelivery is what one redelivery did: the HTTP status the receiver
// answered (0: none came), whether that was a 2xx, and the event after it.
type Redelivery struct {
	Event      Event  `json:"event"`
	HTTPStatus int    `json:"http_status"`
	Delivered  bool   `json:"delivered"`
	Error      string `json:"error,omitempty"`
}

// redeliverPage is how many failed events are read at a time.
const redeliverPage = 500

// selectEvents resolves a selection to rows. Every id must name an event
// that can be redelivered (failed or delivered) before anything is sent: a
// typo sends nothing.
func (s *Service) selectEvents(ctx context.Context, sel EventSelection) ([]models.Event, error) {
	if len(sel.IDs) > 0 == sel.Failed {
		return nil, &FieldError{Field: "events", Message: "name event ids, or select the failed events (failed), not both"}
	}
	if len(sel.IDs) > 0 {
		if len(sel.Types) > 0 || sel.From != nil || sel.To != nil {
			return nil, &FieldError{Field: "type", Message: "type, from and to narrow the failed events; with event ids give none of them"}
		}
		out := make([]models.Event, 0, len(sel.IDs))
		seen := map[string]bool{}
		for _, id := range sel.IDs {
			if seen[id] {
				continue
			}
			seen[id] = true
			e, err := s.eventRow(ctx, id)
			if err != nil {
				return nil, err
			}
			if e.Status == models.EventPending {
				return nil, conflictf("event %s is pending: the queue sends it (next try %s), in order with its subscription's other events; redeliver sends failed and delivered events",
					e.PublicID, e.NextAttemptAt.UTC().Format(time.RFC3339))
			}
			out = append(out, *e)
		}
		return out, nil
	}
	f, err := s.storeEventFilter(ctx, EventFilter{Types: sel.Types, Statuses: []string{string(models.EventFailed)}, From: sel.From, To: sel.To, Limit: redeliverPage})
	if err != nil {
		return nil, err
	}
	var out []models.Event
	for {
		rows, err := s.opts.Store.ListEvents(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		if len(rows) < redeliverPage {
			return out, nil
		}
		f.AfterID = rows[len(rows)-1].ID
	}
}

// RedeliverEvents POSTs each selected event again to events.url, now: the
// same id and the same body, freshly signed. Each try is recorded with its
// audit row in one transaction after its POST (no transaction is held
// across the call): a 2xx makes the event delivered, another answer leaves
// its status and notes the error. Failed events no longer hold back their
// subscription's later ones, so a redelivery may arrive after events that
// followed it; receivers order by created_at. Pending events are refused:
// the queue sends them, in order.
//
// It returns one Redelivery per event sent, in the order of the selection;
// an error ends the run (the redeliveries so far are returned with it).
func (s *Service) RedeliverEvents(ctx context.Context, a Actor, reason string, sel EventSelection) ([]Redelivery, error) {
	rows, err := s.selectEvents(ctx, sel)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return []Redelivery{}, nil
	}
	var set events.Settings
	if s.opts.Events != nil {
		set = s.opts.Events()
	}
	if set.URL == "" {
		return nil, &FieldError{Field: "events.url", Message: "is not set: there is no receiver to redeliver to"}
	}
	signing := false
	for _, sec := range set.Secrets {
		signing = signing || sec != ""
	}
	if !signing {
		return nil, &FieldError{Field: "events.secret", Message: "is not set: a redelivery is signed like every delivery"}
	}
	client := s.opts.EventsClient
	if client == nil {
		client = events.NoRedirectClient()
	}
	out := make([]Redelivery, 0, len(rows))
	for i := range rows {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		r, err := s.redeliver(ctx, client, set, a, reason, &rows[i])
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// redeliver sends one event and records the try and its audit row.
func (s *Service) redeliver(ctx context.Context, client *http.Client, set events.Settings, a Actor, reason string, e *models.Event) (Redelivery, error) {
	before := eventView(e, false)
	try := events.Post(ctx, client, set, e, s.now(), "billingd")
	now := s.now()
	var after *models.Event
	// The try happened: it is recorded even when the caller gave up meanwhile.
	err := s.opts.Store.InTx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		if err := tx.RecordRedelivery(now, e.ID, try); err != nil {
			return err
		}
		var err error
		if after, err = tx.EventRow(e.ID); err != nil {
			return err
		}
		if after == nil {
			return notFound("event", e.PublicID)
		}
		res := map[string]any{"event": eventView(after, false), "http_status": try.Status, "delivered": try.Delivered}
		return audit(tx, now, a, reason, Audited{Action: ActionEventRedeliver, TargetType: TargetEvent, TargetID: e.ID,
			TargetRef: e.PublicID, Before: before, After: res})
	})
	if err != nil {
		return Redelivery{}, fmt.Errorf("record the redelivery of %s (HTTP %d): %w", e.PublicID, try.Status, err)
	}
	return Redelivery{Event: eventView(after, false), HTTPStatus: try.Status, Delivered: try.Delivered, Error: try.Error}, nil
}
