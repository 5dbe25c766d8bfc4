package store

// The outbox to the merchant's systems (the events table). A state change
// calls tx.Emit inside the transaction that makes it; just before that
// transaction commits, the store renders each emitted event's payload (the
// object as the admin API shows it, read inside the same transaction) and
// inserts the rows, so an event exists exactly when its change committed.
// The events worker (internal/events) claims and delivers them.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// EventRef is what an emitted event is about, as the emitting transaction
// knows it: the object's row id (a subscription, invoice or dunning case,
// by Type.ObjectType()), and what some types carry beside the object.
type EventRef struct {
	Type     models.EventType
	ObjectID int64
	// RefundID is the refund an invoice.refunded event reports.
	RefundID int64
	// PreviousPaymentMethod is the row id of the card a
	// payment_method.replaced event replaced (0 when unknown).
	PreviousPaymentMethod int64
}

// EventPayload is a rendered event: the object's public name and
// subscription (delivery order), and the payload's data.
type EventPayload struct {
	// ObjectRef is the object's public name (reference, order id, case id).
	ObjectRef string
	// SubscriptionID and SubscriptionRef are the subscription the object
	// belongs to.
	SubscriptionID  int64
	SubscriptionRef string
	// Data is the payload's "data": {"object": …} and the type's extras.
	Data map[string]any
}

// EventRenderer renders the payloads of a transaction's events inside it,
// all at once (a billing pass's page emits hundreds: their objects are read
// with one query per kind, not one each). It lives with the admin API's
// views (internal/ops) so that an event's object is exactly what the
// merchant's API shows for it; the store only calls it. The payloads come
// back in the order of refs.
type EventRenderer interface {
	RenderEvents(tx *Tx, refs []EventRef) ([]EventPayload, error)
}

// EventOptions turn the outbox on (Options.Events). Without them Emit is a
// no-op: with no events.url nothing would ever drain the table.
type EventOptions struct {
	Renderer EventRenderer
	// Clock stamps the events; nil is the wall clock. The daemon passes its
	// own so that a simulated run's events carry simulated times.
	Clock interface{ Now() time.Time }
}

// SetEventClock makes the events' times come from clk (the daemon's, so
// that a simulated run's events carry simulated times). Call it before the
// store is used.
func (s *Store) SetEventClock(clk interface{ Now() time.Time }) {
	if s.events != nil {
		e := *s.events
		e.Clock = clk
		s.events = &e
	}
}

// eventBody is the JSON POSTed to the merchant (docs/events.md).
type eventBody struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	CreatedAt    time.Time      `json:"created_at"`
	ObjectType   string         `json:"object_type"`
	Subscription string         `json:"subscription"`
	Data         map[string]any `json:"data"`
}

// Emit records that this transaction makes the change ref reports. The row
// is written when the transaction commits (see flushEvents); a transaction
// that rolls back emits nothing. A no-op when the outbox is off.
func (tx *Tx) Emit(ref EventRef) {
	if tx.events == nil {
		return
	}
	tx.emitted = append(tx.emitted, ref)
}

// EventsOn reports whether this transaction records events (events.url is
// set), for callers that would read something only to emit it.
func (tx *Tx) EventsOn() bool { return tx.events != nil }

// flushEvents renders and inserts the events emitted so far. It runs just
// before COMMIT; a long transaction (an import) may call it after each batch
// so that its memory stays bounded. On PostgreSQL it first locks the rows of
// the subscriptions the events belong to (in id order, FOR NO KEY UPDATE, the
// lock the sweep takes), so that two transactions emitting for one
// subscription commit in the order their events' ids say — the order the
// worker delivers them in.
func (tx *Tx) flushEvents() error {
	if tx.events == nil || len(tx.emitted) == 0 {
		return nil
	}
	refs := lastStatusChanges(tx.emitted)
	tx.emitted = nil
	now := time.Now()
	if tx.events.Clock != nil {
		now = tx.events.Clock.Now()
	}
	now = now.UTC()
	payloads, err := tx.events.Renderer.RenderEvents(tx, refs)
	if err != nil {
		return fmt.Errorf("store: render events: %w", err)
	}
	for i, p := range payloads {
		if p.SubscriptionID == 0 {
			ref := refs[i]
			return fmt.Errorf("store: %s event of %s %d has no subscription", ref.Type, ref.Type.ObjectType(), ref.ObjectID)
		}
	}
	if tx.dialect == Postgres {
		ids := make([]int64, 0, len(payloads))
		seen := map[int64]bool{}
		for _, p := range payloads {
			if !seen[p.SubscriptionID] {
				seen[p.SubscriptionID] = true
				ids = append(ids, p.SubscriptionID)
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		var locked []int64
		if err := tx.db.Raw(`SELECT id FROM subscriptions WHERE id IN ? ORDER BY id FOR NO KEY UPDATE`, ids).Scan(&locked).Error; err != nil {
			return fmt.Errorf("store: lock subscriptions for their events: %w", err)
		}
	}
	for i, ref := range refs {
		p := payloads[i]
		publicID, err := NewPublicID("evt")
		if err != nil {
			return err
		}
		body, err := json.Marshal(eventBody{ID: publicID, Type: string(ref.Type), CreatedAt: now,
			ObjectType: string(ref.Type.ObjectType()), Subscription: p.SubscriptionRef, Data: p.Data})
		if err != nil {
			return fmt.Errorf("store: encode %s event: %w", ref.Type, err)
		}
		if _, err := tx.exec(`INSERT INTO events (public_id, type, object_type, object_id, object_ref, subscription_id, body,
		        status, next_attempt_at, occurred_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
			publicID, string(ref.Type), string(ref.Type.ObjectType()), ref.ObjectID, p.ObjectRef, p.SubscriptionID, string(body),
			string(models.EventPending), now, now, now, now); err != nil {
			return fmt.Errorf("store: insert %s event: %w", ref.Type, err)
		}
	}
	return nil
}

// lastStatusChanges drops each subscription status event that a later one
// about the same subscription supersedes in the same transaction (a cancel
// that first voids the owed invoice passes through active on its way to
// canceled): the merchant never saw the middle state, and its event would
// carry the final snapshot under the wrong name.
func lastStatusChanges(refs []EventRef) []EventRef {
	last := map[int64]int{}
	for i, r := range refs {
		if r.Type.SubscriptionStatusChange() {
			last[r.ObjectID] = i
		}
	}
	out := refs[:0:0]
	for i, r := range refs {
		if r.Type.SubscriptionStatusChange() && last[r.ObjectID] != i {
			continue
		}
		out = append(out, r)
	}
	return out
}

// ClaimDueEvents leases up to limit events to deliver now: pending, due, with
// a free or expired lease, and each the oldest pending event of its
// subscription (a later one waits until the earlier is delivered or failed).
// On PostgreSQL the rows are locked with SKIP LOCKED, so several instances
// split the queue; a subscription's next event becomes claimable only once
// the one before it was finished, so they never overtake each other. The
// events are written by the pass that is running (its invoices' and outcomes'),
// ahead of the planner's statistics, so the probe is fenced (probeFence) to
// stay a per-row index lookup instead of an anti join over every pending event.
func (s *Store) ClaimDueEvents(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]models.Event, error) {
	now, leaseUntil = now.UTC(), leaseUntil.UTC()
	if limit <= 0 {
		limit = 1
	}
	var claimed []models.Event
	err := s.InTx(ctx, func(tx *Tx) error {
		q := `SELECT * FROM events e
		       WHERE e.status = 'pending' AND e.next_attempt_at <= ?
		         AND (e.lease_until IS NULL OR e.lease_until <= ?)
		         AND NOT EXISTS (SELECT 1 FROM events p
		                          WHERE p.subscription_id = e.subscription_id AND p.status = 'pending' AND p.id < e.id` + tx.probeFence() + `)
		       ORDER BY e.next_attempt_at, e.id LIMIT ?` + tx.forUpdateSkipLocked()
		var err error
		claimed, err = claimRows[models.Event](tx, "events", q, []any{now, now, limit}, owner, leaseUntil, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim due events: %w", err)
	}
	return claimed, nil
}

// EventTry is the result of one POST of an event.
type EventTry struct {
	// Status is the HTTP status of the answer (0: none came).
	Status int
	// Error says what went wrong ("" for a 2xx).
	Error string
	// Delivered is set for a 2xx answer.
	Delivered bool
	// NextAttemptAt is when to try again; nil with Delivered false means
	// the event failed for good (its retry period is over).
	NextAttemptAt *time.Time
}

// FinishEvent records a try of a claimed event under the lease it was
// claimed with: delivered, pending again at NextAttemptAt, or failed.
// ErrLeaseLost when another worker took the event over (or it is no longer
// pending): nothing changes.
func (s *Store) FinishEvent(ctx context.Context, now time.Time, e *models.Event, r EventTry) error {
	now = now.UTC()
	status, next, delivered := models.EventFailed, e.NextAttemptAt, (*time.Time)(nil)
	switch {
	case r.Delivered:
		status, delivered = models.EventDelivered, &now
	case r.NextAttemptAt != nil:
		status, next = models.EventPending, r.NextAttemptAt.UTC()
	}
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		n, err = tx.exec(`UPDATE events SET status = ?, attempts = attempts + 1, next_attempt_at = ?, last_status = ?, last_error = ?,
		                         delivered_at = COALESCE(?, delivered_at), lease_owner = '', lease_until = NULL, updated_at = ?
		                   WHERE id = ? AND status = 'pending' AND lease_version = ?`,
			string(status), next, r.Status, truncateError(r.Error), delivered, now, e.ID, e.LeaseVersion)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: finish event %d: %w", e.ID, err)
	}
	if n != 1 {
		return ErrLeaseLost
	}
	e.Status, e.NextAttemptAt, e.LastStatus, e.LastError, e.Attempts = status, next, r.Status, r.Error, e.Attempts+1
	if delivered != nil {
		e.DeliveredAt = delivered
	}
	return nil
}

// RecordRedelivery records an operator's redelivery of an event, outside the
// queue: a 2xx makes a failed (or pending) event delivered; another answer
// leaves its status alone and notes the error. Delivered events stay
// delivered either way.
func (s *Store) RecordRedelivery(ctx context.Context, now time.Time, id int64, r EventTry) error {
	return s.InTx(ctx, func(tx *Tx) error { return tx.RecordRedelivery(now, id, r) })
}

// RecordRedelivery is Store.RecordRedelivery inside the caller's
// transaction, so that an operator's redelivery and its audit row commit
// together.
func (tx *Tx) RecordRedelivery(now time.Time, id int64, r EventTry) error {
	now = now.UTC()
	if r.Delivered {
		_, err := tx.exec(`UPDATE events SET status = 'delivered', attempts = attempts + 1, last_status = ?, last_error = '',
		                          delivered_at = ?, updated_at = ? WHERE id = ?`, r.Status, now, now, id)
		return err
	}
	_, err := tx.exec(`UPDATE events SET attempts = attempts + 1, last_status = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		r.Status, truncateError(r.Error), now, id)
	return err
}

// EventRow reads one event inside the caller's transaction; nil when there
// is none.
func (tx *Tx) EventRow(id int64) (*models.Event, error) {
	return one[models.Event](tx.db.Where("id = ?", id))
}

// maxEventError bounds the stored error text of a try (a receiver's 500 page
// is not worth keeping whole).
const maxEventError = 500

func truncateError(s string) string {
	if len(s) <= maxEventError {
		return s
	}
	return s[:maxEventError]
}

// EventFilter narrows an events listing; zero fields match everything.
type EventFilter struct {
	Types    []string
	Statuses []string
	// ObjectRef is an object's public name (subscription reference, invoice
	// order id); SubscriptionRef keeps one subscription's events.
	ObjectRef       string
	SubscriptionRef string
	// From (inclusive) and To (exclusive) bound the time the event occurred.
	From, To *time.Time
	// AfterID pages: only events with a larger id.
	AfterID int64
	// Limit caps the rows (0: 100).
	Limit int
}

// ListEvents lists events oldest first (by id: the order they were written).
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]models.Event, error) {
	q := s.db.WithContext(ctx).Model(&models.Event{})
	if len(f.Types) > 0 {
		q = q.Where("type IN ?", f.Types)
	}
	if len(f.Statuses) > 0 {
		q = q.Where("status IN ?", f.Statuses)
	}
	if f.ObjectRef != "" {
		q = q.Where("object_ref = ?", f.ObjectRef)
	}
	if f.SubscriptionRef != "" {
		q = q.Where("subscription_id = (SELECT id FROM subscriptions WHERE reference = ?)", f.SubscriptionRef)
	}
	if f.From != nil {
		q = q.Where("occurred_at >= ?", f.From.UTC())
	}
	if f.To != nil {
		q = q.Where("occurred_at < ?", f.To.UTC())
	}
	if f.AfterID > 0 {
		q = q.Where("id > ?", f.AfterID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []models.Event
	err := q.Order("id").Limit(limit).Find(&out).Error
	return out, err
}

// EventByPublicID loads one event by its evt_ id; nil when there is none.
func (s *Store) EventByPublicID(ctx context.Context, publicID string) (*models.Event, error) {
	return one[models.Event](s.db.WithContext(ctx).Where("public_id = ?", publicID))
}

// EventCounts is how many events are in each status.
func (s *Store) EventCounts(ctx context.Context) (map[models.EventStatus]int64, error) {
	var rows []struct {
		Status models.EventStatus
		N      int64
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT status, COUNT(*) AS n FROM events GROUP BY status`).Scan(&rows).Error; err != nil {
		return nil, err
	}
	out := map[models.EventStatus]int64{}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// OldestUndeliveredEventAge is how long the oldest pending event has waited
// since it occurred (0 when none waits): the alert for a receiver that stopped
// answering. Both partial indexes on pending events are small, so this reads
// few rows however many were delivered.
func (s *Store) OldestUndeliveredEventAge(ctx context.Context, now time.Time) (time.Duration, error) {
	var oldest []models.Event
	err := s.db.WithContext(ctx).Where("status = ?", models.EventPending).Order("id").Limit(1).Find(&oldest).Error
	if err != nil || len(oldest) == 0 {
		return 0, err
	}
	return max(now.Sub(oldest[0].OccurredAt), 0), nil
}

// RefundRow reads one refund inside the caller's transaction (an event's
// snapshot); nil when there is none.
func (tx *Tx) RefundRow(id int64) (*models.Refund, error) {
	return one[models.Refund](tx.db.Where("id = ?", id))
}

// PaymentMethodRow reads one saved card inside the caller's transaction (an
// event's snapshot); nil when there is none.
func (tx *Tx) PaymentMethodRow(id int64) (*models.PaymentMethod, error) {
	return one[models.PaymentMethod](tx.db.Where("id = ?", id))
}
