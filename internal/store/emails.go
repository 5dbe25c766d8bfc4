package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/models"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The email outbox. A state change that calls for an email inserts its row in
// the same transaction (EnqueueEmail), so an email exists if and only if the
// change committed. The mail worker then claims due rows with a fenced lease
// (ClaimDueEmails), sends them, and records the result with one of the Mark*
// methods, each checking the lease version it claimed with: a worker whose lease
// was taken over cannot record anything, so a row is recorded as sent at most
// once.

// DefaultMessageIDDomain is the right-hand side of generated Message-IDs when the
// caller has no sender domain to offer.
const DefaultMessageIDDomain = "localhost.localdomain"

// EnqueueEmail inserts an outbox row in the caller's transaction. A row with the
// same dedupe_key already present means the email was enqueued before (the same
// step ran twice): it returns (false, nil) and nothing changes.
//
// It fills Status (pending), CreatedAt/UpdatedAt (now), NextAttemptAt (now if
// zero) and, when empty, MessageID: "<" + 16 random hex digits + "." + the
// sanitized dedupe key + "@" + domain + ">". The Message-ID is fixed here, not
// at send time, so a resend after a crash carries the same one and receivers can
// deduplicate it. domain should be the sender's domain (mail.from).
func (tx *Tx) EnqueueEmail(now time.Time, domain string, e *models.Email) (bool, error) {
	if e.DedupeKey == "" {
		return false, errors.New("store: enqueue email: empty dedupe key")
	}
	if (e.InvoiceID == nil || *e.InvoiceID == 0) && (e.SubscriptionID == nil || *e.SubscriptionID == 0) {
		return false, errors.New("store: enqueue email: no invoice and no subscription")
	}
	if e.InvoiceID != nil && *e.InvoiceID == 0 {
		e.InvoiceID = nil
	}
	if e.SubscriptionID == nil {
		var sub int64
		if err := tx.db.Raw(`SELECT subscription_id FROM invoices WHERE id = ?`, *e.InvoiceID).Scan(&sub).Error; err != nil {
			return false, err
		}
		if sub != 0 {
			e.SubscriptionID = &sub
		}
	}
	now = now.UTC()
	if e.MessageID == "" {
		id, err := NewMessageID(e.DedupeKey, domain)
		if err != nil {
			return false, err
		}
		e.MessageID = id
	}
	if e.NextAttemptAt.IsZero() {
		e.NextAttemptAt = now
	}
	e.NextAttemptAt = e.NextAttemptAt.UTC()
	e.Status = models.EmailPending
	e.Attempts = 0
	e.LeaseOwner, e.LeaseUntil, e.LeaseVersion = "", nil, 0
	e.SentAt = nil
	e.CreatedAt, e.UpdatedAt = now, now
	res := tx.db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "dedupe_key"}}, DoNothing: true}).Create(e)
	if res.Error != nil {
		return false, fmt.Errorf("store: enqueue email %s: %w", e.DedupeKey, res.Error)
	}
	if res.RowsAffected != 1 {
		e.ID = 0
		return false, nil
	}
	if e.Kind == models.EmailCardExpiring && e.SubscriptionID != nil {
		// The expiring-card notice is queued once per (subscription, card,
		// period) by its dedupe key: so is its event.
		tx.Emit(EventRef{Type: models.EventPaymentMethodExpiring, ObjectID: *e.SubscriptionID})
	}
	return true, nil
}

// NewMessageID returns a globally unique, RFC 5322 Message-ID for an outbox row:
// random enough never to collide, and readable enough (it carries the dedupe key)
// that ops can match a bounce or a customer's forwarded email to its row.
func NewMessageID(dedupeKey, domain string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: random message id: %w", err)
	}
	domain = sanitizeDomain(domain)
	if domain == "" {
		domain = DefaultMessageIDDomain
	}
	return "<" + hex.EncodeToString(b[:]) + "." + sanitizeIDPart(dedupeKey, 64) + "@" + domain + ">", nil
}

// sanitizeIDPart keeps what is safe in a Message-ID's left-hand side (a dot-atom)
// and turns anything else into "-".
func sanitizeIDPart(s string, max int) string {
	var sb strings.Builder
	for _, r := range s {
		if sb.Len() >= max {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-')
		}
	}
	if sb.Len() == 0 {
		return "email"
	}
	return sb.String()
}

// sanitizeDomain keeps a host name's characters; anything else makes it unusable.
func sanitizeDomain(d string) string {
	d = strings.Trim(strings.ToLower(strings.TrimSpace(d)), ".")
	if d == "" || len(d) > 253 {
		return ""
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return ""
		}
	}
	return d
}

// ClaimDueEmails leases up to limit pending emails whose next_attempt_at has come
// and whose lease is free or expired, for owner until leaseUntil, bumping each
// row's lease_version. The returned rows carry the new version; the caller must
// pass them back to a Mark* method, which only lands under that version. On
// PostgreSQL the rows are locked with SKIP LOCKED so several instances split the
// queue instead of sending the same email.
func (s *Store) ClaimDueEmails(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]models.Email, error) {
	now, leaseUntil = now.UTC(), leaseUntil.UTC()
	if limit <= 0 {
		limit = 1
	}
	var claimed []models.Email
	err := s.InTx(ctx, func(tx *Tx) error {
		q := `SELECT * FROM emails
		       WHERE status = 'pending' AND next_attempt_at <= ?
		         AND (lease_until IS NULL OR lease_until <= ?)
		       ORDER BY next_attempt_at, id LIMIT ?` + tx.forUpdateSkipLocked()
		var err error
		claimed, err = claimRows[models.Email](tx, "emails", q, []any{now, now, limit}, owner, leaseUntil, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim due emails: %w", err)
	}
	return claimed, nil
}

// MarkEmailSent records that the SMTP server accepted the email. It must only be
// called after that acceptance, so a "sent" row always means a delivered message.
// Fenced: when the lease was taken over, or the row is no longer pending, nothing
// changes and ErrLeaseLost is returned. A non-empty e.Subject is stored so ops can
// see what went out.
func (s *Store) MarkEmailSent(ctx context.Context, now time.Time, e *models.Email) error {
	now = now.UTC()
	err := s.finishEmailWith(ctx, failpoint.StoreMarkEmailSent, now, e, `status = 'sent', attempts = attempts + 1, sent_at = ?, last_error = '',
	          subject = CASE WHEN ? <> '' THEN ? ELSE subject END`, now, e.Subject, e.Subject)
	if err != nil {
		return fmt.Errorf("store: mark email %d sent: %w", e.ID, err)
	}
	e.Status = models.EmailSent
	e.Attempts++
	e.SentAt = &now
	e.LastError = ""
	e.UpdatedAt = now
	return nil
}

// ExtendEmailLease moves the lease of a claimed email to until, under the
// version it was claimed with (which it keeps): the mail worker holds on to a
// row the SMTP server accepted while it retries the "sent" write, so that no
// other worker reclaims it and sends it again. ErrLeaseLost when the lease was
// taken over or the row is no longer pending.
func (s *Store) ExtendEmailLease(ctx context.Context, now, until time.Time, e *models.Email) error {
	until = until.UTC()
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		n, err = tx.exec(`UPDATE emails SET lease_until = ?, updated_at = ? WHERE id = ? AND status = 'pending' AND lease_version = ?`,
			until, now.UTC(), e.ID, e.LeaseVersion)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: extend lease of email %d: %w", e.ID, err)
	}
	if n != 1 {
		return ErrLeaseLost
	}
	e.LeaseUntil = &until
	return nil
}

// MarkEmailRetry records a temporary failure (server down, 4xx, timeout): the
// email stays pending, due again at next, with the error kept for ops. The lease
// is released so any worker may pick it up then. Fenced like MarkEmailSent.
func (s *Store) MarkEmailRetry(ctx context.Context, now time.Time, e *models.Email, next time.Time, lastErr string) error {
	now, next = now.UTC(), next.UTC()
	lastErr = truncate(lastErr, 500)
	err := s.finishEmail(ctx, now, e, `attempts = attempts + 1, next_attempt_at = ?, last_error = ?`, next, lastErr)
	if err != nil {
		return fmt.Errorf("store: mark email %d for retry: %w", e.ID, err)
	}
	e.Attempts++
	e.NextAttemptAt = next
	e.LastError = lastErr
	e.UpdatedAt = now
	return nil
}

// MarkEmailFailed records a permanent refusal (the server said the address or
// message will never be accepted). The row is kept as failed for ops rather than
// retried forever or deleted. Fenced like MarkEmailSent.
func (s *Store) MarkEmailFailed(ctx context.Context, now time.Time, e *models.Email, lastErr string) error {
	now = now.UTC()
	lastErr = truncate(lastErr, 500)
	err := s.finishEmail(ctx, now, e, `status = 'failed', attempts = attempts + 1, last_error = ?`, lastErr)
	if err != nil {
		return fmt.Errorf("store: mark email %d failed: %w", e.ID, err)
	}
	e.Status = models.EmailFailed
	e.Attempts++
	e.LastError = lastErr
	e.UpdatedAt = now
	return nil
}

// MarkEmailCanceled records that the email was no longer relevant when its turn
// came (say, the invoice was paid before a "payment failed" email went out);
// reason is kept in last_error. Fenced like MarkEmailSent.
func (s *Store) MarkEmailCanceled(ctx context.Context, now time.Time, e *models.Email, reason string) error {
	now = now.UTC()
	reason = truncate(reason, 500)
	err := s.finishEmail(ctx, now, e, `status = 'canceled', last_error = ?`, reason)
	if err != nil {
		return fmt.Errorf("store: mark email %d canceled: %w", e.ID, err)
	}
	e.Status = models.EmailCanceled
	e.LastError = reason
	e.UpdatedAt = now
	return nil
}

// finishEmail is the one fenced UPDATE behind the Mark* methods: it only lands on
// a pending row still under the caller's lease version, always releases the lease
// and bumps the version, so a second write with the same claim fails too.
func (s *Store) finishEmail(ctx context.Context, now time.Time, e *models.Email, set string, args ...any) error {
	return s.finishEmailWith(ctx, "", now, e, set, args...)
}

// finishEmailWith is finishEmail whose transaction fails, after its UPDATE,
// while the error point point is armed (a test's dropped connection).
func (s *Store) finishEmailWith(ctx context.Context, point string, now time.Time, e *models.Email, set string, args ...any) error {
	q := `UPDATE emails SET ` + set + `, lease_owner = '', lease_until = NULL, lease_version = lease_version + 1, updated_at = ?
	       WHERE id = ? AND status = 'pending' AND lease_version = ?`
	args = append(args, now, e.ID, e.LeaseVersion)
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		if n, err = tx.exec(q, args...); err != nil {
			return err
		}
		if point != "" {
			return failpoint.Err(point)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != 1 {
		return ErrLeaseLost
	}
	e.LeaseOwner, e.LeaseUntil = "", nil
	e.LeaseVersion++
	return nil
}

// EmailContext is everything a template needs about an outbox row, read when the
// email is sent rather than frozen at enqueue time: the worker must see the
// invoice's current status (never ask a customer to pay a paid invoice) and the
// current retry date.
type EmailContext struct {
	Email           models.Email
	CustomerEmail   string
	Reference       string // the subscription's merchant reference
	Description     string // the subscription's description
	InvoicePublicID string
	Amount          int64
	Currency        string
	PeriodStart     time.Time
	PeriodEnd       time.Time
	InvoiceStatus   models.InvoiceStatus
	// CaseReason and CaseStatus are empty when the email has no dunning case.
	CaseReason models.DunningReason
	CaseStatus models.CaseStatus
	// NextRetryAt is the invoice's next off-session attempt, nil when none is
	// scheduled (the customer must act).
	NextRetryAt     *time.Time
	DeclineCode     string
	FinalAction     string
	PaidAt          *time.Time
	PaymentIntentID string
	// Card is the subscription's card as billingd last read it from the
	// gateway (zero fields when unknown).
	Card CardOnFile
	// NextBillingAt is the subscription's next charge: what an expiring-card
	// email warns about.
	NextBillingAt      time.Time
	SubscriptionStatus models.SubscriptionStatus
}

// ErrEmailNotFound means there is no outbox row with that id.
var ErrEmailNotFound = errors.New("store: email not found")

// emailContextRow is the joined row EmailContext scans; nullable text of the
// optional dunning case is COALESCEd so it scans into plain strings.
type emailContextRow struct {
	CustomerEmail      string
	Reference          string
	Description        string
	InvoicePublicID    string
	Amount             int64
	Currency           string
	PeriodStart        *time.Time
	PeriodEnd          *time.Time
	InvoiceStatus      string
	CaseReason         string
	CaseStatus         string
	NextRetryAt        *time.Time
	DeclineCode        string
	FinalAction        string
	PaidAt             *time.Time
	PaymentIntentID    string
	CardBrand          string
	CardLast4          string
	CardExpMonth       int
	CardExpYear        int
	NextBillingAt      time.Time
	SubscriptionStatus string
}

// EmailContext loads an outbox row with its invoice (none for an email about
// the subscription itself), subscription, customer, card and, when the row has
// one, dunning case.
func (s *Store) EmailContext(ctx context.Context, emailID int64) (*EmailContext, error) {
	db := s.db.WithContext(ctx)
	var out EmailContext
	if err := db.First(&out.Email, emailID).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, fmt.Errorf("%w: id %d", ErrEmailNotFound, emailID)
		}
		return nil, fmt.Errorf("store: email %d: %w", emailID, err)
	}
	var rows []emailContextRow
	// An email about the subscription itself has no invoice: the amount and
	// currency are then the subscription's next charge.
	err := db.Raw(`SELECT c.email AS customer_email, s.reference, s.description, COALESCE(i.public_id, '') AS invoice_public_id,
	                      COALESCE(i.amount, s.amount) AS amount, COALESCE(i.currency, s.currency) AS currency,
	                      i.period_start, i.period_end,
	                      COALESCE(i.status, '') AS invoice_status,
	                      COALESCE(dc.reason, '') AS case_reason, COALESCE(dc.status, '') AS case_status,
	                      i.next_attempt_at AS next_retry_at,
	                      COALESCE(dc.last_decline_code, '') AS decline_code, COALESCE(dc.final_action, '') AS final_action,
	                      i.paid_at, COALESCE(i.payment_intent_id, '') AS payment_intent_id,
	                      COALESCE(pm.brand, '') AS card_brand, COALESCE(pm.last4, '') AS card_last4,
	                      COALESCE(pm.exp_month, 0) AS card_exp_month, COALESCE(pm.exp_year, 0) AS card_exp_year,
	                      s.next_billing_at, s.status AS subscription_status
	                 FROM emails e
	                 LEFT JOIN invoices i ON i.id = e.invoice_id
	                 JOIN subscriptions s ON s.id = COALESCE(i.subscription_id, e.subscription_id)
	                 JOIN customers c ON c.id = s.customer_id
	                 LEFT JOIN payment_methods pm ON pm.id = s.payment_method_id
	                 LEFT JOIN dunning_cases dc ON dc.id = e.case_id
	                WHERE e.id = ?`, emailID).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store: email %d context: %w", emailID, err)
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("%w: id %d has no invoice or subscription", ErrEmailNotFound, emailID)
	}
	r := rows[0]
	out.CustomerEmail, out.Reference, out.Description = r.CustomerEmail, r.Reference, r.Description
	out.InvoicePublicID, out.Amount, out.Currency = r.InvoicePublicID, r.Amount, r.Currency
	if r.PeriodStart != nil && r.PeriodEnd != nil {
		out.PeriodStart, out.PeriodEnd = r.PeriodStart.UTC(), r.PeriodEnd.UTC()
	}
	out.InvoiceStatus = models.InvoiceStatus(r.InvoiceStatus)
	out.CaseReason, out.CaseStatus = models.DunningReason(r.CaseReason), models.CaseStatus(r.CaseStatus)
	out.NextRetryAt, out.PaidAt = utcPtr(r.NextRetryAt), utcPtr(r.PaidAt)
	out.DeclineCode, out.FinalAction, out.PaymentIntentID = r.DeclineCode, r.FinalAction, r.PaymentIntentID
	out.Card = CardOnFile{Brand: r.CardBrand, Last4: r.CardLast4, ExpMonth: r.CardExpMonth, ExpYear: r.CardExpYear}
	out.NextBillingAt, out.SubscriptionStatus = r.NextBillingAt.UTC(), models.SubscriptionStatus(r.SubscriptionStatus)
	return &out, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// EmailByID loads one outbox row.
func (s *Store) EmailByID(ctx context.Context, id int64) (*models.Email, error) {
	var e models.Email
	if err := s.db.WithContext(ctx).First(&e, id).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, fmt.Errorf("%w: id %d", ErrEmailNotFound, id)
		}
		return nil, err
	}
	return &e, nil
}
