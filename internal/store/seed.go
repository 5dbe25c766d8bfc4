package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// SeedCard is a customer with a saved card at the gateway, for a bulk seed.
type SeedCard struct {
	Customer      string // cus_…
	PaymentMethod string // pm_…
	Email         string
}

// seedRowsPerStatement keeps one multi-row INSERT under SQLite's 32,766 bound
// parameters (15 per subscription).
const seedRowsPerStatement = 2000

// seedStatementsPerTx bounds one seeding transaction to 20,000 subscriptions, so
// a million-row seed never builds one huge write.
const seedStatementsPerTx = 10

// SeedDueSubscriptions writes n active monthly UTC subscriptions of amount
// (minor units) in currency, anchored at anchor, spread round-robin over
// cards, straight into the tables in batches: the load tool's starting point
// (`billingd bench`), where importing a million rows through the CSV path
// would measure the import, not billing. reference is a fmt pattern taking
// the row's number from 1.
func (s *Store) SeedDueSubscriptions(ctx context.Context, cards []SeedCard, n int, reference, description string, amount int64, currency string, anchor, now time.Time) error {
	type ids struct{ customer, pm int64 }
	refs := make([]ids, len(cards))
	err := s.InTx(ctx, func(tx *Tx) error {
		for i, c := range cards {
			cus := models.Customer{GatewayID: c.Customer, Email: c.Email, CreatedAt: now, UpdatedAt: now}
			if err := tx.db.Create(&cus).Error; err != nil {
				return err
			}
			pm := models.PaymentMethod{CustomerID: cus.ID, GatewayID: c.PaymentMethod, Brand: "visa", Last4: "4242", CreatedAt: now, UpdatedAt: now}
			if err := tx.db.Create(&pm).Error; err != nil {
				return err
			}
			refs[i] = ids{cus.ID, pm.ID}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seed customers: %w", err)
	}
	const cols = `INSERT INTO subscriptions (reference, customer_id, payment_method_id, description, amount, currency,
		interval_unit, interval_count, anchor_at, timezone, next_period, next_billing_at, status, created_at, updated_at) VALUES `
	const row = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
	for done := 0; done < n; {
		err := s.InTx(ctx, func(tx *Tx) error {
			for st := 0; st < seedStatementsPerTx && done < n; st++ {
				k := min(seedRowsPerStatement, n-done)
				var q strings.Builder
				q.WriteString(cols)
				args := make([]any, 0, 15*k)
				for j := 0; j < k; j++ {
					if j > 0 {
						q.WriteByte(',')
					}
					q.WriteString(row)
					i := done + j
					c := refs[i%len(refs)]
					args = append(args, fmt.Sprintf(reference, i+1), c.customer, c.pm, description, amount, currency,
						"month", 1, anchor, "UTC", 0, anchor, string(models.SubscriptionActive), now, now)
				}
				if _, err := tx.execEmitting(models.EventSubscriptionCreated, q.String(), args...); err != nil {
					return err
				}
				if err := tx.flushEvents(); err != nil {
					return err
				}
				done += k
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("seed subscriptions (after %d): %w", done, err)
		}
	}
	return nil
}
