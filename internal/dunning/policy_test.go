package dunning

import (
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

var (
	now    = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	policy = Policy{Schedule: []time.Duration{24 * time.Hour, 72 * time.Hour, 120 * time.Hour}, FinalAction: FinalCancel}
)

func tp(d time.Duration) *time.Time { t := now.Add(d); return &t }

func TestDecide(t *testing.T) {
	soft := models.ReasonSoftDecline
	hard := models.ReasonHardDecline
	action := models.ReasonActionRequired
	for _, tc := range []struct {
		name string
		c    *Case
		ev   Event
		p    Policy
		want Decision
	}{
		{"soft decline opens a case and schedules the first retry", nil, Event{Kind: Failed, Reason: soft}, policy,
			Decision{Open: true, Reason: soft, Step: 1, RetryAt: tp(24 * time.Hour), Email: models.EmailPaymentFailed, Note: "off-session retry scheduled"}},
		{"second soft decline schedules the next retry", &Case{Reason: soft, Step: 1}, Event{Kind: Failed, Reason: soft}, policy,
			Decision{Reason: soft, Step: 2, RetryAt: tp(72 * time.Hour), Email: models.EmailPaymentFailed, Note: "off-session retry scheduled"}},
		{"last retry fails: exhausted, subscription canceled", &Case{Reason: soft, Step: 3}, Event{Kind: Failed, Reason: soft}, policy,
			Decision{Reason: soft, Step: 3, Close: models.CaseExhausted, FinalAction: FinalCancel, Email: models.EmailSubscriptionEnded, Note: "schedule exhausted"}},
		{"exhausted with past_due sends no ending email", &Case{Reason: soft, Step: 3}, Event{Kind: Failed, Reason: soft}, Policy{Schedule: policy.Schedule, FinalAction: FinalPastDue},
			Decision{Reason: soft, Step: 3, Close: models.CaseExhausted, FinalAction: FinalPastDue, Note: "schedule exhausted"}},
		{"hard decline is never retried blindly", nil, Event{Kind: Failed, Reason: hard}, policy,
			Decision{Open: true, Reason: hard, Step: 1, NextStepAt: tp(24 * time.Hour), Email: models.EmailCardUpdate, Note: "waiting for the customer"}},
		{"requires_action is never retried off-session", nil, Event{Kind: Failed, Reason: action}, policy,
			Decision{Open: true, Reason: action, Step: 1, NextStepAt: tp(24 * time.Hour), Email: models.EmailActionRequired, Note: "waiting for the customer"}},
		{"a retry that turns hard switches to waiting for a card", &Case{Reason: soft, Step: 1}, Event{Kind: Failed, Reason: hard}, policy,
			Decision{Reason: hard, Step: 2, NextStepAt: tp(72 * time.Hour), Email: models.EmailCardUpdate, Note: "waiting for the customer"}},
		{"reminder step for a hard decline", &Case{Reason: hard, Step: 1}, Event{Kind: StepDue}, policy,
			Decision{Reason: hard, Step: 2, NextStepAt: tp(72 * time.Hour), Email: models.EmailCardUpdate, Note: "waiting for the customer"}},
		{"no card after the last reminder: exhausted", &Case{Reason: action, Step: 3}, Event{Kind: StepDue}, Policy{Schedule: policy.Schedule, FinalAction: FinalUnpaid},
			Decision{Reason: action, Step: 3, Close: models.CaseExhausted, FinalAction: FinalUnpaid, Email: models.EmailSubscriptionEnded, Note: "schedule exhausted"}},
		{"a new card retries at once", &Case{Reason: hard, Step: 2}, Event{Kind: PaymentMethodUpdated}, policy,
			Decision{Reason: hard, Step: 2, RetryAt: tp(0), Note: "new payment method: immediate retry"}},
		{"paid: recovered with a receipt", &Case{Reason: soft, Step: 2}, Event{Kind: Succeeded}, policy,
			Decision{Reason: soft, Step: 2, Close: models.CaseRecovered, Email: models.EmailRecovered, Note: "invoice paid"}},
		{"paid without a case: nothing", nil, Event{Kind: Succeeded}, policy, Decision{}},
		{"card-network cap: remind instead of retrying", &Case{Reason: soft, Step: 1}, Event{Kind: Failed, Reason: soft, CardRetries30d: 15}, policy,
			Decision{Reason: soft, Step: 2, NextStepAt: tp(72 * time.Hour), Email: models.EmailPaymentFailed, Note: "retry skipped: card reached the 30-day reattempt cap"}},
		{"cap cleared at the next step: retry now", &Case{Reason: soft, Step: 2}, Event{Kind: StepDue, CardRetries30d: 9}, policy,
			Decision{Reason: soft, Step: 2, RetryAt: tp(0), Note: "off-session retry (cap cleared)"}},
		{"a stricter cap from config", nil, Event{Kind: Failed, Reason: soft, CardRetries30d: 3}, Policy{Schedule: policy.Schedule, FinalAction: FinalCancel, MaxRetriesPerCard30d: 3},
			Decision{Open: true, Reason: soft, Step: 1, NextStepAt: tp(24 * time.Hour), Email: models.EmailPaymentFailed, Note: "retry skipped: card reached the 30-day reattempt cap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Decide(tc.c, tc.ev, now, tc.p))
		})
	}
}

func TestClassifyFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status models.AttemptStatus
		hard   bool
		want   models.DunningReason
	}{
		{"authentication needed", models.AttemptRequiresAction, false, models.ReasonActionRequired},
		{"hard decline", models.AttemptDeclined, true, models.ReasonHardDecline},
		{"soft decline", models.AttemptDeclined, false, models.ReasonSoftDecline},
		{"gateway refused billingd's request: no case", models.AttemptFailed, false, ""},
		{"failed stays billingd's even if flagged hard", models.AttemptFailed, true, ""},
		{"billingd's data error for a human: no case", models.AttemptNeedsReview, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ClassifyFailure(tc.status, tc.hard))
		})
	}
}

// Walking a soft decline through the whole schedule never retries more often
// than the schedule has steps, and always ends.
func TestSoftScheduleEnds(t *testing.T) {
	var c *Case
	retries := 0
	for i := 0; i < 10; i++ {
		d := Decide(c, Event{Kind: Failed, Reason: models.ReasonSoftDecline}, now, policy)
		if d.Close == models.CaseExhausted {
			break
		}
		require.NotNil(t, d.RetryAt)
		retries++
		c = &Case{Reason: d.Reason, Step: d.Step}
	}
	require.Equal(t, len(policy.Schedule), retries)
}
