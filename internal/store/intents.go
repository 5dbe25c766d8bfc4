package store

import (
	"context"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// RequestIntentCancels records, in the caller's transaction, that every intent
// of the invoices still waiting for the customer to authenticate must be
// canceled at the gateway (the invoice was paid, written off or voided):
// except, when given, the intent that paid. The intents job sends the cancels
// after the commit. A cancel already requested keeps its reason.
func (tx *Tx) RequestIntentCancels(now time.Time, invoiceIDs []int64, exceptIntent string) error {
	if len(invoiceIDs) == 0 {
		return nil
	}
	return tx.db.Exec(`UPDATE charge_attempts SET cancel_requested_at = ?, cancel_reason = ?, updated_at = ?
	                    WHERE invoice_id IN ? AND status = 'requires_action' AND cancel_requested_at IS NULL
	                      AND payment_intent_id <> ?`, now, models.CancelInvoiceSettled, now, invoiceIDs, exceptIntent).Error
}

// RequestAbandonedCancels marks the intents that have waited for the
// customer's authentication since before cutoff (dunning.challenge_timeout
// ago) for cancel at the gateway, and returns how many it marked.
func (s *Store) RequestAbandonedCancels(ctx context.Context, now, cutoff time.Time) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		n, err = tx.exec(`UPDATE charge_attempts SET cancel_requested_at = ?, cancel_reason = ?, updated_at = ?
		                   WHERE status = 'requires_action' AND finished_at <= ? AND cancel_requested_at IS NULL`,
			now, models.CancelChallengeTimeout, now, cutoff)
		return err
	})
	return n, err
}

// CancelsDue returns waiting intents whose cancel was requested and whose next
// try has come, oldest first.
func (s *Store) CancelsDue(ctx context.Context, now time.Time, limit int) ([]models.ChargeAttempt, error) {
	var as []models.ChargeAttempt
	err := s.db.WithContext(ctx).Raw(`SELECT * FROM charge_attempts WHERE status = 'requires_action' AND cancel_requested_at IS NOT NULL
	                                   AND (cancel_next_try_at IS NULL OR cancel_next_try_at <= ?) ORDER BY id LIMIT ?`, now, limit).Scan(&as).Error
	return as, err
}

// RequestCancel records billingd's decision to cancel one waiting intent (a
// customer pressing Pay while an off-session intent waits), before the cancel
// is sent. False when the attempt no longer waits.
func (tx *Tx) RequestCancel(now time.Time, attemptID int64, reason string) (bool, error) {
	n, err := tx.exec(`UPDATE charge_attempts SET cancel_requested_at = COALESCE(cancel_requested_at, ?),
	                          cancel_reason = CASE WHEN cancel_reason = '' THEN ? ELSE cancel_reason END, updated_at = ?
	                    WHERE id = ? AND status = 'requires_action'`, now, reason, now, attemptID)
	return n == 1, err
}

// MarkIntentCanceled records that the gateway canceled a waiting intent at
// billingd's request: the attempt is canceled and its invoice free for the
// next attempt. False when the attempt had moved on already (a webhook).
func (tx *Tx) MarkIntentCanceled(now time.Time, attemptID int64) (bool, error) {
	n, err := tx.exec(`UPDATE charge_attempts SET status = 'canceled', action_url = '', cancel_next_try_at = NULL,
	                          lease_version = lease_version + 1, updated_at = ?
	                    WHERE id = ? AND status = 'requires_action'`, now, attemptID)
	if err == nil && n == 1 {
		tx.attemptMoved(models.AttemptCanceled)
	}
	return n == 1, err
}

// RecordCancelFailure counts a cancel that got no definite answer (a timeout,
// a dropped connection, a 5xx); the attempt keeps waiting, and blocking its
// invoice, until next. With giveUp the attempt becomes needs_review instead:
// a human must establish whether the intent can still be paid; nothing new
// starts for the invoice meanwhile.
func (tx *Tx) RecordCancelFailure(now time.Time, attemptID int64, next time.Time, giveUp bool, message string) error {
	if giveUp {
		n, err := tx.exec(`UPDATE charge_attempts SET status = 'needs_review', cancel_tries = cancel_tries + 1, cancel_next_try_at = NULL,
		                          error_message = ?, lease_version = lease_version + 1, updated_at = ?
		                    WHERE id = ? AND status = 'requires_action'`, truncate(message, 500), now, attemptID)
		if err == nil && n == 1 {
			tx.attemptMoved(models.AttemptNeedsReview)
		}
		return err
	}
	return tx.db.Exec(`UPDATE charge_attempts SET cancel_tries = cancel_tries + 1, cancel_next_try_at = ?, error_message = ?, updated_at = ?
	                    WHERE id = ? AND status = 'requires_action'`, next, truncate(message, 500), now, attemptID).Error
}

// PressRefusal says why a press on a pay link started no charge.
type PressRefusal string

// The reasons a press starts nothing.
const (
	// PressClosed: the invoice is not open any more.
	PressClosed PressRefusal = "closed"
	// PressDeadCard: the gateway called the saved card dead; a link never
	// charges it.
	PressDeadCard PressRefusal = "dead_card"
	// PressLimit: the invoice or the card reached dunning.link_charges_per_hour.
	PressLimit PressRefusal = "limit"
	// PressReview: an earlier attempt of the invoice needs a human (money may
	// have moved).
	PressReview PressRefusal = "review"
	// PressBusy: another request holds the invoice right now.
	PressBusy PressRefusal = "busy"
)

// Press is what a press on a pay link found: a new attempt to send, the
// invoice's open attempt (nothing new started), or a refusal.
type Press struct {
	Attempt *models.ChargeAttempt
	Open    *models.ChargeAttempt
	Refused PressRefusal
}

// StartOnSessionAttempt commits an on-session attempt for an invoice the
// customer pays through a pay link, before anything is sent, under the rules
// every charge of an invoice follows: the invoice row is locked (on
// PostgreSQL), and no attempt starts while another is open (unresolved, or
// its intent waiting for authentication) — the charge_attempts_one_open index
// makes a second one impossible whoever inserts it. A card the gateway called
// dead is never charged from a link. At most perHour customer charges start
// per invoice and per card in any rolling hour (perHour <= 0: no cap).
func (tx *Tx) StartOnSessionAttempt(now time.Time, ic *InvoiceContact, owner string, leaseUntil time.Time, perHour int) (Press, error) {
	start := time.Now() // the lease's start on the monotonic clock (localDeadline)
	// The card's row is locked first (PostgreSQL): presses on two invoices of
	// one card count the card's charges one after the other. A press waits
	// for no lock while it holds one (the invoice row is taken with SKIP
	// LOCKED), so this order cannot deadlock.
	lock := ""
	if tx.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	var card struct {
		ID   int64
		Dead bool
	}
	if err := tx.db.Raw(`SELECT id, dead_at IS NOT NULL AS dead FROM payment_methods WHERE gateway_payment_method_id = ?`+lock, ic.GatewayPM).Scan(&card).Error; err != nil {
		return Press{}, err
	}
	if card.Dead {
		return Press{Refused: PressDeadCard}, nil
	}
	var inv models.Invoice
	if err := tx.db.Raw(`SELECT * FROM invoices WHERE id = ?`+tx.forUpdateSkipLocked(), ic.InvoiceID).Scan(&inv).Error; err != nil {
		return Press{}, err
	}
	if inv.ID == 0 {
		if tx.dialect == Postgres {
			return Press{Refused: PressBusy}, nil
		}
		return Press{Refused: PressClosed}, nil
	}
	if inv.Status != models.InvoiceOpen {
		return Press{Refused: PressClosed}, nil
	}
	var open models.ChargeAttempt
	if err := tx.db.Raw(`SELECT * FROM charge_attempts WHERE invoice_id = ? AND `+sqlOpen.in("status")+` LIMIT 1`, inv.ID).Scan(&open).Error; err != nil {
		return Press{}, err
	}
	if open.ID != 0 {
		return Press{Open: &open}, nil
	}
	if _, review, err := tx.queryID(`SELECT id FROM charge_attempts WHERE invoice_id = ? AND status = 'needs_review' AND cancel_requested_at IS NOT NULL`, inv.ID); err != nil || review {
		return Press{Refused: PressReview}, err
	}
	if perHour > 0 {
		since := now.Add(-time.Hour)
		var byInvoice, byCard int64
		if err := tx.db.Raw(`SELECT COUNT(*) FROM charge_attempts WHERE invoice_id = ? AND NOT off_session AND created_at > ?`, inv.ID, since).Scan(&byInvoice).Error; err != nil {
			return Press{}, err
		}
		if err := tx.db.Raw(`SELECT COUNT(*) FROM charge_attempts WHERE NOT off_session AND gateway_payment_method_id = ? AND created_at > ?`, ic.GatewayPM, since).Scan(&byCard).Error; err != nil {
			return Press{}, err
		}
		if byInvoice >= int64(perHour) || byCard >= int64(perHour) {
			return Press{Refused: PressLimit}, nil
		}
	}
	until := leaseUntil
	a := &models.ChargeAttempt{
		InvoiceID: inv.ID, SubscriptionID: inv.SubscriptionID, AttemptNo: inv.AttemptCount + 1,
		IdempotencyKey: IdempotencyKey(inv.PublicID, inv.AttemptCount+1), MerchantOrderID: inv.PublicID,
		Amount: inv.Amount, Currency: inv.Currency, GatewayCustomer: ic.GatewayCustomer, GatewayPM: ic.GatewayPM,
		OffSession: false, Status: models.AttemptPending, LeaseOwner: owner, LeaseUntil: &until, LeaseVersion: 1,
		CreatedAt: now, UpdatedAt: now, LeaseDeadline: localDeadline(start, now, leaseUntil),
	}
	if err := tx.db.Exec(`UPDATE invoices SET attempt_count = attempt_count + 1, updated_at = ? WHERE id = ? AND attempt_count = ?`, now, inv.ID, inv.AttemptCount).Error; err != nil {
		return Press{}, err
	}
	if err := tx.db.Create(a).Error; err != nil {
		return Press{}, err
	}
	return Press{Attempt: a}, nil
}

// PayLinkByReturnHash finds a pay link by the SHA-256 of its return id, or nil.
func (s *Store) PayLinkByReturnHash(ctx context.Context, hash string) (*models.PayLink, error) {
	if hash == "" {
		return nil, nil
	}
	return one[models.PayLink](s.db.WithContext(ctx).Where("return_hash = ? AND return_hash <> ''", hash))
}
