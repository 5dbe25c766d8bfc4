package store

import (
	"strings"

	"gorm.io/gorm"

	"github.com/billingd/billingd/internal/models"
)

// The status lists the store's SQL filters on, built from the typed lists in
// models, so that each list has one definition. A filter is written as a chain
// of equalities, `(status = 'a' OR status = 'b')`, never as `status IN
// ('a','b')`: SQLite evaluates an IN list of three or more constants through an
// ephemeral b-tree built for each execution of the statement, and a partial
// index whose condition is such a list makes every write of a row build one per
// index — the result UPDATE of an attempt built eight, about 960 µs of a
// 2-core virtual machine's time where the same UPDATE under equality chains took
// 31 µs (docs/performance.md, "Status lists without IN"). SQLite's partial
// indexes carry the same chains (migration 00016), and SQLite uses a partial
// index only when the query contains the index's condition itself, so the text
// must stay what the migrations say: a test checks every partial index's
// condition against these sets. PostgreSQL's indexes keep their IN lists, which
// its planner proves from the chains.
var (
	// sqlUnresolved: attempts whose outcome is not known yet (the
	// charge_attempts_one_unresolved and charge_attempts_unresolved_age indexes).
	sqlUnresolved = newSQLSet(models.UnresolvedAttemptStatuses)
	// sqlOpen: attempts that could still take the customer's money — one open
	// customer payment per invoice (the charge_attempts_one_open index).
	sqlOpen = newSQLSet(models.OpenAttemptStatuses)
	// sqlAttention: attempts waiting for a human (the charge_attempts_attention index).
	sqlAttention = newSQLSet(models.AttentionAttemptStatuses)
	// sqlBillable: subscriptions the sweep invoices (the subscriptions_due index).
	sqlBillable = newSQLSet(models.BillableSubscriptionStatuses)
	// sqlReplayable: unresolved attempts a pass sends again under their key; a
	// processing attempt was accepted by the gateway and is left to the reconciler.
	sqlReplayable = newSQLSet([]models.AttemptStatus{models.AttemptPending, models.AttemptUnknown})
	// sqlPayableInvoice: invoices a payment can still settle (open, or written
	// off and then paid after all).
	sqlPayableInvoice = newSQLSet([]models.InvoiceStatus{models.InvoiceOpen, models.InvoiceUncollectible})
	// sqlCancelable: subscriptions dunning's final action cancel may end.
	sqlCancelable = newSQLSet([]models.SubscriptionStatus{models.SubscriptionActive, models.SubscriptionPastDue, models.SubscriptionUnpaid})
)

// sqlSet is a list of status values the store's SQL filters on. Its values are
// the models' constants, never input; quotes are doubled all the same.
type sqlSet []string

// newSQLSet makes the set of vs. An empty set would be a filter that matches
// nothing by accident, so it panics (at package initialisation).
func newSQLSet[T ~string](vs []T) sqlSet {
	if len(vs) == 0 {
		panic("store: empty SQL status list")
	}
	s := make(sqlSet, len(vs))
	for i, v := range vs {
		s[i] = "'" + strings.ReplaceAll(string(v), "'", "''") + "'"
	}
	return s
}

// in is the filter "col is one of the set": `(col = 'a' OR col = 'b')`, with
// single spaces, as the migrations write it.
func (s sqlSet) in(col string) string { return s.chain(col, " = ", " OR ") }

// notIn is the filter "col is none of the set": `(col <> 'a' AND col <> 'b')`.
func (s sqlSet) notIn(col string) string { return s.chain(col, " <> ", " AND ") }

// chain writes one comparison of col with each value, joined by join.
func (s sqlSet) chain(col, cmp, join string) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, v := range s {
		if i > 0 {
			b.WriteString(join)
		}
		b.WriteString(col)
		b.WriteString(cmp)
		b.WriteString(v)
	}
	b.WriteByte(')')
	return b.String()
}

// one runs q for at most one row of T: nil (and no error) when there is
// none, so callers tell "absent" from a failed query without comparing ids.
func one[T any](q *gorm.DB) (*T, error) {
	var rows []T
	if err := q.Limit(1).Find(&rows).Error; err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return &rows[0], nil
}

// oneRaw is one for a raw statement (a row lock's FOR UPDATE suffix, say).
func oneRaw[T any](q *gorm.DB) (*T, error) {
	var rows []T
	if err := q.Scan(&rows).Error; err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return &rows[0], nil
}
