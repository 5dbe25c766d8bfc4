package ops

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/importcheck"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/subscriptioncsv"
)

// NewSubscription is a subscription for a customer whose card was saved with
// the gateway's save-card flow; both ids are checked with the gateway. Its
// fields are the subscription CSV's columns, checked by the same rules.
type NewSubscription struct {
	Reference         string    `json:"reference"`
	Email             string    `json:"email"`
	Customer          string    `json:"customer"`
	PaymentMethod     string    `json:"payment_method"`
	PreviousPaymentID string    `json:"previous_payment_id,omitempty"`
	Amount            int64     `json:"amount"`
	Currency          string    `json:"currency"`
	Interval          string    `json:"interval"`
	IntervalCount     int       `json:"interval_count"`
	Anchor            time.Time `json:"anchor"`
	Timezone          string    `json:"timezone,omitempty"`
	Description       string    `json:"description,omitempty"`
}

// ErrGatewayUnavailable: the gateway could not be asked about the ids (a
// timeout, a 5xx, a 429): nothing was written, and the same request may be
// retried (503 on the admin API).
var ErrGatewayUnavailable = errors.New("the gateway could not be asked to verify the customer and card; nothing was written, retry later")

// ActionSubscriptionCreate is the audit action of a subscription created through the
// admin API.
const ActionSubscriptionCreate = "subscription.create"

// CreateSubscription creates a subscription; created is false when one with
// the same reference and the same terms exists already (a signup flow that
// retried), and a reference that exists with other terms is ErrConflict.
//
// Every field goes through the subscription import's own rules (the row is
// checked by internal/subscriptioncsv and written by the import's store
// path), and the ids through the import's gateway check (importcheck): the
// customer exists, the card exists and belongs to it, and on Checkout.com the
// previous_payment_id succeeded with that card for that customer. The card is
// read once more for what billingd records of it: that it is a card, its
// brand, last 4 and expiry. One transaction writes the rows and the audit row.
func (s *Service) CreateSubscription(ctx context.Context, a Actor, n NewSubscription) (sub *Subscription, created bool, err error) {
	now := s.now()
	if n.Anchor.IsZero() {
		return nil, false, &FieldError{Field: "anchor", Message: "is required: the RFC 3339 time of the first charge"}
	}
	row, err := s.checkNewRow(n, now)
	if err != nil {
		return nil, false, err
	}
	if existing, err := s.opts.Store.SubscriptionWithParties(ctx, row.Reference); err != nil {
		return nil, false, err
	} else if existing != nil {
		return s.sameTerms(existing, row)
	}
	if s.opts.Accounts == nil {
		return nil, false, ErrNoGateway
	}
	card, err := s.readCard(ctx, row.Customer, row.PaymentMethod)
	if err != nil {
		return nil, false, err
	}
	if _, err := importcheck.Check(ctx, s.opts.Accounts, []store.ImportRow{row}, importcheck.Options{Clock: s.opts.Clock}); err != nil {
		var ie store.ImportErrors
		if !errors.As(err, &ie) && ctx.Err() == nil {
			return nil, false, fmt.Errorf("%w (%v)", ErrGatewayUnavailable, err)
		}
		return nil, false, rowFieldError(err)
	}
	c, err := s.opts.Store.CreateSubscription(ctx, now, row, card, func(tx *store.Tx, c *store.CreatedSubscription) error {
		v := createdView(c)
		return audit(tx, now, a, "", Audited{Action: ActionSubscriptionCreate, TargetType: TargetSubscription,
			TargetID: c.Subscription.ID, TargetRef: c.Subscription.Reference, After: v})
	})
	if err != nil {
		return nil, false, rowFieldError(err)
	}
	if !c.Created {
		// Another request created it between the read and the write.
		return s.sameTerms(c, row)
	}
	v := createdView(c)
	return &v, true, nil
}

// checkNewRow runs n through the subscription CSV's checks, as a one-row
// file: one set of rules for both doors.
func (s *Service) checkNewRow(n NewSubscription, now time.Time) (store.ImportRow, error) {
	cols := append(append([]string{}, subscriptioncsv.Columns...), subscriptioncsv.OptionalColumns...)
	vals := map[string]string{
		"reference": n.Reference, "email": n.Email, "customer": n.Customer, "payment_method": n.PaymentMethod,
		"amount": strconv.FormatInt(n.Amount, 10), "currency": n.Currency, "interval": n.Interval,
		"interval_count": strconv.Itoa(n.IntervalCount), "anchor": n.Anchor.Format(time.RFC3339Nano),
		"description": n.Description, "timezone": n.Timezone, "previous_payment_id": n.PreviousPaymentID,
	}
	rec := make([]string, len(cols))
	for i, c := range cols {
		rec[i] = vals[c]
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(cols)
	_ = w.Write(rec)
	w.Flush()
	rows, err := subscriptioncsv.Parse(&buf, subscriptioncsv.Options{Location: s.opts.Location, Now: now, Provider: s.opts.Provider})
	if err != nil {
		return store.ImportRow{}, rowFieldError(err)
	}
	if len(rows) != 1 {
		return store.ImportRow{}, fmt.Errorf("ops: create subscription: the checks returned %d rows", len(rows))
	}
	return rows[0], nil
}

// readCard reads the payment method at the gateway: it must be a card of
// customer; its brand, last 4 and expiry are what billingd records.
func (s *Service) readCard(ctx context.Context, customer, paymentMethod string) (store.SavedCard, error) {
	// The customer first: a card of someone else is the wrong card, a
	// customer the gateway does not know is the wrong customer.
	if _, err := s.opts.Accounts.RetrieveCustomer(ctx, customer); errors.Is(err, gateway.ErrNotFound) {
		return store.SavedCard{}, &FieldError{Field: "customer", Value: customer, Message: "the gateway has no such customer"}
	} else if err != nil {
		return store.SavedCard{}, fmt.Errorf("%w (customer %s: %v)", ErrGatewayUnavailable, customer, err)
	}
	pm, err := s.opts.Accounts.RetrievePaymentMethod(ctx, paymentMethod)
	switch {
	case errors.Is(err, gateway.ErrNotFound):
		return store.SavedCard{}, &FieldError{Field: "payment_method", Value: paymentMethod, Message: "the gateway has no such payment method"}
	case err != nil:
		return store.SavedCard{}, fmt.Errorf("%w (payment method %s: %v)", ErrGatewayUnavailable, paymentMethod, err)
	case pm.Card == nil || (pm.Type != "" && pm.Type != "card"):
		return store.SavedCard{}, &FieldError{Field: "payment_method", Value: paymentMethod, Message: "is not a card at the gateway"}
	case pm.Customer != customer:
		return store.SavedCard{}, &FieldError{Field: "payment_method", Value: paymentMethod,
			Message: fmt.Sprintf("belongs to customer %q at the gateway, not to %s", pm.Customer, customer)}
	}
	return store.SavedCard{Brand: pm.Card.Brand, Last4: pm.Card.Last4, ExpMonth: pm.Card.ExpMonth, ExpYear: pm.Card.ExpYear}, nil
}

// sameTerms answers a create whose reference exists: the existing
// subscription when its terms are the request's, else a conflict naming the
// first term that differs.
func (s *Service) sameTerms(c *store.CreatedSubscription, row store.ImportRow) (*Subscription, bool, error) {
	sub := c.Subscription
	zone := row.Timezone
	for _, t := range []struct{ name, have, want string }{
		{"customer", c.Customer.GatewayID, row.Customer},
		{"payment_method", c.PaymentMethod.GatewayID, row.PaymentMethod},
		{"email", c.Customer.Email, row.Email},
		{"amount", strconv.FormatInt(sub.Amount, 10), strconv.FormatInt(row.Amount, 10)},
		{"currency", sub.Currency, row.Currency},
		{"interval", sub.Interval, row.Interval},
		{"interval_count", strconv.Itoa(sub.IntervalCount), strconv.Itoa(row.IntervalCount)},
		{"anchor", sub.AnchorAt.UTC().Format(time.RFC3339Nano), row.Anchor.UTC().Format(time.RFC3339Nano)},
		{"timezone", sub.Timezone, zone},
		{"description", sub.Description, row.Description},
	} {
		if t.have != t.want {
			return nil, false, conflictf("subscription %q exists with other terms (%s is %q, not %q)", sub.Reference, t.name, t.have, t.want)
		}
	}
	v := createdView(c)
	return &v, false, nil
}

// rowFieldError turns the import's row problems into the first field's
// FieldError (the JSON field names are the CSV's columns).
func rowFieldError(err error) error {
	var ie store.ImportErrors
	if !errors.As(err, &ie) || len(ie) == 0 {
		return err
	}
	e := ie[0]
	field := e.Column
	if field == "" {
		field = "subscription"
	}
	msg := e.Message
	if strings.HasPrefix(msg, "is ") && strings.Contains(msg, "pass --backfill") {
		msg = strings.TrimSuffix(msg[:strings.Index(msg, " (pass --backfill")], " ")
	}
	return &FieldError{Field: field, Value: e.Value, Message: msg}
}

// createdView is the API's view of a subscription and its parties.
func createdView(c *store.CreatedSubscription) Subscription {
	sub, pm := c.Subscription, c.PaymentMethod
	v := Subscription{
		ID: sub.ID, Reference: sub.Reference, Status: string(sub.Status), Customer: c.Customer.GatewayID, Email: c.Customer.Email,
		Card:  Card{PaymentMethod: pm.GatewayID, Brand: pm.Brand, Last4: pm.Last4, ExpMonth: pm.ExpMonth, ExpYear: pm.ExpYear, Dead: pm.DeadReason},
		Price: NewMoney(sub.Amount, sub.Currency), Interval: sub.Interval, IntervalCount: sub.IntervalCount,
		Anchor: sub.AnchorAt.UTC(), Timezone: sub.Timezone, Description: sub.Description, NextBillingAt: sub.NextBillingAt.UTC(),
		CancelAt: createdUTC(sub.CancelAt), CanceledAt: createdUTC(sub.CanceledAt), PausedAt: createdUTC(sub.PausedAt), CreatedAt: sub.CreatedAt.UTC(),
	}
	return v
}

func createdUTC(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
