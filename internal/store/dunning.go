package store

import (
	"context"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// CaseForInvoice returns the invoice's dunning case, or nil.
func (tx *Tx) CaseForInvoice(invoiceID int64) (*models.DunningCase, error) {
	// Most outcomes are for invoices without a case (a first charge that
	// succeeded): a lean probe answers those.
	id, found, err := tx.queryID(`SELECT id FROM dunning_cases WHERE invoice_id = ?`, invoiceID)
	if err != nil || !found {
		return nil, err
	}
	return one[models.DunningCase](tx.db.Where("id = ?", id))
}

// SaveCase inserts a new case (ID 0: dunning.opened) or writes an existing
// one; writing an open case as recovered or exhausted closes it
// (dunning.recovered, dunning.exhausted). A case closed as stopped emits
// nothing of its own (StopCollection).
func (tx *Tx) SaveCase(c *models.DunningCase) error {
	if c.ID == 0 {
		if err := tx.db.Create(c).Error; err != nil {
			return err
		}
		tx.Emit(EventRef{Type: models.EventDunningOpened, ObjectID: c.ID})
		return nil
	}
	closing := map[models.CaseStatus]models.EventType{models.CaseRecovered: models.EventDunningRecovered,
		models.CaseExhausted: models.EventDunningExhausted}[c.Status]
	wasOpen := false
	if closing != "" && tx.EventsOn() {
		// The row is the caller's locked copy; its stored status says
		// whether this write closes the case or repeats a close.
		var prev string
		if err := tx.db.Raw(`SELECT status FROM dunning_cases WHERE id = ?`, c.ID).Scan(&prev).Error; err != nil {
			return err
		}
		wasOpen = prev == string(models.CaseOpen)
	}
	if err := tx.db.Save(c).Error; err != nil {
		return err
	}
	tx.emitIf(wasOpen, closing, c.ID)
	return nil
}

// AddCaseStep appends to a case's step log.
func (tx *Tx) AddCaseStep(now time.Time, caseID int64, step int, action models.StepAction, detail string) error {
	return tx.db.Create(&models.DunningStep{CaseID: caseID, Step: step, Action: action, Detail: truncate(detail, 500), At: now, CreatedAt: now, UpdatedAt: now}).Error
}

// DueCases locks open cases whose next_step_at has come (skipping rows another
// instance holds, on PostgreSQL).
func (tx *Tx) DueCases(now time.Time, limit int) ([]models.DunningCase, error) {
	var cs []models.DunningCase
	err := tx.db.Raw(`SELECT * FROM dunning_cases WHERE status = 'open' AND next_step_at IS NOT NULL AND next_step_at <= ?
	                   ORDER BY next_step_at, id LIMIT ?`+tx.forUpdateSkipLocked(), now, limit).Scan(&cs).Error
	return cs, err
}

// SetInvoiceNextAttempt schedules (or, with nil, unschedules) the next
// off-session attempt of an open invoice.
func (tx *Tx) SetInvoiceNextAttempt(now time.Time, invoiceID int64, at *time.Time) error {
	return tx.db.Exec(`UPDATE invoices SET next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = 'open'`, at, now, invoiceID).Error
}

// CountCardReattempts counts the reattempts made on a gateway payment method
// since a time, for the card networks' cap (at most 15 per card in 30 days): an
// off-session attempt of an invoice that had an attempt before it — a retry
// after a decline. An invoice's first attempt is not a reattempt, so a daily
// subscription's paid periods never use the cap up.
func (tx *Tx) CountCardReattempts(gatewayPaymentMethodID string, since time.Time) (int, error) {
	var n int64
	err := tx.db.Raw(cardReattemptsQuery, gatewayPaymentMethodID, since).Scan(&n).Error
	return int(n), err
}

// cardReattemptsQuery reads charge_attempts_card_reattempts, which holds only
// reattempts; its first conditions repeat that index's WHERE clause so that
// SQLite uses the partial index.
const cardReattemptsQuery = `SELECT COUNT(*) FROM charge_attempts WHERE attempt_no > 1 AND off_session
	AND gateway_payment_method_id = ? AND created_at >= ?`

// MarkPaymentMethodDead remembers that the gateway declined a card hard
// (expired, lost, stolen, …): from this transaction on, no claim starts an
// off-session attempt on it, for any invoice of any subscription, until the
// subscription gets another payment method. The first reason is kept. Returns
// false when the card was already dead or is not known.
func (tx *Tx) MarkPaymentMethodDead(now time.Time, gatewayPaymentMethodID, reason string) (bool, error) {
	n, err := tx.exec(`UPDATE payment_methods SET dead_at = ?, dead_reason = ?, updated_at = ?
	                    WHERE gateway_payment_method_id = ? AND dead_at IS NULL`, now, truncate(reason, 100), now, gatewayPaymentMethodID)
	return n == 1, err
}

// QueuedInvoice is an open invoice waiting in its subscription's queue.
type QueuedInvoice struct {
	ID          int64
	PublicID    string
	PeriodIndex int
}

// WriteOffQueue writes off (uncollectible) every open invoice of a
// subscription after the given period: the invoices that waited behind an
// exhausted one when the final action ends the subscription. Invoices with an
// attempt still unresolved are left alone (their outcome is not known yet). It
// returns the invoices written off, in period order, so that the caller can
// record each transition.
func (tx *Tx) WriteOffQueue(now time.Time, subscriptionID int64, afterPeriod int) ([]QueuedInvoice, error) {
	var qs []QueuedInvoice
	if err := tx.db.Raw(`SELECT id, public_id, period_index FROM invoices
	                      WHERE subscription_id = ? AND period_index > ? AND status = 'open'
	                        AND NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.invoice_id = invoices.id
	                                          AND `+sqlUnresolved.in("ca.status")+`)
	                      ORDER BY period_index`, subscriptionID, afterPeriod).Scan(&qs).Error; err != nil {
		return nil, err
	}
	if len(qs) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(qs))
	for i, q := range qs {
		ids[i] = q.ID
	}
	if _, err := tx.execEmittingIn(models.EventInvoiceUncollectible, `UPDATE invoices SET status = 'uncollectible', next_attempt_at = NULL, updated_at = ?
	                    WHERE id IN ? AND status = 'open'`, now, ids); err != nil {
		return nil, err
	}
	return qs, tx.RequestIntentCancels(now, ids, "")
}

// InvoicePeriodIndex returns an invoice's period index.
func (tx *Tx) InvoicePeriodIndex(invoiceID int64) (int, error) {
	var k int
	err := tx.db.Raw(`SELECT period_index FROM invoices WHERE id = ?`, invoiceID).Scan(&k).Error
	return k, err
}

// MarkInvoiceUncollectible writes an open invoice off after dunning.
func (tx *Tx) MarkInvoiceUncollectible(now time.Time, invoiceID int64) error {
	n, err := tx.exec(`UPDATE invoices SET status = 'uncollectible', next_attempt_at = NULL, updated_at = ? WHERE id = ? AND status = 'open'`, now, invoiceID)
	if err != nil {
		return err
	}
	tx.emitIf(n == 1, models.EventInvoiceUncollectible, invoiceID)
	return tx.RequestIntentCancels(now, []int64{invoiceID}, "")
}

// ApplyFinalAction applies dunning's final action to a subscription: cancel
// (never billed again), unpaid (kept but not billed), or past_due (left as is).
func (tx *Tx) ApplyFinalAction(now time.Time, subscriptionID int64, action models.FinalAction) error {
	switch action {
	case models.FinalCancel:
		n, err := tx.exec(`UPDATE subscriptions SET status = 'canceled', canceled_at = ?, updated_at = ? WHERE id = ? AND `+sqlCancelable.in("status"), now, now, subscriptionID)
		tx.emitIf(err == nil && n == 1, models.EventSubscriptionCanceled, subscriptionID)
		return err
	case models.FinalUnpaid:
		n, err := tx.exec(`UPDATE subscriptions SET status = 'unpaid', updated_at = ? WHERE id = ? AND `+sqlBillable.in("status"), now, subscriptionID)
		tx.emitIf(err == nil && n == 1, models.EventSubscriptionUnpaid, subscriptionID)
		return err
	}
	return nil
}

// InvoiceContact is who to write to about an invoice.
type InvoiceContact struct {
	InvoiceID       int64
	PublicID        string
	Status          models.InvoiceStatus
	SubscriptionID  int64
	CustomerID      int64
	GatewayCustomer string
	Email           string
	Amount          int64
	Currency        string
	Reference       string
	Description     string
	PaymentMethodID int64
	GatewayPM       string
	// CardBrand, CardLast4, CardExpMonth and CardExpYear name the
	// subscription's card to the customer (empty or 0 when never read).
	CardBrand    string
	CardLast4    string
	CardExpMonth int
	CardExpYear  int
	// SubscriptionStatus is the subscription's status (a subscription-scoped
	// link works while it is not canceled).
	SubscriptionStatus models.SubscriptionStatus
	// NextBillingAt and CardCreatedAt are loaded for subscription-scoped
	// links only (SubscriptionContact): the next charge the card must
	// outlive, and when the subscription's current card was first recorded
	// (a card saved through the link is newer than the link).
	NextBillingAt *time.Time
	CardCreatedAt *time.Time
}

// Card is the subscription's card as the customer should see it.
func (ic *InvoiceContact) Card() CardOnFile {
	return CardOnFile{Brand: ic.CardBrand, Last4: ic.CardLast4, ExpMonth: ic.CardExpMonth, ExpYear: ic.CardExpYear}
}

const contactQuery = `SELECT i.id AS invoice_id, i.public_id, i.status, i.amount, i.currency, s.id AS subscription_id, s.reference, s.description,
       c.id AS customer_id, c.gateway_customer_id AS gateway_customer, c.email, pm.id AS payment_method_id, pm.gateway_payment_method_id AS gateway_pm,
       COALESCE(pm.brand, '') AS card_brand, COALESCE(pm.last4, '') AS card_last4, COALESCE(pm.exp_month, 0) AS card_exp_month, COALESCE(pm.exp_year, 0) AS card_exp_year,
       s.status AS subscription_status
  FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
  JOIN customers c ON c.id = s.customer_id JOIN payment_methods pm ON pm.id = s.payment_method_id`

// InvoiceContact loads an invoice with its subscription, customer and card.
func (tx *Tx) InvoiceContact(invoiceID int64) (*InvoiceContact, error) {
	var ic InvoiceContact
	if err := tx.db.Raw(contactQuery+` WHERE i.id = ?`, invoiceID).Scan(&ic).Error; err != nil {
		return nil, err
	}
	if ic.InvoiceID == 0 {
		return nil, nil
	}
	return &ic, nil
}

// InvoiceContactByPublicID is InvoiceContact by the invoice's public id.
func (tx *Tx) InvoiceContactByPublicID(publicID string) (*InvoiceContact, error) {
	var ic InvoiceContact
	if err := tx.db.Raw(contactQuery+` WHERE i.public_id = ?`, publicID).Scan(&ic).Error; err != nil {
		return nil, err
	}
	if ic.InvoiceID == 0 {
		return nil, nil
	}
	return &ic, nil
}

// InvoiceContact outside a transaction, for pages.
func (s *Store) InvoiceContact(ctx context.Context, invoiceID int64) (*InvoiceContact, error) {
	var out *InvoiceContact
	err := s.read(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.InvoiceContact(invoiceID)
		return err
	})
	return out, err
}

// PaymentMethodByGatewayID returns the payment method row for a gateway id, or nil.
func (tx *Tx) PaymentMethodByGatewayID(gatewayID string) (*models.PaymentMethod, error) {
	return one[models.PaymentMethod](tx.db.Where("gateway_payment_method_id = ?", gatewayID))
}

// SetSubscriptionPaymentMethod makes a saved card the subscription's default:
// the next attempt charges it. Every change of a subscription's card goes
// through here (the pay page's card update, its setup_intent.succeeded
// webhook, an operator's update) and emits payment_method.replaced naming the
// card it replaced; saving the card it already has changes nothing and emits
// nothing.
func (tx *Tx) SetSubscriptionPaymentMethod(now time.Time, subscriptionID, paymentMethodID int64) error {
	if !tx.EventsOn() {
		return tx.db.Exec(`UPDATE subscriptions SET payment_method_id = ?, updated_at = ? WHERE id = ?`, paymentMethodID, now, subscriptionID).Error
	}
	// The row is locked before its card is read (PostgreSQL), so the card
	// named as replaced is the one this write replaces.
	lock := ""
	if tx.dialect == Postgres {
		lock = " FOR NO KEY UPDATE"
	}
	var prev []int64
	if err := tx.db.Raw(`SELECT payment_method_id FROM subscriptions WHERE id = ?`+lock, subscriptionID).Scan(&prev).Error; err != nil {
		return err
	}
	n, err := tx.exec(`UPDATE subscriptions SET payment_method_id = ?, updated_at = ? WHERE id = ?`, paymentMethodID, now, subscriptionID)
	if err != nil {
		return err
	}
	if n == 1 && len(prev) == 1 && prev[0] != paymentMethodID {
		tx.Emit(EventRef{Type: models.EventPaymentMethodReplaced, ObjectID: subscriptionID, PreviousPaymentMethod: prev[0]})
	}
	return nil
}

// InsertPayLink stores a pay link (its token's hash only).
func (tx *Tx) InsertPayLink(l *models.PayLink) error { return tx.db.Create(l).Error }

// PayLinkByHash finds a pay link by the SHA-256 of its token, or nil.
func (s *Store) PayLinkByHash(ctx context.Context, hash string) (*models.PayLink, error) {
	return one[models.PayLink](s.db.WithContext(ctx).Where("token_hash = ?", hash))
}

// TouchPayLink records a use of a pay link.
func (tx *Tx) TouchPayLink(now time.Time, id int64) error {
	return tx.db.Exec(`UPDATE pay_links SET uses = uses + 1, last_used_at = ?, updated_at = ? WHERE id = ?`, now, now, id).Error
}

// OpenAttemptForInvoice returns the invoice's open attempt (unresolved, or
// its intent waiting for the customer to authenticate), or nil.
func (tx *Tx) OpenAttemptForInvoice(invoiceID int64) (*models.ChargeAttempt, error) {
	return one[models.ChargeAttempt](tx.db.Where("invoice_id = ? AND status IN ?", invoiceID, models.OpenAttemptStatuses))
}

// LatestAttempt returns the invoice's most recent attempt, or nil.
func (s *Store) LatestAttempt(ctx context.Context, invoiceID int64) (*models.ChargeAttempt, error) {
	return one[models.ChargeAttempt](s.db.WithContext(ctx).Where("invoice_id = ?", invoiceID).Order("attempt_no DESC"))
}
