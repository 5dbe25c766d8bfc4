package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/store"
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

// Audit action names of the invoice actions.
const (
	ActionInvoiceRetry  = "invoice.retry"
	ActionInvoiceVoid   = "invoice.void"
	ActionInvoiceRefund = "invoice.refund"
)

// RetryInvoice charges an open invoice now, under the rule every charge
// follows (docs/protocol.md, "one open attempt per invoice"): no second open
// payment for the invoice, the subscription's invoices in period order, never
// a card the gateway called dead (until the card changed), within the card
// networks' reattempt cap.
// The attempt and the audit row commit together first; the charge is then
// sent with the attempt's own key through the charge engine, whose outcome
// goes through dunning like any other. The attempt is leased to this
// process, so a daemon running beside it never sends it too; if this process
// dies mid-way, the daemon replays it with the same key once the lease ends.
func (s *Service) RetryInvoice(ctx context.Context, a Actor, number, reason string) (*Invoice, error) {
	if s.opts.Engine == nil {
		return nil, ErrNoGateway
	}
	inv, err := s.findInvoice(ctx, number)
	if err != nil {
		return nil, err
	}
	before, err := s.invoiceView(ctx, inv.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var attempt *models.ChargeAttempt
	err = s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		locked, err := tx.LockInvoice(inv.ID)
		if err != nil {
			return err
		}
		if locked == nil {
			return notFound("invoice", inv.PublicID)
		}
		attempt, err = tx.StartOperatorAttempt(now, locked, s.owner(), now.Add(s.opts.Engine.AttemptLease()))
		var blocked *store.AttemptBlocked
		if errors.As(err, &blocked) {
			return conflictf("%s", blocked.Reason)
		}
		if err != nil {
			return err
		}
		after := *before
		after.Status, after.Attempts, after.NextAttemptAt = string(locked.Status), locked.AttemptCount, nil
		return audit(tx, now, a, reason, Audited{Action: ActionInvoiceRetry, TargetType: TargetInvoice, TargetID: inv.ID,
			TargetRef: inv.PublicID, Before: before, After: map[string]any{"invoice": after, "attempt": attempt.IdempotencyKey}})
	})
	if err != nil {
		return nil, err
	}
	status, execErr := s.opts.Engine.Execute(ctx, attempt)
	s.opts.Log.Info().Str("invoice", inv.PublicID).Str("attempt", attempt.IdempotencyKey).Str("status", string(status)).
		Str("actor", a.Name).Msg("operator retry sent")
	view, err := s.invoiceView(context.WithoutCancel(ctx), inv.ID)
	if err != nil {
		return nil, err
	}
	if execErr != nil {
		return view, fmt.Errorf("attempt %s is committed but its outcome was not recorded (%w); it is replayed with its own key", attempt.IdempotencyKey, execErr)
	}
	return view, nil
}

// VoidInvoice voids an open invoice: in one transaction with its audit row
// the invoice becomes void, its dunning case is closed as stopped, its
// waiting intents are marked for cancel, its pay links are revoked and its
// queued emails canceled; nothing new is queued. With a gateway client the
// marked cancels are sent at once (else the daemon's intents job sends
// them). A charge still in flight that succeeds afterwards is refunded
// automatically (charge.ApplyToInvoice).
func (s *Service) VoidInvoice(ctx context.Context, a Actor, number, reason string) (*Invoice, error) {
	if err := needReason(reason); err != nil {
		return nil, err
	}
	inv, err := s.findInvoice(ctx, number)
	if err != nil {
		return nil, err
	}
	before, err := s.invoiceView(ctx, inv.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	err = s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		locked, err := tx.LockInvoice(inv.ID)
		if err != nil {
			return err
		}
		if err := voidable(locked); err != nil {
			return err
		}
		stopped, err := tx.StopCollection(now, inv.ID, "invoice voided by "+a.Name+": "+strings.TrimSpace(reason), true)
		if err != nil {
			return err
		}
		after := *before
		after.Status, after.NextAttemptAt = string(models.InvoiceVoid), nil
		return audit(tx, now, a, reason, Audited{Action: ActionInvoiceVoid, TargetType: TargetInvoice, TargetID: inv.ID,
			TargetRef: inv.PublicID, Before: before, After: map[string]any{"invoice": after, "stopped": stopped}})
	})
	if err != nil {
		return nil, err
	}
	s.sendCancels(ctx, inv.ID)
	return s.invoiceView(context.WithoutCancel(ctx), inv.ID)
}

func voidable(inv *models.Invoice) error {
	switch {
	case inv == nil:
		return ErrNotFound
	case inv.Status == models.InvoicePaid:
		return conflictf("invoice %s is paid: it cannot be voided; refund it instead (billingd invoices refund %s --reason …)", inv.PublicID, inv.PublicID)
	case inv.Status != models.InvoiceOpen:
		return conflictf("invoice %s is %s: only an open invoice can be voided", inv.PublicID, inv.Status)
	}
	return nil
}

// RefundInvoice refunds a paid invoice, fully (Amount 0: what is left) or
// partly. The refund row — its amount reserved against the payment, so
// refunds never add up to more than it took — and the audit row commit in
// one transaction; the refund is then sent with its own key through the
// charge engine, and the daemon's refund job finishes what stays indefinite.
// The same key again returns the same refund, without a second row, audit
// entry or refund at the gateway.
func (s *Service) RefundInvoice(ctx context.Context, a Actor, number, reason string, o RefundOptions) (*Refund, error) {
	if err := needReason(reason); err != nil {
		return nil, err
	}
	if o.Amount < 0 {
		return nil, &FieldError{Field: "amount", Value: fmt.Sprint(o.Amount), Message: "must be positive (minor units), or 0 for what is left"}
	}
	switch o.Reason {
	case "":
		o.Reason = models.RefundReasonRequestedByCustomer
	case models.RefundReasonRequestedByCustomer, models.RefundReasonFraudulent:
	default:
		return nil, &FieldError{Field: "refund_reason", Value: string(o.Reason), Message: "is not requested_by_customer or fraudulent"}
	}
	o.Key = strings.TrimSpace(o.Key)
	if len(o.Key) > 200 {
		return nil, &FieldError{Field: "key", Value: o.Key[:40] + "…", Message: "is longer than 200 characters"}
	}
	if s.opts.Engine == nil {
		return nil, ErrNoGateway
	}
	inv, err := s.findInvoice(ctx, number)
	if err != nil {
		return nil, err
	}
	before, err := s.invoiceView(ctx, inv.ID)
	if err != nil {
		return nil, err
	}
	var rf, replayed *models.Refund
	if o.Key != "" {
		// A key already used answers with its refund, whatever the invoice
		// became since: a request retried days later is applied once.
		if replayed, err = s.opts.Store.RefundByKey(ctx, o.Key); err != nil {
			return nil, err
		}
		if replayed != nil && replayed.InvoiceID != inv.ID {
			return nil, &FieldError{Field: "key", Value: o.Key, Message: "is the key of a refund of another invoice"}
		}
		// The same key is the same refund only for the same terms: another
		// amount or reason under it is refused, never answered with the
		// first refund as if it were this one.
		if replayed != nil && ((o.Amount != 0 && o.Amount != replayed.Amount) || o.Reason != replayed.Reason) {
			return nil, &FieldError{Field: "key", Value: o.Key, Cause: ErrKeyReused, Message: fmt.Sprintf("is the key of refund %d of %s (%s) with other terms; use a new key for another refund",
				replayed.ID, money.Format(replayed.Amount, replayed.Currency), replayed.Reason)}
		}
	}
	now := s.now()
	err = s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		rf = replayed
		if rf != nil {
			return nil
		}
		locked, err := tx.LockInvoice(inv.ID)
		if err != nil {
			return err
		}
		key := o.Key
		if key == "" {
			n, err := tx.RefundsOfInvoiceTx(inv.ID)
			if err != nil {
				return err
			}
			key = fmt.Sprintf("refund-op-%s-%d", inv.PublicID, n+1)
		}
		var created bool
		if locked.Status != models.InvoicePaid {
			return conflictf("invoice %s is %s: only a paid invoice can be refunded", inv.PublicID, locked.Status)
		}
		left, currency, err := tx.RefundLeft(locked)
		if err != nil {
			return err
		}
		rf, created, err = tx.ReserveRefund(now, store.NewRefund{InvoiceID: inv.ID, Amount: o.Amount, Reason: o.Reason,
			IdempotencyKey: key, Status: models.RefundPending})
		switch {
		case errors.Is(err, store.ErrRefundExceedsPayment):
			if left <= 0 {
				return conflictf("invoice %s: nothing is left to refund: the payment was refunded in full", inv.PublicID)
			}
			return &FieldError{Field: "amount", Value: fmt.Sprint(o.Amount), Message: "exceeds what is left to refund of the payment: " + money.Format(left, currency)}
		case errors.Is(err, store.ErrNoPayment):
			return conflictf("invoice %s has no succeeded payment to refund", inv.PublicID)
		case err != nil:
			return err
		}
		if !created {
			if o.Key == "" {
				return conflictf("the derived refund key %s is already taken by refund %d: give the refund its own key (--key)", key, rf.ID)
			}
			if rf.InvoiceID != inv.ID {
				return &FieldError{Field: "key", Value: key, Message: "is the key of a refund of another invoice"}
			}
			return nil // the same refund again: nothing changed, nothing to audit
		}
		after := *before
		after.Refunded = NewMoney(before.Refunded.Amount+rf.Amount, rf.Currency)
		return audit(tx, now, a, reason, Audited{Action: ActionInvoiceRefund, TargetType: TargetInvoice, TargetID: inv.ID,
			TargetRef: inv.PublicID, Before: before, After: map[string]any{"invoice": after, "refund": refundView(rf, inv.PublicID)}})
	})
	if err != nil {
		return nil, err
	}
	if rf.Status.Open() {
		worked, err := s.opts.Engine.WorkRefund(ctx, rf.ID)
		if err != nil {
			v := refundView(rf, inv.PublicID)
			return &v, fmt.Errorf("refund %s is recorded but was not sent (%w); the refund job sends it with its own key", rf.IdempotencyKey, err)
		}
		rf = worked
	}
	v := refundView(rf, inv.PublicID)
	return &v, nil
}

// ListInvoices lists invoices, the latest period first, with what refunds
// took back of each.
func (s *Service) ListInvoices(ctx context.Context, f Filter) ([]Invoice, error) {
	lf, err := invListingFilter(f, invStatusNames)
	if err != nil {
		return nil, err
	}
	rows, err := s.opts.Store.ListInvoices(ctx, lf)
	if err != nil {
		return nil, err
	}
	out := make([]Invoice, 0, len(rows))
	for _, r := range rows {
		out = append(out, invoiceFromListing(r))
	}
	return out, nil
}

// InvoiceStoryOf tells one invoice's story: its attempts with their decline
// codes, its dunning case and steps, refunds, emails, links (by state, never
// their tokens) and the audit entries of it, its attempts and its case.
func (s *Service) InvoiceStoryOf(ctx context.Context, number string) (*InvoiceStory, error) {
	inv, err := s.findInvoice(ctx, number)
	if err != nil {
		return nil, err
	}
	view, err := s.invoiceView(ctx, inv.ID)
	if err != nil {
		return nil, err
	}
	story := &InvoiceStory{Invoice: *view, Attempts: []Attempt{}, Steps: []DunningStep{}, Refunds: []Refund{}}
	attempts, err := s.opts.Store.ListAttempts(ctx, store.ListingFilter{InvoiceID: inv.ID, Limit: 1000})
	if err != nil {
		return nil, err
	}
	targets := map[string][]int64{TargetInvoice: {inv.ID}}
	for _, at := range attempts {
		story.Attempts = append(story.Attempts, attemptFromListing(at))
		targets[TargetAttempt] = append(targets[TargetAttempt], at.ID)
	}
	cases, err := s.opts.Store.ListCases(ctx, store.ListingFilter{InvoiceID: inv.ID, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(cases) > 0 {
		c := caseFromListing(cases[0])
		story.Case = &c
		targets[TargetDunningCase] = []int64{c.ID}
		steps, err := s.opts.Store.CaseSteps(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		story.Steps = invStorySteps(steps)
	}
	refunds, err := s.opts.Store.RefundsOfInvoice(ctx, inv.ID)
	if err != nil {
		return nil, err
	}
	for i := range refunds {
		story.Refunds = append(story.Refunds, refundView(&refunds[i], inv.PublicID))
		targets[TargetRefund] = append(targets[TargetRefund], refunds[i].ID)
	}
	emails, err := s.opts.Store.EmailsOfInvoice(ctx, inv.ID)
	if err != nil {
		return nil, err
	}
	story.Emails = invStoryEmails(emails, inv.PublicID)
	links, err := s.opts.Store.PayLinksOfInvoice(ctx, inv.ID)
	if err != nil {
		return nil, err
	}
	story.Links = invStoryLinks(links, inv.PublicID, string(inv.Status), s.now())
	if story.Audit, err = s.invStoryAudit(ctx, targets); err != nil {
		return nil, err
	}
	return story, nil
}
