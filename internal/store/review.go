package store

import (
	"errors"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// FlagAttemptForReview makes an attempt needs_review because the gateway
// reported something about its PaymentIntent that billingd must not apply (an
// amount or currency other than the attempt's frozen request), with msg as its
// error message, and holds its invoice: no automatic charge starts for it, and
// its open dunning case takes no further step (a held_for_review step says
// why), until a human resolved the attempt. moneyMayHaveMoved (the report said succeeded)
// flags the attempt from any state but succeeded; otherwise only an unresolved
// attempt moves, as any other outcome would. It returns false when the attempt
// was not moved (already succeeded, or already past an unresolved state).
func (tx *Tx) FlagAttemptForReview(now time.Time, a *models.ChargeAttempt, paymentIntentID, msg string, moneyMayHaveMoved bool) (bool, error) {
	from := sqlUnresolved.in("status")
	if moneyMayHaveMoved {
		from = `(status <> 'succeeded' AND status <> 'needs_review')`
	}
	n, err := tx.exec(`UPDATE charge_attempts
	      SET status = 'needs_review', payment_intent_id = CASE WHEN ? <> '' THEN ? ELSE payment_intent_id END,
	          error_message = ?, next_try_at = NULL, next_reconcile_at = NULL, finished_at = ?,
	          lease_owner = '', lease_until = NULL, lease_version = lease_version + 1, updated_at = ?
	    WHERE id = ? AND `+from, paymentIntentID, paymentIntentID, truncate(msg, 500), now, now, a.ID)
	if err != nil || n != 1 {
		return false, err
	}
	tx.attemptMoved(models.AttemptNeedsReview)
	if _, err := tx.exec(`UPDATE invoices SET next_attempt_at = NULL, updated_at = ? WHERE id = ? AND status = 'open'`, now, a.InvoiceID); err != nil {
		return false, err
	}
	// An open dunning case of the invoice waits too: its next step would
	// retry the card, remind the customer or exhaust the case.
	var c models.DunningCase
	if err := tx.db.Where("invoice_id = ? AND status = 'open'", a.InvoiceID).Limit(1).Find(&c).Error; err != nil {
		return false, err
	}
	if c.ID != 0 {
		if _, err := tx.exec(`UPDATE dunning_cases SET next_step_at = NULL, updated_at = ? WHERE id = ?`, now, c.ID); err != nil {
			return false, err
		}
		if err := tx.AddCaseStep(now, c.ID, c.Step, models.StepHeldForReview, "attempt "+a.IdempotencyKey+" needs review: "+msg); err != nil {
			return false, err
		}
	}
	return true, nil
}

// ErrEmptyEventID refuses a webhook event without a gateway event id: the id is
// the inbox's unique key, and an empty one would make every later id-less
// event a "duplicate" of the first.
var ErrEmptyEventID = errors.New("store: webhook event has no gateway event id")

// FlagWebhookForReview records that a stored event was not applied because a
// human must look at it (detail says why): result stays 'ignored' and
// needs_review is set.
func (tx *Tx) FlagWebhookForReview(id int64, detail string) error {
	_, err := tx.exec(`UPDATE webhook_events SET result = 'ignored', needs_review = TRUE, detail = ? WHERE id = ?`, truncate(detail, 500), id)
	return err
}
