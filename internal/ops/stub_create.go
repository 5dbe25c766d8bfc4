package ops

// Placeholder signature of creating a subscription (the admin API's signup
// flow); replaced by create.go.

import (
	"context"
	"time"
)

// NewSubscription is a subscription for a customer whose card was saved with
// the gateway's save-card flow; both ids are checked with the gateway.
type NewSubscription struct {
	Reference         string    `json:"reference"`
	Email             string    `json:"email"`
	Customer          string    `json:"customer"`
	PaymentMethod     string    `json:"payment_method"`
	PreviousPaymentID string    `json:"previous_payment_id,omitempty"`
	Amount            int64     `json:"amount"`
	Currency          string    `json:"currency"`
	Interval          string    `json:"interval"`
	IntervalCount     int       `json:"interval_count"`
	Anchor            time.Time `json:"anchor"`
	Timezone          string    `json:"timezone,omitempty"`
	Description       string    `json:"description,omitempty"`
}

// CreateSubscription creates a subscription; created is false when one with
// the same reference and the same terms exists already.
func (s *Service) CreateSubscription(ctx context.Context, a Actor, n NewSubscription) (sub *Subscription, created bool, err error) {
	return nil, false, errNotBuilt
}
