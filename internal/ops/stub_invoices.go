package ops

// Placeholder signatures of the invoice, attempt and dunning actions and
// reads; replaced by invoices.go, attempts.go and dunning.go.

import (
	"context"

	"github.com/billingd/billingd/internal/models"
)

// RefundOptions describe an operator's refund.
type RefundOptions struct {
	// Amount in minor units; 0 refunds what is left of the payment.
	Amount int64
	// Reason is the gateway's refund reason (requested_by_customer by
	// default, or fraudulent).
	Reason models.RefundReason
	// Key is the refund's idempotency key; "" derives a new one. The admin
	// API passes the request's Idempotency-Key, so a refund retried days
	// later is still applied once.
	Key string
}

// RetryInvoice charges an open invoice now.
func (s *Service) RetryInvoice(ctx context.Context, a Actor, number, reason string) (*Invoice, error) {
	return nil, errNotBuilt
}

// VoidInvoice voids an open invoice.
func (s *Service) VoidInvoice(ctx context.Context, a Actor, number, reason string) (*Invoice, error) {
	return nil, errNotBuilt
}

// RefundInvoice refunds a paid invoice, fully or partly.
func (s *Service) RefundInvoice(ctx context.Context, a Actor, number, reason string, o RefundOptions) (*Refund, error) {
	return nil, errNotBuilt
}

// ResolveAttempt settles an attempt that needs review from the gateway's records.
func (s *Service) ResolveAttempt(ctx context.Context, a Actor, attemptID int64, reason string, markFailed bool) (*Attempt, error) {
	return nil, errNotBuilt
}

// StopDunning closes an open dunning case.
func (s *Service) StopDunning(ctx context.Context, a Actor, caseID int64, reason string) (*DunningCase, error) {
	return nil, errNotBuilt
}

// ListInvoices lists invoices.
func (s *Service) ListInvoices(ctx context.Context, f Filter) ([]Invoice, error) {
	return nil, errNotBuilt
}

// InvoiceStoryOf tells one invoice's story.
func (s *Service) InvoiceStoryOf(ctx context.Context, number string) (*InvoiceStory, error) {
	return nil, errNotBuilt
}

// ListAttempts lists charge attempts.
func (s *Service) ListAttempts(ctx context.Context, f Filter) ([]Attempt, error) {
	return nil, errNotBuilt
}

// ListCases lists dunning cases.
func (s *Service) ListCases(ctx context.Context, f Filter) ([]DunningCase, error) {
	return nil, errNotBuilt
}

// CaseStoryOf tells one dunning case's story.
func (s *Service) CaseStoryOf(ctx context.Context, caseID int64) (*CaseStory, error) {
	return nil, errNotBuilt
}
