package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/billingd/billingd/internal/models"
)

// The queries of the operator's invoice, attempt and dunning actions and of
// their listings and stories (internal/ops: invoices.go, attempts.go,
// dunning.go).

// ListingFilter narrows the invoice, attempt and dunning-case listings; zero
// fields match everything.
type ListingFilter struct {
	// Statuses: any of them matches (the listed object's own status).
	Statuses []string
	// Customer is the gateway's customer id or the customer's email.
	Customer string
	// Reference is a subscription's reference or an invoice's order id.
	Reference string
	// SubscriptionID and InvoiceID, when set, keep one subscription's or one
	// invoice's rows (a story).
	SubscriptionID int64
	InvoiceID      int64
	// InvoiceIDs keeps those invoices; CaseIDs those dunning cases (the
	// case listing only). An event flush reads its objects with them, one
	// query per kind for a whole page of events.
	InvoiceIDs []int64
	CaseIDs    []int64
	// From (inclusive) and To (exclusive) bound the main date: an invoice's
	// period start, an attempt's creation, a case's opening.
	From, To *time.Time
	// Limit caps the rows (0: 100).
	Limit int
}

// where builds the shared conditions; date is the column From/To bound,
// status the listed table's status column, and invoice the invoices alias.
func (f ListingFilter) where(date, status string) (string, []any) {
	var conds []string
	var args []any
	if len(f.Statuses) > 0 {
		conds = append(conds, status+" IN ?")
		args = append(args, f.Statuses)
	}
	if f.Customer != "" {
		conds = append(conds, "(c.gateway_customer_id = ? OR LOWER(c.email) = LOWER(?))")
		args = append(args, f.Customer, f.Customer)
	}
	if f.Reference != "" {
		conds = append(conds, "(s.reference = ? OR i.public_id = ?)")
		args = append(args, f.Reference, f.Reference)
	}
	if f.SubscriptionID != 0 {
		conds = append(conds, "s.id = ?")
		args = append(args, f.SubscriptionID)
	}
	if f.InvoiceID != 0 {
		conds = append(conds, "i.id = ?")
		args = append(args, f.InvoiceID)
	}
	if len(f.InvoiceIDs) > 0 {
		conds = append(conds, "i.id IN ?")
		args = append(args, f.InvoiceIDs)
	}
	if len(f.CaseIDs) > 0 {
		conds = append(conds, "dc.id IN ?")
		args = append(args, f.CaseIDs)
	}
	if f.From != nil {
		conds = append(conds, date+" >= ?")
		args = append(args, f.From.UTC())
	}
	if f.To != nil {
		conds = append(conds, date+" < ?")
		args = append(args, f.To.UTC())
	}
	if len(conds) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func (f ListingFilter) limit() int {
	if f.Limit <= 0 {
		return 100
	}
	return f.Limit
}

// listingJoins reach an invoice's subscription and customer.
const listingJoins = ` JOIN subscriptions s ON s.id = i.subscription_id JOIN customers c ON c.id = s.customer_id`

// InvoiceListing is an invoice with its subscription's reference, its
// customer and what refunds (not failed or canceled) took back of it.
type InvoiceListing struct {
	models.Invoice `gorm:"embedded"`
	Reference      string
	Customer       string
	Refunded       int64
}

// ListInvoices lists invoices, the latest period first.
func (s *Store) ListInvoices(ctx context.Context, f ListingFilter) ([]InvoiceListing, error) {
	return listInvoices(s.db.WithContext(ctx), f)
}

// InvoiceListings reads the listing rows of the given invoices inside the
// caller's transaction (the events a transaction emits), by id.
func (tx *Tx) InvoiceListings(ids []int64) (map[int64]InvoiceListing, error) {
	return byID(ids, func(page []int64) ([]InvoiceListing, error) {
		return listInvoices(tx.db, ListingFilter{InvoiceIDs: page, Limit: len(page)})
	}, func(l InvoiceListing) int64 { return l.ID })
}

func listInvoices(db *gorm.DB, f ListingFilter) ([]InvoiceListing, error) {
	where, args := f.where("i.period_start", "i.status")
	q := `SELECT i.*, s.reference AS reference, c.gateway_customer_id AS customer,
	             COALESCE((SELECT SUM(r.amount) FROM refunds r WHERE r.invoice_id = i.id AND ` + sqlReleasedRefund.notIn("r.status") + `), 0) AS refunded
	        FROM invoices i` + listingJoins + where + ` ORDER BY i.period_start DESC, i.id DESC LIMIT ?`
	var out []InvoiceListing
	err := db.Raw(q, append(args, f.limit())...).Scan(&out).Error
	return out, err
}

// AttemptListing is a charge attempt with its subscription's reference.
type AttemptListing struct {
	models.ChargeAttempt `gorm:"embedded"`
	Reference            string
}

// ListAttempts lists charge attempts, the newest first (a story's oldest
// first: with InvoiceID set).
func (s *Store) ListAttempts(ctx context.Context, f ListingFilter) ([]AttemptListing, error) {
	where, args := f.where("ca.created_at", "ca.status")
	order := " ORDER BY ca.id DESC"
	if f.InvoiceID != 0 || f.SubscriptionID != 0 {
		order = " ORDER BY ca.id"
	}
	q := `SELECT ca.*, s.reference AS reference FROM charge_attempts ca JOIN invoices i ON i.id = ca.invoice_id` +
		listingJoins + where + order + ` LIMIT ?`
	var out []AttemptListing
	err := s.db.WithContext(ctx).Raw(q, append(args, f.limit())...).Scan(&out).Error
	return out, err
}

// CaseListing is a dunning case with its invoice's order id and its
// subscription's reference.
type CaseListing struct {
	models.DunningCase `gorm:"embedded"`
	Invoice            string
	Reference          string
}

// ListCases lists dunning cases, the newest first.
func (s *Store) ListCases(ctx context.Context, f ListingFilter) ([]CaseListing, error) {
	return listCases(s.db.WithContext(ctx), f)
}

// CaseListings reads the listing rows of the given dunning cases inside the
// caller's transaction (the events a transaction emits), by id.
func (tx *Tx) CaseListings(ids []int64) (map[int64]CaseListing, error) {
	return byID(ids, func(page []int64) ([]CaseListing, error) {
		return listCases(tx.db, ListingFilter{CaseIDs: page, Limit: len(page)})
	}, func(l CaseListing) int64 { return l.ID })
}

func listCases(db *gorm.DB, f ListingFilter) ([]CaseListing, error) {
	where, args := f.where("dc.opened_at", "dc.status")
	q := `SELECT dc.*, i.public_id AS invoice, s.reference AS reference FROM dunning_cases dc JOIN invoices i ON i.id = dc.invoice_id` +
		listingJoins + where + ` ORDER BY dc.id DESC LIMIT ?`
	var out []CaseListing
	err := db.Raw(q, append(args, f.limit())...).Scan(&out).Error
	return out, err
}

// byIDPage bounds the ids of one IN list (under both databases' limits on
// bound parameters).
const byIDPage = 500

// byID reads the rows of ids a page at a time and keys them by id.
func byID[T any](ids []int64, read func(page []int64) ([]T, error), id func(T) int64) (map[int64]T, error) {
	out := make(map[int64]T, len(ids))
	for start := 0; start < len(ids); start += byIDPage {
		rows, err := read(ids[start:min(start+byIDPage, len(ids))])
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[id(r)] = r
		}
	}
	return out, nil
}

// firstOf is the first row of a listing, nil when it is empty.
func firstOf[T any](rows []T, err error) (*T, error) {
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	return &rows[0], nil
}

// InvoiceByPublicID loads an invoice by its order id; nil when none has it.
func (s *Store) InvoiceByPublicID(ctx context.Context, publicID string) (*models.Invoice, error) {
	return one[models.Invoice](s.db.WithContext(ctx).Where("public_id = ?", publicID))
}

// LockInvoice loads an invoice inside the caller's transaction and locks its
// row (PostgreSQL; SQLite's writer already excludes every other), the lock
// every path that starts an attempt or reserves a refund takes first. nil when
// no invoice has that id.
func (tx *Tx) LockInvoice(id int64) (*models.Invoice, error) {
	return oneRaw[models.Invoice](tx.db.Raw(`SELECT * FROM invoices WHERE id = ?`+tx.lockInvoiceSuffix(), id))
}

// CaseByID loads a dunning case; nil when none has that id.
func (s *Store) CaseByID(ctx context.Context, id int64) (*models.DunningCase, error) {
	return one[models.DunningCase](s.db.WithContext(ctx).Where("id = ?", id))
}

// CaseByID (on Tx) is Store.CaseByID inside the caller's transaction.
func (tx *Tx) CaseByID(id int64) (*models.DunningCase, error) {
	return one[models.DunningCase](tx.db.Where("id = ?", id))
}

// AttemptByIDTx loads one attempt inside the caller's transaction; nil when
// none has that id.
func (tx *Tx) AttemptByIDTx(id int64) (*models.ChargeAttempt, error) {
	return one[models.ChargeAttempt](tx.db.Where("id = ?", id))
}

// FindAttempt loads one attempt; nil when none has that id.
func (s *Store) FindAttempt(ctx context.Context, id int64) (*models.ChargeAttempt, error) {
	return one[models.ChargeAttempt](s.db.WithContext(ctx).Where("id = ?", id))
}

// CaseSteps lists a case's steps, oldest first.
func (s *Store) CaseSteps(ctx context.Context, caseID int64) ([]models.DunningStep, error) {
	var out []models.DunningStep
	err := s.db.WithContext(ctx).Where("case_id = ?", caseID).Order("id").Find(&out).Error
	return out, err
}

// EmailsOfInvoice lists the outbox emails about an invoice, oldest first.
func (s *Store) EmailsOfInvoice(ctx context.Context, invoiceID int64) ([]models.Email, error) {
	var out []models.Email
	err := s.db.WithContext(ctx).Where("invoice_id = ?", invoiceID).Order("id").Find(&out).Error
	return out, err
}

// PayLinksOfInvoice lists an invoice's pay links, oldest first.
func (s *Store) PayLinksOfInvoice(ctx context.Context, invoiceID int64) ([]models.PayLink, error) {
	var out []models.PayLink
	err := s.db.WithContext(ctx).Where("invoice_id = ?", invoiceID).Order("id").Find(&out).Error
	return out, err
}

// RefundByID loads one refund.
func (s *Store) RefundByID(ctx context.Context, id int64) (*models.Refund, error) {
	var rf models.Refund
	if err := s.db.WithContext(ctx).First(&rf, id).Error; err != nil {
		return nil, err
	}
	return &rf, nil
}

// RefundsOfInvoiceTx counts an invoice's refund rows inside the caller's
// transaction (an operator's refund numbers its key after them).
func (tx *Tx) RefundsOfInvoiceTx(invoiceID int64) (int64, error) {
	var n int64
	err := tx.db.Raw(`SELECT COUNT(*) FROM refunds WHERE invoice_id = ?`, invoiceID).Scan(&n).Error
	return n, err
}

// RefundLeft is what is left to refund of the payment that paid an invoice:
// what it took minus what refunds that did not fail or get canceled reserve.
func (tx *Tx) RefundLeft(inv *models.Invoice) (left int64, currency string, err error) {
	if inv.PaymentIntentID == "" {
		return 0, inv.Currency, nil
	}
	var a models.ChargeAttempt
	if err := tx.db.Where("invoice_id = ? AND payment_intent_id = ? AND status = ?", inv.ID, inv.PaymentIntentID, models.AttemptSucceeded).
		Limit(1).Find(&a).Error; err != nil {
		return 0, "", err
	}
	if a.ID == 0 {
		return 0, inv.Currency, nil
	}
	var reserved int64
	if err := tx.db.Raw(`SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE payment_intent_id = ? AND `+sqlReleasedRefund.notIn("status"),
		inv.PaymentIntentID).Scan(&reserved).Error; err != nil {
		return 0, "", err
	}
	return a.Amount - reserved, a.Currency, nil
}

// CancelsRequestedFor lists an invoice's intents waiting for the customer
// whose cancel at the gateway was recorded and is due (a void or a stop
// sends them at once instead of waiting for the intents job).
func (s *Store) CancelsRequestedFor(ctx context.Context, now time.Time, invoiceID int64) ([]models.ChargeAttempt, error) {
	var out []models.ChargeAttempt
	err := s.db.WithContext(ctx).Where(`invoice_id = ? AND status = ? AND cancel_requested_at IS NOT NULL
	        AND (cancel_next_try_at IS NULL OR cancel_next_try_at <= ?)`, invoiceID, models.AttemptRequiresAction, now).
		Order("id").Find(&out).Error
	return out, err
}

// SettleReviewedAttempt writes what the gateway's records establish for an
// attempt that needs review (an operator's resolve): only an attempt still
// in needs_review moves; the lease version moves on so that no worker holding
// an older lease writes over it. Returns false when it was no longer
// needs_review.
func (tx *Tx) SettleReviewedAttempt(now time.Time, attemptID int64, r AttemptResult) (bool, error) {
	var finished *time.Time
	if !r.Status.Unresolved() {
		finished = &now
	}
	n, err := tx.exec(`UPDATE charge_attempts
	      SET status = ?, payment_intent_id = CASE WHEN ? <> '' THEN ? ELSE payment_intent_id END,
	          decline_code = ?, advice_code = ?, hard_decline = ?, action_url = ?, error_message = ?,
	          next_try_at = NULL, next_reconcile_at = ?, finished_at = ?, lease_owner = '', lease_until = NULL,
	          lease_version = lease_version + 1, updated_at = ?
	    WHERE id = ? AND status = 'needs_review'`,
		r.Status, r.PaymentIntentID, r.PaymentIntentID, r.DeclineCode, r.AdviceCode, r.HardDecline, r.ActionURL,
		truncate(r.ErrorMessage, 500), r.NextReconcileAt, finished, now, attemptID)
	if err == nil && n == 1 {
		tx.attemptMoved(r.Status)
	}
	return n == 1, err
}

// AttemptBlocked is why an operator's charge of an invoice may not start
// now (docs/protocol.md, "one open attempt per invoice"): the message names
// what holds it.
type AttemptBlocked struct{ Reason string }

func (e *AttemptBlocked) Error() string { return e.Reason }

// MaxCardReattempts is the card networks' cap on reattempts of one card in
// 30 days.
const MaxCardReattempts = 15

// StartOperatorAttempt commits nothing by itself: inside the caller's
// transaction it checks that an operator may charge the (locked) invoice now
// and inserts its next off-session attempt, pending and leased to owner until
// leaseUntil, with its frozen request and key — what ClaimNewAttempts does
// for a due invoice, for this one invoice. The checks are the pass's own:
// the invoice is open; no attempt of it is open (or a waiting intent whose
// cancel was given up on); no earlier period of its subscription is still
// open; the subscription can be billed; its card was not called dead (a new
// card clears that); and a reattempt stays within the card's cap of 15 in 30
// days. A refusal is an *AttemptBlocked.
func (tx *Tx) StartOperatorAttempt(now time.Time, inv *models.Invoice, owner string, leaseUntil time.Time) (*models.ChargeAttempt, error) {
	start := time.Now() // the lease's start on the monotonic clock (localDeadline)
	if inv.Status != models.InvoiceOpen {
		return nil, &AttemptBlocked{fmt.Sprintf("invoice %s is %s, not open", inv.PublicID, inv.Status)}
	}
	var open models.ChargeAttempt
	if err := tx.db.Raw(`SELECT * FROM charge_attempts WHERE invoice_id = ?
	        AND (`+sqlOpen.in("status")+` OR (status = 'needs_review' AND cancel_requested_at IS NOT NULL)) ORDER BY id LIMIT 1`, inv.ID).
		Scan(&open).Error; err != nil {
		return nil, err
	}
	if open.ID != 0 {
		return nil, &AttemptBlocked{fmt.Sprintf("invoice %s has attempt %d (%s) still open (%s): one open payment per invoice; wait for it, or resolve it",
			inv.PublicID, open.ID, open.IdempotencyKey, open.Status)}
	}
	var prev models.Invoice
	if err := tx.db.Raw(`SELECT * FROM invoices WHERE subscription_id = ? AND period_index < ? AND status = 'open' ORDER BY period_index LIMIT 1`,
		inv.SubscriptionID, inv.PeriodIndex).Scan(&prev).Error; err != nil {
		return nil, err
	}
	if prev.ID != 0 {
		return nil, &AttemptBlocked{fmt.Sprintf("invoice %s of the same subscription (period %d) is still unpaid: a subscription's invoices are charged in period order; retry %s first",
			prev.PublicID, prev.PeriodIndex, prev.PublicID)}
	}
	var t struct {
		SubscriptionID    int64
		Status            models.SubscriptionStatus
		Reference         string
		GatewayCustomer   string
		GatewayPM         string
		PreviousPaymentID string
		DeadAt            *time.Time
		DeadReason        string
	}
	if err := tx.db.Raw(`SELECT s.id AS subscription_id, s.status, s.reference, c.gateway_customer_id AS gateway_customer,
	                            pm.gateway_payment_method_id AS gateway_pm, pm.previous_payment_id, pm.dead_at, pm.dead_reason
	                       FROM subscriptions s JOIN customers c ON c.id = s.customer_id JOIN payment_methods pm ON pm.id = s.payment_method_id
	                      WHERE s.id = ?`, inv.SubscriptionID).Scan(&t).Error; err != nil {
		return nil, err
	}
	if t.SubscriptionID == 0 {
		return nil, fmt.Errorf("store: invoice %s: its subscription %d is missing", inv.PublicID, inv.SubscriptionID)
	}
	if !t.Status.Billable() {
		return nil, &AttemptBlocked{fmt.Sprintf("subscription %s is %s: its invoices are not charged", t.Reference, t.Status)}
	}
	if t.DeadAt != nil {
		return nil, &AttemptBlocked{fmt.Sprintf("the gateway called card %s of subscription %s dead (%s): charge it only after the card changed (billingd subscriptions update %s --payment-method …)",
			t.GatewayPM, t.Reference, t.DeadReason, t.Reference)}
	}
	attemptNo := inv.AttemptCount + 1
	if attemptNo > 1 {
		n, err := tx.CountCardReattempts(t.GatewayPM, now.Add(-30*24*time.Hour))
		if err != nil {
			return nil, err
		}
		if n >= MaxCardReattempts {
			return nil, &AttemptBlocked{fmt.Sprintf("card %s was reattempted %d times in the last 30 days: the card networks allow %d", t.GatewayPM, n, MaxCardReattempts)}
		}
	}
	until := leaseUntil
	a := models.ChargeAttempt{
		InvoiceID: inv.ID, SubscriptionID: inv.SubscriptionID, AttemptNo: attemptNo,
		IdempotencyKey: IdempotencyKey(inv.PublicID, attemptNo), MerchantOrderID: inv.PublicID,
		Amount: inv.Amount, Currency: inv.Currency, GatewayCustomer: t.GatewayCustomer, GatewayPM: t.GatewayPM,
		PreviousPaymentID: t.PreviousPaymentID, OffSession: true, Status: models.AttemptPending,
		LeaseOwner: owner, LeaseUntil: &until, LeaseVersion: 1, CreatedAt: now, UpdatedAt: now,
		LeaseDeadline: localDeadline(start, now, leaseUntil),
	}
	if _, err := tx.exec(`UPDATE invoices SET attempt_count = attempt_count + 1, next_attempt_at = NULL, updated_at = ? WHERE id = ?`, now, inv.ID); err != nil {
		return nil, err
	}
	as := []models.ChargeAttempt{a}
	if err := tx.insertAttempts(as); err != nil {
		return nil, err
	}
	inv.AttemptCount, inv.NextAttemptAt = attemptNo, nil
	return &as[0], nil
}
