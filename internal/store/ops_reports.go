package store

import (
	"context"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
)

// collectedQuery is every payment that took money in [from, to), by the time
// billingd recorded it: each succeeded charge attempt (off-session or through
// a pay page) at its finished_at, plus each second payment billingd learned of
// that no attempt of its own made (a duplicate the gateway let through), at the
// time its duplicate refund row was recorded — money the gateway did take,
// whose automatic refund the refunded side shows. A duplicate the refund job
// could not confirm (canceled) took nothing; one still confirming is not known
// yet to have taken anything. Bounded sums (boundedSum) take money.Ceiling()
// twice.
const collectedQuery = `SELECT currency, ` + boundedSum + ` FROM (
	SELECT currency, amount FROM charge_attempts
	 WHERE status = 'succeeded' AND finished_at >= ? AND finished_at < ?
	UNION ALL
	SELECT r.currency, r.amount FROM refunds r
	 WHERE r.reason = 'duplicate' AND r.status NOT IN ('canceled', 'confirming')
	   AND r.created_at >= ? AND r.created_at < ?
	   AND NOT EXISTS (SELECT 1 FROM charge_attempts ca
	                    WHERE ca.payment_intent_id = r.payment_intent_id AND ca.status = 'succeeded')
	) paid GROUP BY currency ORDER BY currency`

// refundedQuery is every refund that gave money back in [from, to), whatever
// its reason, by the time it succeeded.
const refundedQuery = `SELECT currency, ` + boundedSum + ` FROM refunds
	 WHERE status = 'succeeded' AND finished_at >= ? AND finished_at < ?
	 GROUP BY currency ORDER BY currency`

// RevenueCollected sums, per currency, the payments that took money in
// [from, to) (see collectedQuery): `billingd report revenue`.
func (s *Store) RevenueCollected(ctx context.Context, from, to time.Time) ([]CurrencyTotal, error) {
	var out []CurrencyTotal
	c := money.Ceiling()
	from, to = from.UTC(), to.UTC()
	err := s.db.WithContext(ctx).Raw(collectedQuery, c, c, from, to, from, to).Scan(&out).Error
	return out, err
}

// RevenueRefunded sums, per currency, the refunds that succeeded in
// [from, to), any reason: `billingd report revenue`.
func (s *Store) RevenueRefunded(ctx context.Context, from, to time.Time) ([]CurrencyTotal, error) {
	var out []CurrencyTotal
	c := money.Ceiling()
	err := s.db.WithContext(ctx).Raw(refundedQuery, c, c, from.UTC(), to.UTC()).Scan(&out).Error
	return out, err
}

// ForecastSubscriptions reads the billable subscriptions (active, past_due:
// paused and canceled ones are never invoiced) whose next uninvoiced period
// starts before until, the input of `billingd forecast`. The period math that
// turns them into charges stays with the caller (internal/schedule/period).
func (s *Store) ForecastSubscriptions(ctx context.Context, until time.Time) ([]models.Subscription, error) {
	var out []models.Subscription
	err := s.db.WithContext(ctx).Raw(`SELECT * FROM subscriptions WHERE status IN `+sqlBillable+` AND next_billing_at < ? ORDER BY id`,
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
