package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// CardOnFile names a saved card to its customer: brand, last 4 and expiry as
// billingd last read them from the gateway. Zero fields are unknown.
type CardOnFile struct {
	Brand    string
	Last4    string
	ExpMonth int
	ExpYear  int
}

// Known reports whether anything about the card is known.
func (c CardOnFile) Known() bool { return c.Brand != "" || c.Last4 != "" || c.ExpYear > 0 }

// ValidUntil is the first instant (UTC) the card no longer works: the start
// of the month after its expiry month. Zero when the expiry is unknown.
func (c CardOnFile) ValidUntil() time.Time {
	if c.ExpYear <= 0 || c.ExpMonth < 1 || c.ExpMonth > 12 {
		return time.Time{}
	}
	return time.Date(c.ExpYear, time.Month(c.ExpMonth), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
}

// ExpiresBy reports whether the card will have expired at t (a charge at t
// would be refused as expired). False when the expiry is unknown.
func (c CardOnFile) ExpiresBy(t time.Time) bool {
	until := c.ValidUntil()
	return !until.IsZero() && !t.Before(until)
}

// RecordCardDetails records the brand, last 4 and expiry the gateway gave for
// cards billingd already has (by gateway payment method id), in one
// transaction: what an import's verification read about each card. Cards not
// in the database are skipped.
func (s *Store) RecordCardDetails(ctx context.Context, now time.Time, cards map[string]SavedCard) error {
	if len(cards) == 0 {
		return nil
	}
	err := s.InTx(ctx, func(tx *Tx) error {
		for id, card := range cards {
			pm, err := tx.PaymentMethodByGatewayID(id)
			if err != nil {
				return err
			}
			if pm == nil {
				continue
			}
			card.SeriesPaymentID = "" // an import's series is written by the import itself
			if err := tx.describeCard(now, *pm, card); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: record card details: %w", err)
	}
	return nil
}

// RecordCardRead records what the gateway said when billingd re-read a card
// it has (paymentMethodID is billingd's row id): the expiring-card notice's
// re-read, where an account updater may have renewed the expiry.
func (tx *Tx) RecordCardRead(now time.Time, paymentMethodID int64, card SavedCard) error {
	card.SeriesPaymentID = ""
	return tx.describeCard(now, models.PaymentMethod{ID: paymentMethodID}, card)
}

// ExpiringCard is a subscription whose next charge comes within the notice
// window and whose card expires before it (or whose card's expiry was never
// read): a candidate for the expiring-card notice.
type ExpiringCard struct {
	SubscriptionID  int64
	Reference       string
	NextPeriod      int
	NextBillingAt   time.Time
	PaymentMethodID int64
	GatewayPM       string
	CustomerEmail   string
	Card            CardOnFile
	// DetailsReadAt is nil when billingd never read the card's details.
	DetailsReadAt *time.Time
}

// CardNoticeKey is the dedupe key of the expiring-card email of one
// subscription, card and period: a second notice for the same three is
// impossible (emails.dedupe_key is unique).
func CardNoticeKey(subscriptionID, paymentMethodID int64, period int) string {
	return fmt.Sprintf("card_expiring:%d:%d:%d", subscriptionID, paymentMethodID, period)
}

// cardNoticeKeySQL is CardNoticeKey in SQL (|| concatenates text and
// integers on SQLite and PostgreSQL alike).
const cardNoticeKeySQL = `'card_expiring:' || s.id || ':' || s.payment_method_id || ':' || s.next_period`

type expiringCardRow struct {
	SubscriptionID  int64
	Reference       string
	NextPeriod      int
	NextBillingAt   time.Time
	PaymentMethodID int64
	GatewayPM       string
	CustomerEmail   string
	Brand           string
	Last4           string
	ExpMonth        int
	ExpYear         int
	DetailsReadAt   *time.Time
}

// ExpiringCards lists the subscriptions the expiring-card notice must look at
// now: billable (not paused, canceled or unpaid), next charge after now and no
// later than horizon, not canceling before that charge, on a live card that
// expires before the charge or whose expiry billingd never read, and not yet
// notified for this card and period. The exact expiry test against each
// charge's date is the caller's (after re-reading the card at the gateway);
// the query only leaves out cards that outlive horizon.
func (s *Store) ExpiringCards(ctx context.Context, now, horizon time.Time, limit int) ([]ExpiringCard, error) {
	horizon = horizon.UTC()
	// A card valid through month m of year y works until the month after;
	// it can only fail a charge before horizon if y*12+m < horizon's.
	bound := horizon.Year()*12 + int(horizon.Month())
	var rows []expiringCardRow
	err := s.db.WithContext(ctx).Raw(`SELECT s.id AS subscription_id, s.reference, s.next_period, s.next_billing_at,
	        pm.id AS payment_method_id, pm.gateway_payment_method_id AS gateway_pm, c.email AS customer_email,
	        COALESCE(pm.brand, '') AS brand, COALESCE(pm.last4, '') AS last4,
	        COALESCE(pm.exp_month, 0) AS exp_month, COALESCE(pm.exp_year, 0) AS exp_year, pm.details_read_at
	   FROM subscriptions s
	   JOIN payment_methods pm ON pm.id = s.payment_method_id
	   JOIN customers c ON c.id = s.customer_id
	  WHERE `+sqlBillable.in("s.status")+`
	    AND s.next_billing_at > ? AND s.next_billing_at <= ?
	    AND (s.cancel_at IS NULL OR s.cancel_at > s.next_billing_at)
	    AND pm.dead_at IS NULL
	    AND (pm.details_read_at IS NULL OR (COALESCE(pm.exp_year, 0) > 0 AND pm.exp_year * 12 + pm.exp_month < ?))
	    AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.dedupe_key = `+cardNoticeKeySQL+`)
	  ORDER BY s.next_billing_at, s.id
	  LIMIT ?`, now.UTC(), horizon, bound, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store: expiring cards: %w", err)
	}
	out := make([]ExpiringCard, len(rows))
	for i, r := range rows {
		out[i] = ExpiringCard{SubscriptionID: r.SubscriptionID, Reference: r.Reference, NextPeriod: r.NextPeriod,
			NextBillingAt: r.NextBillingAt.UTC(), PaymentMethodID: r.PaymentMethodID, GatewayPM: r.GatewayPM,
			CustomerEmail: r.CustomerEmail, Card: CardOnFile{Brand: r.Brand, Last4: r.Last4, ExpMonth: r.ExpMonth, ExpYear: r.ExpYear},
			DetailsReadAt: utcPtr(r.DetailsReadAt)}
	}
	return out, nil
}

// StillExpiring reports, inside the transaction that would enqueue the notice,
// whether the subscription is still billable on the same card with the same
// next period, so a notice never goes out about a card or period that changed
// while the gateway was read.
func (tx *Tx) StillExpiring(c ExpiringCard) (bool, error) {
	var n int64
	err := tx.db.Raw(`SELECT COUNT(*) FROM subscriptions s
	  WHERE s.id = ? AND s.payment_method_id = ? AND s.next_period = ? AND `+sqlBillable.in("s.status")+`
	    AND (s.cancel_at IS NULL OR s.cancel_at > s.next_billing_at)`,
		c.SubscriptionID, c.PaymentMethodID, c.NextPeriod).Scan(&n).Error
	return n == 1, err
}

// subscriptionContactQuery is contactQuery for a subscription without an
// invoice: the invoice fields stay empty, amount and currency are the
// subscription's.
const subscriptionContactQuery = `SELECT 0 AS invoice_id, '' AS public_id, '' AS status, s.amount, s.currency, s.id AS subscription_id, s.reference, s.description,
       c.id AS customer_id, c.gateway_customer_id AS gateway_customer, c.email, pm.id AS payment_method_id, pm.gateway_payment_method_id AS gateway_pm,
       COALESCE(pm.brand, '') AS card_brand, COALESCE(pm.last4, '') AS card_last4, COALESCE(pm.exp_month, 0) AS card_exp_month, COALESCE(pm.exp_year, 0) AS card_exp_year,
       s.status AS subscription_status, s.next_billing_at, pm.created_at AS card_created_at
  FROM subscriptions s JOIN customers c ON c.id = s.customer_id JOIN payment_methods pm ON pm.id = s.payment_method_id`

// SubscriptionContact loads a subscription with its customer and card, for
// a link scoped to the subscription (no invoice); nil when there is none.
func (s *Store) SubscriptionContact(ctx context.Context, subscriptionID int64) (*InvoiceContact, error) {
	var ic InvoiceContact
	if err := s.db.WithContext(ctx).Raw(subscriptionContactQuery+` WHERE s.id = ?`, subscriptionID).Scan(&ic).Error; err != nil {
		return nil, err
	}
	if ic.SubscriptionID == 0 {
		return nil, nil
	}
	return &ic, nil
}

// SubscriptionContactByReference is SubscriptionContact by the
// subscription's merchant reference, inside a transaction (the
// setup_intent.succeeded of a subscription-scoped link names it).
func (tx *Tx) SubscriptionContactByReference(reference string) (*InvoiceContact, error) {
	var ic InvoiceContact
	if err := tx.db.Raw(subscriptionContactQuery+` WHERE s.reference = ?`, reference).Scan(&ic).Error; err != nil {
		return nil, err
	}
	if ic.SubscriptionID == 0 {
		return nil, nil
	}
	return &ic, nil
}

// OpenCaseOfSubscription returns the subscription's open dunning case and its
// invoice's contact, or nils: a card saved through a subscription-scoped link
// lets that case proceed as a card saved through the invoice's own link does.
func (tx *Tx) OpenCaseOfSubscription(subscriptionID int64) (*models.DunningCase, *InvoiceContact, error) {
	var c models.DunningCase
	if err := tx.db.Where("subscription_id = ? AND status = ?", subscriptionID, models.CaseOpen).Order("opened_at, id").Limit(1).Find(&c).Error; err != nil {
		return nil, nil, err
	}
	if c.ID == 0 {
		return nil, nil, nil
	}
	ic, err := tx.InvoiceContact(c.InvoiceID)
	if err != nil || ic == nil {
		return nil, nil, err
	}
	return &c, ic, nil
}

// brandNames are the customer-facing names of the card brands gateways
// report (WooshPay in lower case, Checkout.com capitalized).
var brandNames = map[string]string{
	"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "american express": "American Express",
	"discover": "Discover", "jcb": "JCB", "unionpay": "UnionPay", "diners": "Diners Club", "diners club": "Diners Club",
	"maestro": "Maestro", "cartes_bancaires": "Cartes Bancaires",
}

// BrandName is the card's brand as customers read it ("Visa"), "" when
// unknown.
func (c CardOnFile) BrandName() string {
	b := strings.TrimSpace(c.Brand)
	if n, ok := brandNames[strings.ToLower(b)]; ok {
		return n
	}
	if b == "" {
		return ""
	}
	return strings.ToUpper(b[:1]) + b[1:]
}

// Name names the card: "Visa ending in 4242", "card ending in 4242", "Visa",
// or "" when nothing is known.
func (c CardOnFile) Name() string {
	brand := c.BrandName()
	switch {
	case c.Last4 != "" && brand != "":
		return brand + " ending in " + c.Last4
	case c.Last4 != "":
		return "card ending in " + c.Last4
	}
	return brand
}

// Expiry is the card's expiry as printed on it ("12/2035"), "" when unknown.
func (c CardOnFile) Expiry() string {
	if c.ValidUntil().IsZero() {
		return ""
	}
	return fmt.Sprintf("%02d/%d", c.ExpMonth, c.ExpYear)
}

// UnreadCard is a card billingd never read the details of.
type UnreadCard struct {
	PaymentMethodID int64
	GatewayPM       string
}

// UnreadCards lists up to limit live cards of subscriptions still billed (not
// canceled) whose brand, last 4 and expiry were never read from the gateway:
// cards saved through a webhook that did not carry them (WooshPay's
// setup_intent.succeeded names only the payment method) or recorded before
// billingd kept expiries.
func (s *Store) UnreadCards(ctx context.Context, limit int) ([]UnreadCard, error) {
	var out []UnreadCard
	err := s.db.WithContext(ctx).Raw(`SELECT pm.id AS payment_method_id, pm.gateway_payment_method_id AS gateway_pm
	   FROM payment_methods pm
	  WHERE pm.details_read_at IS NULL AND pm.dead_at IS NULL
	    AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.payment_method_id = pm.id AND s.status <> ?)
	  ORDER BY pm.id LIMIT ?`, models.SubscriptionCanceled, limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("store: unread cards: %w", err)
	}
	return out, nil
}
