package ops

import (
	"context"
	"fmt"
	"strings"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// ActionDunningStop is the audit action of stopping a dunning case.
const ActionDunningStop = "dunning.stop"

// StopDunning closes an open dunning case as stopped: no more retries or
// reminders, its waiting intents marked for cancel (sent at once with a
// gateway client), its links revoked and its queued emails canceled, with the
// audit row in the same transaction. The invoice stays open with nothing
// scheduled: an operator may still retry or void it.
func (s *Service) StopDunning(ctx context.Context, a Actor, caseID int64, reason string) (*DunningCase, error) {
	if err := needReason(reason); err != nil {
		return nil, err
	}
	before, err := s.caseView(ctx, caseID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var invoiceID int64
	err = s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		c, err := tx.CaseByID(caseID)
		if err != nil {
			return err
		}
		if c == nil {
			return notFound("dunning case", fmt.Sprint(caseID))
		}
		if c.Status != models.CaseOpen {
			return conflictf("dunning case %d is %s: only an open case can be stopped", c.ID, c.Status)
		}
		invoiceID = c.InvoiceID
		inv, err := tx.LockInvoice(c.InvoiceID)
		if err != nil {
			return err
		}
		if inv == nil || inv.Status != models.InvoiceOpen {
			status := "missing"
			if inv != nil {
				status = string(inv.Status)
			}
			return conflictf("dunning case %d: its invoice is %s", c.ID, status)
		}
		stopped, err := tx.StopCollection(now, c.InvoiceID, "dunning stopped by "+a.Name+": "+strings.TrimSpace(reason), false)
		if err != nil {
			return err
		}
		after := *before
		after.Status, after.NextStepAt, after.ClosedAt = string(models.CaseStopped), nil, &now
		return audit(tx, now, a, reason, Audited{Action: ActionDunningStop, TargetType: TargetDunningCase, TargetID: c.ID,
			TargetRef: before.Invoice, Before: before, After: map[string]any{"dunning_case": after, "stopped": stopped}})
	})
	if err != nil {
		return nil, err
	}
	s.sendCancels(ctx, invoiceID)
	return s.caseView(context.WithoutCancel(ctx), caseID)
}

// ListCases lists dunning cases, the newest first.
func (s *Service) ListCases(ctx context.Context, f Filter) ([]DunningCase, error) {
	lf, err := invListingFilter(f, invCaseStatusNames)
	if err != nil {
		return nil, err
	}
	rows, err := s.opts.Store.ListCases(ctx, lf)
	if err != nil {
		return nil, err
	}
	out := make([]DunningCase, 0, len(rows))
	for _, r := range rows {
		out = append(out, caseFromListing(r))
	}
	return out, nil
}

// CaseStoryOf tells one dunning case's story: its invoice, steps, emails,
// links and the audit entries of the case and its invoice.
func (s *Service) CaseStoryOf(ctx context.Context, caseID int64) (*CaseStory, error) {
	c, err := s.caseView(ctx, caseID)
	if err != nil {
		return nil, err
	}
	raw, err := s.opts.Store.CaseByID(ctx, caseID)
	if err != nil || raw == nil {
		return nil, notFound("dunning case", fmt.Sprint(caseID))
	}
	inv, err := s.invoiceView(ctx, raw.InvoiceID)
	if err != nil {
		return nil, err
	}
	story := &CaseStory{Case: *c, Invoice: *inv}
	steps, err := s.opts.Store.CaseSteps(ctx, caseID)
	if err != nil {
		return nil, err
	}
	story.Steps = invStorySteps(steps)
	emails, err := s.opts.Store.EmailsOfInvoice(ctx, raw.InvoiceID)
	if err != nil {
		return nil, err
	}
	story.Emails = invStoryEmails(emails, inv.Number)
	links, err := s.opts.Store.PayLinksOfInvoice(ctx, raw.InvoiceID)
	if err != nil {
		return nil, err
	}
	story.Links = invStoryLinks(links, inv.Number, inv.Status, s.now())
	if story.Audit, err = s.invStoryAudit(ctx, map[string][]int64{TargetDunningCase: {caseID}, TargetInvoice: {raw.InvoiceID}}); err != nil {
		return nil, err
	}
	return story, nil
}
