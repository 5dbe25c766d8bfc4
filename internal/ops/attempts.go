package ops

import (
	"context"
	"fmt"
	"strings"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// ActionAttemptResolve is the audit action of resolving an attempt.
const ActionAttemptResolve = "attempt.resolve"

// ResolveAttempt settles an attempt that needs review from the gateway's
// records, never by sending it again: the attempt's payment is read (by
// payment id, else by order id and the attempt's key) and what the gateway
// says is applied through the webhook's settle path, with the audit row in
// the same transaction — a success pays the invoice exactly once; a decline
// or a cancel moves the attempt and dunning proceeds. A payment of another
// amount or currency is not applied (it stays needs_review, and the error
// says why). When the gateway has no payment for the attempt its request
// never executed: only with markFailed is it then marked failed, with the
// reason; otherwise the answer is a conflict that says so.
func (s *Service) ResolveAttempt(ctx context.Context, a Actor, attemptID int64, reason string, markFailed bool) (*Attempt, error) {
	if err := needReason(reason); err != nil {
		return nil, err
	}
	if s.opts.Engine == nil {
		return nil, ErrNoGateway
	}
	at, err := s.opts.Store.FindAttempt(ctx, attemptID)
	if err != nil {
		return nil, err
	}
	if at == nil {
		return nil, notFound("attempt", fmt.Sprint(attemptID))
	}
	if at.Status != models.AttemptNeedsReview {
		return nil, conflictf("attempt %d (%s) is %s: only an attempt that needs review is resolved", at.ID, at.IdempotencyKey, at.Status)
	}
	before, err := s.attemptView(ctx, at.ID)
	if err != nil {
		return nil, err
	}
	reading, err := s.opts.Engine.ReadAttempt(ctx, at)
	if err != nil {
		return nil, fmt.Errorf("reading attempt %d at the gateway: %w (nothing changed; try again)", at.ID, err)
	}
	var result store.AttemptResult
	switch {
	case reading.Mismatch != "":
		return nil, conflictf("attempt %d stays needs_review: the gateway's payment %s is not the one billingd asked for: %s",
			at.ID, reading.PaymentIntentID, reading.Mismatch)
	case !reading.Found && !markFailed:
		return nil, conflictf("the gateway has no payment for attempt %d (order %s, key %s): its request never executed and nothing was charged; run again with --mark-failed to mark it failed (it is never replayed)",
			at.ID, at.MerchantOrderID, at.IdempotencyKey)
	case !reading.Found:
		result = store.AttemptResult{Status: models.AttemptFailed,
			ErrorMessage: "marked failed by " + a.Name + ": " + strings.TrimSpace(reason) + " (the gateway has no payment for it)"}
	default:
		result = reading.Result
		if result.Status == models.AttemptNeedsReview {
			return nil, conflictf("the gateway's answer for attempt %d still needs review: %s", at.ID, result.ErrorMessage)
		}
	}
	now := s.now()
	var warning string
	err = s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		moved, w, err := s.opts.Engine.SettleReviewed(tx, now, at, result)
		if err != nil {
			return err
		}
		if !moved {
			return conflictf("attempt %d changed while it was read from the gateway; look at it again", at.ID)
		}
		warning = w
		after := *before
		after.Status, after.Error = string(result.Status), result.ErrorMessage
		after.DeclineCode, after.AdviceCode, after.HardDecline = result.DeclineCode, result.AdviceCode, result.HardDecline
		if result.PaymentIntentID != "" {
			after.Payment = result.PaymentIntentID
		}
		return audit(tx, now, a, reason, Audited{Action: ActionAttemptResolve, TargetType: TargetAttempt, TargetID: at.ID,
			TargetRef: at.IdempotencyKey, Before: before, After: after})
	})
	if err != nil {
		return nil, err
	}
	s.opts.Engine.LogWarning(at, warning)
	s.opts.Log.Info().Int64("attempt_id", at.ID).Str("status", string(result.Status)).Str("actor", a.Name).Msg("operator resolved an attempt from the gateway's records")
	return s.attemptView(context.WithoutCancel(ctx), at.ID)
}

// ListAttempts lists charge attempts, the newest first.
func (s *Service) ListAttempts(ctx context.Context, f Filter) ([]Attempt, error) {
	lf, err := invListingFilter(f, invAttemptStatusNames)
	if err != nil {
		return nil, err
	}
	rows, err := s.opts.Store.ListAttempts(ctx, lf)
	if err != nil {
		return nil, err
	}
	out := make([]Attempt, 0, len(rows))
	for _, r := range rows {
		out = append(out, attemptFromListing(r))
	}
	return out, nil
}
