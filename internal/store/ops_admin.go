package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
	"gorm.io/gorm"
)

// The admin API's store: its idempotency memory (admin_requests) and the
// creation of one subscription through the import's own code path.

// AdminRequestAbandonAfter is how long a request may stay in flight (no
// answer recorded) before a retry with its key may take it over: the process
// that began it died between recording the key and recording the answer.
// Every action it could have started is idempotent under its own key, so the
// retry repeats nothing.
const AdminRequestAbandonAfter = 10 * time.Minute

// BeginAdminRequest records that token's request under key is in flight, or
// returns the row already recorded for that key (in flight, or answered).
// begun is true when this call recorded it: the caller runs the request and
// then calls FinishAdminRequest (or ForgetAdminRequest). An expired row, or
// one abandoned in flight, is replaced.
func (s *Store) BeginAdminRequest(ctx context.Context, now time.Time, token, key, hash, method, path string, expires time.Time) (row *models.AdminRequest, begun bool, err error) {
	now = now.UTC()
	err = s.InTx(ctx, func(tx *Tx) error {
		var cur models.AdminRequest
		if err := tx.db.Where("token_name = ? AND idempotency_key = ?", token, key).Limit(1).Find(&cur).Error; err != nil {
			return err
		}
		if cur.ID != 0 {
			expired := cur.ExpiresAt != nil && !cur.ExpiresAt.After(now)
			abandoned := cur.StatusCode == 0 && !cur.CreatedAt.After(now.Add(-AdminRequestAbandonAfter))
			if !expired && !abandoned {
				row = &cur
				return nil
			}
			if err := tx.db.Exec(`DELETE FROM admin_requests WHERE id = ?`, cur.ID).Error; err != nil {
				return err
			}
		}
		exp := expires.UTC()
		r := models.AdminRequest{TokenName: token, IdempotencyKey: key, RequestHash: hash, Method: method, Path: path,
			ExpiresAt: &exp, CreatedAt: now, UpdatedAt: now}
		if err := tx.db.Create(&r).Error; err != nil {
			return err
		}
		row, begun = &r, true
		return nil
	})
	if err != nil && (errors.Is(err, gorm.ErrDuplicatedKey) || duplicateKey(err)) {
		// Another instance recorded the key between the read and the insert:
		// the request is in flight there.
		var cur models.AdminRequest
		if rerr := s.db.WithContext(ctx).Where("token_name = ? AND idempotency_key = ?", token, key).Limit(1).Find(&cur).Error; rerr != nil {
			return nil, false, rerr
		}
		if cur.ID != 0 {
			return &cur, false, nil
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: admin request: %w", err)
	}
	return row, begun, nil
}

// duplicateKey reports a unique-constraint violation in either dialect.
func duplicateKey(err error) bool {
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "duplicate key value")
}

// FinishAdminRequest records the answer given to a begun request, replayed
// byte for byte for the same key and body, until expires. refundID ties the
// row to the refund it created.
func (s *Store) FinishAdminRequest(ctx context.Context, now time.Time, id int64, status int, body string, refundID *int64, expires *time.Time) error {
	now = now.UTC()
	return s.InTx(ctx, func(tx *Tx) error {
		return tx.db.Exec(`UPDATE admin_requests SET status_code = ?, response_body = ?, refund_id = ?, expires_at = ?, updated_at = ? WHERE id = ?`,
			status, body, refundID, expires, now, id).Error
	})
}

// ForgetAdminRequest drops a begun request that got no answer worth
// replaying (a server error): a retry with its key runs again.
func (s *Store) ForgetAdminRequest(ctx context.Context, id int64) error {
	return s.InTx(ctx, func(tx *Tx) error {
		return tx.db.Exec(`DELETE FROM admin_requests WHERE id = ?`, id).Error
	})
}

// PruneAdminRequests deletes up to limit expired rows: a cheap, indexed
// delete the admin API runs with its POSTs.
func (s *Store) PruneAdminRequests(ctx context.Context, now time.Time, limit int) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		n, err = tx.exec(`DELETE FROM admin_requests WHERE id IN (SELECT id FROM admin_requests WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)`, now.UTC(), limit)
		return err
	})
	return n, err
}

// CreatedSubscription is what CreateSubscription found or made.
type CreatedSubscription struct {
	Subscription  models.Subscription
	Customer      models.Customer
	PaymentMethod models.PaymentMethod
	// Created is false when a subscription with the reference existed.
	Created bool
}

// CreateSubscription writes one subscription (with its customer and payment
// method) through the import's own path — the same conflict checks, the same
// rows — in one transaction, records the card's details as the gateway read
// them and marks both ids verified, and calls audit inside the transaction
// with what was written. When the reference exists already, nothing is
// written and the existing subscription is returned (Created false): the
// caller compares its terms. ImportErrors names a conflict (another
// customer's card).
func (s *Store) CreateSubscription(ctx context.Context, now time.Time, row ImportRow, card SavedCard, audit func(tx *Tx, c *CreatedSubscription) error) (*CreatedSubscription, error) {
	now = now.UTC()
	var out *CreatedSubscription
	err := s.InTx(ctx, func(tx *Tx) error {
		out = nil
		if existing, err := tx.subscriptionWithParties("reference = ?", row.Reference); err != nil || existing != nil {
			out = existing
			return err
		}
		imp := &importer{tx: tx, now: now, defaultZone: s.importZone(), zones: map[string]bool{}, batch: []ImportRow{row}}
		if err := imp.flush(); err != nil {
			return err
		}
		if len(imp.problems) > 0 {
			return imp.problems
		}
		if err := tx.db.Exec(`UPDATE customers SET verified_at = COALESCE(verified_at, ?), updated_at = ? WHERE gateway_customer_id = ?`,
			now, now, row.Customer).Error; err != nil {
			return err
		}
		if err := tx.db.Exec(`UPDATE payment_methods SET verified_at = COALESCE(verified_at, ?), updated_at = ? WHERE gateway_payment_method_id = ?`,
			now, now, row.PaymentMethod).Error; err != nil {
			return err
		}
		// The card's details as every other path records them (the
		// import wrote its series already).
		pm, err := tx.PaymentMethodByGatewayID(row.PaymentMethod)
		if err != nil {
			return err
		}
		if pm != nil {
			card.SeriesPaymentID = ""
			if err := tx.describeCard(now, *pm, card); err != nil {
				return err
			}
		}
		created, err := tx.subscriptionWithParties("reference = ?", row.Reference)
		if err != nil {
			return err
		}
		if created == nil {
			return fmt.Errorf("store: create subscription %q: not found after insert", row.Reference)
		}
		created.Created = true
		out = created
		if audit != nil {
			return audit(tx, created)
		}
		return nil
	})
	if err != nil {
		var ie ImportErrors
		if errors.As(err, &ie) {
			return nil, ie
		}
		return nil, fmt.Errorf("store: create subscription: %w", err)
	}
	return out, nil
}

// SubscriptionWithParties reads a subscription by reference with its
// customer and payment method; nil when there is none.
func (s *Store) SubscriptionWithParties(ctx context.Context, reference string) (*CreatedSubscription, error) {
	tx := &Tx{db: s.db.WithContext(ctx), dialect: s.dialect}
	return tx.subscriptionWithParties("reference = ?", reference)
}

func (tx *Tx) subscriptionWithParties(where string, args ...any) (*CreatedSubscription, error) {
	var c CreatedSubscription
	if err := tx.db.Where(where, args...).Limit(1).Find(&c.Subscription).Error; err != nil {
		return nil, err
	}
	if c.Subscription.ID == 0 {
		return nil, nil
	}
	if err := tx.db.Where("id = ?", c.Subscription.CustomerID).Limit(1).Find(&c.Customer).Error; err != nil {
		return nil, err
	}
	if err := tx.db.Where("id = ?", c.Subscription.PaymentMethodID).Limit(1).Find(&c.PaymentMethod).Error; err != nil {
		return nil, err
	}
	return &c, nil
}
