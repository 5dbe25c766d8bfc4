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
