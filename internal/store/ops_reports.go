package store

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
)

// Kinds of money movement: the `kind` column of `billingd report export`
// (docs/admin-api.md and the README list them for finance).
const (
	// MovementCharge is a payment that took money: a succeeded charge
	// attempt, or a second payment the gateway took for an invoice another
	// payment already paid (its automatic refund is a MovementDuplicateRefund).
	MovementCharge = "charge"
	// MovementRefund is a refund that gave money back: an operator's, or the
	// automatic refund of a payment that succeeded after its invoice was voided.
	MovementRefund = "refund"
	// MovementDuplicateRefund is the automatic refund of a second payment for
	// one invoice.
	MovementDuplicateRefund = "duplicate_refund"
)

// moneyMovements is the one definition of the money that moved in [from, to),
// which `billingd report revenue` sums and `billingd report export` lists, so
// the two cannot disagree. One row per movement, with a positive amount:
//
//   - kind charge, source 1: each succeeded charge attempt (off-session or
//     through a pay page, a late success on a voided invoice and a second
//     success of billingd's own attempts included) at its finished_at — on
//     the partial index charge_attempts_succeeded_at;
//   - kind charge, source 2: each second payment billingd learned of that no
//     attempt of its own made (a duplicate the gateway let through), at the
//     time its duplicate refund row was recorded — money the gateway did
//     take. A duplicate the refund job could not confirm (canceled) took
//     nothing; one still confirming is not known yet to have taken anything.
//     Such rows are few: this reads the refunds table (far smaller than
//     charge_attempts), and probes charge_attempts by the partial index
//     charge_attempts_payment_intent (hence its not-empty condition);
//   - kind refund or duplicate_refund, source 3: each refund that succeeded,
//     whatever its reason, at its finished_at — on the partial index
//     refunds_succeeded_at.
//
// source and row_id (the attempt's or refund's id) order movements of the
// same instant. It takes from and to three times.
const moneyMovements = `
	SELECT '` + MovementCharge + `' AS kind, 1 AS source, ca.id AS row_id, ca.finished_at AS at, ca.invoice_id,
	       ca.currency, ca.amount, ca.payment_intent_id AS payment_id, '' AS refund_id
	  FROM charge_attempts ca
	 WHERE ca.status = 'succeeded' AND ca.finished_at >= ? AND ca.finished_at < ?
	UNION ALL
	SELECT '` + MovementCharge + `', 2, r.id, r.created_at, r.invoice_id, r.currency, r.amount, r.payment_intent_id, ''
	  FROM refunds r
	 WHERE r.reason = 'duplicate' AND r.status NOT IN ('canceled', 'confirming')
	   AND r.created_at >= ? AND r.created_at < ?
	   AND NOT EXISTS (SELECT 1 FROM charge_attempts ca
	                    WHERE ca.payment_intent_id = r.payment_intent_id AND ca.payment_intent_id <> ''
	                      AND ca.status = 'succeeded')
	UNION ALL
	SELECT CASE WHEN r.reason = 'duplicate' THEN '` + MovementDuplicateRefund + `' ELSE '` + MovementRefund + `' END,
	       3, r.id, r.finished_at, r.invoice_id, r.currency, r.amount, r.payment_intent_id, r.gateway_refund_id
	  FROM refunds r
	 WHERE r.status = 'succeeded' AND r.finished_at >= ? AND r.finished_at < ?`

// movementArgs are moneyMovements' arguments.
func movementArgs(from, to time.Time) []any {
	from, to = from.UTC(), to.UTC()
	return []any{from, to, from, to, from, to}
}

// movementSums sums the movements of one direction per currency; bounded
// sums (boundedSum) take money.Ceiling() twice before the movements' range.
func movementSums(direction string) string {
	return `SELECT currency, ` + boundedSum + ` FROM (` + moneyMovements + `) m
	 WHERE ` + direction + ` GROUP BY currency ORDER BY currency`
}

var (
	collectedQuery = movementSums(`kind = '` + MovementCharge + `'`)
	refundedQuery  = movementSums(`kind <> '` + MovementCharge + `'`)
)

// RevenueCollected sums, per currency, the payments that took money in
// [from, to) (the charges of moneyMovements): `billingd report revenue`.
func (s *Store) RevenueCollected(ctx context.Context, from, to time.Time) ([]CurrencyTotal, error) {
	return s.movementTotals(ctx, collectedQuery, from, to)
}

// RevenueRefunded sums, per currency, the refunds that succeeded in
// [from, to), any reason (the refunds of moneyMovements): `billingd report
// revenue`.
func (s *Store) RevenueRefunded(ctx context.Context, from, to time.Time) ([]CurrencyTotal, error) {
	return s.movementTotals(ctx, refundedQuery, from, to)
}

func (s *Store) movementTotals(ctx context.Context, q string, from, to time.Time) ([]CurrencyTotal, error) {
	var out []CurrencyTotal
	c := money.Ceiling()
	err := s.db.WithContext(ctx).Raw(q, append([]any{c, c}, movementArgs(from, to)...)...).Scan(&out).Error
	return out, err
}

// Movement is one money movement of moneyMovements with what an accountant
// matches it by: the invoice's order id, the subscription's reference and the
// customer. Amount is positive; Kind says its direction.
type Movement struct {
	Kind         string
	At           time.Time
	InvoiceID    int64
	Invoice      string // the invoice's order id (merchant_order_id)
	Subscription string // the subscription's reference
	Customer     string // the gateway customer id
	Email        string
	Payment      string // the gateway payment the money moved on
	Refund       string // the gateway refund id; empty for a charge
	Amount       int64
	Currency     string
}

// movementsQuery lists moneyMovements in time order, ties broken by source
// and row id, so the same range always lists the same rows in the same order.
const movementsQuery = `SELECT m.kind, m.at, m.invoice_id, m.currency, m.amount, m.payment_id, m.refund_id,
	       COALESCE(i.public_id, '') AS invoice, COALESCE(s.reference, '') AS subscription,
	       COALESCE(c.gateway_customer_id, '') AS customer, COALESCE(c.email, '') AS email
	  FROM (` + moneyMovements + `) m
	  LEFT JOIN invoices i ON i.id = m.invoice_id
	  LEFT JOIN subscriptions s ON s.id = i.subscription_id
	  LEFT JOIN customers c ON c.id = s.customer_id
	 ORDER BY m.at, m.source, m.row_id`

// EachMovement calls fn with every money movement in [from, to), in time
// order (see movementsQuery), reading them from one cursor instead of loading
// a month's payments at once: `billingd report export`. An error from fn stops
// the reading and is returned. fn must not use the store: the cursor holds a
// connection while it runs.
func (s *Store) EachMovement(ctx context.Context, from, to time.Time, fn func(Movement) error) error {
	rows, err := s.db.WithContext(ctx).Raw(movementsQuery, movementArgs(from, to)...).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var m Movement
		var at dbTime
		if err := rows.Scan(&m.Kind, &at, &m.InvoiceID, &m.Currency, &m.Amount, &m.Payment, &m.Refund,
			&m.Invoice, &m.Subscription, &m.Customer, &m.Email); err != nil {
			return err
		}
		m.At = at.Time.UTC()
		if err := fn(m); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ForecastSubscriptions reads the billable subscriptions (active, past_due:
// paused and canceled ones are never invoiced) whose next uninvoiced period
// starts before until, the input of `billingd forecast`. The period math that
// turns them into charges stays with the caller (internal/schedule/period).
func (s *Store) ForecastSubscriptions(ctx context.Context, until time.Time) ([]models.Subscription, error) {
	var out []models.Subscription
	err := s.db.WithContext(ctx).Raw(`SELECT * FROM subscriptions WHERE `+sqlBillable.in("status")+` AND next_billing_at < ? ORDER BY id`,
		until.UTC()).Scan(&out).Error
	return out, err
}

// OldestDueEmailAge is how long the oldest email the mail worker should have
// sent by now has waited (now minus its next_attempt_at; 0 when none is due):
// an outbox that stops draining makes it grow, whatever instance reads it.
func (s *Store) OldestDueEmailAge(ctx context.Context, now time.Time) (time.Duration, error) {
	var oldest []models.Email
	err := s.db.WithContext(ctx).Where("status = ? AND next_attempt_at <= ?", models.EmailPending, now.UTC()).
		Order("next_attempt_at").Limit(1).Find(&oldest).Error
	if err != nil || len(oldest) == 0 {
		return 0, err
	}
	return max(now.Sub(oldest[0].NextAttemptAt), 0), nil
}

// LastFinishedPass is when the latest billing pass that ran to its end
// finished (zero when none has).
func (s *Store) LastFinishedPass(ctx context.Context) (time.Time, error) {
	var run []models.BillingRun
	err := s.db.WithContext(ctx).Where("status = ? AND finished_at IS NOT NULL", models.RunFinished).
		Order("finished_at DESC").Limit(1).Find(&run).Error
	if err != nil || len(run) == 0 || run[0].FinishedAt == nil {
		return time.Time{}, err
	}
	return *run[0].FinishedAt, nil
}

// OldestRunningPassAge is how long the oldest billing pass still recorded as
// running has been running (0 when none is): a pass whose process died, or
// that hangs, keeps growing it.
func (s *Store) OldestRunningPassAge(ctx context.Context, now time.Time) (time.Duration, error) {
	var run []models.BillingRun
	err := s.db.WithContext(ctx).Where("status = ?", models.RunRunning).Order("started_at").Limit(1).Find(&run).Error
	if err != nil || len(run) == 0 {
		return 0, err
	}
	return max(now.Sub(run[0].StartedAt), 0), nil
}

// ClosedCases counts the dunning cases closed at or after since, by how they
// ended (recovered, exhausted, stopped): the recovery rate of the last days.
func (s *Store) ClosedCases(ctx context.Context, since time.Time) ([]Count, error) {
	var out []Count
	err := s.db.WithContext(ctx).Raw(`SELECT status, COUNT(*) AS n FROM dunning_cases
		 WHERE status <> 'open' AND closed_at >= ? GROUP BY status ORDER BY status`, since.UTC()).Scan(&out).Error
	return out, err
}

// dbTime scans a timestamp that the driver may hand over as text: SQLite's
// driver converts a column to time.Time only by its declared type, which a
// column of a UNION does not always carry.
type dbTime struct{ time.Time }

// sqliteTimeLayouts are the forms go-sqlite3 writes a time.Time in (the
// first) and reads back.
var sqliteTimeLayouts = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	time.RFC3339Nano,
}

// Scan implements sql.Scanner.
func (t *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case time.Time:
		t.Time = x
		return nil
	case string:
		return t.parse(x)
	case []byte:
		return t.parse(string(x))
	case nil:
		t.Time = time.Time{}
		return nil
	}
	return fmt.Errorf("store: cannot read %T as a time", v)
}

func (t *dbTime) parse(s string) error {
	for _, layout := range sqliteTimeLayouts {
		if p, err := time.Parse(layout, s); err == nil {
			t.Time = p
			return nil
		}
	}
	return fmt.Errorf("store: cannot read %q as a time", s)
}
