package ops

// Placeholder signatures of the subscription actions and reads; replaced by
// subscriptions.go.

import (
	"context"
	"errors"
)

var errNotBuilt = errors.New("ops: not built yet")

// CancelOptions say when a cancel takes effect.
type CancelOptions struct {
	// AtPeriodEnd keeps the subscription as it is until its current period
	// ends (cancel_at); false cancels now.
	AtPeriodEnd bool
}

// SubscriptionUpdate changes a subscription; nil fields stay as they are.
type SubscriptionUpdate struct {
	// Amount (minor units) and Description apply from the next period.
	Amount      *int64
	Description *string
	// PaymentMethod is the gateway id of a card saved for the subscription's
	// customer (verified with the gateway); PreviousPaymentID is its
	// series payment on Checkout.com.
	PaymentMethod     *string
	PreviousPaymentID *string
	Email             *string
}

// CancelSubscription cancels now or at period end.
func (s *Service) CancelSubscription(ctx context.Context, a Actor, reference, reason string, o CancelOptions) (*Subscription, error) {
	return nil, errNotBuilt
}

// PauseSubscription pauses billing.
func (s *Service) PauseSubscription(ctx context.Context, a Actor, reference, reason string) (*Subscription, error) {
	return nil, errNotBuilt
}

// ResumeSubscription resumes billing from the next period start.
func (s *Service) ResumeSubscription(ctx context.Context, a Actor, reference, reason string) (*Subscription, error) {
	return nil, errNotBuilt
}

// UpdateSubscription changes amount, description, card or email.
func (s *Service) UpdateSubscription(ctx context.Context, a Actor, reference, reason string, u SubscriptionUpdate) (*Subscription, error) {
	return nil, errNotBuilt
}

// ListSubscriptions lists subscriptions.
func (s *Service) ListSubscriptions(ctx context.Context, f Filter) ([]Subscription, error) {
	return nil, errNotBuilt
}

// SubscriptionStoryOf tells one subscription's story.
func (s *Service) SubscriptionStoryOf(ctx context.Context, reference string) (*SubscriptionStory, error) {
	return nil, errNotBuilt
}
