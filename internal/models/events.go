package models

import "time"

// EventType names a state change the merchant's systems act on: the app that
// grants access to the product listens for subscription changes, the
// accounting system for invoice changes. The names are a public contract
// (docs/events.md): a type is added beside the others, never renamed.
type EventType string

// The event catalogue (docs/events.md shows a payload of each).
const (
	// EventSubscriptionCreated: a subscription was imported or created
	// through the admin API.
	EventSubscriptionCreated EventType = "subscription.created"
	// EventSubscriptionPastDue: a charge of the subscription did not
	// complete; dunning is trying to recover it.
	EventSubscriptionPastDue EventType = "subscription.past_due"
	// EventSubscriptionUnpaid: dunning gave up with final_action unpaid; the
	// subscription is no longer billed.
	EventSubscriptionUnpaid EventType = "subscription.unpaid"
	// EventSubscriptionPaused: an operator paused the subscription.
	EventSubscriptionPaused EventType = "subscription.paused"
	// EventSubscriptionResumed: an operator resumed a paused subscription.
	EventSubscriptionResumed EventType = "subscription.resumed"
	// EventSubscriptionReactivated: a past_due or unpaid subscription is
	// active again because nothing is owed any more (its invoice was paid or
	// voided). The merchant's app restores access on it.
	EventSubscriptionReactivated EventType = "subscription.reactivated"
	// EventSubscriptionCanceled: the subscription ended (an operator, a
	// cancel at period end reaching its date, or dunning's final action).
	EventSubscriptionCanceled EventType = "subscription.canceled"

	// EventInvoiceCreated: a billing pass invoiced a period.
	EventInvoiceCreated EventType = "invoice.created"
	// EventInvoicePaid: the invoice was collected.
	EventInvoicePaid EventType = "invoice.paid"
	// EventInvoiceReopened: a payment the invoice was paid with was reversed
	// at the gateway (a capture declined after a success), so it is owed
	// again.
	EventInvoiceReopened EventType = "invoice.reopened"
	// EventInvoiceUncollectible: dunning wrote the invoice off.
	EventInvoiceUncollectible EventType = "invoice.uncollectible"
	// EventInvoiceVoided: an operator voided the invoice (or canceled its
	// subscription); it is not owed.
	EventInvoiceVoided EventType = "invoice.voided"
	// EventInvoiceRefunded: money of the invoice's payment went back to the
	// customer (an operator's refund, the refund of a duplicate charge or of
	// a late success on a void invoice); the payload carries the refund.
	EventInvoiceRefunded EventType = "invoice.refunded"

	// EventDunningOpened: an invoice's charge failed and recovery began.
	EventDunningOpened EventType = "dunning.opened"
	// EventDunningRecovered: the invoice of an open case was paid.
	EventDunningRecovered EventType = "dunning.recovered"
	// EventDunningExhausted: the schedule ran out; the final action applied.
	EventDunningExhausted EventType = "dunning.exhausted"

	// EventPaymentMethodExpiring: the card on file expires before the next
	// charge; the customer was emailed a card-update link.
	EventPaymentMethodExpiring EventType = "payment_method.expiring"
	// EventPaymentMethodReplaced: the subscription charges another card from
	// now on (the customer's card update, or an operator's).
	EventPaymentMethodReplaced EventType = "payment_method.replaced"
)

// EventTypes lists the catalogue in documentation order: `billingd events
// list --type` and the admin API accept exactly these names.
var EventTypes = []EventType{
	EventSubscriptionCreated, EventSubscriptionPastDue, EventSubscriptionUnpaid, EventSubscriptionPaused,
	EventSubscriptionResumed, EventSubscriptionReactivated, EventSubscriptionCanceled,
	EventInvoiceCreated, EventInvoicePaid, EventInvoiceReopened, EventInvoiceUncollectible, EventInvoiceVoided,
	EventInvoiceRefunded,
	EventDunningOpened, EventDunningRecovered, EventDunningExhausted,
	EventPaymentMethodExpiring, EventPaymentMethodReplaced,
}

// Known reports whether t is in the catalogue.
func (t EventType) Known() bool {
	for _, k := range EventTypes {
		if t == k {
			return true
		}
	}
	return false
}

// SubscriptionStatusChange reports whether t says a subscription moved into
// a status (not created, not a card change). Of several such events about
// one subscription in one transaction only the last is the merchant's news:
// the states before it were never committed, and every event's snapshot is
// the committed one.
func (t EventType) SubscriptionStatusChange() bool {
	switch t {
	case EventSubscriptionPastDue, EventSubscriptionUnpaid, EventSubscriptionPaused, EventSubscriptionResumed,
		EventSubscriptionReactivated, EventSubscriptionCanceled:
		return true
	}
	return false
}

// EventObjectType is the kind of object an event's payload is a snapshot of.
type EventObjectType string

// Objects events are about.
const (
	EventObjectSubscription EventObjectType = "subscription"
	EventObjectInvoice      EventObjectType = "invoice"
	EventObjectDunningCase  EventObjectType = "dunning_case"
)

// ObjectType is the object an event of this type is about: a
// payment_method event carries its subscription (the card is part of it).
func (t EventType) ObjectType() EventObjectType {
	switch t {
	case EventInvoiceCreated, EventInvoicePaid, EventInvoiceReopened, EventInvoiceUncollectible,
		EventInvoiceVoided, EventInvoiceRefunded:
		return EventObjectInvoice
	case EventDunningOpened, EventDunningRecovered, EventDunningExhausted:
		return EventObjectDunningCase
	}
	return EventObjectSubscription
}

// EventStatus is the delivery state of one event (see docs/state-machines.md).
type EventStatus string

const (
	// EventPending events wait to be POSTed to events.url (for the first
	// time, or again after a failed try at next_attempt_at). The oldest
	// pending event of a subscription holds back that subscription's later
	// ones, so a merchant never sees them out of order.
	EventPending EventStatus = "pending"
	// EventDelivered events were answered 2xx.
	EventDelivered EventStatus = "delivered"
	// EventFailed events were never answered 2xx within the retry period
	// (events.retry_for); they no longer hold back the subscription's later
	// events, are counted and alerted on, and `billingd events redeliver`
	// sends them again.
	EventFailed EventStatus = "failed"
)

// Event is one row of the outbox to the merchant's systems, written in the
// transaction of the state change it reports. Body is the exact JSON POSTed
// (the snapshot of the object at that change), so a redelivery sends the
// same bytes.
type Event struct {
	ID int64 `gorm:"primaryKey"`
	// PublicID is the event's stable id (evt_…), the receiver's dedupe key.
	PublicID   string
	Type       EventType
	ObjectType EventObjectType
	ObjectID   int64
	// ObjectRef is the object's public name: the subscription's reference,
	// the invoice's order id, the dunning case's id.
	ObjectRef string
	// SubscriptionID orders delivery: one subscription's events go out in
	// the order they were written.
	SubscriptionID int64
	Body           string
	Status         EventStatus
	Attempts       int
	NextAttemptAt  time.Time
	// LastStatus is the HTTP status of the last try (0: no answer).
	LastStatus   int
	LastError    string
	LeaseOwner   string
	LeaseUntil   *time.Time
	LeaseVersion int64
	DeliveredAt  *time.Time
	OccurredAt   time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// TableName pins the table name.
func (Event) TableName() string { return "events" }

// RowID implements Leased.
func (e *Event) RowID() int64 { return e.ID }

// TakeLease implements Leased.
func (e *Event) TakeLease(owner string, until time.Time) {
	e.LeaseOwner, e.LeaseUntil = owner, &until
	e.LeaseVersion++
}
