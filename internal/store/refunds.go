package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/billingd/billingd/internal/models"
)

// Refund SQL lists, built from the models' typed lists.
var (
	sqlOpenRefund     = newSQLSet(models.OpenRefundStatuses)
	sqlReleasedRefund = newSQLSet(models.ReleasedRefundStatuses)
)

// ErrRefundExceedsPayment means a refund would take back more than the payment
// took, counting every refund of it that is not failed or canceled.
var ErrRefundExceedsPayment = errors.New("store: refund exceeds the amount paid")

// ErrNoPayment means the invoice has no succeeded payment to refund.
var ErrNoPayment = errors.New("store: no succeeded payment to refund")

// NewRefund is a refund to reserve.
type NewRefund struct {
	InvoiceID int64
	// PaymentIntentID is the payment refunded; empty means the payment that
	// paid the invoice.
	PaymentIntentID string
	// OriginalPaymentIntentID is, for a duplicate, the payment kept.
	OriginalPaymentIntentID string
	Amount                  int64
	Reason                  models.RefundReason
	IdempotencyKey          string
	// Status is pending (send now) or confirming (a duplicate to read back
	// first).
	Status models.RefundStatus
	// PaidAmount and PaidCurrency are what the payment took, for a payment
	// billingd has no succeeded attempt of (a second payment the gateway
	// reported for an attempt that has another): as the gateway reported it.
	PaidAmount   int64
	PaidCurrency string
}

// lockInvoiceSuffix locks the invoice row a refund reserves against on
// PostgreSQL; on SQLite the IMMEDIATE transaction already holds the one write
// lock.
func (tx *Tx) lockInvoiceSuffix() string {
	if tx.dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// ReserveRefund commits nothing by itself: inside the caller's transaction it
// locks the invoice (row lock on PostgreSQL, the single writer on SQLite),
// checks that the payment's refunds including this one do not exceed what it
// took, and inserts the row. An idempotency key that exists already returns
// that row with created false and changes nothing.
func (tx *Tx) ReserveRefund(now time.Time, nr NewRefund) (rf *models.Refund, created bool, err error) {
	var existing models.Refund
	if err := tx.db.Where("idempotency_key = ?", nr.IdempotencyKey).Limit(1).Find(&existing).Error; err != nil {
		return nil, false, err
	}
	if existing.ID != 0 {
		return &existing, false, nil
	}
	var inv models.Invoice
	if err := tx.db.Raw(`SELECT * FROM invoices WHERE id = ?`+tx.lockInvoiceSuffix(), nr.InvoiceID).Scan(&inv).Error; err != nil {
		return nil, false, err
	}
	if inv.ID == 0 {
		return nil, false, fmt.Errorf("store: reserve refund: invoice %d: %w", nr.InvoiceID, gorm.ErrRecordNotFound)
	}
	pi := nr.PaymentIntentID
	if pi == "" {
		pi = inv.PaymentIntentID
	}
	if pi == "" {
		return nil, false, fmt.Errorf("invoice %s: %w", inv.PublicID, ErrNoPayment)
	}
	var a models.ChargeAttempt
	if err := tx.db.Where("invoice_id = ? AND payment_intent_id = ? AND status = ?", inv.ID, pi, models.AttemptSucceeded).
		Limit(1).Find(&a).Error; err != nil {
		return nil, false, err
	}
	paid, currency := nr.PaidAmount, nr.PaidCurrency
	var attemptID *int64
	if a.ID != 0 {
		paid, currency, attemptID = a.Amount, a.Currency, &a.ID
	}
	if paid <= 0 {
		return nil, false, fmt.Errorf("invoice %s, payment %s: %w", inv.PublicID, pi, ErrNoPayment)
	}
	if attemptID == nil {
		// The payment has no attempt of its own: link the attempt whose key
		// it carried, if any, for the reader.
		var other models.ChargeAttempt
		if err := tx.db.Where("invoice_id = ? AND payment_intent_id = ?", inv.ID, nr.OriginalPaymentIntentID).Limit(1).Find(&other).Error; err != nil {
			return nil, false, err
		}
		if other.ID != 0 && nr.OriginalPaymentIntentID != "" {
			attemptID = &other.ID
		}
	}
	var reserved int64
	if err := tx.db.Raw(`SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE payment_intent_id = ? AND `+sqlReleasedRefund.notIn("status"), pi).
		Scan(&reserved).Error; err != nil {
		return nil, false, err
	}
	if nr.Amount == 0 {
		nr.Amount = paid - reserved // in full: what is left of the payment
	}
	if nr.Amount <= 0 || reserved+nr.Amount > paid {
		return nil, false, fmt.Errorf("invoice %s, payment %s: %d of %d %s refunded or reserved, %d more asked: %w",
			inv.PublicID, pi, reserved, paid, currency, nr.Amount, ErrRefundExceedsPayment)
	}
	status := nr.Status
	if status == "" {
		status = models.RefundPending
	}
	rf = &models.Refund{
		InvoiceID: inv.ID, AttemptID: attemptID, PaymentIntentID: pi, OriginalPaymentIntentID: nr.OriginalPaymentIntentID,
		Amount: nr.Amount, Currency: currency, Reason: nr.Reason, IdempotencyKey: nr.IdempotencyKey, Status: status,
		NextTryAt: &now, CreatedAt: now, UpdatedAt: now,
	}
	res := tx.db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "idempotency_key"}}, DoNothing: true}).Create(rf)
	if res.Error != nil {
		return nil, false, res.Error
	}
	return rf, res.RowsAffected == 1, nil
}

// ReserveRefund is Tx.ReserveRefund in a transaction of its own: the row is
// committed when it returns, before any request is sent.
func (s *Store) ReserveRefund(ctx context.Context, now time.Time, nr NewRefund) (rf *models.Refund, created bool, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		rf, created, err = tx.ReserveRefund(now, nr)
		return err
	})
	return rf, created, err
}

// RefundResult is what one refund step established.
type RefundResult struct {
	Status          models.RefundStatus
	GatewayRefundID string
	ErrorMessage    string
	Tries           int
	NextTryAt       *time.Time
	// KeepLease keeps the caller's lease (a confirmed duplicate that the same
	// worker sends next); the lease version still moves on.
	KeepLease bool
}

// FinishRefund writes a result onto a refund the caller claimed, fenced by the
// lease version and forward only (from an open state). It releases the lease.
// ErrLeaseLost means someone else (a webhook) wrote first.
func (tx *Tx) FinishRefund(now time.Time, rf *models.Refund, r RefundResult) error {
	var finished *time.Time
	if !r.Status.Open() {
		finished = &now
	}
	release := `, lease_owner = '', lease_until = NULL`
	if r.KeepLease {
		release = ""
	}
	n, err := tx.exec(`UPDATE refunds
	      SET status = ?, gateway_refund_id = CASE WHEN ? <> '' THEN ? ELSE gateway_refund_id END, error_message = ?,
	          tries = tries + ?, next_try_at = ?, finished_at = ?`+release+`,
	          lease_version = lease_version + 1, updated_at = ?
	    WHERE id = ? AND lease_version = ? AND `+sqlOpenRefund.in("status"),
		r.Status, r.GatewayRefundID, r.GatewayRefundID, truncate(r.ErrorMessage, 500), r.Tries, r.NextTryAt, finished, now,
		rf.ID, rf.LeaseVersion)
	if err != nil {
		return err
	}
	if n != 1 {
		return ErrLeaseLost
	}
	tx.refundMoved(rf.Reason, r.Status)
	tx.emitRefunded(r.Status, rf.InvoiceID, rf.ID)
	rf.Status = r.Status
	rf.LeaseVersion++
	if !r.KeepLease {
		rf.LeaseOwner, rf.LeaseUntil = "", nil
	}
	rf.ErrorMessage = r.ErrorMessage
	if r.GatewayRefundID != "" {
		rf.GatewayRefundID = r.GatewayRefundID
	}
	return nil
}

// FinishRefund is Tx.FinishRefund in a transaction of its own.
func (s *Store) FinishRefund(ctx context.Context, now time.Time, rf *models.Refund, r RefundResult) error {
	return s.InTx(ctx, func(tx *Tx) error { return tx.FinishRefund(now, rf, r) })
}

// RefundForGateway finds the refund a gateway refund belongs to: by its id,
// else by the idempotency key billingd put in its metadata. Nil when it is
// not billingd's.
func (tx *Tx) RefundForGateway(gatewayRefundID, idempotencyKey string) (*models.Refund, error) {
	var rf models.Refund
	if gatewayRefundID != "" {
		if err := tx.db.Where("gateway_refund_id = ?", gatewayRefundID).Limit(1).Find(&rf).Error; err != nil {
			return nil, err
		}
		if rf.ID != 0 {
			return &rf, nil
		}
	}
	if idempotencyKey != "" {
		if err := tx.db.Where("idempotency_key = ?", idempotencyKey).Limit(1).Find(&rf).Error; err != nil {
			return nil, err
		}
		if rf.ID != 0 {
			return &rf, nil
		}
	}
	return nil, nil
}

// SettleRefund writes an authoritative refund state learned from a webhook:
// it ignores leases, only moves a refund that is still open or waiting for
// review forward, and bumps the lease version so that a worker still holding
// the old lease cannot overwrite it. A refund the gateway calls pending moves
// to processing and stays open. Returns false when the refund was already
// past it.
func (tx *Tx) SettleRefund(now time.Time, id int64, reason models.RefundReason, status models.RefundStatus, gatewayRefundID, msg string) (bool, error) {
	from := newSQLSet([]models.RefundStatus{models.RefundPending, models.RefundUnknown, models.RefundProcessing, models.RefundNeedsReview})
	if status == models.RefundProcessing {
		from = newSQLSet([]models.RefundStatus{models.RefundPending, models.RefundUnknown})
	}
	var finished *time.Time
	if !status.Open() {
		finished = &now
	}
	n, err := tx.exec(`UPDATE refunds
	      SET status = ?, gateway_refund_id = CASE WHEN ? <> '' THEN ? ELSE gateway_refund_id END, error_message = ?,
	          finished_at = ?, lease_owner = '', lease_until = NULL, lease_version = lease_version + 1, updated_at = ?
	    WHERE id = ? AND `+from.in("status"),
		status, gatewayRefundID, gatewayRefundID, truncate(msg, 500), finished, now, id)
	if err == nil && n == 1 {
		tx.refundMoved(reason, status)
		if status == models.RefundSucceeded && tx.EventsOn() {
			var invoiceID int64
			if err := tx.db.Raw(`SELECT invoice_id FROM refunds WHERE id = ?`, id).Scan(&invoiceID).Error; err != nil {
				return false, err
			}
			tx.emitRefunded(status, invoiceID, id)
		}
	}
	return n == 1, err
}

// emitRefunded emits invoice.refunded when a refund reached succeeded: the
// money went back, whichever path (the refund job's answer, a webhook) saw
// it first. FinishRefund and SettleRefund are the only writes of a refund's
// status, and neither moves a refund out of succeeded, so a refund is
// reported once.
func (tx *Tx) emitRefunded(status models.RefundStatus, invoiceID, refundID int64) {
	if status == models.RefundSucceeded {
		tx.Emit(EventRef{Type: models.EventInvoiceRefunded, ObjectID: invoiceID, RefundID: refundID})
	}
}

// ClaimRefunds leases open refunds whose next try has come and that no worker
// holds, for the refund job.
func (s *Store) ClaimRefunds(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]models.Refund, error) {
	var claimed []models.Refund
	start := time.Now()
	err := s.InTx(ctx, func(tx *Tx) error {
		q := `SELECT * FROM refunds
		       WHERE ` + sqlOpenRefund.in("status") + `
		         AND (next_try_at IS NULL OR next_try_at <= ?)
		         AND (lease_until IS NULL OR lease_until <= ?)
		       ORDER BY id LIMIT ?` + tx.forUpdateSkipLocked()
		var err error
		claimed, err = claimRows[models.Refund](tx, "refunds", q, []any{now, now, limit}, owner, leaseUntil, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim refunds: %w", err)
	}
	for i := range claimed {
		claimed[i].LeaseDeadline = localDeadline(start, now, leaseUntil)
	}
	return claimed, nil
}

// RefundByKey loads a refund by its idempotency key; nil when there is none.
func (s *Store) RefundByKey(ctx context.Context, key string) (*models.Refund, error) {
	var rf models.Refund
	if err := s.db.WithContext(ctx).Where("idempotency_key = ?", key).Limit(1).Find(&rf).Error; err != nil {
		return nil, err
	}
	if rf.ID == 0 {
		return nil, nil
	}
	return &rf, nil
}

// RefundsOfInvoice lists an invoice's refunds, oldest first.
func (s *Store) RefundsOfInvoice(ctx context.Context, invoiceID int64) ([]models.Refund, error) {
	var out []models.Refund
	err := s.db.WithContext(ctx).Where("invoice_id = ?", invoiceID).Order("id").Find(&out).Error
	return out, err
}

// InvoiceRefunded is how much of an invoice's payments went back to the
// customer (succeeded refunds), in the invoice's minor units: the invoice's
// refunded amount.
func (s *Store) InvoiceRefunded(ctx context.Context, invoiceID int64) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Raw(`SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE invoice_id = ? AND status = 'succeeded'`, invoiceID).Scan(&n).Error
	return n, err
}

// CountRefunds counts refunds in the given states, or all of them.
func (s *Store) CountRefunds(ctx context.Context, statuses ...models.RefundStatus) (int64, error) {
	var n int64
	q := s.db.WithContext(ctx).Model(&models.Refund{})
	if len(statuses) > 0 {
		q = q.Where("status IN ?", statuses)
	}
	err := q.Count(&n).Error
	return n, err
}

// InvoiceForRefund is what the refund job needs of a refund's invoice.
type InvoiceForRefund struct {
	ID              int64
	PublicID        string
	Status          models.InvoiceStatus
	PaymentIntentID string
}

// InvoiceForRefund loads the invoice of a refund.
func (s *Store) InvoiceForRefund(ctx context.Context, invoiceID int64) (*InvoiceForRefund, error) {
	var inv models.Invoice
	if err := s.db.WithContext(ctx).First(&inv, invoiceID).Error; err != nil {
		return nil, err
	}
	return &InvoiceForRefund{ID: inv.ID, PublicID: inv.PublicID, Status: inv.Status, PaymentIntentID: inv.PaymentIntentID}, nil
}

// SucceededAttemptForIntent returns the succeeded attempt of an invoice whose
// payment is paymentIntentID; nil when there is none.
func (tx *Tx) SucceededAttemptForIntent(invoiceID int64, paymentIntentID string) (*models.ChargeAttempt, error) {
	var a models.ChargeAttempt
	if err := tx.db.Where("invoice_id = ? AND payment_intent_id = ? AND status = ?", invoiceID, paymentIntentID, models.AttemptSucceeded).
		Limit(1).Find(&a).Error; err != nil {
		return nil, err
	}
	if a.ID == 0 {
		return nil, nil
	}
	return &a, nil
}

// ClaimRefund leases one open refund by id, if no worker holds it; nil when
// it is not open or held.
func (s *Store) ClaimRefund(ctx context.Context, owner string, now, leaseUntil time.Time, id int64) (*models.Refund, error) {
	var claimed []models.Refund
	start := time.Now()
	err := s.InTx(ctx, func(tx *Tx) error {
		q := `SELECT * FROM refunds WHERE id = ? AND ` + sqlOpenRefund.in("status") + `
		         AND (lease_until IS NULL OR lease_until <= ?)` + tx.forUpdateSkipLocked()
		var err error
		claimed, err = claimRows[models.Refund](tx, "refunds", q, []any{id, now}, owner, leaseUntil, now)
		return err
	})
	if err != nil || len(claimed) == 0 {
		return nil, err
	}
	claimed[0].LeaseDeadline = localDeadline(start, now, leaseUntil)
	return &claimed[0], nil
}

// SetOnRefundSettled sets Options.OnRefundSettled on an open store, before
// any transaction runs (the daemon's metrics, which exist before the store).
func (s *Store) SetOnRefundSettled(fn func(models.RefundReason, models.RefundStatus)) {
	s.onRefund = fn
}

// refundStatus fills the refund lines of `billingd status`.
func (s *Store) refundStatus(ctx context.Context, r *StatusReport) error {
	db := s.db.WithContext(ctx)
	if err := db.Raw(`SELECT status, COUNT(*) AS n FROM refunds GROUP BY status ORDER BY status`).Scan(&r.Refunds).Error; err != nil {
		return err
	}
	if err := db.Raw(`SELECT status, COUNT(*) AS n FROM refunds WHERE reason = 'duplicate' GROUP BY status ORDER BY status`).Scan(&r.DuplicateRefunds).Error; err != nil {
		return err
	}
	return db.Raw(`SELECT currency, SUM(amount) AS amount, COUNT(*) AS n FROM refunds WHERE status = 'succeeded' GROUP BY currency ORDER BY currency`).Scan(&r.Refunded).Error
}
