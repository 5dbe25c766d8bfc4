// Package dunning wins back failed payments: a case per unpaid invoice, a pure
// policy that decides the next step, the transactions that carry those steps out
// (retries, emails, final actions), and the pay-link tokens customers use to pay
// on-session or replace their card.
package dunning

import (
	"time"

	"github.com/billingd/billingd/internal/models"
)

// MaxRetriesPerCard30d is the card networks' cap on reattempts with one card in
// 30 days (Visa allows at most 15); billingd never exceeds it, whatever the
// configured schedule says.
const MaxRetriesPerCard30d = 15

// Final actions applied to a subscription when its case is exhausted.
const (
	FinalCancel  = models.FinalCancel
	FinalUnpaid  = models.FinalUnpaid
	FinalPastDue = models.FinalPastDue
)

// Policy is the configured dunning behaviour.
type Policy struct {
	// Schedule lists the delays between steps: for a soft decline each step is
	// an off-session retry; for action_required and hard_decline each step is a
	// reminder email. After the last step the case is exhausted.
	Schedule []time.Duration
	// FinalAction is cancel, unpaid or past_due.
	FinalAction models.FinalAction
	// MaxRetriesPerCard30d caps off-session retries on one card (default 15).
	MaxRetriesPerCard30d int
}

// EventKind is what happened to an invoice's collection.
type EventKind int

const (
	// Failed: an attempt ended without money (declined, requires_action, failed).
	Failed EventKind = iota
	// Succeeded: the invoice was paid.
	Succeeded
	// StepDue: the case's next_step_at came.
	StepDue
	// PaymentMethodUpdated: the customer saved a new card for the subscription.
	PaymentMethodUpdated
)

// Event is the input of Decide.
type Event struct {
	Kind EventKind
	// Reason classifies a Failed event.
	Reason models.DunningReason
	// DeclineCode is recorded on the case for ops.
	DeclineCode string
	// CardRetries30d counts reattempts (off-session attempts after an earlier
	// attempt of the same invoice) on the subscription's current card in the
	// last 30 days: the card networks' cap counts those, not first attempts.
	CardRetries30d int
}

// Case is the part of a dunning case the policy reads. A nil *Case means no
// case is open for the invoice.
type Case struct {
	Reason   models.DunningReason
	Step     int
	OpenedAt time.Time
}

// Decision is everything one event causes. The caller carries it out in one
// transaction.
type Decision struct {
	// Open: a new case must be created with Reason.
	Open   bool
	Reason models.DunningReason
	// Step is the case's step count after this decision.
	Step int
	// RetryAt schedules an off-session retry (invoice.next_attempt_at); nil
	// means none is scheduled.
	RetryAt *time.Time
	// NextStepAt wakes the case for its next reminder or for exhaustion; nil
	// while a retry is pending (the retry's outcome drives the case).
	NextStepAt *time.Time
	// Email to enqueue for this step ("" for none).
	Email models.EmailKind
	// Close ends the case: recovered or exhausted.
	Close models.CaseStatus
	// FinalAction applies to the subscription when the case is exhausted.
	FinalAction models.FinalAction
	// Note explains the decision in the case's step log.
	Note string
}

// ClassifyFailure maps an attempt's outcome to a case reason: authentication
// needed, a card that cannot be charged again, or a temporary refusal. It
// returns "" — no case, no email — for outcomes that are not the customer's
// failure: the gateway refusing billingd's own request (failed) or an outcome a
// human must establish (needs_review). Emailing "update your card" because
// billingd sent a wrong id would send the customer after a problem they cannot
// fix. A card the gateway no longer knows although it was verified or charged
// before reaches this as a hard decline, as the charge path records it so.
func ClassifyFailure(status models.AttemptStatus, hardDecline bool) models.DunningReason {
	switch {
	case status == models.AttemptFailed, status == models.AttemptNeedsReview:
		return ""
	case status == models.AttemptRequiresAction:
		return models.ReasonActionRequired
	case hardDecline:
		return models.ReasonHardDecline
	}
	return models.ReasonSoftDecline
}

// emailFor is the email a reason calls for at each step.
func emailFor(r models.DunningReason) models.EmailKind {
	switch r {
	case models.ReasonActionRequired:
		return models.EmailActionRequired
	case models.ReasonHardDecline:
		return models.EmailCardUpdate
	}
	return models.EmailPaymentFailed
}

// Decide is the dunning policy: a pure function of the case, what happened, the
// time and the configuration.
func Decide(c *Case, ev Event, now time.Time, p Policy) Decision {
	maxRetries := p.MaxRetriesPerCard30d
	if maxRetries <= 0 {
		maxRetries = MaxRetriesPerCard30d
	}
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	exhausted := func(d Decision, note string) Decision {
		d.Close, d.FinalAction, d.RetryAt, d.NextStepAt = models.CaseExhausted, p.FinalAction, nil, nil
		d.Email = ""
		if p.FinalAction.EndsSubscription() {
			d.Email = models.EmailSubscriptionEnded
		}
		d.Note = note
		return d
	}
	// next schedules step `step` (0-based) for reason r, or exhausts the case.
	next := func(d Decision, step int, cardRetries int) Decision {
		if step >= len(p.Schedule) {
			return exhausted(d, "schedule exhausted")
		}
		d.Step = step + 1
		d.Email = emailFor(d.Reason)
		if d.Reason == models.ReasonSoftDecline {
			if cardRetries >= maxRetries {
				// The card-network cap forbids another retry now: remind the
				// customer instead and look again at the next step.
				d.NextStepAt = at(p.Schedule[step])
				d.Note = "retry skipped: card reached the 30-day reattempt cap"
				return d
			}
			d.RetryAt = at(p.Schedule[step])
			d.Note = "off-session retry scheduled"
			return d
		}
		d.NextStepAt = at(p.Schedule[step])
		d.Note = "waiting for the customer"
		return d
	}

	switch ev.Kind {
	case Succeeded:
		if c == nil {
			return Decision{}
		}
		return Decision{Reason: c.Reason, Step: c.Step, Close: models.CaseRecovered, Email: models.EmailRecovered, Note: "invoice paid"}

	case Failed:
		if c == nil {
			d := Decision{Open: true, Reason: ev.Reason}
			return next(d, 0, ev.CardRetries30d)
		}
		d := Decision{Reason: ev.Reason, Step: c.Step}
		return next(d, c.Step, ev.CardRetries30d)

	case StepDue:
		if c == nil {
			return Decision{}
		}
		d := Decision{Reason: c.Reason, Step: c.Step}
		if c.Reason == models.ReasonSoftDecline && ev.CardRetries30d < maxRetries {
			// A retry that the cap had skipped: try now.
			d.RetryAt = at(0)
			d.Note = "off-session retry (cap cleared)"
			return d
		}
		return next(d, c.Step, ev.CardRetries30d)

	case PaymentMethodUpdated:
		if c == nil {
			return Decision{}
		}
		// A new card: retry at once, off-session. Its outcome drives the case.
		return Decision{Reason: c.Reason, Step: c.Step, RetryAt: at(0), Note: "new payment method: immediate retry"}
	}
	return Decision{}
}
