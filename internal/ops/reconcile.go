package ops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
)

// Audit actions of a reconcile.
const (
	// ActionReconcileRepair: reconcile settled a payment the database did not
	// know, the way its webhook would have.
	ActionReconcileRepair = "reconcile.repair"
	// ActionReconcileFlag: reconcile found a difference it must not repair
	// on its own and flagged it for a person.
	ActionReconcileFlag = "reconcile.flag"
)

// The kinds of difference a reconcile reports.
const (
	// DiffUnsettled: a succeeded payment of an attempt the database has,
	// not recorded as paid by it (the invoice is open, in dunning,
	// uncollectible, or the attempt's outcome unknown).
	DiffUnsettled = "unsettled_payment"
	// DiffLostAttempt: a succeeded payment of an invoice the database has,
	// under an attempt it does not have (made after the backup it was
	// restored from).
	DiffLostAttempt = "lost_attempt"
	// DiffLostInvoice: a succeeded payment for a period whose invoice the
	// database does not have; its order id is the one derived from the
	// subscription and the period.
	DiffLostInvoice = "lost_invoice"
	// DiffUnplaced: a payment with billingd's metadata whose order id is no
	// invoice and no period of a subscription: flagged, never guessed.
	DiffUnplaced = "unplaced_payment"
	// DiffPaidNotSucceeded: an invoice the database shows paid by a payment
	// the gateway does not show as succeeded: flagged, never un-paid.
	DiffPaidNotSucceeded = "paid_not_succeeded"
	// DiffAmount: the gateway's payment is of another amount or currency
	// than billingd asked for: stored, not applied, flagged.
	DiffAmount = "amount_mismatch"
	// DiffUnderReview: a payment whose attempt already needs review; a
	// person decides (billingd attempts resolve).
	DiffUnderReview = "under_review"
)

// ReconcileRequest is one `billingd reconcile` run.
type ReconcileRequest struct {
	// Since is the earliest creation time of the payments compared: the
	// time of the backup a database was restored from.
	Since time.Time
	// DryRun reports the differences and changes nothing.
	DryRun bool
	// Reason is the audit log's reason of every repair and flag.
	Reason string
}

// Difference is one way the database and the gateway disagree, and what the
// reconcile did about it.
type Difference struct {
	Kind         string `json:"kind"`
	Invoice      string `json:"invoice"`
	Subscription string `json:"subscription"`
	Payment      string `json:"payment"`
	Amount       int64  `json:"amount"`
	Currency     string `json:"currency"`
	// Done says what the reconcile did (or, in a dry run, would do).
	Done string `json:"done"`
	// Repaired: the difference is gone (the database now agrees).
	Repaired bool `json:"repaired"`
	// NeedsReview: a person must look (billingd attempts list --status
	// needs_review, or the audit log's reconcile.flag rows).
	NeedsReview bool `json:"needs_review"`
}

// ReconcileReport is what a reconcile found and did.
type ReconcileReport struct {
	Since  time.Time `json:"since"`
	DryRun bool      `json:"dry_run"`
	// Payments is how many of the gateway's payments were compared.
	Payments int `json:"payments"`
	// NotOurs counts payments without billingd's metadata: ignored.
	NotOurs int `json:"not_ours"`
	// NotSucceeded counts billingd's payments that did not succeed: the
	// charge path and its reconciler settle those.
	NotSucceeded int `json:"not_succeeded"`
	// Agreeing counts succeeded payments the database already records.
	Agreeing    int          `json:"agreeing"`
	Repaired    int          `json:"repaired"`
	Flagged     int          `json:"flagged"`
	Differences []Difference `json:"differences"`
}

// NeedsAttention reports whether a person must look: something was flagged
// for review, or (in a dry run) the books do not agree.
func (r *ReconcileReport) NeedsAttention() bool {
	return r.Flagged > 0 || (r.DryRun && len(r.Differences) > 0)
}

// maxReconcilePeriods bounds the periods of one subscription whose order ids
// a reconcile derives (three years of daily periods).
const maxReconcilePeriods = 1100

// lostPeriod is a period whose invoice the database does not have, named by
// its derived order id.
type lostPeriod struct {
	sub        *models.Subscription
	index      int
	start, end time.Time
}

// Reconcile compares the gateway's payments created since req.Since with
// the database and repairs every difference it may: a succeeded payment the
// database does not record is settled exactly as its payment_intent.succeeded
// webhook would settle it (charge.Engine.ApplyEvent: the invoice is paid,
// dunning closes, the subscription recovers; a second success for a paid
// invoice is refunded; another amount is stored, not applied). A payment
// whose invoice the database lost (restored from an older backup) is mapped
// back to its subscription and period by the order id derived from both
// (store.DerivedOrderID), and that period's invoice is created as the billing
// pass would create it, with the payment's attempt, in the same transaction.
// What must not be repaired blindly — a payment that maps to nothing, a paid
// invoice whose payment the gateway does not show as succeeded — is flagged
// for review. Every repair and flag is one transaction with its audit row.
//
// Every read of the gateway happens first, under the engine's rate limit, and
// a read that fails ends the run before anything is changed. The writes are
// fenced like a webhook's, so a daemon may run meanwhile; after a restore,
// run it before the daemon starts charging.
func (s *Service) Reconcile(ctx context.Context, a Actor, req ReconcileRequest) (*ReconcileReport, error) {
	if s.opts.Engine == nil || s.opts.Gateway == nil {
		return nil, ErrNoGateway
	}
	now := s.now()
	since := req.Since.UTC()
	if since.After(now) {
		return nil, &FieldError{Field: "--since", Value: since.Format(time.RFC3339), Message: "is in the future"}
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		reason = "reconcile --since " + since.Format(time.RFC3339)
	}
	st := s.opts.Store
	subs, err := st.SubscriptionsToReconcile(ctx)
	if err != nil {
		return nil, err
	}
	lost := s.lostPeriods(subs, now)
	invs, err := st.InvoicesToReconcile(ctx, since)
	if err != nil {
		return nil, err
	}
	pis, err := s.readPayments(ctx, since, invs, lost)
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's payments: %w (nothing changed; run it again)", err)
	}
	rep := &ReconcileReport{Since: since, DryRun: req.DryRun, Payments: len(pis), Differences: []Difference{}}
	succeeded := map[string]*gateway.PaymentIntent{}
	for i := range pis {
		pi := &pis[i]
		if ourKey(pi) == "" {
			rep.NotOurs++
			continue
		}
		if pi.Status != gateway.IntentSucceeded {
			rep.NotSucceeded++
			continue
		}
		succeeded[pi.ID] = pi
		s.reconcilePayment(ctx, a, reason, req.DryRun, pi, lost, rep)
	}
	if err := s.checkPaid(ctx, a, reason, req.DryRun, invs, pis, succeeded, subs, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// lostPeriods derives the order id of every started period of each
// subscription from its next_period on (the periods the database has no
// invoice of), up to now.
func (s *Service) lostPeriods(subs []models.Subscription, now time.Time) map[string]lostPeriod {
	out := map[string]lostPeriod{}
	for i := range subs {
		sub := &subs[i]
		rec, err := period.New(sub.AnchorAt, sub.Interval, sub.IntervalCount, sub.Timezone)
		if err != nil {
			s.opts.Log.Warn().Err(err).Str("subscription", sub.Reference).Msg("reconcile: subscription has invalid billing terms; its periods are not looked for")
			continue
		}
		for _, k := range rec.Due(sub.NextPeriod, now, maxReconcilePeriods) {
			start, end := rec.Period(k)
			if sub.CancelAt != nil && !start.Before(*sub.CancelAt) {
				break
			}
			out[store.DerivedOrderID(sub.Reference, start)] = lostPeriod{sub: sub, index: k, start: start, end: end}
		}
	}
	return out
}

// readPayments reads the gateway's payments since since: the whole list
// where the provider has one (gateway.PaymentLister), else each candidate
// order id by reference — the invoices created since then and the order ids
// of the periods the database has no invoice of. Each request waits for the
// engine's rate limit; lookups run at most gateway.concurrency at once. The
// payments come back oldest first (period order within a subscription).
func (s *Service) readPayments(ctx context.Context, since time.Time, invs []models.Invoice, lost map[string]lostPeriod) ([]gateway.PaymentIntent, error) {
	var pis []gateway.PaymentIntent
	if lister, ok := s.opts.Gateway.(gateway.PaymentLister); ok {
		req := gateway.PaymentListRequest{CreatedFrom: since}
		for {
			if err := s.waitGateway(ctx); err != nil {
				return nil, err
			}
			page, err := lister.ListPaymentIntents(ctx, req)
			if err != nil {
				return nil, err
			}
			pis = append(pis, page.Intents...)
			if !page.HasMore || len(page.Intents) == 0 {
				break
			}
			req.StartingAfter = page.Intents[len(page.Intents)-1].ID
		}
	} else {
		seen := map[string]bool{}
		var orders []string
		for _, inv := range invs {
			if !seen[inv.PublicID] {
				seen[inv.PublicID] = true
				orders = append(orders, inv.PublicID)
			}
		}
		for id := range lost {
			if !seen[id] {
				seen[id] = true
				orders = append(orders, id)
			}
		}
		sort.Strings(orders)
		found, err := s.searchOrders(ctx, orders)
		if err != nil {
			return nil, err
		}
		for _, p := range found {
			if !p.Created.IsZero() && p.Created.Before(since) {
				continue
			}
			pis = append(pis, p)
		}
	}
	byID := map[string]bool{}
	out := pis[:0]
	for _, p := range pis {
		if !byID[p.ID] {
			byID[p.ID] = true
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// searchOrders looks every order id up at the gateway, with as many
// requests at once as gateway.concurrency allows.
func (s *Service) searchOrders(ctx context.Context, orders []string) ([]gateway.PaymentIntent, error) {
	workers := s.opts.Engine.MaxInFlight()
	if workers <= 0 || workers > 8 {
		workers = 8
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan string)
	var mu sync.Mutex
	var out []gateway.PaymentIntent
	var firstErr error
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				err := s.waitGateway(ctx)
				var found []gateway.PaymentIntent
				if err == nil {
					found, err = s.opts.Gateway.SearchPaymentIntentsByOrder(ctx, id)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("order %s: %w", id, err)
					cancel()
				}
				out = append(out, found...)
				mu.Unlock()
			}
		}()
	}
	for _, id := range orders {
		select {
		case jobs <- id:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return out, firstErr
}

func (s *Service) waitGateway(ctx context.Context) error {
	if s.opts.Limiter == nil {
		return ctx.Err()
	}
	return s.opts.Limiter.Wait(ctx)
}

// ourKey is the idempotency key billingd put in a payment's metadata ("" for a
// payment billingd did not make).
func ourKey(pi *gateway.PaymentIntent) string {
	return strings.TrimSpace(pi.Metadata["idempotency_key"])
}

// orderOf is a payment's order id: its merchant_order_id (reference), else
// the invoice billingd put in its metadata.
func orderOf(pi *gateway.PaymentIntent) string {
	if pi.MerchantOrderID != "" {
		return pi.MerchantOrderID
	}
	return pi.Metadata["invoice"]
}

// attemptNoOf is the attempt number of a payment: its metadata's attempt,
// else the number its key ends in ("<order id>-a<n>"); 0 when neither says.
func attemptNoOf(pi *gateway.PaymentIntent) int {
	if n, err := strconv.Atoi(strings.TrimSpace(pi.Metadata["attempt"])); err == nil && n > 0 {
		return n
	}
	key := ourKey(pi)
	if i := strings.LastIndex(key, "-a"); i >= 0 {
		if n, err := strconv.Atoi(key[i+2:]); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

// Held is what the database holds about one gateway payment: its attempt
// (by payment id or key), the invoice of its order id, and the lost period
// its order id names.
type Held struct {
	Attempt *models.ChargeAttempt
	Invoice *models.Invoice
	// Period is set when the order id is no invoice but the derived order id
	// of a period the database has no invoice of; Amount and Currency are
	// what its invoice will ask for (the subscription's).
	Period   bool
	Amount   int64
	Currency string
}

// asked is the request billingd made (or would have made) for the payment:
// its attempt's, else its invoice's or its period's amount, for the amount
// check of every door.
func (h Held) asked(pi *gateway.PaymentIntent) *models.ChargeAttempt {
	switch {
	case h.Attempt != nil:
		return h.Attempt
	case h.Invoice != nil:
		return &models.ChargeAttempt{IdempotencyKey: ourKey(pi), Amount: h.Invoice.Amount, Currency: h.Invoice.Currency}
	case h.Period:
		return &models.ChargeAttempt{IdempotencyKey: ourKey(pi), Amount: h.Amount, Currency: h.Currency}
	}
	return nil
}

// Compare decides how a succeeded payment of billingd's and what the
// database holds about it differ: "" when they agree (the payment's attempt
// succeeded with it and its invoice is paid by it, for the amount asked),
// else one of the Diff kinds. It is pure: the repair re-reads what is held
// inside its transaction and compares again, so a webhook that settled the
// payment meanwhile leaves nothing to do.
func Compare(pi *gateway.PaymentIntent, h Held) string {
	mismatch := ""
	if a := h.asked(pi); a != nil {
		mismatch = charge.AmountMismatch(a, pi)
	}
	switch {
	case h.Attempt != nil:
		succeededWithIt := h.Attempt.Status == models.AttemptSucceeded && h.Attempt.PaymentIntentID == pi.ID
		paid := h.Invoice != nil && h.Invoice.Status == models.InvoicePaid
		switch {
		case h.Attempt.Status == models.AttemptNeedsReview && mismatch != "":
			return DiffUnderReview
		case succeededWithIt && paid && h.Invoice.PaymentIntentID == pi.ID && mismatch != "":
			return DiffAmount
		case succeededWithIt && paid:
			// Paid by it, or by another payment while this second success
			// is already recorded (and refunded).
			return ""
		case mismatch != "":
			return DiffAmount
		}
		return DiffUnsettled
	case mismatch != "":
		return DiffAmount
	case h.Invoice != nil:
		return DiffLostAttempt
	case h.Period:
		return DiffLostInvoice
	}
	return DiffUnplaced
}

// held reads what the database holds about pi (inside tx).
func held(tx *store.Tx, pi *gateway.PaymentIntent, lost map[string]lostPeriod) (Held, error) {
	var h Held
	a, err := tx.AttemptForIntent(pi.ID, ourKey(pi))
	if err != nil {
		return h, err
	}
	h.Attempt = a
	if a != nil {
		h.Invoice, err = tx.LockInvoice(a.InvoiceID)
		return h, err
	}
	if h.Invoice, err = tx.InvoiceByPublicIDTx(orderOf(pi)); err != nil || h.Invoice != nil {
		return h, err
	}
	if p, ok := lost[orderOf(pi)]; ok {
		h.Period, h.Amount, h.Currency = true, p.sub.Amount, p.sub.Currency
	}
	return h, nil
}

// errSettledMeanwhile rolls a repair back when, inside its transaction, the
// database turned out to agree already.
var errSettledMeanwhile = errors.New("settled meanwhile")

// reconcilePayment compares one succeeded payment of billingd's and, unless
// dryRun, repairs or flags the difference in one transaction.
func (s *Service) reconcilePayment(ctx context.Context, a Actor, reason string, dryRun bool, pi *gateway.PaymentIntent,
	lost map[string]lostPeriod, rep *ReconcileReport) {
	d := Difference{Invoice: orderOf(pi), Payment: pi.ID, Amount: pi.Amount, Currency: pi.Currency}
	if p, ok := lost[d.Invoice]; ok {
		d.Subscription = p.sub.Reference
	}
	var kind string
	var warning string
	var settled *models.ChargeAttempt
	run := func(tx *store.Tx) error {
		h, err := held(tx, pi, lost)
		if err != nil {
			return err
		}
		if h.Invoice != nil {
			if sub, err := tx.SubscriptionTx(h.Invoice.SubscriptionID); err != nil {
				return err
			} else if sub != nil {
				d.Subscription = sub.Reference
			}
		}
		kind = Compare(pi, h)
		if kind == "" || dryRun {
			return nil
		}
		now := s.now()
		before := reconcileState(h.Invoice, h.Attempt)
		switch kind {
		case DiffUnplaced:
			done, err := tx.AuditedBefore(ActionReconcileFlag, "payment", pi.ID)
			if err != nil || done {
				d.Done = "flagged for review by an earlier reconcile: no invoice or period of billingd has order id " + d.Invoice
				return err
			}
			d.Done = "flagged for review: no invoice or period of billingd has order id " + d.Invoice + "; nothing changed"
			return audit(tx, now, a, reason, Audited{Action: ActionReconcileFlag, TargetType: "payment", TargetRef: pi.ID,
				After: map[string]any{"kind": kind, "payment": pi.ID, "order_id": d.Invoice, "amount": pi.Amount, "currency": pi.Currency}})
		case DiffUnderReview:
			d.Done = "attempt " + h.Attempt.IdempotencyKey + " already needs review: billingd attempts resolve " + strconv.FormatInt(h.Attempt.ID, 10)
			return nil
		case DiffAmount:
			if h.Attempt == nil || h.Attempt.Status != models.AttemptSucceeded {
				break // recorded and settled below, where the amount check flags it
			}
			f, err := tx.FlagPaidAttemptForReview(now, h.Invoice.ID, pi.ID, charge.AmountMismatch(h.Attempt, pi))
			if err != nil {
				return err
			}
			d.Done = "attempt flagged needs_review; the invoice stays paid"
			if f == nil {
				d.Done = "nothing to flag: the invoice's attempt is not the one that succeeded"
				return nil
			}
			return audit(tx, now, a, reason, Audited{Action: ActionReconcileFlag, TargetType: TargetAttempt, TargetID: f.ID,
				TargetRef: f.IdempotencyKey, Before: before, After: reconcileState(h.Invoice, f)})
		}
		inv, at := h.Invoice, h.Attempt
		if at != nil && inv == nil {
			return fmt.Errorf("attempt %s has no invoice", at.IdempotencyKey)
		}
		if at == nil && inv == nil {
			p := lost[d.Invoice]
			// The invoice the billing pass would have created for this
			// period; the pass skips it later (the period has one).
			// events: invoice.created belongs here, emitted by CreateInvoices
			// as on the pass's path.
			if _, err := tx.CreateInvoices(now, []store.NewInvoice{{SubscriptionID: p.sub.ID, Reference: p.sub.Reference, PeriodIndex: p.index,
				PeriodStart: p.start, PeriodEnd: p.end, Amount: p.sub.Amount, Currency: p.sub.Currency}}); err != nil {
				return err
			}
			if inv, err = tx.InvoiceOfPeriod(p.sub.ID, p.start); err != nil {
				return err
			}
			if inv == nil || inv.PublicID != d.Invoice {
				return fmt.Errorf("the invoice of period %d of %s is not order %s", p.index, p.sub.Reference, d.Invoice)
			}
			if err := s.advancePast(tx, now, p); err != nil {
				return err
			}
		}
		if at == nil {
			n := attemptNoOf(pi)
			if n == 0 {
				return fmt.Errorf("payment %s names no attempt number", pi.ID)
			}
			if at, err = tx.InsertRecoveredAttempt(now, inv, store.RecoveredAttempt{AttemptNo: n, IdempotencyKey: ourKey(pi),
				GatewayCustomer: pi.Customer, GatewayPM: pi.PaymentMethod, OffSession: true}); err != nil {
				return err
			}
		}
		// events: invoice.paid is emitted on the webhook's path below.
		out, err := s.opts.Engine.ApplyEvent(tx, now, &gateway.Event{ID: "reconcile-" + pi.ID, Type: gateway.EventPaymentIntentSucceeded, Created: pi.Created, PaymentIntent: pi})
		if err != nil {
			return err
		}
		if out.Attempt != nil {
			settled = out.Attempt
		}
		warning = out.Warning
		d.Done = doneText(lostWhat(h), out)
		if out.NeedsReview {
			kind = DiffAmount
		}
		if out.Result != models.WebhookApplied && !out.NeedsReview {
			return errSettledMeanwhile
		}
		afterInv, err := tx.LockInvoice(inv.ID)
		if err != nil {
			return err
		}
		afterAt, err := tx.AttemptByIDTx(at.ID)
		if err != nil {
			return err
		}
		action := ActionReconcileRepair
		if out.NeedsReview {
			action = ActionReconcileFlag
		}
		return audit(tx, now, a, reason, Audited{Action: action, TargetType: TargetInvoice, TargetID: inv.ID, TargetRef: inv.PublicID,
			Before: before, After: reconcileState(afterInv, afterAt)})
	}
	var err error
	if dryRun {
		err = s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
			if err := run(tx); err != nil {
				return err
			}
			return errDryRun
		})
		if errors.Is(err, errDryRun) {
			err = nil
		}
	} else {
		err = s.opts.Store.InTx(ctx, run)
	}
	switch {
	case errors.Is(err, errSettledMeanwhile):
		rep.Agreeing++
		return
	case err != nil:
		d.Kind = kind
		if d.Kind == "" {
			d.Kind = DiffUnsettled
		}
		d.Done = "not repaired: " + err.Error()
		d.NeedsReview = true
		rep.Flagged++
		rep.Differences = append(rep.Differences, d)
		s.opts.Log.Error().Err(err).Str("payment", pi.ID).Msg("reconcile could not repair a payment")
		return
	case kind == "":
		rep.Agreeing++
		return
	}
	d.Kind = kind
	d.NeedsReview = flaggedKind(kind)
	switch {
	case dryRun:
		d.Done = "would " + dryRunText(kind)
	case !d.NeedsReview:
		d.Repaired = true
		rep.Repaired++
	}
	if d.NeedsReview {
		rep.Flagged++
	}
	rep.Differences = append(rep.Differences, d)
	if settled != nil {
		s.opts.Engine.LogWarning(settled, warning)
	}
	if !dryRun {
		s.opts.Log.Info().Str("payment", pi.ID).Str("kind", kind).Str("invoice", d.Invoice).Str("done", d.Done).Msg("reconcile")
	}
}

// errDryRun rolls back the transaction a dry run reads in.
var errDryRun = errors.New("dry run")

// advancePast moves the subscription past a recovered period when it is the
// next one the billing pass would invoice, so later periods are invoiced and
// charged as they come; a period further ahead leaves next_period alone (the
// pass invoices the periods before it, and skips this one: it has its
// invoice).
func (s *Service) advancePast(tx *store.Tx, now time.Time, p lostPeriod) error {
	sub, err := tx.SubscriptionTx(p.sub.ID)
	if err != nil || sub == nil || sub.NextPeriod != p.index {
		return err
	}
	rec, err := period.New(sub.AnchorAt, sub.Interval, sub.IntervalCount, sub.Timezone)
	if err != nil {
		return err
	}
	return tx.AdvanceSubscription(now, sub.ID, p.index, p.index+1, rec.PeriodStart(p.index+1))
}

func flaggedKind(kind string) bool {
	switch kind {
	case DiffUnplaced, DiffPaidNotSucceeded, DiffAmount, DiffUnderReview:
		return true
	}
	return false
}

func dryRunText(kind string) string {
	switch kind {
	case DiffUnsettled:
		return "settle the payment as its webhook would"
	case DiffLostAttempt:
		return "record the payment's attempt and settle it as its webhook would"
	case DiffLostInvoice:
		return "create the period's invoice, record the payment's attempt and settle it as its webhook would"
	case DiffPaidNotSucceeded:
		return "flag the invoice's attempt for review; the invoice stays paid"
	case DiffAmount:
		return "store it, not apply it: its attempt needs review"
	case DiffUnderReview:
		return "leave it: its attempt already needs review"
	}
	return "flag the payment for review"
}

// lostWhat is what a repair of h re-creates: the invoice (and its attempt),
// the attempt, or nothing.
func lostWhat(h Held) string {
	switch {
	case h.Attempt != nil:
		return ""
	case h.Invoice != nil:
		return DiffLostAttempt
	}
	return DiffLostInvoice
}

func doneText(lost string, out charge.EventOutcome) string {
	var b strings.Builder
	switch lost {
	case DiffLostInvoice:
		b.WriteString("invoice created for its period; attempt recorded; ")
	case DiffLostAttempt:
		b.WriteString("attempt recorded; ")
	}
	switch {
	case out.NeedsReview:
		b.WriteString("stored, not applied: needs_review (" + out.Detail + ")")
	case out.Warning != "":
		b.WriteString("settled; " + out.Warning)
	default:
		b.WriteString("settled: invoice paid")
	}
	return b.String()
}

// reconcileState is the audit row's before and after of a repair.
func reconcileState(inv *models.Invoice, at *models.ChargeAttempt) map[string]any {
	m := map[string]any{}
	if inv == nil {
		m["invoice"] = nil
	} else {
		m["invoice"] = inv.PublicID
		m["invoice_status"] = inv.Status
		m["paid_by"] = inv.PaymentIntentID
	}
	if at != nil {
		m["attempt"] = at.IdempotencyKey
		m["attempt_status"] = at.Status
		m["payment"] = at.PaymentIntentID
	}
	return m
}

// checkPaid compares the invoices paid since the reconcile's start with the
// gateway: one whose payment the gateway does not show as succeeded is
// flagged for review (its attempt becomes needs_review; the invoice stays
// paid). A payment the list did not include (made before since) is read by
// id.
func (s *Service) checkPaid(ctx context.Context, a Actor, reason string, dryRun bool, invs []models.Invoice, pis []gateway.PaymentIntent,
	succeeded map[string]*gateway.PaymentIntent, subs []models.Subscription, rep *ReconcileReport) error {
	read := map[string]*gateway.PaymentIntent{}
	for i := range pis {
		read[pis[i].ID] = &pis[i]
	}
	refs := map[int64]string{}
	for _, sub := range subs {
		refs[sub.ID] = sub.Reference
	}
	for _, inv := range invs {
		if inv.Status != models.InvoicePaid || inv.PaymentIntentID == "" || inv.PaidAt == nil || inv.PaidAt.Before(rep.Since) {
			continue
		}
		if succeeded[inv.PaymentIntentID] != nil {
			continue
		}
		pi := read[inv.PaymentIntentID]
		status := "not found"
		if pi == nil {
			if err := s.waitGateway(ctx); err != nil {
				return err
			}
			res := s.opts.Gateway.RetrievePaymentIntent(ctx, inv.PaymentIntentID)
			switch {
			case res.Intent != nil && res.Intent.Status != "":
				pi = res.Intent
			case res.Kind == gateway.Invalid && errors.Is(res.Err, gateway.ErrNotFound):
			default:
				return fmt.Errorf("reading payment %s of invoice %s: %w (the repairs above are committed; run it again)", inv.PaymentIntentID, inv.PublicID, res.Err)
			}
		}
		if pi != nil {
			if pi.Status == gateway.IntentSucceeded {
				rep.Agreeing++
				continue
			}
			status = string(pi.Status)
		}
		d := Difference{Kind: DiffPaidNotSucceeded, Invoice: inv.PublicID, Subscription: refs[inv.SubscriptionID], Payment: inv.PaymentIntentID,
			Amount: inv.Amount, Currency: inv.Currency, NeedsReview: true}
		rep.Flagged++
		if dryRun {
			d.Done = "would " + dryRunText(d.Kind)
			rep.Differences = append(rep.Differences, d)
			continue
		}
		msg := fmt.Sprintf("reconcile: invoice %s is paid by %s, which the gateway shows as %s; check the payment at the gateway", inv.PublicID, inv.PaymentIntentID, status)
		err := s.opts.Store.InTx(ctx, func(tx *store.Tx) error {
			f, err := tx.FlagPaidAttemptForReview(s.now(), inv.ID, inv.PaymentIntentID, msg)
			if err != nil {
				return err
			}
			if f == nil {
				d.Done = "its attempt is already flagged (or not found): billingd attempts list --status needs_review"
				return nil
			}
			d.Done = "attempt " + f.IdempotencyKey + " flagged needs_review; the invoice stays paid"
			return audit(tx, s.now(), a, reason, Audited{Action: ActionReconcileFlag, TargetType: TargetAttempt, TargetID: f.ID, TargetRef: f.IdempotencyKey,
				Before: map[string]any{"invoice": inv.PublicID, "invoice_status": inv.Status, "attempt_status": models.AttemptSucceeded, "payment": inv.PaymentIntentID},
				After:  map[string]any{"invoice": inv.PublicID, "invoice_status": inv.Status, "attempt_status": f.Status, "gateway_status": status}})
		})
		if err != nil {
			return err
		}
		rep.Differences = append(rep.Differences, d)
	}
	return nil
}
