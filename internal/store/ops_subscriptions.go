package store

// The queries of the operator's subscription actions (cancel, pause, resume,
// update) and of the subscription listing and story. Each action runs in one
// transaction of the caller (ops); the reads answer `subscriptions list|show`.

import (
	"context"
	"errors"
	"time"

	"github.com/billingd/billingd/internal/models"
	"gorm.io/gorm"
)

// IsDuplicateKey reports whether a transaction failed on a unique index: a
// concurrent transaction inserted the same row first (on PostgreSQL, an
// operator's card update and the gateway's setup_intent.succeeded webhook
// both recording one new card). Trying the transaction again finds the row.
func IsDuplicateKey(err error) bool { return errors.Is(err, gorm.ErrDuplicatedKey) }

// SubscriptionDetail is a subscription with what ops read beside it: the
// customer's gateway id and email, and its card as billingd knows it.
type SubscriptionDetail struct {
	models.Subscription
	GatewayCustomer string     `gorm:"column:gateway_customer"`
	Email           string     `gorm:"column:email"`
	GatewayPM       string     `gorm:"column:gateway_pm"`
	Brand           string     `gorm:"column:brand"`
	Last4           string     `gorm:"column:last4"`
	ExpMonth        int        `gorm:"column:exp_month"`
	ExpYear         int        `gorm:"column:exp_year"`
	DeadReason      string     `gorm:"column:dead_reason"`
	DeadAt          *time.Time `gorm:"column:dead_at"`
}

const subscriptionDetailSelect = `SELECT s.*, c.gateway_customer_id AS gateway_customer, c.email AS email,
	       pm.gateway_payment_method_id AS gateway_pm, pm.brand AS brand, pm.last4 AS last4,
	       pm.exp_month AS exp_month, pm.exp_year AS exp_year, pm.dead_reason AS dead_reason, pm.dead_at AS dead_at
	  FROM subscriptions s
	  JOIN customers c ON c.id = s.customer_id
	  JOIN payment_methods pm ON pm.id = s.payment_method_id`

// SubscriptionByReference reads one subscription by its reference, nil when
// there is none.
func (s *Store) SubscriptionByReference(ctx context.Context, reference string) (*SubscriptionDetail, error) {
	var out []SubscriptionDetail
	if err := s.db.WithContext(ctx).Raw(subscriptionDetailSelect+` WHERE s.reference = ?`, reference).Scan(&out).Error; err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return &out[0], nil
}

// SubscriptionDetails reads the given subscriptions inside the caller's
// transaction, without locking them (the events a transaction emits), by
// id.
func (tx *Tx) SubscriptionDetails(ids []int64) (map[int64]SubscriptionDetail, error) {
	return byID(ids, func(page []int64) ([]SubscriptionDetail, error) {
		var out []SubscriptionDetail
		err := tx.db.Raw(subscriptionDetailSelect+` WHERE s.id IN ?`, page).Scan(&out).Error
		return out, err
	}, func(d SubscriptionDetail) int64 { return d.ID })
}

// LockSubscription reads one subscription by its reference inside the
// caller's transaction and, on PostgreSQL, locks its row (FOR NO KEY UPDATE,
// the lock the billing sweep takes: an action and a sweep never change the
// same subscription at once; SQLite's single writer serializes them anyway).
// Nil when there is none.
func (tx *Tx) LockSubscription(reference string) (*SubscriptionDetail, error) {
	var id int64
	q := `SELECT id FROM subscriptions WHERE reference = ?`
	if tx.dialect == Postgres {
		q += " FOR NO KEY UPDATE"
	}
	if err := tx.db.Raw(q, reference).Scan(&id).Error; err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, nil
	}
	var out []SubscriptionDetail
	if err := tx.db.Raw(subscriptionDetailSelect+` WHERE s.id = ?`, id).Scan(&out).Error; err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return &out[0], nil
}

// SubscriptionFilter narrows a subscription listing; zero fields match all.
type SubscriptionFilter struct {
	Statuses []string
	// Customer is a gateway customer id or an email address.
	Customer  string
	Reference string
	// From (inclusive) and To (exclusive) bound the creation time.
	From, To *time.Time
	Limit    int
}

// ListSubscriptions lists subscriptions in id order.
func (s *Store) ListSubscriptions(ctx context.Context, f SubscriptionFilter) ([]SubscriptionDetail, error) {
	q := subscriptionDetailSelect + ` WHERE 1 = 1`
	var args []any
	if len(f.Statuses) > 0 {
		q += ` AND s.status IN ?`
		args = append(args, f.Statuses)
	}
	if f.Customer != "" {
		q += ` AND (c.gateway_customer_id = ? OR LOWER(c.email) = LOWER(?))`
		args = append(args, f.Customer, f.Customer)
	}
	if f.Reference != "" {
		q += ` AND s.reference = ?`
		args = append(args, f.Reference)
	}
	if f.From != nil {
		q += ` AND s.created_at >= ?`
		args = append(args, f.From.UTC())
	}
	if f.To != nil {
		q += ` AND s.created_at < ?`
		args = append(args, f.To.UTC())
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += ` ORDER BY s.id LIMIT ?`
	args = append(args, f.Limit)
	var out []SubscriptionDetail
	return out, s.db.WithContext(ctx).Raw(q, args...).Scan(&out).Error
}

// OpenInvoicesOf lists a subscription's open invoices in period order.
func (tx *Tx) OpenInvoicesOf(subscriptionID int64) ([]models.Invoice, error) {
	var out []models.Invoice
	err := tx.db.Raw(`SELECT * FROM invoices WHERE subscription_id = ? AND status = 'open' ORDER BY period_index`, subscriptionID).Scan(&out).Error
	return out, err
}

// HasTriedOpenInvoice reports whether a subscription has an open invoice that
// was charged at least once: what makes it past_due rather than active.
func (tx *Tx) HasTriedOpenInvoice(subscriptionID int64) (bool, error) {
	var n int64
	err := tx.db.Raw(`SELECT COUNT(*) FROM invoices WHERE subscription_id = ? AND status = 'open' AND attempt_count > 0`, subscriptionID).Scan(&n).Error
	return n > 0, err
}

// SubscriptionEnded is what ending a subscription's own links and emails
// (those scoped to the subscription, not to one of its invoices) changed.
type SubscriptionEnded struct {
	LinksRevoked   int64 `json:"subscription_links_revoked"`
	EmailsCanceled int64 `json:"subscription_emails_canceled"`
}

// CancelSubscriptionNow ends a subscription at once inside the caller's
// transaction: status canceled, canceled_at now, cancel_at and paused_at
// cleared; its subscription-scoped links (the card-update link of an
// expiring card) are revoked and its subscription-scoped queued emails
// canceled. The invoices are the caller's (StopCollection, one by one).
// False when the subscription was canceled already.
func (tx *Tx) CancelSubscriptionNow(now time.Time, subscriptionID int64, detail string) (bool, SubscriptionEnded, error) {
	var ended SubscriptionEnded
	n, err := tx.exec(`UPDATE subscriptions SET status = 'canceled', canceled_at = ?, cancel_at = NULL, paused_at = NULL, updated_at = ?
	                    WHERE id = ? AND status <> 'canceled'`, now, now, subscriptionID)
	if err != nil || n == 0 {
		return false, ended, err
	}
	tx.Emit(EventRef{Type: models.EventSubscriptionCanceled, ObjectID: subscriptionID})
	if ended.LinksRevoked, err = tx.exec(`UPDATE pay_links SET revoked_at = ?, updated_at = ?
	                    WHERE subscription_id = ? AND invoice_id IS NULL AND revoked_at IS NULL AND expires_at > ?`,
		now, now, subscriptionID, now); err != nil {
		return false, ended, err
	}
	if ended.EmailsCanceled, err = tx.exec(`UPDATE emails SET status = 'canceled', last_error = ?, updated_at = ?
	                    WHERE subscription_id = ? AND invoice_id IS NULL AND status = 'pending'`,
		truncate("subscription canceled: "+detail, 500), now, subscriptionID); err != nil {
		return false, ended, err
	}
	return true, ended, nil
}

// SetCancelAt records a cancel at period end: the subscription keeps its
// status and is billed for no period starting at or after at.
func (tx *Tx) SetCancelAt(now time.Time, subscriptionID int64, at time.Time) error {
	return tx.db.Exec(`UPDATE subscriptions SET cancel_at = ?, updated_at = ? WHERE id = ?`, at.UTC(), now, subscriptionID).Error
}

// FinishCancelAtPeriodEnd moves a subscription whose cancel_at has come to
// canceled, with canceled_at = cancel_at, inside the billing sweep's
// transaction. False when it is not billable any more or its cancel_at has
// not come (or was cleared).
func (tx *Tx) FinishCancelAtPeriodEnd(now time.Time, subscriptionID int64) (bool, error) {
	n, err := tx.exec(`UPDATE subscriptions SET status = 'canceled', canceled_at = cancel_at, updated_at = ?
	                    WHERE id = ? AND cancel_at IS NOT NULL AND cancel_at <= ? AND `+sqlBillable.in("status"),
		now, subscriptionID, now)
	tx.emitIf(err == nil && n == 1, models.EventSubscriptionCanceled, subscriptionID)
	return n == 1, err
}

// PauseSubscription marks a subscription paused: the sweep invoices no
// period while it is (paused is not billable); its open invoices are still
// collected.
func (tx *Tx) PauseSubscription(now time.Time, subscriptionID int64) (bool, error) {
	n, err := tx.exec(`UPDATE subscriptions SET status = 'paused', paused_at = ?, updated_at = ?
	                    WHERE id = ? AND `+sqlBillable.in("status"), now, now, subscriptionID)
	tx.emitIf(err == nil && n == 1, models.EventSubscriptionPaused, subscriptionID)
	return n == 1, err
}

// ResumeSubscription restarts billing of a paused subscription at period
// nextPeriod (starting at nextBillingAt): the periods it skips are never
// invoiced. status is active or past_due.
func (tx *Tx) ResumeSubscription(now time.Time, subscriptionID int64, oldNext, nextPeriod int, nextBillingAt time.Time, status models.SubscriptionStatus) (bool, error) {
	n, err := tx.exec(`UPDATE subscriptions SET status = ?, paused_at = NULL, next_period = ?, next_billing_at = ?, updated_at = ?
	                    WHERE id = ? AND status = 'paused' AND next_period = ?`,
		string(status), nextPeriod, nextBillingAt.UTC(), now, subscriptionID, oldNext)
	tx.emitIf(err == nil && n == 1, models.EventSubscriptionResumed, subscriptionID)
	return n == 1, err
}

// UpdateSubscriptionTerms sets the amount and description that periods not
// yet invoiced are billed with (an invoice keeps the amount it was created
// with).
func (tx *Tx) UpdateSubscriptionTerms(now time.Time, subscriptionID int64, amount int64, description string) error {
	return tx.db.Exec(`UPDATE subscriptions SET amount = ?, description = ?, updated_at = ? WHERE id = ?`,
		amount, truncate(description, 500), now, subscriptionID).Error
}

// SetCustomerEmail changes where a customer's emails go (every subscription
// of the customer).
func (tx *Tx) SetCustomerEmail(now time.Time, customerID int64, email string) error {
	return tx.db.Exec(`UPDATE customers SET email = ?, updated_at = ? WHERE id = ?`, email, now, customerID).Error
}

// MarkPaymentMethodVerified records that the gateway confirmed a card and
// whose it is (an operator's card update checked it, as an import does).
func (tx *Tx) MarkPaymentMethodVerified(now time.Time, paymentMethodID int64) error {
	return tx.db.Exec(`UPDATE payment_methods SET verified_at = COALESCE(verified_at, ?), updated_at = ? WHERE id = ?`,
		now, now, paymentMethodID).Error
}

// CancelsDueOfSubscription returns the subscription's waiting intents whose
// cancel was requested and whose next try has come: what an operator's
// cancel sends at once (the daemon's intents job sends the same otherwise).
func (s *Store) CancelsDueOfSubscription(ctx context.Context, now time.Time, subscriptionID int64) ([]models.ChargeAttempt, error) {
	var as []models.ChargeAttempt
	err := s.db.WithContext(ctx).Raw(`SELECT * FROM charge_attempts WHERE subscription_id = ? AND status = 'requires_action'
	                                   AND cancel_requested_at IS NOT NULL AND (cancel_next_try_at IS NULL OR cancel_next_try_at <= ?)
	                                   ORDER BY id`, subscriptionID, now).Scan(&as).Error
	return as, err
}

// StoryInvoice is an invoice with what was refunded of it (refunds not
// failed or canceled).
type StoryInvoice struct {
	models.Invoice
	Refunded int64 `gorm:"column:refunded"`
}

// StoryEmail is an outbox email with its invoice's public id.
type StoryEmail struct {
	ID            int64      `gorm:"column:id"`
	Kind          string     `gorm:"column:kind"`
	ToAddress     string     `gorm:"column:to_address"`
	Status        string     `gorm:"column:status"`
	LinkPurpose   string     `gorm:"column:link_purpose"`
	InvoicePublic string     `gorm:"column:invoice_public_id"`
	SentAt        *time.Time `gorm:"column:sent_at"`
	LastError     string     `gorm:"column:last_error"`
	CreatedAt     time.Time  `gorm:"column:created_at"`
}

// StoryLink is a pay link with its invoice's public id and state; never its
// token or hash.
type StoryLink struct {
	ID            int64      `gorm:"column:id"`
	Purpose       string     `gorm:"column:purpose"`
	InvoicePublic string     `gorm:"column:invoice_public_id"`
	InvoiceStatus string     `gorm:"column:invoice_status"`
	ExpiresAt     time.Time  `gorm:"column:expires_at"`
	Uses          int        `gorm:"column:uses"`
	RevokedAt     *time.Time `gorm:"column:revoked_at"`
}

// StoryRefund is a refund with its invoice's public id.
type StoryRefund struct {
	models.Refund
	InvoicePublic string `gorm:"column:invoice_public_id"`
}

// SubscriptionStory is every row of one subscription's history.
type SubscriptionStory struct {
	Invoices []StoryInvoice
	Attempts []models.ChargeAttempt
	Cases    []models.DunningCase
	Refunds  []StoryRefund
	Emails   []StoryEmail
	Links    []StoryLink
}

// SubscriptionStoryRows reads the history of one subscription: its invoices
// (with refunded amounts), attempts, dunning cases, refunds, emails and links
// (its own and its invoices'); ops reads the audit entries of all of them.
func (s *Store) SubscriptionStoryRows(ctx context.Context, subscriptionID int64) (*SubscriptionStory, error) {
	db := s.db.WithContext(ctx)
	out := &SubscriptionStory{}
	if err := db.Raw(`SELECT i.*, COALESCE((SELECT SUM(r.amount) FROM refunds r WHERE r.invoice_id = i.id
	                                           AND r.status NOT IN ('failed','canceled')), 0) AS refunded
	                    FROM invoices i WHERE i.subscription_id = ? ORDER BY i.period_index`, subscriptionID).Scan(&out.Invoices).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT * FROM charge_attempts WHERE subscription_id = ? ORDER BY id`, subscriptionID).Scan(&out.Attempts).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT * FROM dunning_cases WHERE subscription_id = ? ORDER BY id`, subscriptionID).Scan(&out.Cases).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT r.*, i.public_id AS invoice_public_id FROM refunds r JOIN invoices i ON i.id = r.invoice_id
	                   WHERE i.subscription_id = ? ORDER BY r.id`, subscriptionID).Scan(&out.Refunds).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT e.id, e.kind, e.to_address, e.status, e.link_purpose, COALESCE(i.public_id, '') AS invoice_public_id,
	                         e.sent_at, e.last_error, e.created_at
	                    FROM emails e LEFT JOIN invoices i ON i.id = e.invoice_id
	                   WHERE e.subscription_id = ? OR i.subscription_id = ? ORDER BY e.id`, subscriptionID, subscriptionID).Scan(&out.Emails).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT l.id, l.purpose, COALESCE(i.public_id, '') AS invoice_public_id, COALESCE(i.status, '') AS invoice_status,
	                         l.expires_at, l.uses, l.revoked_at
	                    FROM pay_links l LEFT JOIN invoices i ON i.id = l.invoice_id
	                   WHERE l.subscription_id = ? OR i.subscription_id = ? ORDER BY l.id`, subscriptionID, subscriptionID).Scan(&out.Links).Error; err != nil {
		return nil, err
	}
	return out, nil
}
