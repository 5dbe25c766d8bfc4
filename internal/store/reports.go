package store

import (
	"context"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// WebhookResults counts stored webhook events by what they did.
func (s *Store) WebhookResults(ctx context.Context) ([]Count, error) {
	var out []Count
	err := s.db.WithContext(ctx).Raw(`SELECT result AS status, COUNT(*) AS n FROM webhook_events GROUP BY result ORDER BY result`).Scan(&out).Error
	return out, err
}

// InvoiceOutcome is one invoice with its subscription and its latest attempt.
type InvoiceOutcome struct {
	SubscriptionID int64
	Reference      string
	SubStatus      models.SubscriptionStatus
	Invoice        string
	PeriodIndex    int
	PeriodStart    time.Time
	Amount         int64
	Currency       string
	InvStatus      models.InvoiceStatus
	Attempts       int
	AttStatus      models.AttemptStatus
	DeclineCode    string
	HardDecline    bool
}

// InvoiceOutcomes lists every invoice with its latest attempt, by subscription
// and period (the demo's table).
func (s *Store) InvoiceOutcomes(ctx context.Context) ([]InvoiceOutcome, error) {
	var rows []InvoiceOutcome
	err := s.db.WithContext(ctx).Raw(`
		SELECT s.id AS subscription_id, s.reference, s.status AS sub_status, i.public_id AS invoice, i.period_index,
		       i.period_start, i.amount, i.currency, i.status AS inv_status, i.attempt_count AS attempts,
		       COALESCE(ca.status, '') AS att_status, COALESCE(ca.decline_code, '') AS decline_code,
		       COALESCE(ca.hard_decline, FALSE) AS hard_decline
		  FROM subscriptions s
		  JOIN invoices i ON i.subscription_id = s.id
		  LEFT JOIN charge_attempts ca ON ca.invoice_id = i.id AND ca.attempt_no = i.attempt_count
		 ORDER BY s.id, i.period_index`).Scan(&rows).Error
	return rows, err
}
