package loadtest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// Card is a customer with a saved card at the gateway, whose ids seeded
// subscriptions charge.
type Card struct {
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

// SeedDueSubscriptions writes n active monthly subscriptions of amount (minor
// units) in currency, anchored at anchor (so their first period is due from
// then), spread round-robin over cards, each with the UTC calendar (a
// subscription without a zone is never billed). It writes straight to the tables, in
// batches, because importing a million rows through the CSV path would measure
// the import, not billing. References are bench-0000001….
func SeedDueSubscriptions(ctx context.Context, st *store.Store, cards []Card, n int, amount int64, currency string, anchor, now time.Time) error {
	if len(cards) == 0 {
		return fmt.Errorf("loadtest: no cards to seed subscriptions with")
	}
	type ids struct{ customer, pm int64 }
	refs := make([]ids, len(cards))
	err := st.InTx(ctx, func(tx *store.Tx) error {
		for i, c := range cards {
			cus := models.Customer{GatewayID: c.Customer, Email: c.Email, CreatedAt: now, UpdatedAt: now}
			if err := tx.DB().Create(&cus).Error; err != nil {
				return err
			}
			pm := models.PaymentMethod{CustomerID: cus.ID, GatewayID: c.PaymentMethod, Brand: "visa", Last4: "4242", CreatedAt: now, UpdatedAt: now}
			if err := tx.DB().Create(&pm).Error; err != nil {
				return err
			}
			refs[i] = ids{cus.ID, pm.ID}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loadtest: seed customers: %w", err)
	}
	const cols = `INSERT INTO subscriptions (reference, customer_id, payment_method_id, description, amount, currency,
		interval_unit, interval_count, anchor_at, timezone, next_period, next_billing_at, status, created_at, updated_at) VALUES `
	const row = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
	for done := 0; done < n; {
		err := st.InTx(ctx, func(tx *store.Tx) error {
			for s := 0; s < seedStatementsPerTx && done < n; s++ {
				k := min(seedRowsPerStatement, n-done)
				var sql strings.Builder
				sql.WriteString(cols)
				args := make([]any, 0, 15*k)
				for j := 0; j < k; j++ {
					if j > 0 {
						sql.WriteByte(',')
					}
					sql.WriteString(row)
					i := done + j
					c := refs[i%len(refs)]
					args = append(args, fmt.Sprintf("bench-%07d", i+1), c.customer, c.pm, "bench plan", amount, currency,
						"month", 1, anchor, "UTC", 0, anchor, "active", now, now)
				}
				if err := tx.DB().Exec(sql.String(), args...).Error; err != nil {
					return err
				}
				done += k
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("loadtest: seed subscriptions (after %d): %w", done, err)
		}
	}
	return nil
}

// SeedOpenInvoices seeds n due subscriptions (see SeedDueSubscriptions) and
// invoices their first period, leaving n open invoices ready to be claimed: the
// starting point of the claim and result-write benchmarks. Gateway ids are
// made up; nothing is sent.
func SeedOpenInvoices(ctx context.Context, st *store.Store, n int, now time.Time) error {
	cards := []Card{{Customer: "cus_bench", PaymentMethod: "pm_bench", Email: "bench@example.com"}}
	anchor := now.Add(-time.Hour)
	if err := SeedDueSubscriptions(ctx, st, cards, n, 1999, "USD", anchor, now); err != nil {
		return err
	}
	var cursor store.DueCursor
	for {
		var page int
		err := st.InTx(ctx, func(tx *store.Tx) error {
			subs, err := tx.DueSubscriptions(now, cursor, 1000)
			if err != nil {
				return err
			}
			page = len(subs)
			invs := make([]store.NewInvoice, 0, len(subs))
			for _, s := range subs {
				cursor = store.DueCursor{NextBillingAt: s.NextBillingAt, ID: s.ID}
				invs = append(invs, store.NewInvoice{SubscriptionID: s.ID, PeriodStart: anchor, PeriodEnd: anchor.AddDate(0, 1, 0), Amount: s.Amount, Currency: s.Currency})
				if err := tx.AdvanceSubscription(now, s.ID, 0, 1, anchor.AddDate(0, 1, 0)); err != nil {
					return err
				}
			}
			_, err = tx.CreateInvoices(now, invs)
			return err
		})
		if err != nil {
			return fmt.Errorf("loadtest: invoice seeded subscriptions: %w", err)
		}
		if page < 1000 {
			return nil
		}
	}
}
