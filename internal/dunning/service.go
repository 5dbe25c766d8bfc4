package dunning

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// Service carries dunning decisions out: it is the charge engine's hook (every
// outcome is seen in the transaction that records it), the job that wakes cases
// for reminders and exhaustion, and the minter of pay links.
type Service struct {
	Store  *store.Store
	Policy Policy
	// LinkTTL is how long an emailed link works (dunning.link_ttl).
	LinkTTL time.Duration
	// PublicBaseURL prefixes pay links (http.public_base_url).
	PublicBaseURL string
	// MailDomain names Message-IDs (the domain of mail.from).
	MailDomain string
	Log        zerolog.Logger
}

// AfterOutcome opens, advances or closes the invoice's case after an attempt
// reached a new state. Only off-session outcomes drive the schedule: a customer
// failing on the pay page saw the failure there and may try again.
func (s *Service) AfterOutcome(tx *store.Tx, now time.Time, a *models.ChargeAttempt, r store.AttemptResult) error {
	var ev Event
	switch r.Status {
	case models.AttemptSucceeded:
		ev = Event{Kind: Succeeded}
	case models.AttemptDeclined, models.AttemptRequiresAction, models.AttemptFailed:
		if r.Status == models.AttemptDeclined && r.HardDecline {
			// The gateway called the card dead, on- or off-session: remembered in
			// this same transaction, so no claim charges it again.
			if _, err := tx.MarkPaymentMethodDead(now, a.GatewayPM, r.DeclineCode); err != nil {
				return err
			}
		}
		if !a.OffSession {
			return nil
		}
		ev = Event{Kind: Failed, Reason: ClassifyFailure(r.Status, r.HardDecline), DeclineCode: r.DeclineCode}
		if ev.Reason == "" {
			return nil // not the customer's failure: no case, no email
		}
		n, err := tx.CountCardReattempts(a.GatewayPM, now.Add(-30*24*time.Hour))
		if err != nil {
			return err
		}
		// Reattempts already made on the card (this one included if it was
		// one); the question is whether the next one may be made.
		ev.CardRetries30d = n
	default:
		return nil
	}
	c, err := tx.CaseForInvoice(a.InvoiceID)
	if err != nil {
		return err
	}
	if c != nil && c.Status != models.CaseOpen {
		return nil // a late answer about a closed case changes nothing
	}
	if c == nil && ev.Kind == Succeeded {
		return nil
	}
	return s.apply(tx, now, a.InvoiceID, c, ev)
}

// AfterSuccesses is AfterOutcome for a group of succeeded attempts recorded
// in one transaction: one read finds the invoices' cases, and each invoice
// whose case is open is closed as AfterOutcome closes it, in the order given.
// A success changes nothing for an invoice without a case or with a closed
// one, so the read is all most groups cost.
func (s *Service) AfterSuccesses(tx *store.Tx, outs []store.Outcome) error {
	ids := make([]int64, len(outs))
	for i, o := range outs {
		ids[i] = o.Attempt.InvoiceID
	}
	cases, err := tx.CasesForInvoices(ids)
	if err != nil {
		return err
	}
	for _, o := range outs {
		c := cases[o.Attempt.InvoiceID]
		if c == nil || c.Status != models.CaseOpen {
			continue
		}
		if err := s.apply(tx, o.Now, o.Attempt.InvoiceID, c, Event{Kind: Succeeded}); err != nil {
			return err
		}
	}
	return nil
}

// AfterPaymentMethodSaved makes a card saved through the hosted setup page the
// subscription's default and, if its invoice is in dunning, retries at once.
// The setup session's metadata names the invoice.
func (s *Service) AfterPaymentMethodSaved(tx *store.Tx, now time.Time, si *gateway.SetupIntent) (bool, string, bool, error) {
	invoice := si.Metadata["invoice"]
	if invoice == "" {
		if ref := si.Metadata["subscription"]; ref != "" {
			return s.subscriptionCardSaved(tx, now, si, ref)
		}
		return false, "", false, nil
	}
	ic, err := tx.InvoiceContactByPublicID(invoice)
	if err != nil || ic == nil {
		return false, "", false, err
	}
	if ic.GatewayCustomer != si.Customer {
		s.Log.Warn().Str("invoice", invoice).Str("customer", si.Customer).Msg("setup intent names an invoice of another customer; ignored")
		return false, "", false, nil
	}
	pm, err := tx.PaymentMethodByGatewayID(si.PaymentMethod)
	if err != nil || pm == nil {
		return false, "", false, err
	}
	if err := tx.SetSubscriptionPaymentMethod(now, ic.SubscriptionID, pm.ID); err != nil {
		return false, "", false, err
	}
	detail := fmt.Sprintf("now the default card of subscription %s", ic.Reference)
	c, err := tx.CaseForInvoice(ic.InvoiceID)
	if err != nil {
		return false, "", false, err
	}
	if c == nil || c.Status != models.CaseOpen || ic.Status != models.InvoiceOpen {
		return true, detail, false, nil
	}
	if err := s.apply(tx, now, ic.InvoiceID, c, Event{Kind: PaymentMethodUpdated}); err != nil {
		return false, "", false, err
	}
	return true, detail + "; invoice " + invoice + " retried now", true, nil
}

// subscriptionCardSaved makes a card saved through a subscription-scoped link
// (the expiring-card notice's) the subscription's card. If the subscription
// has an open dunning case, the case proceeds exactly as when the card was
// saved through the invoice's own link: retried at once.
func (s *Service) subscriptionCardSaved(tx *store.Tx, now time.Time, si *gateway.SetupIntent, ref string) (bool, string, bool, error) {
	sc, err := tx.SubscriptionContactByReference(ref)
	if err != nil || sc == nil {
		return false, "", false, err
	}
	if sc.GatewayCustomer != si.Customer {
		s.Log.Warn().Str("subscription", ref).Str("customer", si.Customer).Msg("setup intent names a subscription of another customer; ignored")
		return false, "", false, nil
	}
	pm, err := tx.PaymentMethodByGatewayID(si.PaymentMethod)
	if err != nil || pm == nil {
		return false, "", false, err
	}
	if err := tx.SetSubscriptionPaymentMethod(now, sc.SubscriptionID, pm.ID); err != nil {
		return false, "", false, err
	}
	detail := fmt.Sprintf("now the default card of subscription %s", ref)
	c, ic, err := tx.OpenCaseOfSubscription(sc.SubscriptionID)
	if err != nil {
		return false, "", false, err
	}
	if c == nil || ic.Status != models.InvoiceOpen {
		return true, detail, false, nil
	}
	if err := s.apply(tx, now, ic.InvoiceID, c, Event{Kind: PaymentMethodUpdated}); err != nil {
		return false, "", false, err
	}
	return true, detail + "; invoice " + ic.PublicID + " retried now", true, nil
}

// Wake runs the steps of cases whose next_step_at has come: reminders, retries
// the card-network cap had held back, and exhaustion. Each batch is one
// transaction; on PostgreSQL instances skip each other's cases.
func (s *Service) Wake(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for ctx.Err() == nil {
		n := 0
		err := s.Store.InTx(ctx, func(tx *store.Tx) error {
			cases, err := tx.DueCases(now, 100)
			if err != nil {
				return err
			}
			n = len(cases)
			for i := range cases {
				c := &cases[i]
				ic, err := tx.InvoiceContact(c.InvoiceID)
				if err != nil {
					return err
				}
				retries := 0
				if ic != nil {
					if retries, err = tx.CountCardReattempts(ic.GatewayPM, now.Add(-30*24*time.Hour)); err != nil {
						return err
					}
				}
				if err := s.apply(tx, now, c.InvoiceID, c, Event{Kind: StepDue, CardRetries30d: retries}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < 100 {
			break
		}
	}
	return total, ctx.Err()
}

// apply decides and carries the decision out in tx: the case row, its step log,
// the invoice's next attempt, the outbox email, and the final action.
func (s *Service) apply(tx *store.Tx, now time.Time, invoiceID int64, c *models.DunningCase, ev Event) error {
	var pc *Case
	if c != nil {
		pc = &Case{Reason: c.Reason, Step: c.Step, OpenedAt: c.OpenedAt}
	}
	d := Decide(pc, ev, now, s.Policy)
	if !d.Open && c == nil {
		return nil
	}
	ic, err := tx.InvoiceContact(invoiceID)
	if err != nil {
		return err
	}
	if ic == nil {
		return fmt.Errorf("dunning: invoice %d not found", invoiceID)
	}
	log := s.Log.With().Int64("invoice_id", invoiceID).Str("invoice", ic.PublicID).Int64("subscription_id", ic.SubscriptionID).Logger()
	action := actionName(ev, d)
	if d.Open {
		c = &models.DunningCase{InvoiceID: invoiceID, SubscriptionID: ic.SubscriptionID, Status: models.CaseOpen, OpenedAt: now, CreatedAt: now}
	}
	c.Reason, c.Step, c.NextStepAt, c.UpdatedAt = d.Reason, d.Step, d.NextStepAt, now
	if ev.DeclineCode != "" {
		c.LastDeclineCode = ev.DeclineCode
	}
	if d.RetryAt != nil {
		c.Retries++ // retries scheduled, including the immediate one after a new card
	}
	if d.Close != "" {
		c.Status, c.ClosedAt, c.NextStepAt = d.Close, &now, nil
		if d.Close == models.CaseExhausted {
			c.FinalAction = d.FinalAction
		}
	}
	if err := tx.SaveCase(c); err != nil {
		return err
	}
	detail := d.Note
	if d.RetryAt != nil {
		detail += "; retry at " + d.RetryAt.Format(time.RFC3339)
	}
	if d.NextStepAt != nil {
		detail += "; next step at " + d.NextStepAt.Format(time.RFC3339)
	}
	if err := tx.AddCaseStep(now, c.ID, c.Step, action, detail); err != nil {
		return err
	}
	if err := tx.SetInvoiceNextAttempt(now, invoiceID, d.RetryAt); err != nil {
		return err
	}
	if d.Close == models.CaseExhausted {
		if err := tx.MarkInvoiceUncollectible(now, invoiceID); err != nil {
			return err
		}
		if err := tx.ApplyFinalAction(now, ic.SubscriptionID, d.FinalAction); err != nil {
			return err
		}
		if err := s.settleQueue(tx, now, c, invoiceID, ic.SubscriptionID, d.FinalAction); err != nil {
			return err
		}
	}
	if d.Email != "" {
		if err := s.enqueue(tx, now, c, ic, d.Email); err != nil {
			return err
		}
	}
	log.Info().Int64("case_id", c.ID).Str("reason", string(c.Reason)).Str("action", string(action)).Int("step", c.Step).
		Str("status", string(c.Status)).Str("email", string(d.Email)).Str("detail", detail).Msg("dunning step")
	return nil
}

// settleQueue settles the invoices that waited behind an exhausted one. One
// subscription is one queue: its later periods were never charged while this
// one was in dunning. When the final action ends the subscription (cancel,
// unpaid), nothing will ever charge them, so they are written off with it, each
// one recorded as a step of the exhausted case. With past_due the subscription
// is still billed: the written-off invoice leaves the queue and the next period
// becomes its head, charged by the next claim (unless the card is dead: then it
// waits for a new card like the rest).
func (s *Service) settleQueue(tx *store.Tx, now time.Time, c *models.DunningCase, invoiceID, subscriptionID int64, final models.FinalAction) error {
	if !final.EndsSubscription() {
		return nil
	}
	k, err := tx.InvoicePeriodIndex(invoiceID)
	if err != nil {
		return err
	}
	off, err := tx.WriteOffQueue(now, subscriptionID, k)
	if err != nil {
		return err
	}
	for _, q := range off {
		detail := fmt.Sprintf("invoice %s (period %d) written off with the exhausted invoice: the subscription is %s", q.PublicID, q.PeriodIndex, final)
		if err := tx.AddCaseStep(now, c.ID, c.Step, models.StepQueueWrittenOff, detail); err != nil {
			return err
		}
	}
	if len(off) > 0 {
		s.Log.Info().Int64("case_id", c.ID).Int64("subscription_id", subscriptionID).Int("invoices", len(off)).
			Msg("invoices waiting behind the exhausted one written off")
	}
	return nil
}

func actionName(ev Event, d Decision) models.StepAction {
	switch {
	case d.Close == models.CaseRecovered:
		return models.StepRecovered
	case d.Close == models.CaseExhausted:
		return models.StepExhausted
	case d.Open:
		return models.StepOpened
	case ev.Kind == PaymentMethodUpdated:
		return models.StepPaymentMethodUpdated
	case d.RetryAt != nil:
		return models.StepRetryScheduled
	}
	return models.StepReminder
}

// enqueue writes the step's email into the outbox; its dedupe key makes a second
// email for the same (case, step, kind) impossible.
func (s *Service) enqueue(tx *store.Tx, now time.Time, c *models.DunningCase, ic *store.InvoiceContact, kind models.EmailKind) error {
	if ic.Email == "" {
		s.Log.Warn().Int64("case_id", c.ID).Msg("customer has no email address; dunning email not queued")
		return nil
	}
	var purpose models.LinkPurpose
	switch kind {
	case models.EmailActionRequired, models.EmailPaymentFailed:
		purpose = models.LinkPay
	case models.EmailCardUpdate:
		purpose = models.LinkUpdateCard
	}
	caseID, invoiceID := c.ID, ic.InvoiceID
	e := &models.Email{
		DedupeKey: fmt.Sprintf("case:%d:step:%d:%s", c.ID, c.Step, kind),
		Kind:      kind,
		CaseID:    &caseID,
		InvoiceID: &invoiceID,
		// Named here: EnqueueEmail would otherwise look it up, once per
		// email, inside the outcome's transaction.
		SubscriptionID: &ic.SubscriptionID,
		ToAddress:      ic.Email,
		LinkPurpose:    purpose,
		NextAttemptAt:  now,
	}
	_, err := tx.EnqueueEmail(now, s.MailDomain, e)
	return err
}
