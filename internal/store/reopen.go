package store

import (
	"time"

	"github.com/billingd/billingd/internal/models"
)

// DeclineCaptureDeclined is the decline code of a payment the gateway approved
// and then could not capture.
const DeclineCaptureDeclined = "capture_declined"

// ReopenAfterCaptureDeclined records, in the caller's transaction, that the
// payment that paid an invoice was approved but its capture was declined: no
// money moved after all. It is the one recorded exception to forward-only:
// the succeeded attempt becomes declined (soft, code capture_declined), the
// invoice goes from paid back to open, and a dunning case the payment had
// recovered opens again at the start of its schedule, so the caller's
// dunning step schedules the next try and tells the customer. Nothing changes unless the attempt is succeeded
// with exactly this payment and its invoice is paid by it (a duplicate or a
// reordered event is a no-op); moved says whether it changed.
func (tx *Tx) ReopenAfterCaptureDeclined(now time.Time, attemptID int64, paymentID, message string) (moved bool, err error) {
	var a models.ChargeAttempt
	if err := tx.db.Where("id = ?", attemptID).Limit(1).Find(&a).Error; err != nil || a.ID == 0 {
		return false, err
	}
	if a.Status != models.AttemptSucceeded || a.PaymentIntentID != paymentID {
		return false, nil
	}
	n, err := tx.exec(`UPDATE charge_attempts SET status = ?, decline_code = ?, hard_decline = ?, error_message = ?, updated_at = ?
	                    WHERE id = ? AND status = ? AND payment_intent_id = ?`,
		string(models.AttemptDeclined), DeclineCaptureDeclined, false, truncate(message, 500), now,
		attemptID, string(models.AttemptSucceeded), paymentID)
	if err != nil || n != 1 {
		return false, err
	}
	tx.attemptMoved(models.AttemptDeclined)
	reopened, err := tx.exec(`UPDATE invoices SET status = 'open', paid_at = NULL, payment_intent_id = '', updated_at = ?
	                       WHERE id = ? AND status = 'paid' AND payment_intent_id = ?`, now, a.InvoiceID, paymentID)
	if err != nil {
		return false, err
	}
	tx.emitIf(reopened == 1, models.EventInvoiceReopened, a.InvoiceID)
	// The reopened case starts its schedule again: the payment that
	// recovered it may have come at its last step, and a capture decline is
	// a new failure, not the last one of the old schedule.
	if _, err := tx.exec(`UPDATE dunning_cases SET status = ?, step = 0, next_step_at = NULL, closed_at = NULL, updated_at = ?
	                       WHERE invoice_id = ? AND status = ?`, string(models.CaseOpen), now, a.InvoiceID, string(models.CaseRecovered)); err != nil {
		return false, err
	}
	return true, nil
}

// FillActionURL keeps the challenge address of an attempt that waits for 3-D
// Secure but was recorded without one (a webhook that said "waiting" came
// before the answer that carried the address). It changes nothing else, and
// only that attempt with that payment.
func (tx *Tx) FillActionURL(now time.Time, attemptID int64, paymentID, actionURL string) error {
	return tx.db.Exec(`UPDATE charge_attempts SET action_url = ?, updated_at = ?
	                    WHERE id = ? AND status = ? AND action_url = '' AND payment_intent_id = ?`,
		truncate(actionURL, 2000), now, attemptID, string(models.AttemptRequiresAction), paymentID).Error
}
