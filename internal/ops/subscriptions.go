package ops

// The subscription actions — cancel (now or at period end), pause, resume,
// update — and the subscription listing and story.
//
// Rules an operator can rely on (README, docs/state-machines.md):
//   - cancel now voids every open invoice of the subscription through
//     store.StopCollection (case stopped, waiting intents canceled at the
//     gateway, links revoked, queued emails canceled) and lists what it did in
//     the audit row; an attempt whose outcome is still unknown cannot be
//     canceled: it settles later, and a success on a void invoice is refunded.
//   - cancel at period end sets cancel_at to the end of the period running
//     now (the start of the first period that has not started yet, never
//     before next_billing_at); the billing pass bills no period starting at or
//     after it and then cancels the subscription, with an audit row of its
//     own (actor billingd, via system). Invoices of earlier periods are still
//     collected.
//   - pause is refused while a period has started and is not invoiced yet
//     (the next billing pass invoices it; pause after that), so that no begun
//     period is ever lost; a paused subscription's open invoices are still
//     collected (they are owed).
//   - resume restarts billing at the first period starting at or after now;
//     the periods that started while paused are never invoiced.

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/units"
	"github.com/billingd/billingd/internal/importcheck"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
)

// Audit actions of the subscription actions.
const (
	ActionSubscriptionCancel            = "subscription.cancel"
	ActionSubscriptionCancelAtPeriodEnd = "subscription.cancel_at_period_end"
	ActionSubscriptionPause             = "subscription.pause"
	ActionSubscriptionResume            = "subscription.resume"
	ActionSubscriptionUpdate            = "subscription.update"
)

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

// SubscriptionReport is an action's result: the subscription after it,
// whether anything changed, and what the action did in words an operator
// reads (voided invoices, stopped cases, skipped periods…).
type SubscriptionReport struct {
	Subscription Subscription `json:"subscription"`
	Changed      bool         `json:"changed"`
	Notes        []string     `json:"notes,omitempty"`
}

func (r *SubscriptionReport) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// CancelSubscription cancels now or at period end.
func (s *Service) CancelSubscription(ctx context.Context, a Actor, reference, reason string, o CancelOptions) (*Subscription, error) {
	return subscriptionOf(s.CancelSubscriptionReport(ctx, a, reference, reason, o))
}

// PauseSubscription pauses billing.
func (s *Service) PauseSubscription(ctx context.Context, a Actor, reference, reason string) (*Subscription, error) {
	return subscriptionOf(s.PauseSubscriptionReport(ctx, a, reference, reason))
}

// ResumeSubscription resumes billing from the next period start.
func (s *Service) ResumeSubscription(ctx context.Context, a Actor, reference, reason string) (*Subscription, error) {
	return subscriptionOf(s.ResumeSubscriptionReport(ctx, a, reference, reason))
}

// UpdateSubscription changes amount, description, card or email.
func (s *Service) UpdateSubscription(ctx context.Context, a Actor, reference, reason string, u SubscriptionUpdate) (*Subscription, error) {
	return subscriptionOf(s.UpdateSubscriptionReport(ctx, a, reference, reason, u))
}

func subscriptionOf(r *SubscriptionReport, err error) (*Subscription, error) {
	if err != nil {
		return nil, err
	}
	return &r.Subscription, nil
}

// voidedInvoice is one invoice a cancel stopped, for the audit row.
type voidedInvoice struct {
	Invoice string `json:"invoice"`
	store.Stopped
}

// cancelNowAfter is the after-state of a cancel now: the subscription and
// everything the cancel closed, so that nothing it did is silent.
type cancelNowAfter struct {
	Subscription Subscription            `json:"subscription"`
	Voided       []voidedInvoice         `json:"voided_invoices"`
	Ended        store.SubscriptionEnded `json:"subscription_scope"`
}

// CancelSubscriptionReport cancels a subscription now or at period end (see
// the package rules above) and reports what it did. Canceling a canceled
// subscription, or asking twice for a cancel at period end, changes nothing
// and writes no audit row; a cancel now after a cancel at period end cancels
// now.
func (s *Service) CancelSubscriptionReport(ctx context.Context, a Actor, reference, reason string, o CancelOptions) (*SubscriptionReport, error) {
	if err := needReason(reason); err != nil {
		return nil, err
	}
	now := s.now()
	rep := &SubscriptionReport{}
	var subID int64
	err := s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		*rep = SubscriptionReport{}
		d, err := tx.LockSubscription(reference)
		if err != nil {
			return err
		}
		if d == nil {
			return notFound("subscription", reference)
		}
		subID = d.ID
		before := subscriptionViewOf(d)
		rep.Subscription = before
		if d.Status == models.SubscriptionCanceled {
			rep.note("already canceled (canceled_at %s); nothing changed", subsStamp(d.CanceledAt))
			if open, err := tx.OpenInvoicesOf(d.ID); err != nil {
				return err
			} else if len(open) > 0 {
				rep.note("%d invoice(s) of periods before the cancel are still collected: %s (billingd invoices void to stop one)", len(open), subsInvoiceNumbers(open))
			}
			return nil
		}
		if o.AtPeriodEnd {
			return s.cancelAtPeriodEnd(tx, now, a, reason, d, rep)
		}
		open, err := tx.OpenInvoicesOf(d.ID)
		if err != nil {
			return err
		}
		after := cancelNowAfter{Voided: []voidedInvoice{}}
		for _, inv := range open {
			st, err := tx.StopCollection(now, inv.ID, "subscription canceled: "+reason, true)
			if err != nil {
				return err
			}
			after.Voided = append(after.Voided, voidedInvoice{Invoice: inv.PublicID, Stopped: st})
			rep.note("invoice %s (%s) voided%s", inv.PublicID, money.Format(inv.Amount, inv.Currency), subsStoppedWords(st))
		}
		ok, ended, err := tx.CancelSubscriptionNow(now, d.ID, reason)
		if err != nil {
			return err
		}
		if !ok {
			return conflictf("subscription %s changed while canceling; try again", reference)
		}
		after.Ended = ended
		if ended.LinksRevoked > 0 || ended.EmailsCanceled > 0 {
			rep.note("%d card-update link(s) revoked, %d queued email(s) canceled", ended.LinksRevoked, ended.EmailsCanceled)
		}
		if len(open) == 0 {
			rep.note("no open invoice to void")
		}
		if err := s.reloadInto(tx, reference, &after.Subscription); err != nil {
			return err
		}
		rep.Subscription, rep.Changed = after.Subscription, true
		return audit(tx, now, a, reason, Audited{Action: ActionSubscriptionCancel, TargetType: TargetSubscription,
			TargetID: d.ID, TargetRef: d.Reference, Before: before, After: after})
	})
	if err != nil {
		return nil, err
	}
	if rep.Changed && !o.AtPeriodEnd {
		s.sendSubscriptionCancels(ctx, subID, rep)
	}
	return rep, nil
}

// cancelAtPeriodEnd records cancel_at (inside the cancel's transaction).
func (s *Service) cancelAtPeriodEnd(tx *store.Tx, now time.Time, a Actor, reason string, d *store.SubscriptionDetail, rep *SubscriptionReport) error {
	if d.CancelAt != nil {
		rep.note("already cancels at period end, at %s; nothing changed", subsStamp(d.CancelAt))
		return nil
	}
	if !d.Status.Billable() {
		return conflictf("subscription %s is %s: no period is running to end; cancel it now (without --at-period-end)", d.Reference, d.Status)
	}
	rec, err := recurrenceOf(&d.Subscription)
	if err != nil {
		return err
	}
	// The period running now ends where the first period that has not
	// started begins; a period that started and is not invoiced yet is still
	// billed (the next pass invoices it), never one that starts later.
	k := max(d.NextPeriod, rec.IndexAt(now))
	at := rec.PeriodStart(k).UTC()
	before := subscriptionViewOf(d)
	if err := tx.SetCancelAt(now, d.ID, at); err != nil {
		return err
	}
	var after Subscription
	if err := s.reloadInto(tx, d.Reference, &after); err != nil {
		return err
	}
	rep.Subscription, rep.Changed = after, true
	rep.note("cancels at %s: no period starting then or later is billed; status stays %s until then", subsStamp(&at), d.Status)
	open, err := tx.OpenInvoicesOf(d.ID)
	if err != nil {
		return err
	}
	if len(open) > 0 {
		rep.note("%d open invoice(s) of earlier periods keep being collected: %s", len(open), subsInvoiceNumbers(open))
	}
	return audit(tx, now, a, reason, Audited{Action: ActionSubscriptionCancelAtPeriodEnd, TargetType: TargetSubscription,
		TargetID: d.ID, TargetRef: d.Reference, Before: before, After: after})
}

// sendSubscriptionCancels sends, after the cancel committed, the intent
// cancels it marked, the way the daemon's intents job does (each through
// charge.Engine.CancelWaiting, recording the gateway's answer). Without a
// gateway, or when a cancel gets no definite answer, the daemon's intents job
// sends (or retries) them.
func (s *Service) sendSubscriptionCancels(ctx context.Context, subID int64, rep *SubscriptionReport) {
	due, err := s.opts.Store.CancelsDueOfSubscription(ctx, s.now(), subID)
	if err != nil || len(due) == 0 {
		if err != nil {
			s.opts.Log.Warn().Err(err).Int64("subscription_id", subID).Msg("could not read the intents to cancel; the daemon's intents job cancels them")
		}
		return
	}
	if s.opts.Engine == nil {
		rep.note("%d waiting payment intent(s) are canceled at the gateway by the running daemon (this process has no gateway)", len(due))
		return
	}
	for i := range due {
		out, err := s.opts.Engine.CancelWaiting(ctx, &due[i])
		if err != nil {
			rep.note("cancel of payment intent %s: %v (the daemon's intents job tries again)", due[i].PaymentIntentID, err)
			continue
		}
		rep.note("payment intent %s: cancel %s", due[i].PaymentIntentID, out)
	}
}

// PauseSubscriptionReport pauses a subscription (see the package rules).
// Pausing a paused subscription changes nothing.
func (s *Service) PauseSubscriptionReport(ctx context.Context, a Actor, reference, reason string) (*SubscriptionReport, error) {
	if err := needReason(reason); err != nil {
		return nil, err
	}
	now := s.now()
	rep := &SubscriptionReport{}
	err := s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		*rep = SubscriptionReport{}
		d, err := tx.LockSubscription(reference)
		if err != nil {
			return err
		}
		if d == nil {
			return notFound("subscription", reference)
		}
		before := subscriptionViewOf(d)
		rep.Subscription = before
		switch {
		case d.Status == models.SubscriptionPaused:
			rep.note("already paused since %s; nothing changed", subsStamp(d.PausedAt))
			return nil
		case !d.Status.Billable():
			return conflictf("subscription %s is %s; only an active or past_due subscription can be paused", reference, d.Status)
		case d.CancelAt != nil:
			return conflictf("subscription %s cancels at period end (%s); cancel it now instead of pausing it", reference, subsStamp(d.CancelAt))
		}
		rec, err := recurrenceOf(&d.Subscription)
		if err != nil {
			return err
		}
		if due := rec.Due(d.NextPeriod, now, 1); len(due) > 0 {
			start := rec.PeriodStart(due[0]).UTC()
			return conflictf("period %d of subscription %s started at %s and is not invoiced yet: the next billing pass invoices it (or run billingd once); pause after that, so that no begun period is lost",
				due[0], reference, subsStamp(&start))
		}
		ok, err := tx.PauseSubscription(now, d.ID)
		if err != nil {
			return err
		}
		if !ok {
			return conflictf("subscription %s changed while pausing; try again", reference)
		}
		var after Subscription
		if err := s.reloadInto(tx, reference, &after); err != nil {
			return err
		}
		rep.Subscription, rep.Changed = after, true
		rep.note("paused: no period is invoiced until it is resumed (the next would start at %s)", subsStamp(&d.NextBillingAt))
		open, err := tx.OpenInvoicesOf(d.ID)
		if err != nil {
			return err
		}
		if len(open) > 0 {
			rep.note("%d open invoice(s) keep being collected (they are owed): %s", len(open), subsInvoiceNumbers(open))
		}
		return audit(tx, now, a, reason, Audited{Action: ActionSubscriptionPause, TargetType: TargetSubscription,
			TargetID: d.ID, TargetRef: d.Reference, Before: before, After: after})
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// ResumeSubscriptionReport resumes a paused subscription (see the package
// rules); the status after it is past_due if it still has an open invoice
// that was tried, else active.
func (s *Service) ResumeSubscriptionReport(ctx context.Context, a Actor, reference, reason string) (*SubscriptionReport, error) {
	now := s.now()
	rep := &SubscriptionReport{}
	err := s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		*rep = SubscriptionReport{}
		d, err := tx.LockSubscription(reference)
		if err != nil {
			return err
		}
		if d == nil {
			return notFound("subscription", reference)
		}
		if d.Status != models.SubscriptionPaused {
			return conflictf("subscription %s is %s, not paused", reference, d.Status)
		}
		before := subscriptionViewOf(d)
		rec, err := recurrenceOf(&d.Subscription)
		if err != nil {
			return err
		}
		// The first period starting at or after now (IndexAt counts the
		// periods started by an instant, so one nanosecond earlier keeps a
		// period starting exactly now).
		k := max(d.NextPeriod, rec.IndexAt(now.Add(-time.Nanosecond)))
		next := rec.PeriodStart(k).UTC()
		status := models.SubscriptionActive
		if tried, err := tx.HasTriedOpenInvoice(d.ID); err != nil {
			return err
		} else if tried {
			status = models.SubscriptionPastDue
		}
		ok, err := tx.ResumeSubscription(now, d.ID, d.NextPeriod, k, next, status)
		if err != nil {
			return err
		}
		if !ok {
			return conflictf("subscription %s changed while resuming; try again", reference)
		}
		var after Subscription
		if err := s.reloadInto(tx, reference, &after); err != nil {
			return err
		}
		rep.Subscription, rep.Changed = after, true
		if k > d.NextPeriod {
			first := rec.PeriodStart(d.NextPeriod).UTC()
			rep.note("%d period(s) that started while paused (from %s) are never invoiced", k-d.NextPeriod, subsStamp(&first))
		}
		rep.note("resumed as %s: the next period starts at %s", status, subsStamp(&next))
		return audit(tx, now, a, reason, Audited{Action: ActionSubscriptionResume, TargetType: TargetSubscription,
			TargetID: d.ID, TargetRef: d.Reference, Before: before, After: after})
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// UpdateSubscriptionReport changes a subscription's amount, description,
// card or email in one audited transaction. The amount and description apply
// to periods not invoiced yet. A new card is verified with the gateway first
// (it exists, is a card, belongs to the subscription's customer; on
// Checkout.com its previous_payment_id is a succeeded payment of that card),
// then recorded and made the subscription's card; an open dunning case
// proceeds as when the customer saves a card on the pay page (dunning's
// AfterPaymentMethodSaved: the invoice is retried). A new email is the
// customer's (every subscription of that customer).
func (s *Service) UpdateSubscriptionReport(ctx context.Context, a Actor, reference, reason string, u SubscriptionUpdate) (*SubscriptionReport, error) {
	if err := s.checkUpdate(&u); err != nil {
		return nil, err
	}
	pre, err := s.opts.Store.SubscriptionByReference(ctx, reference)
	if err != nil {
		return nil, err
	}
	if pre == nil {
		return nil, notFound("subscription", reference)
	}
	if pre.Status == models.SubscriptionCanceled {
		return nil, conflictf("subscription %s is canceled; it cannot be updated", reference)
	}
	if u.Amount != nil {
		if err := s.checkAmount(*u.Amount, pre.Currency); err != nil {
			return nil, err
		}
	}
	var card *gateway.PaymentMethod
	if u.PaymentMethod != nil && *u.PaymentMethod != pre.GatewayPM {
		// The gateway is asked before the transaction: none is held across
		// an HTTP call.
		if card, err = s.verifyCard(ctx, pre.GatewayCustomer, *u.PaymentMethod, subsDeref(u.PreviousPaymentID)); err != nil {
			return nil, err
		}
	}
	now := s.now()
	rep := &SubscriptionReport{}
	update := func(tx *store.Tx) error {
		*rep = SubscriptionReport{}
		d, err := tx.LockSubscription(reference)
		if err != nil {
			return err
		}
		if d == nil {
			return notFound("subscription", reference)
		}
		if d.Status == models.SubscriptionCanceled {
			return conflictf("subscription %s is canceled; it cannot be updated", reference)
		}
		before := subscriptionViewOf(d)
		rep.Subscription = before
		amount, description := d.Amount, d.Description
		if u.Amount != nil && *u.Amount != d.Amount {
			amount = *u.Amount
			rep.note("amount %s -> %s from the next period not invoiced yet (starting %s); invoices already created keep theirs",
				money.Format(d.Amount, d.Currency), money.Format(amount, d.Currency), subsStamp(&d.NextBillingAt))
		}
		if u.Description != nil && *u.Description != d.Description {
			description = *u.Description
			rep.note("description changed from the next period not invoiced yet")
		}
		if amount != d.Amount || description != d.Description {
			if err := tx.UpdateSubscriptionTerms(now, d.ID, amount, description); err != nil {
				return err
			}
		}
		if u.Email != nil && !strings.EqualFold(*u.Email, d.Email) {
			if err := tx.SetCustomerEmail(now, d.CustomerID, *u.Email); err != nil {
				return err
			}
			rep.note("email %s -> %s (the customer's, for all its subscriptions)", d.Email, *u.Email)
		}
		if card != nil {
			if d.CustomerID != pre.CustomerID || card.Customer != d.GatewayCustomer {
				return conflictf("subscription %s changed customer while its card was verified; try again", reference)
			}
			if err := s.replaceCard(tx, now, d, card, subsDeref(u.PreviousPaymentID), rep); err != nil {
				return err
			}
		}
		if len(rep.Notes) == 0 {
			rep.note("nothing to change: the subscription already has these values")
			return nil
		}
		var after Subscription
		if err := s.reloadInto(tx, reference, &after); err != nil {
			return err
		}
		rep.Subscription, rep.Changed = after, true
		return audit(tx, now, a, reason, Audited{Action: ActionSubscriptionUpdate, TargetType: TargetSubscription,
			TargetID: d.ID, TargetRef: d.Reference, Before: before, After: after})
	}
	err = s.opts.Store.InTx(ctx, update)
	if card != nil && store.IsDuplicateKey(err) {
		// The gateway's webhook recorded the same new card meanwhile; the
		// second try finds it (and still checks whose it is).
		err = s.opts.Store.InTx(ctx, update)
	}
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// replaceCard records a verified card and makes it the subscription's,
// inside the update's transaction.
func (s *Service) replaceCard(tx *store.Tx, now time.Time, d *store.SubscriptionDetail, card *gateway.PaymentMethod, previousPaymentID string, rep *SubscriptionReport) error {
	saved := store.SavedCard{SeriesPaymentID: previousPaymentID}
	if card.Card != nil {
		// The card as the gateway answered: it names the card to the
		// customer and decides the expiring-card notice.
		saved.Brand, saved.Last4 = card.Card.Brand, card.Card.Last4
		saved.ExpMonth, saved.ExpYear = card.Card.ExpMonth, card.Card.ExpYear
	}
	ok, err := tx.RecordPaymentMethod(now, d.GatewayCustomer, card.ID, saved)
	if err != nil {
		return err
	}
	if !ok {
		return &FieldError{Field: "payment_method", Value: card.ID, Message: "billingd knows this payment method under another customer; nothing was changed"}
	}
	pm, err := tx.PaymentMethodByGatewayID(card.ID)
	if err != nil {
		return err
	}
	if pm == nil {
		return fmt.Errorf("ops: payment method %s was recorded but cannot be read back", card.ID)
	}
	if err := tx.MarkPaymentMethodVerified(now, pm.ID); err != nil {
		return err
	}
	rep.note("card %s -> %s", subsCardWords(d.GatewayPM, d.Brand, d.Last4), subsCardWords(card.ID, saved.Brand, saved.Last4))
	// An open dunning case proceeds exactly as when the customer saves a card
	// through the pay page: dunning's setup_intent.succeeded path makes the
	// card the subscription's and retries the invoice.
	open, err := tx.OpenInvoicesOf(d.ID)
	if err != nil {
		return err
	}
	for _, inv := range open {
		c, err := tx.CaseForInvoice(inv.ID)
		if err != nil {
			return err
		}
		if c == nil || c.Status != models.CaseOpen || s.opts.Dunning == nil {
			continue
		}
		applied, detail, _, err := s.opts.Dunning.AfterPaymentMethodSaved(tx, now, &gateway.SetupIntent{
			Customer: d.GatewayCustomer, PaymentMethod: card.ID, Metadata: map[string]string{"invoice": inv.PublicID}})
		if err != nil {
			return err
		}
		if applied {
			rep.note("dunning: %s (the next billing pass charges it)", detail)
			return nil
		}
	}
	return tx.SetSubscriptionPaymentMethod(now, d.ID, pm.ID)
}

// checkUpdate checks an update's fields that need no database.
func (s *Service) checkUpdate(u *SubscriptionUpdate) error {
	if u.Amount == nil && u.Description == nil && u.PaymentMethod == nil && u.Email == nil {
		if u.PreviousPaymentID != nil {
			return &FieldError{Field: "previous_payment_id", Message: "goes with payment_method (the new card's series payment)"}
		}
		return &FieldError{Field: "update", Message: "nothing to change: give amount, description, payment_method or email"}
	}
	if u.Description != nil && len(*u.Description) > 500 {
		return &FieldError{Field: "description", Message: "must be at most 500 bytes"}
	}
	if u.Email != nil {
		addr, err := mail.ParseAddress(*u.Email)
		if err != nil || addr.Address != strings.TrimSpace(*u.Email) {
			return &FieldError{Field: "email", Value: *u.Email, Message: "must be a plain email address such as ada@example.com"}
		}
	}
	if u.PaymentMethod != nil && strings.TrimSpace(*u.PaymentMethod) == "" {
		return &FieldError{Field: "payment_method", Message: "must be the gateway id of a saved card"}
	}
	checkout := s.opts.Provider == "checkout"
	switch {
	case u.PreviousPaymentID != nil && u.PaymentMethod == nil:
		return &FieldError{Field: "previous_payment_id", Value: *u.PreviousPaymentID, Message: "goes with payment_method (the new card's series payment)"}
	case u.PaymentMethod != nil && checkout && subsDeref(u.PreviousPaymentID) == "":
		return &FieldError{Field: "previous_payment_id", Message: "is required on Checkout.com with a new payment_method: the customer-initiated payment that stored the card"}
	case u.PaymentMethod != nil && !checkout && subsDeref(u.PreviousPaymentID) != "":
		return &FieldError{Field: "previous_payment_id", Value: *u.PreviousPaymentID, Message: "is used only with gateway.provider checkout"}
	}
	return nil
}

// checkAmount applies the checks the CSV import applies to an amount: a
// positive number of minor units within billingd's bounds, that the
// provider can charge in its wire units.
func (s *Service) checkAmount(amount int64, currency string) error {
	value := fmt.Sprint(amount)
	if amount <= 0 {
		return &FieldError{Field: "amount", Value: value, Message: "must be a positive whole number of minor units (1050 for 10.50 USD)"}
	}
	if err := money.CheckAmount(amount, currency); err != nil {
		return &FieldError{Field: "amount", Value: value, Message: err.Error()}
	}
	provider := s.opts.Provider
	if provider == "" {
		provider = "wooshpay"
	}
	if wire := units.ForProvider(provider); wire != nil {
		if err := wire.Check(amount, currency); err != nil {
			return &FieldError{Field: "amount", Value: value, Message: err.Error()}
		}
	}
	return nil
}

// verifyCard asks the gateway about a new card the way an import does
// (importcheck: it exists and belongs to the customer; on Checkout.com its
// previous_payment_id is a succeeded payment of that card and customer) and
// that it is a card. Problems are FieldErrors naming payment_method or
// previous_payment_id.
func (s *Service) verifyCard(ctx context.Context, customer, paymentMethod, previousPaymentID string) (*gateway.PaymentMethod, error) {
	if s.opts.Accounts == nil {
		return nil, ErrNoGateway
	}
	gw := &cardReader{accounts: s.opts.Accounts}
	row := store.ImportRow{Line: 1, Customer: customer, PaymentMethod: paymentMethod, PreviousPaymentID: previousPaymentID}
	_, err := importcheck.Check(ctx, gw, []store.ImportRow{row}, importcheck.Options{
		Verified: store.Verified{Customers: map[string]bool{customer: true}, PaymentMethods: map[string]bool{}},
		Clock:    s.opts.Clock, RetryWait: 200 * time.Millisecond})
	var problems store.ImportErrors
	if errors.As(err, &problems) && len(problems) > 0 {
		p := problems[0]
		field := p.Column
		if field == "" {
			field = "payment_method"
		}
		return nil, &FieldError{Field: field, Value: p.Value, Message: p.Message + "; nothing was changed"}
	}
	if err != nil {
		return nil, err
	}
	card := gw.read
	if card == nil {
		return nil, fmt.Errorf("ops: the gateway did not describe payment method %s", paymentMethod)
	}
	if card.Type != "card" || card.Card == nil {
		return nil, &FieldError{Field: "payment_method", Value: paymentMethod, Message: fmt.Sprintf("is a %q payment method, not a card; nothing was changed", card.Type)}
	}
	return card, nil
}

// cardReader is the gateway as importcheck reads it, keeping the payment
// method it read (for its brand and last 4).
type cardReader struct {
	accounts gateway.Accounts
	read     *gateway.PaymentMethod
}

func (c *cardReader) RetrieveCustomer(ctx context.Context, id string) (*gateway.Customer, error) {
	return c.accounts.RetrieveCustomer(ctx, id)
}

func (c *cardReader) RetrievePaymentMethod(ctx context.Context, id string) (*gateway.PaymentMethod, error) {
	pm, err := c.accounts.RetrievePaymentMethod(ctx, id)
	if err == nil {
		c.read = pm
	}
	return pm, err
}

// RetrievePaymentIntent reads a card's series payment (importcheck's
// SeriesReader) through the gateway client when it can.
func (c *cardReader) RetrievePaymentIntent(ctx context.Context, id string) gateway.Result {
	if r, ok := c.accounts.(importcheck.SeriesReader); ok {
		return r.RetrievePaymentIntent(ctx, id)
	}
	return gateway.Result{Kind: gateway.Invalid, Err: errors.New("this gateway client cannot read payments")}
}

// ListSubscriptions lists subscriptions.
func (s *Service) ListSubscriptions(ctx context.Context, f Filter) ([]Subscription, error) {
	for _, st := range f.Status {
		if !slices.Contains(subscriptionStatuses, st) {
			return nil, &FieldError{Field: "status", Value: st, Message: "must be one of " + strings.Join(subscriptionStatuses, ", ")}
		}
	}
	rows, err := s.opts.Store.ListSubscriptions(ctx, store.SubscriptionFilter{Statuses: f.Status, Customer: f.Customer,
		Reference: f.Reference, From: f.From, To: f.To, Limit: f.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]Subscription, 0, len(rows))
	for i := range rows {
		out = append(out, subscriptionViewOf(&rows[i]))
	}
	return out, nil
}

var subscriptionStatuses = []string{string(models.SubscriptionActive), string(models.SubscriptionPastDue), string(models.SubscriptionUnpaid),
	string(models.SubscriptionPaused), string(models.SubscriptionCanceled)}

// SubscriptionStoryOf tells one subscription's story.
func (s *Service) SubscriptionStoryOf(ctx context.Context, reference string) (*SubscriptionStory, error) {
	d, err := s.opts.Store.SubscriptionByReference(ctx, reference)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, notFound("subscription", reference)
	}
	rows, err := s.opts.Store.SubscriptionStoryRows(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	st := &SubscriptionStory{Subscription: subscriptionViewOf(d), Invoices: []Invoice{}, Attempts: []Attempt{},
		Cases: []DunningCase{}, Refunds: []Refund{}, Emails: []Email{}, Links: []PayLink{}, Audit: []AuditEntry{}}
	numbers := map[int64]string{}
	for _, inv := range rows.Invoices {
		numbers[inv.ID] = inv.PublicID
		v := Invoice{ID: inv.ID, Number: inv.PublicID, Subscription: d.Reference, Customer: d.GatewayCustomer, Period: inv.PeriodIndex,
			PeriodStart: inv.PeriodStart.UTC(), PeriodEnd: inv.PeriodEnd.UTC(), Total: NewMoney(inv.Amount, inv.Currency),
			Refunded: NewMoney(inv.Refunded, inv.Currency), Status: string(inv.Status), Attempts: inv.AttemptCount,
			NextAttemptAt: subsUTC(inv.NextAttemptAt), PaidAt: subsUTC(inv.PaidAt), Payment: inv.PaymentIntentID, CreatedAt: inv.CreatedAt.UTC()}
		st.Invoices = append(st.Invoices, v)
	}
	for _, at := range rows.Attempts {
		st.Attempts = append(st.Attempts, Attempt{ID: at.ID, Invoice: at.MerchantOrderID, Subscription: d.Reference, AttemptNo: at.AttemptNo,
			Status: string(at.Status), OffSession: at.OffSession, Amount: NewMoney(at.Amount, at.Currency), Payment: at.PaymentIntentID,
			DeclineCode: at.DeclineCode, AdviceCode: at.AdviceCode, HardDecline: at.HardDecline, Error: at.ErrorMessage,
			Key: at.IdempotencyKey, CreatedAt: at.CreatedAt.UTC(), FinishedAt: subsUTC(at.FinishedAt)})
	}
	for _, c := range rows.Cases {
		st.Cases = append(st.Cases, DunningCase{ID: c.ID, Invoice: numbers[c.InvoiceID], Subscription: d.Reference, Reason: string(c.Reason),
			Status: string(c.Status), Step: c.Step, Retries: c.Retries, NextStepAt: subsUTC(c.NextStepAt), LastDeclineCode: c.LastDeclineCode,
			OpenedAt: c.OpenedAt.UTC(), ClosedAt: subsUTC(c.ClosedAt)})
	}
	for _, r := range rows.Refunds {
		st.Refunds = append(st.Refunds, Refund{ID: r.ID, Invoice: r.InvoicePublic, Payment: r.PaymentIntentID, Amount: NewMoney(r.Amount, r.Currency),
			Reason: string(r.Reason), Status: string(r.Status), GatewayRefund: r.GatewayRefundID, Error: r.ErrorMessage, Key: r.IdempotencyKey,
			CreatedAt: r.CreatedAt.UTC(), FinishedAt: subsUTC(r.FinishedAt)})
	}
	for _, e := range rows.Emails {
		st.Emails = append(st.Emails, Email{ID: e.ID, Kind: e.Kind, To: e.ToAddress, Status: e.Status, Link: e.LinkPurpose,
			Invoice: e.InvoicePublic, SentAt: subsUTC(e.SentAt), Error: e.LastError, Created: e.CreatedAt.UTC()})
	}
	for _, l := range rows.Links {
		st.Links = append(st.Links, PayLink{ID: l.ID, Purpose: l.Purpose, Invoice: l.InvoicePublic, State: linkState(l.RevokedAt, l.ExpiresAt, l.InvoiceStatus, now),
			ExpiresAt: l.ExpiresAt.UTC(), Uses: l.Uses, RevokedAt: subsUTC(l.RevokedAt)})
	}
	// Every action on the subscription or on anything of it: its invoices,
	// their attempts, dunning cases and refunds.
	targets := map[string][]int64{TargetSubscription: {d.ID}}
	for _, inv := range rows.Invoices {
		targets[TargetInvoice] = append(targets[TargetInvoice], inv.ID)
	}
	for _, at := range rows.Attempts {
		targets[TargetAttempt] = append(targets[TargetAttempt], at.ID)
	}
	for _, c := range rows.Cases {
		targets[TargetDunningCase] = append(targets[TargetDunningCase], c.ID)
	}
	for _, r := range rows.Refunds {
		targets[TargetRefund] = append(targets[TargetRefund], r.ID)
	}
	if st.Audit, err = s.invStoryAudit(ctx, targets); err != nil {
		return nil, err
	}
	return st, nil
}

// subscriptionViewOf is the view of a subscription row.
func subscriptionViewOf(d *store.SubscriptionDetail) Subscription {
	card := cardView(d.GatewayPM, d.Brand, d.Last4, d.ExpMonth, d.ExpYear, d.DeadAt, d.DeadReason)
	return Subscription{ID: d.ID, Reference: d.Reference, Status: string(d.Status), Customer: d.GatewayCustomer, Email: d.Email,
		Card: card, Price: NewMoney(d.Amount, d.Currency), Interval: d.Interval, IntervalCount: d.IntervalCount,
		Anchor: d.AnchorAt.UTC(), Timezone: d.Timezone, Description: d.Description, NextBillingAt: d.NextBillingAt.UTC(),
		CancelAt: subsUTC(d.CancelAt), CanceledAt: subsUTC(d.CanceledAt), PausedAt: subsUTC(d.PausedAt), CreatedAt: d.CreatedAt.UTC()}
}

// reloadInto reads the subscription again inside tx (its after-state).
func (s *Service) reloadInto(tx *store.Tx, reference string, into *Subscription) error {
	d, err := tx.LockSubscription(reference)
	if err != nil {
		return err
	}
	if d == nil {
		return notFound("subscription", reference)
	}
	*into = subscriptionViewOf(d)
	return nil
}

// recurrenceOf is a subscription's period math, in its own zone, as the
// billing pass builds it.
func recurrenceOf(sub *models.Subscription) (period.Recurrence, error) {
	rec, err := period.New(sub.AnchorAt, sub.Interval, sub.IntervalCount, sub.Timezone)
	if err != nil {
		return rec, fmt.Errorf("ops: subscription %s has invalid billing terms: %w", sub.Reference, err)
	}
	return rec, nil
}

func subsStoppedWords(st store.Stopped) string {
	var parts []string
	if st.CaseID != 0 {
		parts = append(parts, fmt.Sprintf("dunning case %d stopped", st.CaseID))
	}
	if st.CancelsRequested > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting intent(s) to cancel", st.CancelsRequested))
	}
	if st.LinksRevoked > 0 {
		parts = append(parts, fmt.Sprintf("%d link(s) revoked", st.LinksRevoked))
	}
	if st.EmailsCanceled > 0 {
		parts = append(parts, fmt.Sprintf("%d queued email(s) canceled", st.EmailsCanceled))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}

func subsInvoiceNumbers(invs []models.Invoice) string {
	ids := make([]string, 0, len(invs))
	for _, inv := range invs {
		ids = append(ids, inv.PublicID)
	}
	return strings.Join(ids, ", ")
}

func subsCardWords(id, brand, last4 string) string {
	if brand == "" && last4 == "" {
		return id
	}
	return fmt.Sprintf("%s (%s •%s)", id, brand, last4)
}

func subsStamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func subsUTC(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func subsDeref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
