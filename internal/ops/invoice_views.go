package ops

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// Conversions from the store's rows to the views of invoices, attempts,
// dunning cases and what their stories hold.

// invStatuses are the status names each listing accepts.
var (
	invStatusNames = []string{string(models.InvoiceOpen), string(models.InvoicePaid),
		string(models.InvoiceUncollectible), string(models.InvoiceVoid)}
	invAttemptStatusNames = []string{string(models.AttemptPending), string(models.AttemptUnknown),
		string(models.AttemptProcessing), string(models.AttemptSucceeded), string(models.AttemptRequiresAction),
		string(models.AttemptDeclined), string(models.AttemptCanceled), string(models.AttemptFailed),
		string(models.AttemptNeedsReview)}
	invCaseStatusNames = []string{string(models.CaseOpen), string(models.CaseRecovered),
		string(models.CaseExhausted), string(models.CaseStopped)}
)

// invListingFilter turns a view filter into the store's, refusing a status
// the listing does not know (named with the ones it does).
func invListingFilter(f Filter, known []string) (store.ListingFilter, error) {
	out := store.ListingFilter{Customer: strings.TrimSpace(f.Customer), Reference: strings.TrimSpace(f.Reference),
		From: f.From, To: f.To, Limit: f.Limit}
	for _, st := range f.Status {
		st = strings.TrimSpace(st)
		if st == "" {
			continue
		}
		ok := false
		for _, k := range known {
			if st == k {
				ok = true
			}
		}
		if !ok {
			return out, &FieldError{Field: "status", Value: st, Message: "is not one of " + strings.Join(known, ", ")}
		}
		out.Statuses = append(out.Statuses, st)
	}
	if f.Limit < 0 {
		return out, &FieldError{Field: "limit", Value: fmt.Sprint(f.Limit), Message: "must not be negative"}
	}
	if f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		return out, &FieldError{Field: "to", Value: f.To.UTC().Format(time.RFC3339), Message: "must be after from"}
	}
	return out, nil
}

func utcp(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func invoiceFromListing(l store.InvoiceListing) Invoice {
	return Invoice{
		ID: l.ID, Number: l.PublicID, Subscription: l.Reference, Customer: l.Customer, Period: l.PeriodIndex,
		PeriodStart: l.PeriodStart.UTC(), PeriodEnd: l.PeriodEnd.UTC(), Total: NewMoney(l.Amount, l.Currency),
		Refunded: NewMoney(l.Refunded, l.Currency), Status: string(l.Status), Attempts: l.AttemptCount,
		NextAttemptAt: utcp(l.NextAttemptAt), PaidAt: utcp(l.PaidAt), Payment: l.PaymentIntentID, CreatedAt: l.CreatedAt.UTC(),
	}
}

func attemptFromListing(l store.AttemptListing) Attempt {
	return Attempt{
		ID: l.ID, Invoice: l.MerchantOrderID, Subscription: l.Reference, AttemptNo: l.AttemptNo, Status: string(l.Status),
		OffSession: l.OffSession, Amount: NewMoney(l.Amount, l.Currency), Payment: l.PaymentIntentID,
		DeclineCode: l.DeclineCode, AdviceCode: l.AdviceCode, HardDecline: l.HardDecline, Error: l.ErrorMessage,
		Key: l.IdempotencyKey, CreatedAt: l.CreatedAt.UTC(), FinishedAt: utcp(l.FinishedAt),
	}
}

func caseFromListing(l store.CaseListing) DunningCase {
	return DunningCase{
		ID: l.ID, Invoice: l.Invoice, Subscription: l.Reference, Reason: string(l.Reason), Status: string(l.Status),
		Step: l.Step, Retries: l.Retries, NextStepAt: utcp(l.NextStepAt), LastDeclineCode: l.LastDeclineCode,
		OpenedAt: l.OpenedAt.UTC(), ClosedAt: utcp(l.ClosedAt),
	}
}

func refundView(rf *models.Refund, invoice string) Refund {
	return Refund{
		ID: rf.ID, Invoice: invoice, Payment: rf.PaymentIntentID, Amount: NewMoney(rf.Amount, rf.Currency),
		Reason: string(rf.Reason), Status: string(rf.Status), GatewayRefund: rf.GatewayRefundID, Error: rf.ErrorMessage,
		Key: rf.IdempotencyKey, CreatedAt: rf.CreatedAt.UTC(), FinishedAt: utcp(rf.FinishedAt),
	}
}

func invStoryEmails(es []models.Email, invoice string) []Email {
	out := make([]Email, 0, len(es))
	for _, e := range es {
		out = append(out, Email{ID: e.ID, Kind: string(e.Kind), To: e.ToAddress, Status: string(e.Status),
			Link: string(e.LinkPurpose), Invoice: invoice, SentAt: utcp(e.SentAt), Error: e.LastError, Created: e.CreatedAt.UTC()})
	}
	return out
}

// linkState names a link's state for ops: revoked by an operator, settled
// (its invoice is no longer open: nothing to pay; the page answers 410),
// expired, or live. A link of the subscription itself (no invoice) is never
// settled. Both stories use it, so a link reads the same in either.
func linkState(revokedAt *time.Time, expiresAt time.Time, invoiceStatus string, now time.Time) string {
	switch {
	case revokedAt != nil:
		return "revoked"
	case invoiceStatus != "" && invoiceStatus != string(models.InvoiceOpen):
		return "settled"
	case !now.Before(expiresAt):
		return "expired"
	}
	return "live"
}

func invStoryLinks(ls []models.PayLink, invoice, invoiceStatus string, now time.Time) []PayLink {
	out := make([]PayLink, 0, len(ls))
	for _, l := range ls {
		out = append(out, PayLink{ID: l.ID, Purpose: string(l.Purpose), Invoice: invoice, State: linkState(l.RevokedAt, l.ExpiresAt, invoiceStatus, now),
			ExpiresAt: l.ExpiresAt.UTC(), Uses: l.Uses, RevokedAt: utcp(l.RevokedAt)})
	}
	return out
}

func invStorySteps(ss []models.DunningStep) []DunningStep {
	out := make([]DunningStep, 0, len(ss))
	for _, st := range ss {
		out = append(out, DunningStep{Step: st.Step, Action: string(st.Action), Detail: st.Detail, At: st.At.UTC()})
	}
	return out
}

// invStoryAudit lists the audit entries of the given targets, oldest first.
func (s *Service) invStoryAudit(ctx context.Context, targets map[string][]int64) ([]AuditEntry, error) {
	var all []models.AuditEntry
	for typ, ids := range targets {
		if len(ids) == 0 {
			continue
		}
		es, err := s.opts.Store.AuditEntries(ctx, store.AuditFilter{TargetType: typ, TargetIDs: ids})
		if err != nil {
			return nil, err
		}
		all = append(all, es...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	out := make([]AuditEntry, 0, len(all))
	for _, e := range all {
		ref := e.TargetRef
		if ref == "" {
			ref = fmt.Sprint(e.TargetID)
		}
		out = append(out, AuditEntry{ID: e.ID, At: e.At.UTC(), Actor: e.Actor, Via: string(e.Via), Action: e.Action,
			Target: e.TargetType + ":" + ref, Reason: e.Reason, Before: e.BeforeJSON, After: e.AfterJSON})
	}
	return out, nil
}

// invoiceView reads one invoice's view by id (nil, ErrNotFound when gone).
func (s *Service) invoiceView(ctx context.Context, id int64) (*Invoice, error) {
	rows, err := s.opts.Store.ListInvoices(ctx, store.ListingFilter{InvoiceID: id, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, notFound("invoice", fmt.Sprint(id))
	}
	v := invoiceFromListing(rows[0])
	return &v, nil
}

// findInvoice loads an invoice by its number (the order id).
func (s *Service) findInvoice(ctx context.Context, number string) (*models.Invoice, error) {
	number = strings.TrimSpace(number)
	if number == "" {
		return nil, &FieldError{Field: "number", Message: "is required (the invoice's order id)"}
	}
	inv, err := s.opts.Store.InvoiceByPublicID(ctx, number)
	if err != nil {
		return nil, err
	}
	if inv == nil {
		return nil, notFound("invoice", number)
	}
	return inv, nil
}

// attemptView reads one attempt's view by id.
func (s *Service) attemptView(ctx context.Context, id int64) (*Attempt, error) {
	a, err := s.opts.Store.FindAttempt(ctx, id)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, notFound("attempt", fmt.Sprint(id))
	}
	inv, err := s.invoiceView(ctx, a.InvoiceID)
	if err != nil {
		return nil, err
	}
	v := attemptFromListing(store.AttemptListing{ChargeAttempt: *a, Reference: inv.Subscription})
	return &v, nil
}

// caseView reads one dunning case's view by id.
func (s *Service) caseView(ctx context.Context, id int64) (*DunningCase, error) {
	c, err := s.opts.Store.CaseByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, notFound("dunning case", fmt.Sprint(id))
	}
	inv, err := s.invoiceView(ctx, c.InvoiceID)
	if err != nil {
		return nil, err
	}
	v := caseFromListing(store.CaseListing{DunningCase: *c, Invoice: inv.Number, Reference: inv.Subscription})
	return &v, nil
}

// sendCancels cancels at the gateway, now, the intents of an invoice whose
// cancel an action recorded (what the daemon's intents job would do next);
// without a gateway client they wait for that job. A cancel that fails is
// logged and left to the job.
func (s *Service) sendCancels(ctx context.Context, invoiceID int64) {
	if s.opts.Engine == nil {
		return
	}
	due, err := s.opts.Store.CancelsRequestedFor(ctx, s.now(), invoiceID)
	if err != nil {
		s.opts.Log.Error().Err(err).Int64("invoice_id", invoiceID).Msg("could not list the intents to cancel; the intents job cancels them")
		return
	}
	for i := range due {
		out, err := s.opts.Engine.CancelWaiting(ctx, &due[i])
		ev := s.opts.Log.Info()
		if err != nil {
			ev = s.opts.Log.Error().Err(err)
		}
		ev.Int64("attempt_id", due[i].ID).Str("payment_intent", due[i].PaymentIntentID).Str("outcome", string(out)).
			Msg("operator action: waiting intent cancel sent")
	}
}

func (s *Service) owner() string {
	if s.opts.Owner != "" {
		return s.opts.Owner
	}
	return "ops"
}
