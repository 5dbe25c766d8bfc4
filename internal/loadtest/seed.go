package loadtest

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/store"
)

// Card is a customer with a saved card at the gateway, whose ids seeded
// subscriptions charge.
type Card struct {
	Customer      string // cus_…
	PaymentMethod string // pm_…
	Email         string
}

// SeedDueSubscriptions writes n active monthly subscriptions of amount (minor
// units) in currency, anchored at anchor (so their first period is due from
// then), spread round-robin over cards. It writes straight to the tables (the
// store's bulk seed), because importing a million rows through the CSV path
// would measure the import, not billing. References are bench-0000001….
func SeedDueSubscriptions(ctx context.Context, st *store.Store, cards []Card, n int, amount int64, currency string, anchor, now time.Time) error {
	if len(cards) == 0 {
		return fmt.Errorf("loadtest: no cards to seed subscriptions with")
	}
	sc := make([]store.SeedCard, len(cards))
	for i, c := range cards {
		sc[i] = store.SeedCard{Customer: c.Customer, PaymentMethod: c.PaymentMethod, Email: c.Email}
	}
	if err := st.SeedDueSubscriptions(ctx, sc, n, "bench-%07d", "bench plan", amount, currency, anchor, now); err != nil {
		return fmt.Errorf("loadtest: %w", err)
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
				invs = append(invs, store.NewInvoice{SubscriptionID: s.ID, Reference: s.Reference, PeriodStart: anchor, PeriodEnd: anchor.AddDate(0, 1, 0), Amount: s.Amount, Currency: s.Currency})
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
