package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule/period"
)

// ImportRow is one validated line of a subscription import.
type ImportRow struct {
	Line          int
	Reference     string
	Email         string
	Customer      string // gateway customer id
	PaymentMethod string // gateway payment method id
	Amount        int64
	Currency      string
	Interval      string
	IntervalCount int
	Anchor        time.Time
	FirstBilling  time.Time // start of period 0, in UTC
	Description   string
	// Timezone is the IANA zone the subscription's calendar is read in, fixed
	// at import; "" takes the store's DefaultTimezone (UTC if that is unset).
	Timezone string
}

// RowError names what is wrong with one line of an import.
type RowError struct {
	Line    int
	Column  string
	Value   string
	Message string
}

func (e RowError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Message)
	}
	if e.Value == "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Column, e.Message)
	}
	return fmt.Sprintf("line %d: %s: %s (got %q)", e.Line, e.Column, e.Message, e.Value)
}

// ImportErrors is every problem of a rejected import.
type ImportErrors []RowError

func (es ImportErrors) Error() string {
	s := fmt.Sprintf("%d error(s); nothing was imported", len(es))
	for _, e := range es {
		s += "\n  " + e.Error()
	}
	return s
}

// ImportSubscriptions creates the subscriptions (and their customers and payment
// methods) in one transaction: either every row is imported or none is, and every
// conflicting row is reported with its line.
func (s *Store) ImportSubscriptions(ctx context.Context, rows []ImportRow, now time.Time) (int, error) {
	var imported int
	err := s.InTx(ctx, func(tx *Tx) error {
		var problems ImportErrors
		refs := make([]string, 0, len(rows))
		for _, r := range rows {
			refs = append(refs, r.Reference)
		}
		var existing []string
		if err := tx.db.Raw(`SELECT reference FROM subscriptions WHERE reference IN ?`, refs).Scan(&existing).Error; err != nil {
			return err
		}
		exists := make(map[string]bool, len(existing))
		for _, r := range existing {
			exists[r] = true
		}
		customers := map[string]int64{}
		pms := map[string]models.PaymentMethod{}
		for _, r := range rows {
			if exists[r.Reference] {
				problems = append(problems, RowError{Line: r.Line, Column: "reference", Value: r.Reference, Message: "a subscription with this reference already exists"})
				continue
			}
			custID, ok := customers[r.Customer]
			if !ok {
				id, err := tx.upsertCustomer(now, r.Customer, r.Email)
				if err != nil {
					return err
				}
				custID, customers[r.Customer] = id, id
			}
			pm, ok := pms[r.PaymentMethod]
			if !ok {
				p, err := tx.upsertPaymentMethod(now, custID, r.PaymentMethod)
				if err != nil {
					return err
				}
				pm, pms[r.PaymentMethod] = p, p
			}
			if pm.CustomerID != custID {
				problems = append(problems, RowError{Line: r.Line, Column: "payment_method", Value: r.PaymentMethod, Message: "belongs to a different customer"})
				continue
			}
			zone := r.Timezone
			if zone == "" {
				zone = s.importZone()
			}
			if _, err := period.LoadZone(zone); err != nil {
				problems = append(problems, RowError{Line: r.Line, Column: "timezone", Value: zone, Message: err.Error()})
				continue
			}
			sub := models.Subscription{
				Reference: r.Reference, CustomerID: custID, PaymentMethodID: pm.ID, Description: r.Description,
				Amount: r.Amount, Currency: r.Currency, Interval: r.Interval, IntervalCount: r.IntervalCount,
				AnchorAt: r.Anchor.UTC(), Timezone: zone, NextPeriod: 0, NextBillingAt: r.FirstBilling.UTC(),
				Status: models.SubscriptionActive, CreatedAt: now, UpdatedAt: now,
			}
			if err := tx.db.Create(&sub).Error; err != nil {
				return err
			}
			imported++
		}
		if len(problems) > 0 {
			sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
			return problems
		}
		return nil
	})
	if err != nil {
		imported = 0
		var ie ImportErrors
		if errors.As(err, &ie) {
			return 0, ie
		}
		return 0, fmt.Errorf("store: import: %w", err)
	}
	return imported, nil
}

// importZone is the zone given to imported rows that name none.
func (s *Store) importZone() string {
	if s.defaultZone == "" {
		return "UTC"
	}
	return s.defaultZone
}

func (tx *Tx) upsertCustomer(now time.Time, gatewayID, email string) (int64, error) {
	var c models.Customer
	err := tx.db.Where("gateway_customer_id = ?", gatewayID).Limit(1).Find(&c).Error
	if err != nil {
		return 0, err
	}
	if c.ID != 0 {
		if email != "" && c.Email != email {
			if err := tx.db.Model(&c).Updates(map[string]any{"email": email, "updated_at": now}).Error; err != nil {
				return 0, err
			}
		}
		return c.ID, nil
	}
	c = models.Customer{GatewayID: gatewayID, Email: email, CreatedAt: now, UpdatedAt: now}
	if err := tx.db.Create(&c).Error; err != nil {
		return 0, err
	}
	return c.ID, nil
}

// upsertPaymentMethod returns the payment method row for a gateway id, creating
// it for customerID if it is new. An existing row is returned as it is, so the
// caller can tell when it belongs to someone else.
func (tx *Tx) upsertPaymentMethod(now time.Time, customerID int64, gatewayID string) (models.PaymentMethod, error) {
	var pm models.PaymentMethod
	if err := tx.db.Where("gateway_payment_method_id = ?", gatewayID).Limit(1).Find(&pm).Error; err != nil {
		return pm, err
	}
	if pm.ID != 0 {
		return pm, nil
	}
	pm = models.PaymentMethod{CustomerID: customerID, GatewayID: gatewayID, CreatedAt: now, UpdatedAt: now}
	err := tx.db.Create(&pm).Error
	return pm, err
}

// Count is one (state, number) pair of a status report.
type Count struct {
	Status string
	N      int64
}

// StatusReport is the one-screen summary `billingd status` prints.
type StatusReport struct {
	Subscriptions []Count
	Invoices      []Count
	Attempts      []Count
	DunningCases  []Count
	Emails        []Count
	Webhooks      []Count // by result
	DueNow        int64
	Unresolved    int64
	NeedsReview   int64
	// Held counts queues nothing will charge without a person (CountHeldInvoices).
	Held      int64
	LastRuns  []models.BillingRun
	PaidToday []CurrencyTotal
	// Refunds counts refunds by status; DuplicateRefunds those of second
	// payments (reason duplicate), and Refunded sums what succeeded refunds
	// gave back, by currency.
	Refunds          []Count
	DuplicateRefunds []Count
	Refunded         []CurrencyTotal
}

// CurrencyTotal is a sum of minor units in one currency.
type CurrencyTotal struct {
	Currency string
	Amount   int64
	N        int64
}

// Status gathers the counts by state that ops look at first.
// webhookResultColumn is what `billingd status` counts webhook events by: their
// result, with the events stored but not applied for a human (needs_review)
// counted apart.
const webhookResultColumn = `CASE WHEN needs_review THEN 'needs_review' ELSE result END`

func (s *Store) Status(ctx context.Context, now time.Time) (*StatusReport, error) {
	db := s.db.WithContext(ctx)
	r := &StatusReport{}
	for _, q := range []struct {
		table  string
		out    *[]Count
		column string
	}{{"subscriptions", &r.Subscriptions, "status"}, {"invoices", &r.Invoices, "status"}, {"charge_attempts", &r.Attempts, "status"},
		{"dunning_cases", &r.DunningCases, "status"}, {"emails", &r.Emails, "status"}, {"webhook_events", &r.Webhooks, webhookResultColumn}} {
		if err := db.Raw(`SELECT ` + q.column + ` AS status, COUNT(*) AS n FROM ` + q.table + ` GROUP BY 1 ORDER BY 1`).Scan(q.out).Error; err != nil {
			return nil, err
		}
	}
	if err := db.Raw(`SELECT COUNT(*) FROM subscriptions WHERE status IN `+sqlBillable+` AND next_billing_at <= ?`, now).Scan(&r.DueNow).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT COUNT(*) FROM charge_attempts WHERE status IN ` + sqlUnresolved).Scan(&r.Unresolved).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT COUNT(*) FROM charge_attempts WHERE status IN ` + sqlAttention).Scan(&r.NeedsReview).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(heldInvoicesQuery).Scan(&r.Held).Error; err != nil {
		return nil, err
	}
	dayStart := now.Truncate(24 * time.Hour)
	if err := db.Raw(`SELECT currency, SUM(amount) AS amount, COUNT(*) AS n FROM invoices WHERE status = 'paid' AND paid_at >= ? GROUP BY currency ORDER BY currency`, dayStart).Scan(&r.PaidToday).Error; err != nil {
		return nil, err
	}
	if err := s.refundStatus(ctx, r); err != nil {
		return nil, err
	}
	if err := db.Order("id DESC").Limit(5).Find(&r.LastRuns).Error; err != nil {
		return nil, err
	}
	return r, nil
}
