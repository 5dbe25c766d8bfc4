package ops

import (
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

// RenderEvent implements store.EventRenderer. It reads inside the emitting
// transaction, so the snapshot is the state that transaction commits.
func (EventRenderer) RenderEvent(tx *store.Tx, ref store.EventRef) (store.EventPayload, error) {
	switch ref.Type.ObjectType() {
	case models.EventObjectInvoice:
		inv, err := tx.InvoiceListing(ref.ObjectID)
		if err != nil {
			return store.EventPayload{}, err
		}
		if inv == nil {
			return store.EventPayload{}, fmt.Errorf("invoice %d not found", ref.ObjectID)
		}
		data := map[string]any{"object": invoiceFromListing(*inv)}
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
		c, err := tx.CaseListing(ref.ObjectID)
		if err != nil {
			return store.EventPayload{}, err
		}
		if c == nil {
			return store.EventPayload{}, fmt.Errorf("dunning case %d not found", ref.ObjectID)
		}
		data := map[string]any{"object": caseFromListing(*c)}
		inv, err := tx.InvoiceListing(c.InvoiceID)
		if err != nil {
			return store.EventPayload{}, err
		}
		if inv != nil {
			data["invoice"] = invoiceFromListing(*inv)
		}
		return store.EventPayload{ObjectRef: strconv.FormatInt(c.ID, 10), SubscriptionID: c.SubscriptionID, SubscriptionRef: c.Reference, Data: data}, nil
	default:
		d, err := tx.SubscriptionDetailByID(ref.ObjectID)
		if err != nil {
			return store.EventPayload{}, err
		}
		if d == nil {
			return store.EventPayload{}, fmt.Errorf("subscription %d not found", ref.ObjectID)
		}
		data := map[string]any{"object": subscriptionViewOf(d)}
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
