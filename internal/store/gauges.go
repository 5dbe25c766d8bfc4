package store

import (
	"context"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// CountAttempts counts charge attempts in the given states, or all of them
// when none is given (the /metrics gauges, reports).
func (s *Store) CountAttempts(ctx context.Context, statuses ...models.AttemptStatus) (int64, error) {
	var n int64
	q := s.db.WithContext(ctx).Model(&models.ChargeAttempt{})
	if len(statuses) > 0 {
		q = q.Where("status IN ?", statuses)
	}
	err := q.Count(&n).Error
	return n, err
}

// CountInvoices counts invoices in the given states, or all of them.
func (s *Store) CountInvoices(ctx context.Context, statuses ...models.InvoiceStatus) (int64, error) {
	var n int64
	q := s.db.WithContext(ctx).Model(&models.Invoice{})
	if len(statuses) > 0 {
		q = q.Where("status IN ?", statuses)
	}
	err := q.Count(&n).Error
	return n, err
}

// CountDueSubscriptions counts billable subscriptions whose next period has
// started by now.
func (s *Store) CountDueSubscriptions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&models.Subscription{}).
		Where("status IN ? AND next_billing_at <= ?", models.BillableSubscriptionStatuses, now).Count(&n).Error
	return n, err
}

// CountOpenCases counts dunning cases still trying to collect.
func (s *Store) CountOpenCases(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&models.DunningCase{}).Where("status = ?", models.CaseOpen).Count(&n).Error
	return n, err
}

// CountEmails counts outbox emails in the given states.
func (s *Store) CountEmails(ctx context.Context, statuses ...models.EmailStatus) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&models.Email{}).Where("status IN ?", statuses).Count(&n).Error
	return n, err
}

// heldInvoicesQuery counts the invoices nothing will charge without a person:
// the head of a billable subscription's queue, open, with no open dunning case
// and no attempt in flight or waiting for the customer, that the claim will not take — no attempt is
// scheduled (its last attempt ended needs_review, failed or canceled), or its
// card was called dead while no case of its own asks the customer for a new
// one (another subscription's decline killed the shared card). The periods
// behind it wait too.
var heldInvoicesQuery = `SELECT COUNT(*) FROM invoices i
	  JOIN subscriptions s ON s.id = i.subscription_id
	  JOIN payment_methods pm ON pm.id = s.payment_method_id
	 WHERE i.status = 'open' AND ` + sqlBillable.in("s.status") + `
	   AND NOT EXISTS (SELECT 1 FROM invoices e WHERE e.subscription_id = i.subscription_id AND e.status = 'open' AND e.period_index < i.period_index)
	   AND NOT EXISTS (SELECT 1 FROM dunning_cases c WHERE c.invoice_id = i.id AND c.status = 'open')
	   AND NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.invoice_id = i.id AND ` + sqlOpen.in("ca.status") + `)
	   AND (i.next_attempt_at IS NULL OR pm.dead_at IS NOT NULL)`

// CountHeldInvoices counts the queues that wait for a person (see
// heldInvoicesQuery): `billingd status` and the billingd_invoices_held gauge
// show them, so that no subscription stops being billed unseen.
func (s *Store) CountHeldInvoices(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Raw(heldInvoicesQuery).Scan(&n).Error
	return n, err
}
