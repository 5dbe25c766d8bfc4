package store

// The batched outcome write: the statements that record a group of charge
// outcomes at once, each row written exactly as its one-row statement
// (FinishAttempt, MarkInvoicePaid, RequestIntentCancels, ReactivateIfSettled,
// CaseForInvoice) writes it, with the row's own values joined in from a VALUES
// list (docs/performance.md, "The outcome write"). The recorder groups up to
// 128 outcomes in one transaction; one statement per step instead of one per
// outcome is what saves the round trips (PostgreSQL) and the statement
// overhead (SQLite) of a charge.

import (
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// Outcome is one attempt's result and the time it was learned: what
// FinishAttempt and the per-outcome steps after it are given one by one.
type Outcome struct {
	Now     time.Time
	Attempt *models.ChargeAttempt
	Result  AttemptResult
}

// valuesCTE builds `WITH name(cols) AS (VALUES (…), (…))` for rows of
// len(types) values each. PostgreSQL types a VALUES column from its
// parameters, which carry no type, so each placeholder is cast to its
// column's type there; SQLite gets bare placeholders, so that every value is
// bound and stored exactly as the one-row statement binds it (a cast would
// change a time's text into a number under SQLite's affinity rules).
func (tx *Tx) valuesCTE(name string, cols, types []string, rows int) string {
	var one strings.Builder
	one.WriteByte('(')
	for i, t := range types {
		if i > 0 {
			one.WriteString(", ")
		}
		if tx.dialect == Postgres {
			one.WriteString("CAST(? AS " + t + ")")
		} else {
			one.WriteByte('?')
		}
	}
	one.WriteByte(')')
	var b strings.Builder
	b.WriteString("WITH " + name + "(" + strings.Join(cols, ", ") + ") AS (VALUES ")
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one.String())
	}
	b.WriteString(")")
	return b.String()
}

// padRows pads args, rows of perRow values each, with rows of NULLs up to
// the next power of two, and returns them with the padded row count. The
// statements of a batch are kept prepared by their text (on SQLite in an LRU
// of 256, which the claim's and the invoicing's statements share), and a
// group commit carries anything from 2 to 128 outcomes: one text per power of
// two keeps each statement at eight texts instead of 127 (a statement of a
// few thousand placeholders costs about a millisecond to prepare). A NULL
// row matches nothing: every batched statement joins its rows by an id
// compared with =, which is never true for NULL.
func padRows(args []any, perRow, rows int) ([]any, int) {
	padded := 1
	for padded < rows {
		padded *= 2
	}
	for i := rows * perRow; i < padded*perRow; i++ {
		args = append(args, nil)
	}
	return args, padded
}

// returnedIDs runs q (ending in RETURNING id) and returns the set of ids.
func (tx *Tx) returnedIDs(q string, args ...any) (map[int64]bool, error) {
	rows, err := tx.query(q, args...)
	if err != nil {
		return nil, err
	}
	ids, err := scanIDs(rows)
	if err != nil {
		return nil, err
	}
	set := make(map[int64]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set, nil
}

// FinishAttempts is FinishAttempt for many attempts in one statement: each
// row gets its own result and time and is fenced on its own lease_version and
// status, as FinishAttempt fences it. moved[i] is false where FinishAttempt
// would have returned ErrLeaseLost (nothing was written for that attempt);
// each attempt that moved is updated in memory as FinishAttempt updates it.
// The attempts must be distinct (an UPDATE … FROM that matched one row twice
// would write it once, with either row's values).
func (tx *Tx) FinishAttempts(outs []Outcome) (moved []bool, err error) {
	if len(outs) == 0 {
		return nil, nil
	}
	seen := make(map[int64]bool, len(outs))
	args := make([]any, 0, len(outs)*16)
	for _, o := range outs {
		a, r := o.Attempt, o.Result
		if seen[a.ID] {
			return nil, fmt.Errorf("store: attempt %d twice in one batch of outcomes", a.ID)
		}
		seen[a.ID] = true
		var finished *time.Time
		if !r.Status.Unresolved() {
			finished = &o.Now
		}
		args = append(args, a.ID, a.LeaseVersion, string(r.Status), r.PaymentIntentID, r.DeclineCode, r.AdviceCode, r.HardDecline,
			r.ActionURL, truncate(r.ErrorMessage, 500), r.Tries, r.LastHTTPStatus, r.NextTryAt, r.NextReconcileAt, finished, o.Now)
	}
	args, rows := padRows(args, 15, len(outs))
	q := tx.valuesCTE("fa",
		[]string{"fa_id", "fa_version", "fa_status", "fa_pi", "fa_decline", "fa_advice", "fa_hard", "fa_action", "fa_error",
			"fa_tries", "fa_http", "fa_next_try", "fa_next_reconcile", "fa_finished", "fa_now"},
		[]string{"BIGINT", "BIGINT", "TEXT", "TEXT", "TEXT", "TEXT", "BOOLEAN", "TEXT", "TEXT",
			"INTEGER", "INTEGER", "TIMESTAMPTZ", "TIMESTAMPTZ", "TIMESTAMPTZ", "TIMESTAMPTZ"}, rows) +
		` UPDATE charge_attempts
		    SET status = fa.fa_status, payment_intent_id = CASE WHEN fa.fa_pi <> '' THEN fa.fa_pi ELSE charge_attempts.payment_intent_id END,
		        decline_code = fa.fa_decline, advice_code = fa.fa_advice, hard_decline = fa.fa_hard, action_url = fa.fa_action,
		        error_message = fa.fa_error, tries = charge_attempts.tries + fa.fa_tries,
		        last_http_status = CASE WHEN fa.fa_http <> 0 THEN fa.fa_http ELSE charge_attempts.last_http_status END,
		        next_try_at = fa.fa_next_try, next_reconcile_at = fa.fa_next_reconcile, finished_at = fa.fa_finished,
		        lease_owner = '', lease_until = NULL, lease_version = charge_attempts.lease_version + 1, updated_at = fa.fa_now
		   FROM fa
		  WHERE charge_attempts.id = fa.fa_id AND ` + sqlUnresolved.in("charge_attempts.status") + `
		    AND charge_attempts.lease_version = fa.fa_version
		RETURNING id`
	ids, err := tx.returnedIDs(q, args...)
	if err != nil {
		return nil, err
	}
	moved = make([]bool, len(outs))
	for i, o := range outs {
		if !ids[o.Attempt.ID] {
			continue
		}
		moved[i] = true
		a, r := o.Attempt, o.Result
		tx.attemptMoved(r.Status)
		a.Status = r.Status
		a.LeaseVersion++
		if r.PaymentIntentID != "" {
			a.PaymentIntentID = r.PaymentIntentID
		}
	}
	return moved, nil
}

// MarkInvoicesPaid is MarkInvoicePaid for the invoices of many succeeded
// outcomes in two statements: one UPDATE settles every invoice that is still
// payable with its own PaymentIntent and time, and one requests the cancels
// of the other intents of the invoices that moved (RequestIntentCancels, each
// invoice keeping the intent that paid it). paid[i] is MarkInvoicePaid's
// result for outs[i]; invoice.paid is emitted for each invoice that moved, in
// the order of outs. The invoices must be distinct.
func (tx *Tx) MarkInvoicesPaid(outs []Outcome) (paid []bool, err error) {
	if len(outs) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(outs)*3)
	for _, o := range outs {
		args = append(args, o.Attempt.InvoiceID, o.Result.PaymentIntentID, o.Now)
	}
	args, rows := padRows(args, 3, len(outs))
	q := tx.valuesCTE("mp", []string{"mp_id", "mp_pi", "mp_now"}, []string{"BIGINT", "TEXT", "TIMESTAMPTZ"}, rows) +
		` UPDATE invoices SET status = 'paid', paid_at = mp.mp_now, payment_intent_id = mp.mp_pi, next_attempt_at = NULL, updated_at = mp.mp_now
		   FROM mp
		  WHERE invoices.id = mp.mp_id AND ` + sqlPayableInvoice.in("invoices.status") + `
		RETURNING id`
	ids, err := tx.returnedIDs(q, args...)
	if err != nil {
		return nil, err
	}
	paid = make([]bool, len(outs))
	cancelArgs := make([]any, 0, len(ids)*3)
	for i, o := range outs {
		if !ids[o.Attempt.InvoiceID] {
			continue
		}
		paid[i] = true
		tx.emitIf(true, models.EventInvoicePaid, o.Attempt.InvoiceID)
		cancelArgs = append(cancelArgs, o.Attempt.InvoiceID, o.Result.PaymentIntentID, o.Now)
	}
	if len(cancelArgs) == 0 {
		return paid, nil
	}
	// RequestIntentCancels, row by row: the invoice's intents still waiting
	// for the customer, except the one that paid it.
	cancelArgs, rows = padRows(cancelArgs, 3, len(cancelArgs)/3)
	q = tx.valuesCTE("ic", []string{"ic_invoice", "ic_pi", "ic_now"}, []string{"BIGINT", "TEXT", "TIMESTAMPTZ"}, rows) +
		` UPDATE charge_attempts SET cancel_requested_at = ic.ic_now, cancel_reason = ?, updated_at = ic.ic_now
		   FROM ic
		  WHERE charge_attempts.invoice_id = ic.ic_invoice AND charge_attempts.status = 'requires_action'
		    AND charge_attempts.cancel_requested_at IS NULL AND charge_attempts.payment_intent_id <> ic.ic_pi`
	_, err = tx.exec(q, append(cancelArgs, models.CancelInvoiceSettled)...)
	return paid, err
}

// ReactivateSubscriptionsIfSettled is ReactivateIfSettled for the invoices of
// many outcomes in one statement: each invoice's subscription, if past_due
// and without another tried invoice still open, becomes active, stamped with
// its outcome's time. subscription.reactivated is emitted for each
// subscription that moved. The invoices' subscriptions must be distinct (a
// subscription matched twice would be stamped with either time).
func (tx *Tx) ReactivateSubscriptionsIfSettled(outs []Outcome) error {
	if len(outs) == 0 {
		return nil
	}
	args := make([]any, 0, len(outs)*2)
	for _, o := range outs {
		args = append(args, o.Attempt.InvoiceID, o.Now)
	}
	// The invoices' subscriptions are resolved in a second CTE, so that the
	// UPDATE's FROM has no id column of its own (RETURNING id, with events
	// on, names the subscription's).
	args, rows := padRows(args, 2, len(outs))
	q := tx.valuesCTE("rs", []string{"rs_invoice", "rs_now"}, []string{"BIGINT", "TIMESTAMPTZ"}, rows) +
		`, rsub AS (SELECT ri.subscription_id AS rsub_id, rs.rs_now AS rsub_now FROM rs JOIN invoices ri ON ri.id = rs.rs_invoice)
		 UPDATE subscriptions SET status = 'active', updated_at = rsub.rsub_now
		   FROM rsub
		  WHERE subscriptions.id = rsub.rsub_id AND subscriptions.status = 'past_due'
		    AND NOT EXISTS (SELECT 1 FROM invoices o WHERE o.subscription_id = subscriptions.id
		                       AND o.status = 'open' AND o.attempt_count > 0)`
	_, err := tx.execEmitting(models.EventSubscriptionReactivated, q, args...)
	return err
}

// CasesForInvoices is CaseForInvoice for many invoices in one read: the
// dunning case of each invoice that has one, by invoice id.
func (tx *Tx) CasesForInvoices(invoiceIDs []int64) (map[int64]*models.DunningCase, error) {
	if len(invoiceIDs) == 0 {
		return nil, nil
	}
	// Padded to a power of two with repeats of the first id (padRows: one
	// statement text per size).
	ids := append(make([]int64, 0, len(invoiceIDs)), invoiceIDs...)
	for padded := 1; ; padded *= 2 {
		if padded >= len(ids) {
			for len(ids) < padded {
				ids = append(ids, invoiceIDs[0])
			}
			break
		}
	}
	var cases []models.DunningCase
	if err := tx.db.Where("invoice_id IN ?", ids).Find(&cases).Error; err != nil {
		return nil, err
	}
	if len(cases) == 0 {
		return nil, nil
	}
	byInvoice := make(map[int64]*models.DunningCase, len(cases))
	for i := range cases {
		byInvoice[cases[i].InvoiceID] = &cases[i]
	}
	return byInvoice, nil
}
