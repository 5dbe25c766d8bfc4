package store

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// The reads and writes of `billingd reconcile --since T`, which compares the
// database with the gateway's payments since T and repairs what the database
// lost (a restore from a backup older than the payments) through the same
// settle path as a webhook.

// SubscriptionsToReconcile lists the subscriptions whose periods may have
// been charged since the database's copy was taken: every one not canceled.
// Reconcile derives the order id of each of their periods from
// next_period on, to map a payment whose invoice the database does not have
// back to its period.
func (s *Store) SubscriptionsToReconcile(ctx context.Context) ([]models.Subscription, error) {
	var out []models.Subscription
	err := s.db.WithContext(ctx).Where("status <> ?", string(models.SubscriptionCanceled)).Order("id").Find(&out).Error
	return out, err
}

// InvoicesToReconcile lists the invoices created or paid at or after since:
// the invoices whose payments a reconcile since then compares with the
// gateway's.
func (s *Store) InvoicesToReconcile(ctx context.Context, since time.Time) ([]models.Invoice, error) {
	var out []models.Invoice
	err := s.db.WithContext(ctx).Where("created_at >= ? OR paid_at >= ?", since, since).Order("id").Find(&out).Error
	return out, err
}

// InvoiceByPublicIDTx is InvoiceByPublicID inside the caller's transaction.
func (tx *Tx) InvoiceByPublicIDTx(publicID string) (*models.Invoice, error) {
	return one[models.Invoice](tx.db.Where("public_id = ?", publicID))
}

// InvoiceOfPeriod loads a subscription's invoice of the period that starts at
// periodStart; nil when the period has none.
func (tx *Tx) InvoiceOfPeriod(subscriptionID int64, periodStart time.Time) (*models.Invoice, error) {
	return one[models.Invoice](tx.db.Where("subscription_id = ? AND period_start = ?", subscriptionID, periodStart.UTC()))
}

// SubscriptionTx loads a subscription inside the caller's transaction; nil
// when none has that id.
func (tx *Tx) SubscriptionTx(id int64) (*models.Subscription, error) {
	return one[models.Subscription](tx.db.Where("id = ?", id))
}

// RecoveredAttempt is an attempt the gateway has a payment for but the
// database does not (it was restored from a backup older than the attempt):
// its number and key are the payment's own (its metadata), so every later
// read, webhook and replay of that payment finds it.
type RecoveredAttempt struct {
	AttemptNo      int
	IdempotencyKey string
	// GatewayCustomer and GatewayPM are the payment's customer and card;
	// empty ones are taken from the subscription.
	GatewayCustomer string
	GatewayPM       string
	OffSession      bool
}

// InsertRecoveredAttempt records, inside the caller's transaction, an
// attempt of inv that the gateway knows and the database lost, with the
// invoice's amount and currency as its frozen request (what billingd asked
// for: a payment of another amount is then caught as a mismatch when it is
// settled). It is inserted finished ('failed', "recovered by reconcile")
// and without a lease, so nothing claims or replays it and the one-open-
// attempt rule is not touched; the caller settles it from the payment in the
// same transaction (charge.Engine.ApplyEvent), exactly as a webhook would.
// The invoice's attempt_count is raised to the attempt's number, so its next
// attempt gets a number (and a key) of its own.
func (tx *Tx) InsertRecoveredAttempt(now time.Time, inv *models.Invoice, r RecoveredAttempt) (*models.ChargeAttempt, error) {
	if r.AttemptNo < 1 || r.IdempotencyKey == "" {
		return nil, fmt.Errorf("store: recovered attempt of invoice %s: attempt %d, key %q", inv.PublicID, r.AttemptNo, r.IdempotencyKey)
	}
	var t struct {
		GatewayCustomer   string
		GatewayPM         string
		PreviousPaymentID string
	}
	if err := tx.db.Raw(`SELECT c.gateway_customer_id AS gateway_customer, pm.gateway_payment_method_id AS gateway_pm, pm.previous_payment_id
	                       FROM subscriptions s JOIN customers c ON c.id = s.customer_id JOIN payment_methods pm ON pm.id = s.payment_method_id
	                      WHERE s.id = ?`, inv.SubscriptionID).Scan(&t).Error; err != nil {
		return nil, err
	}
	if r.GatewayCustomer == "" {
		r.GatewayCustomer = t.GatewayCustomer
	}
	if r.GatewayPM == "" {
		r.GatewayPM = t.GatewayPM
	}
	a := models.ChargeAttempt{
		InvoiceID: inv.ID, SubscriptionID: inv.SubscriptionID, AttemptNo: r.AttemptNo,
		IdempotencyKey: r.IdempotencyKey, MerchantOrderID: inv.PublicID, Amount: inv.Amount, Currency: inv.Currency,
		GatewayCustomer: r.GatewayCustomer, GatewayPM: r.GatewayPM, PreviousPaymentID: t.PreviousPaymentID,
		OffSession: r.OffSession, Status: models.AttemptFailed, LeaseVersion: 1, CreatedAt: now, UpdatedAt: now,
	}
	as := []models.ChargeAttempt{a}
	if err := tx.insertAttempts(as); err != nil {
		return nil, err
	}
	if _, err := tx.exec(`UPDATE charge_attempts SET error_message = ?, finished_at = ? WHERE id = ?`,
		"recovered by reconcile from the gateway's payment", now, as[0].ID); err != nil {
		return nil, err
	}
	if _, err := tx.exec(`UPDATE invoices SET attempt_count = ?, updated_at = ? WHERE id = ? AND attempt_count < ?`,
		r.AttemptNo, now, inv.ID, r.AttemptNo); err != nil {
		return nil, err
	}
	if inv.AttemptCount < r.AttemptNo {
		inv.AttemptCount = r.AttemptNo
	}
	return &as[0], nil
}

// FlagPaidAttemptForReview marks the succeeded attempt that paid an invoice
// with paymentIntentID needs_review, with msg as its message, because the
// gateway does not show that payment as succeeded (or shows another amount):
// the invoice stays paid — billingd never un-pays an invoice on its own —
// and the attempt appears among those that need review (`billingd attempts
// list --status needs_review`) until a person resolved it from the gateway's
// records. It returns the attempt, or nil when the invoice has no succeeded
// attempt with that payment.
func (tx *Tx) FlagPaidAttemptForReview(now time.Time, invoiceID int64, paymentIntentID, msg string) (*models.ChargeAttempt, error) {
	a, err := one[models.ChargeAttempt](tx.db.Where("invoice_id = ? AND payment_intent_id = ? AND status = 'succeeded'", invoiceID, paymentIntentID))
	if err != nil || a == nil {
		return nil, err
	}
	n, err := tx.exec(`UPDATE charge_attempts SET status = 'needs_review', error_message = ?, lease_version = lease_version + 1, updated_at = ?
	                    WHERE id = ? AND status = 'succeeded'`, truncate(msg, 500), now, a.ID)
	if err != nil || n != 1 {
		return nil, err
	}
	tx.attemptMoved(models.AttemptNeedsReview)
	a.Status, a.ErrorMessage = models.AttemptNeedsReview, truncate(msg, 500)
	return a, nil
}

// AuditedBefore reports whether an audit row with this action and target
// reference exists: reconcile flags a payment it cannot place once, not on
// every run.
func (tx *Tx) AuditedBefore(action, targetType, targetRef string) (bool, error) {
	var n int64
	err := tx.db.Model(&models.AuditEntry{}).Where("action = ? AND target_type = ? AND target_ref = ?", action, targetType, targetRef).Count(&n).Error
	return n > 0, err
}
