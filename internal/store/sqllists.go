package store

import (
	"strings"

	"gorm.io/gorm"

	"github.com/billingd/billingd/internal/models"
)

// The status lists the store's SQL filters on, as SQL text built from the typed
// lists in models, so that each list has one definition. Several queries repeat
// a partial index's WHERE clause word for word (SQLite uses a partial index only
// when the query contains the index's condition itself), so the text must stay
// exactly what the migrations say: sqlList writes no spaces, and a test checks
// every `status IN (...)` of the migrations against these lists.
var (
	// sqlUnresolved: attempts whose outcome is not known yet (the
	// charge_attempts_one_unresolved and charge_attempts_unresolved_age indexes).
	sqlUnresolved = sqlList(models.UnresolvedAttemptStatuses)
	// sqlOpen: attempts that could still take the customer's money — one open
	// customer payment per invoice (the charge_attempts_one_open index).
	sqlOpen = sqlList(models.OpenAttemptStatuses)
	// sqlAttention: attempts waiting for a human (the charge_attempts_attention index).
	sqlAttention = sqlList(models.AttentionAttemptStatuses)
	// sqlBillable: subscriptions the sweep invoices (the subscriptions_due index).
	sqlBillable = sqlList(models.BillableSubscriptionStatuses)
	// sqlReplayable: unresolved attempts a pass sends again under their key; a
	// processing attempt was accepted by the gateway and is left to the reconciler.
	sqlReplayable = sqlList([]models.AttemptStatus{models.AttemptPending, models.AttemptUnknown})
	// sqlPayableInvoice: invoices a payment can still settle (open, or written
	// off and then paid after all).
	sqlPayableInvoice = sqlList([]models.InvoiceStatus{models.InvoiceOpen, models.InvoiceUncollectible})
	// sqlCancelable: subscriptions dunning's final action cancel may end.
	sqlCancelable = sqlList([]models.SubscriptionStatus{models.SubscriptionActive, models.SubscriptionPastDue, models.SubscriptionUnpaid})
)

// sqlList writes a status list as an SQL IN list, `('a','b')`, with no spaces so
// that it matches the partial indexes' conditions byte for byte. The values are
// the models' constants, never input; quotes are doubled all the same. An empty
// list would be invalid SQL, so it panics (at package initialisation).
func sqlList[T ~string](vs []T) string {
	if len(vs) == 0 {
		panic("store: empty SQL status list")
	}
	var b strings.Builder
	b.WriteByte('(')
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(string(v), "'", "''"))
		b.WriteByte('\'')
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
