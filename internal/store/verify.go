package store

import (
	"context"
	"fmt"
	"time"
)

// verifyChunk bounds the ids of one IN list, well below every driver's limit
// on bound parameters.
const verifyChunk = 500

// Verified holds the gateway ids billingd has confirmed with the gateway.
type Verified struct {
	Customers      map[string]bool
	PaymentMethods map[string]bool
}

// VerifiedIDs reports which of the given gateway ids were verified with the
// gateway before, so that an import checks each id once, ever, and not once
// per file.
func (s *Store) VerifiedIDs(ctx context.Context, customers, paymentMethods []string) (Verified, error) {
	v := Verified{Customers: map[string]bool{}, PaymentMethods: map[string]bool{}}
	db := s.db.WithContext(ctx)
	for _, q := range []struct {
		sql  string
		ids  []string
		into map[string]bool
	}{
		{`SELECT gateway_customer_id FROM customers WHERE verified_at IS NOT NULL AND gateway_customer_id IN ?`, customers, v.Customers},
		{`SELECT gateway_payment_method_id FROM payment_methods WHERE verified_at IS NOT NULL AND gateway_payment_method_id IN ?`, paymentMethods, v.PaymentMethods},
	} {
		for _, ids := range chunks(q.ids) {
			var found []string
			if err := db.Raw(q.sql, ids).Scan(&found).Error; err != nil {
				return v, fmt.Errorf("store: verified ids: %w", err)
			}
			for _, id := range found {
				q.into[id] = true
			}
		}
	}
	return v, nil
}

// MarkVerified records that the gateway confirmed these ids (a payment method:
// that it exists and belongs to its customer) at now. Ids not in the database
// are ignored; an id verified before keeps its first time.
func (s *Store) MarkVerified(ctx context.Context, now time.Time, customers, paymentMethods []string) error {
	err := s.InTx(ctx, func(tx *Tx) error {
		for _, ids := range chunks(customers) {
			if err := tx.db.Exec(`UPDATE customers SET verified_at = ?, updated_at = ? WHERE verified_at IS NULL AND gateway_customer_id IN ?`, now, now, ids).Error; err != nil {
				return err
			}
		}
		for _, ids := range chunks(paymentMethods) {
			if err := tx.db.Exec(`UPDATE payment_methods SET verified_at = ?, updated_at = ? WHERE verified_at IS NULL AND gateway_payment_method_id IN ?`, now, now, ids).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: mark verified: %w", err)
	}
	return nil
}

// PaymentMethodKnown reports whether billingd has evidence that the card
// existed at the gateway: it was verified with the gateway, or a charge on it
// succeeded. The charge path asks when the gateway refuses a card as unknown:
// a known card is gone because the customer removed it (a hard decline), an
// unknown one was never right (billingd's data, for a human).
func (s *Store) PaymentMethodKnown(ctx context.Context, gatewayPaymentMethodID string) (bool, error) {
	return s.known(ctx, "payment_methods", "gateway_payment_method_id", gatewayPaymentMethodID)
}

// CustomerKnown is PaymentMethodKnown for a customer: verified with the
// gateway, or charged successfully before.
func (s *Store) CustomerKnown(ctx context.Context, gatewayCustomerID string) (bool, error) {
	return s.known(ctx, "customers", "gateway_customer_id", gatewayCustomerID)
}

// known answers PaymentMethodKnown and CustomerKnown: table holds the id in
// column, and charge_attempts names it in a column of the same name. Both
// names are constants of this package, never input.
func (s *Store) known(ctx context.Context, table, column, gatewayID string) (bool, error) {
	var n int64
	err := s.db.WithContext(ctx).Raw(`SELECT
		(SELECT COUNT(*) FROM `+table+` WHERE `+column+` = ? AND verified_at IS NOT NULL) +
		(SELECT COUNT(*) FROM (SELECT 1 FROM charge_attempts WHERE `+column+` = ? AND status = 'succeeded' LIMIT 1) AS charged)`,
		gatewayID, gatewayID).Scan(&n).Error
	if err != nil {
		return false, fmt.Errorf("store: %s known: %w", table, err)
	}
	return n > 0, nil
}

func chunks(ids []string) [][]string {
	var out [][]string
	for len(ids) > 0 {
		n := min(len(ids), verifyChunk)
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	return out
}
