package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
	"gorm.io/gorm/clause"
)

// InsertWebhookEvent stores an event in the inbox. It returns false when the
// gateway's event id is already there (a duplicate delivery), in which case the
// caller must do nothing else. An event without an id is refused
// (ErrEmptyEventID) and nothing is stored.
func (tx *Tx) InsertWebhookEvent(ev *models.WebhookEvent) (bool, error) {
	if strings.TrimSpace(ev.GatewayEventID) == "" {
		return false, ErrEmptyEventID
	}
	res := tx.db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "gateway_event_id"}}, DoNothing: true}).Create(ev)
	return res.RowsAffected == 1, res.Error
}

// SetWebhookResult records what applying a stored event did.
func (tx *Tx) SetWebhookResult(id int64, result models.WebhookResult, detail string) error {
	return tx.db.Exec(`UPDATE webhook_events SET result = ?, detail = ? WHERE id = ?`, result, truncate(detail, 500), id).Error
}

// AttemptForIntent finds the attempt a PaymentIntent belongs to: by the intent's
// id, else by the idempotency key billingd put in its metadata (the webhook may
// arrive before the HTTP answer recorded the id). Nil when it is not billingd's.
// AttemptOfIntent is AttemptForIntent (by payment id alone) outside any
// write: a read on the pool, not a turn of the SQLite writer.
func (s *Store) AttemptOfIntent(ctx context.Context, paymentIntentID string) (*models.ChargeAttempt, error) {
	var out *models.ChargeAttempt
	err := s.read(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.AttemptForIntent(paymentIntentID, "")
		return err
	})
	return out, err
}

func (tx *Tx) AttemptForIntent(paymentIntentID, idempotencyKey string) (*models.ChargeAttempt, error) {
	var a models.ChargeAttempt
	if paymentIntentID != "" {
		if err := tx.db.Where("payment_intent_id = ?", paymentIntentID).Limit(1).Find(&a).Error; err != nil {
			return nil, err
		}
		if a.ID != 0 {
			return &a, nil
		}
	}
	if idempotencyKey != "" {
		if err := tx.db.Where("idempotency_key = ?", idempotencyKey).Limit(1).Find(&a).Error; err != nil {
			return nil, err
		}
		if a.ID != 0 {
			return &a, nil
		}
	}
	return nil, nil
}

// InvoicePaymentIntent returns the status of an invoice and the PaymentIntent that
// paid it, to tell a repeated success from a second charge.
func (tx *Tx) InvoicePaymentIntent(invoiceID int64) (models.InvoiceStatus, string, error) {
	var inv models.Invoice
	err := tx.db.Select("status", "payment_intent_id").First(&inv, invoiceID).Error
	return inv.Status, inv.PaymentIntentID, err
}

// RecordPaymentMethod remembers that a gateway payment method belongs to a
// customer billingd knows (from payment_intent.succeeded or
// setup_intent.succeeded). It returns false when the customer is unknown, or
// when billingd already has that payment method under another customer.
func (tx *Tx) RecordPaymentMethod(now time.Time, gatewayCustomerID, gatewayPaymentMethodID string, saved SavedCard) (bool, error) {
	if gatewayCustomerID == "" || gatewayPaymentMethodID == "" {
		return false, nil
	}
	var c models.Customer
	if err := tx.db.Where("gateway_customer_id = ?", gatewayCustomerID).Limit(1).Find(&c).Error; err != nil {
		return false, err
	}
	if c.ID == 0 {
		return false, nil
	}
	pm, err := tx.upsertPaymentMethod(now, c.ID, gatewayPaymentMethodID)
	if err != nil {
		return false, err
	}
	if pm.CustomerID != c.ID {
		return false, nil
	}
	return true, tx.describeCard(now, pm, saved)
}

// SavedCard is what a gateway told about a card it saved or read: the
// payment that stored it (the start of its recurring series, Checkout.com)
// and its non-sensitive details (brand, last 4, expiry). Zero fields are
// unknown and change nothing; every path that records or replaces a card
// passes what the gateway said, so emails and pages can name the card and the
// expiring-card notice knows when it expires.
type SavedCard struct {
	SeriesPaymentID string
	Brand, Last4    string
	// ExpMonth (1–12) and ExpYear (four digits) are the card's expiry; both
	// or neither are recorded.
	ExpMonth, ExpYear int
}

// describes reports whether the card carries any detail to record.
func (c SavedCard) describes() bool {
	return c.Brand != "" || c.Last4 != "" || c.hasExpiry()
}

func (c SavedCard) hasExpiry() bool {
	return c.ExpMonth >= 1 && c.ExpMonth <= 12 && c.ExpYear > 0
}

// describeCard records what the gateway said about a card. A card's series
// payment is set once: the series starts with the payment that stored the
// card, and a later customer-initiated payment on the same card does not
// restart it. Brand, last 4 and expiry are the gateway's latest word and
// replace what was known (an account updater renews a card's expiry under
// the same id); details_read_at says when they were read.
func (tx *Tx) describeCard(now time.Time, pm models.PaymentMethod, saved SavedCard) error {
	set := map[string]any{}
	if saved.SeriesPaymentID != "" && pm.PreviousPaymentID == "" {
		set["previous_payment_id"] = truncate(saved.SeriesPaymentID, 255)
	}
	if saved.Brand != "" {
		set["brand"] = truncate(saved.Brand, 40)
	}
	if saved.Last4 != "" {
		set["last4"] = truncate(saved.Last4, 4)
	}
	if saved.hasExpiry() {
		set["exp_month"], set["exp_year"] = saved.ExpMonth, saved.ExpYear
	}
	if saved.describes() {
		set["details_read_at"] = now
	}
	if len(set) == 0 {
		return nil
	}
	set["updated_at"] = now
	return tx.db.Model(&models.PaymentMethod{}).Where("id = ?", pm.ID).Updates(set).Error
}

// ClaimForReconcile leases unresolved attempts older than olderThan whose
// reconcile time has come and that no worker holds, for the reconciler.
func (s *Store) ClaimForReconcile(ctx context.Context, owner string, now, leaseUntil, olderThan time.Time, limit int) ([]models.ChargeAttempt, error) {
	var claimed []models.ChargeAttempt
	start := time.Now()
	err := s.InTx(ctx, func(tx *Tx) error {
		q := `SELECT * FROM charge_attempts
		       WHERE ` + sqlUnresolved.in("status") + ` AND created_at <= ?
		         AND (lease_until IS NULL OR lease_until <= ?)
		         AND (next_reconcile_at IS NULL OR next_reconcile_at <= ?)
		       ORDER BY created_at, id LIMIT ?` + tx.forUpdateSkipLocked()
		var err error
		claimed, err = claimRows[models.ChargeAttempt](tx, "charge_attempts", q, []any{olderThan, now, now, limit}, owner, leaseUntil, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim for reconcile: %w", err)
	}
	for i := range claimed {
		claimed[i].LeaseDeadline = localDeadline(start, now, leaseUntil)
	}
	return claimed, nil
}

// DeferReconcile releases the reconciler's lease on an attempt the gateway could
// not settle yet and schedules the next look; with review set, the attempt
// becomes needs_review instead (its schedule is exhausted). Fenced by the lease
// version: if anything settled the attempt meanwhile, nothing changes.
func (tx *Tx) DeferReconcile(now time.Time, a *models.ChargeAttempt, next time.Time, review bool, reason string) (bool, error) {
	status := a.Status
	var finished *time.Time
	msg := a.ErrorMessage
	if review {
		status = models.AttemptNeedsReview
		finished = &now
		msg = reason
	}
	res := tx.db.Exec(`UPDATE charge_attempts
	      SET status = ?, reconcile_count = reconcile_count + 1, next_reconcile_at = ?, finished_at = ?, error_message = ?,
	          lease_owner = '', lease_until = NULL, lease_version = lease_version + 1, updated_at = ?
	    WHERE id = ? AND lease_version = ? AND `+sqlUnresolved.in("status"),
		status, next, finished, truncate(msg, 500), now, a.ID, a.LeaseVersion)
	if res.Error == nil && res.RowsAffected == 1 && review {
		tx.attemptMoved(status)
	}
	return res.RowsAffected == 1, res.Error
}
