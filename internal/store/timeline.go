package store

import (
	"context"
	"sort"
	"time"

	"github.com/billingd/billingd/internal/money"
)

// TimelineSource says which table a timeline event comes from.
type TimelineSource string

// The sources of a timeline, in the order events of one instant are listed:
// a charge's answer first, then the dunning step it caused, then the invoices
// that step settled, then the email it queued.
const (
	// TimelineAttempt is a charge attempt, at the time its outcome was
	// recorded (or its creation while it has none).
	TimelineAttempt TimelineSource = "attempt"
	// TimelineStep is one recorded transition of a dunning case.
	TimelineStep TimelineSource = "step"
	// TimelineInvoice is an invoice that no charge attempt speaks for: one that
	// waits behind an unpaid one, or was written off with it.
	TimelineInvoice TimelineSource = "invoice"
	// TimelineEmail is an outbox email, at the time the SMTP server accepted
	// it (or its creation while it waits).
	TimelineEmail TimelineSource = "email"
)

func (s TimelineSource) rank() int {
	switch s {
	case TimelineAttempt:
		return 0
	case TimelineStep:
		return 1
	case TimelineInvoice:
		return 2
	}
	return 3
}

// TimelineEvent is one thing that happened to a subscription's invoice: a
// charge attempt's outcome, a dunning step or an email. The fields a source
// does not have are zero; Status, Code and Text mean what the source's own
// columns mean (see each field).
type TimelineEvent struct {
	Source TimelineSource
	// ID is the row's id in its own table.
	ID          int64
	At          time.Time
	Reference   string
	Invoice     string
	PeriodIndex int
	PeriodStart time.Time
	Amount      int64
	Currency    string
	// Status is the attempt's status, the step's action, the invoice's status,
	// or the email's status.
	Status string
	// Code is the attempt's decline code, the case's reason, or the email's kind.
	Code        string
	HardDecline bool
	// No is the attempt's number or the step's number.
	No         int
	OffSession bool
	// Text is the attempt's error message, the step's detail, or the email's
	// subject (set once it was rendered for sending).
	Text string
	// To is the email's recipient.
	To string `gorm:"column:to_address"`
	// FinalAction is, on a step, the final action its case applied when it
	// was exhausted (cancel, unpaid, past_due).
	FinalAction string
	// Created is when the row was written: for an attempt, when the charge
	// started (At is when its outcome was recorded, later for a charge the
	// gateway settled afterwards); for an email, when it was queued.
	Created time.Time `gorm:"-"`
}

// Timeline lists what happened to every invoice — charge attempts, dunning
// steps, invoices no attempt speaks for, and emails — in time order (events of
// one instant in the order TimelineSource lists them). It reads whole tables:
// it is meant for the demo's report of a simulated run and for small
// databases, not for a production history.
func (s *Store) Timeline(ctx context.Context) ([]TimelineEvent, error) {
	// The time is picked in Go, not with COALESCE: SQLite's driver parses a
	// column as a time only when it is a plain DATETIME column.
	var raw []struct {
		TimelineEvent
		At        *time.Time
		CreatedAt time.Time
	}
	err := s.db.WithContext(ctx).Raw(`
		SELECT 'attempt' AS source, ca.id, ca.finished_at AS at, ca.created_at AS created_at, s.reference,
		       i.public_id AS invoice, i.period_index, i.period_start, ca.amount, ca.currency,
		       ca.status, ca.decline_code AS code, ca.hard_decline, ca.attempt_no AS no, ca.off_session,
		       ca.error_message AS text, '' AS to_address, '' AS final_action
		  FROM charge_attempts ca
		  JOIN invoices i ON i.id = ca.invoice_id
		  JOIN subscriptions s ON s.id = i.subscription_id
		UNION ALL
		SELECT 'step', st.id, st.at, st.at, s.reference,
		       i.public_id, i.period_index, i.period_start, i.amount, i.currency,
		       st.action, dc.reason, FALSE, st.step, FALSE,
		       st.detail, '', dc.final_action
		  FROM dunning_steps st
		  JOIN dunning_cases dc ON dc.id = st.case_id
		  JOIN invoices i ON i.id = dc.invoice_id
		  JOIN subscriptions s ON s.id = i.subscription_id
		UNION ALL
		SELECT 'invoice', i.id, i.updated_at, i.updated_at, s.reference,
		       i.public_id, i.period_index, i.period_start, i.amount, i.currency,
		       i.status, '', FALSE, 0, FALSE,
		       '', '', ''
		  FROM invoices i
		  JOIN subscriptions s ON s.id = i.subscription_id
		 WHERE NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.invoice_id = i.id)
		UNION ALL
		SELECT 'email', e.id, e.sent_at, e.created_at, s.reference,
		       i.public_id, i.period_index, i.period_start, i.amount, i.currency,
		       e.status, e.kind, FALSE, 0, FALSE,
		       e.subject, e.to_address, ''
		  FROM emails e
		  JOIN invoices i ON i.id = e.invoice_id
		  JOIN subscriptions s ON s.id = i.subscription_id`).Scan(&raw).Error
	if err != nil {
		return nil, err
	}
	rows := make([]TimelineEvent, len(raw))
	for i, r := range raw {
		rows[i] = r.TimelineEvent
		rows[i].Created = r.CreatedAt.UTC()
		rows[i].At = rows[i].Created
		if r.At != nil {
			rows[i].At = r.At.UTC()
		}
		rows[i].PeriodStart = r.PeriodStart.UTC()
	}
	// Sorted here rather than in SQL so that both dialects order ties the same.
	sort.SliceStable(rows, func(a, b int) bool {
		x, y := &rows[a], &rows[b]
		if !x.At.Equal(y.At) {
			return x.At.Before(y.At)
		}
		if x.Source.rank() != y.Source.rank() {
			return x.Source.rank() < y.Source.rank()
		}
		return x.ID < y.ID
	})
	return rows, nil
}

// PaidTotals sums paid invoices by currency: what billingd's books say was
// collected, to compare with the gateway's ledger.
func (s *Store) PaidTotals(ctx context.Context) ([]CurrencyTotal, error) {
	var out []CurrencyTotal
	ceiling := money.Ceiling()
	err := s.db.WithContext(ctx).Raw(`SELECT currency, `+boundedSum+` FROM invoices
		WHERE status = 'paid' GROUP BY currency ORDER BY currency`, ceiling, ceiling).Scan(&out).Error
	return out, err
}
