package ops

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// EventRenderer renders the payload of the events the store emits (the
// outbox to the merchant's systems) from the same views the admin API
// returns, so that an event's "object" is exactly what GET
// /v1/subscriptions/{reference}, /v1/invoices/{number} or
// /v1/dunning/{id} shows at the moment of the change. The daemon hands it to
// the store when events.url is set.
type EventRenderer struct{}

// RenderEvents implements store.EventRenderer. It reads inside the emitting
// transaction, so each snapshot is the state that transaction commits: the
// cases first (a dunning event carries its invoice), then every invoice and
// every subscription of the batch with one query each.
func (EventRenderer) RenderEvents(tx *store.Tx, refs []store.EventRef) ([]store.EventPayload, error) {
	var caseIDs, invoiceIDs, subIDs []int64
	for _, ref := range refs {
		switch ref.Type.ObjectType() {
		case models.EventObjectDunningCase:
			caseIDs = append(caseIDs, ref.ObjectID)
		case models.EventObjectInvoice:
			invoiceIDs = append(invoiceIDs, ref.ObjectID)
		default:
			subIDs = append(subIDs, ref.ObjectID)
		}
	}
	cases, err := tx.CaseListings(caseIDs)
	if err != nil {
		return nil, err
	}
	for _, c := range cases {
		invoiceIDs = append(invoiceIDs, c.InvoiceID)
	}
	invoices, err := tx.InvoiceListings(invoiceIDs)
	if err != nil {
		return nil, err
	}
	subs, err := tx.SubscriptionDetails(subIDs)
	if err != nil {
		return nil, err
	}
	out := make([]store.EventPayload, len(refs))
	for i, ref := range refs {
		if out[i], err = renderEvent(tx, ref, cases, invoices, subs); err != nil {
			return nil, fmt.Errorf("%s event of %s %d: %w", ref.Type, ref.Type.ObjectType(), ref.ObjectID, err)
		}
	}
	return out, nil
}

// renderEvent is one event's payload from the objects RenderEvents read;
// a refund or a replaced card, which few events carry, is read here.
func renderEvent(tx *store.Tx, ref store.EventRef, cases map[int64]store.CaseListing, invoices map[int64]store.InvoiceListing,
	subs map[int64]store.SubscriptionDetail) (store.EventPayload, error) {
	switch ref.Type.ObjectType() {
	case models.EventObjectInvoice:
		inv, ok := invoices[ref.ObjectID]
		if !ok {
			return store.EventPayload{}, errors.New("invoice not found")
		}
		data := map[string]any{"object": invoiceFromListing(inv)}
		if ref.RefundID != 0 {
			rf, err := tx.RefundRow(ref.RefundID)
			if err != nil {
				return store.EventPayload{}, err
			}
			if rf != nil {
				data["refund"] = refundView(rf, inv.PublicID)
			}
		}
		return store.EventPayload{ObjectRef: inv.PublicID, SubscriptionID: inv.SubscriptionID, SubscriptionRef: inv.Reference, Data: data}, nil
	case models.EventObjectDunningCase:
		c, ok := cases[ref.ObjectID]
		if !ok {
			return store.EventPayload{}, errors.New("dunning case not found")
		}
		data := map[string]any{"object": caseFromListing(c)}
		if inv, ok := invoices[c.InvoiceID]; ok {
			data["invoice"] = invoiceFromListing(inv)
		}
		return store.EventPayload{ObjectRef: strconv.FormatInt(c.ID, 10), SubscriptionID: c.SubscriptionID, SubscriptionRef: c.Reference, Data: data}, nil
	default:
		d, ok := subs[ref.ObjectID]
		if !ok {
			return store.EventPayload{}, errors.New("subscription not found")
		}
		data := map[string]any{"object": subscriptionViewOf(&d)}
		if ref.PreviousPaymentMethod != 0 {
			pm, err := tx.PaymentMethodRow(ref.PreviousPaymentMethod)
			if err != nil {
				return store.EventPayload{}, err
			}
			if pm != nil {
				data["previous_card"] = cardOf(pm)
			}
		}
		return store.EventPayload{ObjectRef: d.Reference, SubscriptionID: d.ID, SubscriptionRef: d.Reference, Data: data}, nil
	}
}

// cardOf is the view of a saved card row.
func cardOf(pm *models.PaymentMethod) Card {
	return cardView(pm.GatewayID, pm.Brand, pm.Last4, pm.ExpMonth, pm.ExpYear, pm.DeadAt, pm.DeadReason)
}

// cardView is a card as the views show it: dead with its decline code once
// the gateway called it dead ("dead" when it gave none).
func cardView(gatewayID, brand, last4 string, expMonth, expYear int, deadAt *time.Time, deadReason string) Card {
	card := Card{PaymentMethod: gatewayID, Brand: brand, Last4: last4, ExpMonth: expMonth, ExpYear: expYear}
	if deadAt != nil {
		card.Dead = deadReason
		if card.Dead == "" {
			card.Dead = "dead"
		}
	}
	return card
}
