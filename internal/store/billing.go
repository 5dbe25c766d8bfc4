package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"gorm.io/gorm"
)

// ErrLeaseLost means the attempt's lease was taken over (or its outcome already
// written) since this worker claimed it: the worker's result must be dropped.
var ErrLeaseLost = errors.New("store: lease lost")

// DueCursor is the keyset position of the due-subscription scan.
type DueCursor struct {
	NextBillingAt time.Time
	ID            int64
}

// dueSubscriptionsQuery is the keyset page of the sweep; the partial index
// subscriptions_due (next_billing_at, id) serves both the filter and the order, so a
// page costs the same at the start and at the end of a million due rows.
var dueSubscriptionsQuery = `SELECT * FROM subscriptions
	WHERE ` + sqlBillable.in("status") + ` AND next_billing_at <= ?
	  AND (next_billing_at, id) > (?, ?)
	ORDER BY next_billing_at, id LIMIT ?`

// The cursor is a row-value comparison so that both SQLite and PostgreSQL use it
// as the start of the index range: written as "a > ? OR (a = ? AND id > ?)" it
// was only a filter, and every page re-read all the rows before it.
//
// DueSubscriptions reads one page of billable subscriptions whose next period has
// started by now, after the cursor, in (next_billing_at, id) order. On PostgreSQL the
// rows are locked so that concurrent sweeps split the work instead of racing.
func (tx *Tx) DueSubscriptions(now time.Time, after DueCursor, limit int) ([]models.Subscription, error) {
	return tx.selectDueSubscriptions(now, after, limit, true)
}

// selectDueSubscriptions is the sweep's selection, shared by the sweep (which
// locks the rows it invoices) and the plan of a pass (which only reads).
func (tx *Tx) selectDueSubscriptions(now time.Time, after DueCursor, limit int, lock bool) ([]models.Subscription, error) {
	q := dueSubscriptionsQuery
	if lock {
		q += tx.dueLockSuffix()
	}
	var subs []models.Subscription
	err := tx.db.Raw(q, now, after.NextBillingAt, after.ID, limit).Scan(&subs).Error
	return subs, err
}

// dueLockSuffix locks the due page on PostgreSQL. FOR NO KEY UPDATE, not FOR
// UPDATE: the sweep changes no key of a subscription, and FOR UPDATE would also
// skip every subscription whose row a concurrent insert of an invoice or an
// attempt holds FOR KEY SHARE (its foreign-key check) — a charge in flight
// would make the sweep pass over its subscription.
func (tx *Tx) dueLockSuffix() string {
	if tx.dialect == Postgres {
		return " FOR NO KEY UPDATE SKIP LOCKED"
	}
	return ""
}

// StillDue returns which of the given subscriptions are still due at now,
// without locking them: the sweep asks about subscriptions it expected to meet
// again and did not (a row another transaction held, skipped by SKIP LOCKED).
func (s *Store) StillDue(ctx context.Context, now time.Time, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var out []int64
	err := s.db.WithContext(ctx).Raw(`SELECT id FROM subscriptions WHERE id IN ? AND `+sqlBillable.in("status")+` AND next_billing_at <= ?`,
		ids, now).Scan(&out).Error
	return out, err
}

// NewInvoice is one period to invoice.
type NewInvoice struct {
	SubscriptionID int64
	// Reference is the subscription's reference: with PeriodStart it derives
	// the invoice's order id (DerivedOrderID). Required.
	Reference   string
	PeriodIndex int
	PeriodStart time.Time
	PeriodEnd   time.Time
	Amount      int64
	Currency    string
}

// CreateInvoices inserts the invoices of a page of periods, each with the order
// id DerivedOrderID gives its (reference, period start). A period that already
// has an invoice is left alone (UNIQUE (subscription_id, period_start) and
// (subscription_id, period_index)), which makes re-running a sweep harmless. It
// returns how many were created.
//
// The insert's ON CONFLICT DO NOTHING names no target, because either period
// key may be the one a re-run meets (a billing time zone that changed moves a
// period's start, not its index). So a row it skips is checked: a period that
// has no invoice after all was skipped for its order id, which another
// period's invoice holds (two references whose 52 hash bits collide in the
// same millisecond). That invoice is inserted again with the next salted
// derivation, never dropped as "already invoiced".
func (tx *Tx) CreateInvoices(now time.Time, invs []NewInvoice) (int, error) {
	if len(invs) == 0 {
		return 0, nil
	}
	created := 0
	for start := 0; start < len(invs); start += invoiceInsertBatch {
		page := invs[start:min(start+invoiceInsertBatch, len(invs))]
		for _, n := range page {
			// The last door an amount passes before it is charged: a
			// subscription written before amounts were bounded is refused
			// here, not billed (the sweep skips such subscriptions first).
			if err := money.CheckAmount(n.Amount, n.Currency); err != nil {
				return created, fmt.Errorf("store: invoice of subscription %d: amount %w", n.SubscriptionID, err)
			}
			if n.Reference == "" {
				// Without it, every subscription's invoice of one instant
				// would derive the same order id.
				return created, fmt.Errorf("store: invoice of subscription %d: no reference to derive its order id from", n.SubscriptionID)
			}
		}
		n, err := tx.insertInvoices(now, page, 0)
		if err != nil {
			return created, err
		}
		created += n
		if n < len(page) {
			more, err := tx.insertCollidedInvoices(now, page)
			if err != nil {
				return created, err
			}
			created += more
		}
	}
	return created, nil
}

// insertInvoices is the multi-row INSERT of CreateInvoices, every order id
// derived with salt. With events off it is the plain statement (the sweep's
// hot path); with events on only the rows actually inserted come back (a
// period that had its invoice already is skipped by the conflict), and each
// gets its invoice.created.
func (tx *Tx) insertInvoices(now time.Time, page []NewInvoice, salt int) (int, error) {
	var q strings.Builder
	q.WriteString(`INSERT INTO invoices (public_id, subscription_id, period_index, period_start, period_end, amount,
		currency, status, next_attempt_at, created_at, updated_at) VALUES `)
	args := make([]any, 0, 11*len(page))
	for i, n := range page {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
		// An invoice is due to be charged from its period's start.
		args = append(args, derivedOrderID(n.Reference, n.PeriodStart, salt), n.SubscriptionID, n.PeriodIndex, n.PeriodStart,
			n.PeriodEnd, n.Amount, n.Currency, string(models.InvoiceOpen), n.PeriodStart, now, now)
	}
	q.WriteString(" ON CONFLICT DO NOTHING")
	n, err := tx.execEmitting(models.EventInvoiceCreated, q.String(), args...)
	return int(n), err
}

// maxOrderIDSalt bounds the salted derivations tried for one invoice. Each
// further collision is as unlikely as the first (about N²/2^53 for N invoices
// of one millisecond), so running out means something else is wrong.
const maxOrderIDSalt = 8

// insertCollidedInvoices finds the periods of page that the INSERT skipped
// although they have no invoice — their derived order id was taken — and
// inserts each with the next salted derivation. It returns how many it
// created.
func (tx *Tx) insertCollidedInvoices(now time.Time, page []NewInvoice) (int, error) {
	created := 0
	for _, n := range page {
		for salt := 1; ; salt++ {
			var invoiced int64
			if err := tx.db.Raw(`SELECT COUNT(*) FROM invoices WHERE subscription_id = ? AND (period_index = ? OR period_start = ?)`,
				n.SubscriptionID, n.PeriodIndex, n.PeriodStart).Scan(&invoiced).Error; err != nil {
				return created, err
			}
			if invoiced > 0 {
				break
			}
			if salt > maxOrderIDSalt {
				return created, fmt.Errorf("store: invoice of subscription %d (%s) for the period starting %s: order ids %s to %s are all taken",
					n.SubscriptionID, n.Reference, n.PeriodStart.UTC().Format(time.RFC3339), DerivedOrderID(n.Reference, n.PeriodStart),
					derivedOrderID(n.Reference, n.PeriodStart, maxOrderIDSalt))
			}
			k, err := tx.insertInvoices(now, []NewInvoice{n}, salt)
			if err != nil {
				return created, err
			}
			created += k
		}
	}
	return created, nil
}

// invoiceInsertBatch keeps one invoice INSERT well under both databases' limits
// on bound parameters (11 per invoice: 5,500, against SQLite's 32,766 and
// PostgreSQL's 65,535), and makes a page of the default size (500) one
// statement.
const invoiceInsertBatch = 500

// AdvanceSubscription records that periods before nextPeriod are invoiced. The
// guard on the old value makes a concurrent sweep's stale write a no-op.
func (tx *Tx) AdvanceSubscription(now time.Time, id int64, oldNext, newNext int, nextBillingAt time.Time) error {
	_, err := tx.exec(`UPDATE subscriptions SET next_period = ?, next_billing_at = ?, updated_at = ?
	                    WHERE id = ? AND next_period = ?`, newNext, nextBillingAt, now, id, oldNext)
	return err
}

// Advance is one subscription's AdvanceSubscription, for AdvanceSubscriptions:
// the periods before NewNext are invoiced, if next_period is still OldNext.
type Advance struct {
	ID            int64
	OldNext       int
	NewNext       int
	NextBillingAt time.Time
}

// advanceBatch bounds the subscriptions one UPDATE of AdvanceSubscriptions
// moves: 4 parameters each and one more, 4,001 in all, under SQLite's 32,766
// and PostgreSQL's 65,535 whatever schedule.page_size (up to 100,000) is.
const advanceBatch = 1000

// AdvanceSubscriptions is AdvanceSubscription for a whole page of the sweep,
// one UPDATE per advanceBatch subscriptions instead of one per subscription
// (a page of 500 sent 500 statements). Each row keeps AdvanceSubscription's
// fence exactly: it moves only while its next_period is still the OldNext the
// sweep read, and a row whose next_period moved meanwhile is left as it is,
// without an error, as AdvanceSubscription leaves it. It returns how many
// subscriptions moved. A subscription may appear once: the statement applies
// every row to the table as it was, so a second advance of the same row in one
// call would not see the first, as two calls of AdvanceSubscription would.
func (tx *Tx) AdvanceSubscriptions(now time.Time, advs []Advance) (int64, error) {
	seen := make(map[int64]bool, len(advs))
	for _, a := range advs {
		if seen[a.ID] {
			return 0, fmt.Errorf("store: subscription %d advanced twice in one page", a.ID)
		}
		seen[a.ID] = true
	}
	var moved int64
	for start := 0; start < len(advs); start += advanceBatch {
		page := advs[start:min(start+advanceBatch, len(advs))]
		var q strings.Builder
		q.WriteString(`WITH v (id, old, np, nb) AS (VALUES `)
		args := make([]any, 0, 4*len(page)+1)
		for i, a := range page {
			switch {
			case i > 0:
				q.WriteString(",(?,?,?,?)")
			case tx.dialect == Postgres:
				// The first row types the columns; the others follow it.
				q.WriteString("(CAST(? AS bigint),CAST(? AS integer),CAST(? AS integer),CAST(? AS timestamptz))")
			default:
				q.WriteString("(?,?,?,?)")
			}
			args = append(args, a.ID, a.OldNext, a.NewNext, a.NextBillingAt)
		}
		q.WriteString(`) UPDATE subscriptions SET next_period = v.np, next_billing_at = v.nb, updated_at = ?
		                 FROM v WHERE subscriptions.id = v.id AND subscriptions.next_period = v.old`)
		args = append(args, now)
		n, err := tx.exec(q.String(), args...)
		if err != nil {
			return moved, err
		}
		moved += n
	}
	return moved, nil
}

// publicIDEncoding is base32 with its alphabet in ASCII order, so that ids sort
// as their bytes do.
var publicIDEncoding = base32.NewEncoding(publicIDAlphabet).WithPadding(base32.NoPadding)

const publicIDAlphabet = "234567abcdefghijklmnopqrstuvwxyz"

// NewPublicID returns prefix_ + 20 base32 characters: the creation time in
// milliseconds (48 bits), then 52 random bits. Public ids become
// merchant_order_id and idempotency keys, so they must never repeat, even across
// databases that were reset: 52 random bits per millisecond make a repeat
// vanishingly unlikely. The time prefix makes new ids sort after old ones, so the
// unique indexes on invoices.public_id and charge_attempts.idempotency_key grow
// at their right edge instead of dirtying a random page per insert — a large
// part of the write cost of a billing pass.
func NewPublicID(prefix string) (string, error) {
	return newPublicIDAt(prefix, time.Now())
}

func newPublicIDAt(prefix string, now time.Time) (string, error) {
	var b [13]byte
	putMillis(b[:6], now.UnixMilli())
	if _, err := rand.Read(b[6:]); err != nil {
		return "", fmt.Errorf("store: random id: %w", err)
	}
	return prefix + "_" + publicIDEncoding.EncodeToString(b[:])[:20], nil
}

// orderIDDomain separates the hash of an invoice's order id from every other
// SHA-256 use; a change of the derivation gets a new domain, never a silent
// change of the ids of periods already charged.
const orderIDDomain = "billingd/invoice-order-id/v1"

// DerivedOrderID is the order id (invoices.public_id, sent as merchant_order_id
// or reference, and the stem of every attempt's idempotency key) of the invoice
// of the period of the subscription with this reference that starts at
// periodStart. It is a pure function of the two, so an invoice re-created for
// the same period — after the database was restored from a backup older than
// the charge, say — carries the same id and keys as the first one: the gateway
// replays the first result while it remembers the key, and past that window
// the charge engine finds the payment by this order id before charging again.
//
// The reference, not the row id, is used because it is the merchant's id of the
// subscription: it survives a restore or a re-import, where row ids may be
// handed out again to other subscriptions. The period start is the instant, to
// the millisecond (what the id's time prefix carries, and what both databases
// keep): a subscription's periods are at least a day apart, so it names the
// period whatever the time zone it was computed in.
//
// The shape is that of NewPublicID, "inv_" + 20 base32 characters: 48 bits of
// the period start in Unix milliseconds (ids sort by period and the unique
// indexes still grow at their right edge), then 52 bits of SHA-256 over a
// domain-separated, length-prefixed encoding of (reference, period start).
func DerivedOrderID(reference string, periodStart time.Time) string {
	return derivedOrderID(reference, periodStart, 0)
}

// derivedOrderID is DerivedOrderID with a salt: salt 0 is DerivedOrderID
// itself; CreateInvoices takes 1, 2, … for an invoice whose order id another
// period's invoice already holds. The salt, when not 0, is hashed after the
// period start, so no salted id can equal an unsalted one of other inputs.
func derivedOrderID(reference string, periodStart time.Time, salt int) string {
	ms := periodStart.UnixMilli()
	h := sha256.New()
	var n [8]byte
	h.Write([]byte(orderIDDomain))
	binary.BigEndian.PutUint64(n[:], uint64(len(reference)))
	h.Write(n[:])
	h.Write([]byte(reference))
	binary.BigEndian.PutUint64(n[:], uint64(ms))
	h.Write(n[:])
	if salt != 0 {
		binary.BigEndian.PutUint64(n[:], uint64(salt))
		h.Write(n[:])
	}
	sum := h.Sum(nil)

	var b [13]byte
	putMillis(b[:6], ms)
	copy(b[6:], sum[:7])
	return "inv_" + publicIDEncoding.EncodeToString(b[:])[:20]
}

// OrderIDTime is the instant in the time prefix of a public id: for an order
// id from DerivedOrderID, its period's start; for an older random one
// (NewPublicID), the moment its invoice was created. Either way no payment
// with that order id can have been requested before it, which is what the
// charge engine asks when it decides whether the gateway may have forgotten
// the keys of the id's attempts. ok is false for a string not of that shape.
func OrderIDTime(orderID string) (at time.Time, ok bool) {
	prefix, body, found := strings.Cut(orderID, "_")
	if !found || prefix == "" || len(body) != 20 {
		return time.Time{}, false
	}
	// 16 of the 20 characters decode to 10 whole bytes; the first 6 are the
	// time. The last 4 are only checked to be of the alphabet.
	b, err := publicIDEncoding.DecodeString(body[:16])
	if err != nil || strings.Trim(body[16:], publicIDAlphabet) != "" {
		return time.Time{}, false
	}
	var ms uint64
	for _, c := range b[:6] {
		ms = ms<<8 | uint64(c)
	}
	return time.UnixMilli(int64(ms)).UTC(), true
}

// putMillis writes the low 48 bits of ms big-endian into b[:6], the sortable
// time prefix of every public id.
func putMillis(b []byte, ms int64) {
	for i := 0; i < 6; i++ {
		b[i] = byte(uint64(ms) >> (40 - 8*i))
	}
}

// IdempotencyKey is the stable key of an attempt: the invoice's public id and the
// attempt number. A replay of the attempt sends the same key; a new attempt gets a
// new one.
func IdempotencyKey(invoicePublicID string, attemptNo int) string {
	return invoicePublicID + "-a" + strconv.Itoa(attemptNo)
}

// chargeTarget is what an attempt needs from the invoice's subscription.
type chargeTarget struct {
	SubscriptionID  int64
	Status          models.SubscriptionStatus
	Reference       string
	GatewayCustomer string
	GatewayPM       string
	// PreviousPaymentID is the card's series payment (Checkout.com).
	PreviousPaymentID string
	// CancelAt is an operator's cancel at period end (nil when none).
	CancelAt *time.Time
}

// collects reports whether the open invoices of a subscription in this state
// are still charged. A billable subscription's are; so are a paused one's
// (pausing stops new periods, not what is owed) and those of one canceled at
// period end (cancel_at set: the periods before it are owed). Any other
// subscription (unpaid, canceled now or by dunning) has its open invoices
// voided by the claim instead of charged.
func (t chargeTarget) collects() bool {
	switch {
	case t.Status.Billable(), t.Status == models.SubscriptionPaused:
		return true
	case t.Status == models.SubscriptionCanceled:
		return t.CancelAt != nil
	}
	return false
}

// claimNewQuery finds the invoices a claim starts attempts for: invoices_chargeable
// (next_attempt_at, id) serves the filter and the order; each candidate is then
// checked by probes of unique indexes:
//   - no attempt of it is open — unresolved, or its intent waiting for the
//     customer to authenticate (charge_attempts_one_open) — and none is a
//     waiting intent whose cancel billingd gave up on (needs_review with a
//     cancel requested: it may still be paid): one open customer payment per
//     invoice;
//   - no earlier period of its subscription is still open (UNIQUE
//     (subscription_id, period_index)): one subscription, one queue — a
//     subscription's invoices are charged in period order, each after the one
//     before it was paid (or written off), so a period in dunning holds the
//     later ones back and a catch-up stops at its first decline;
//   - its subscription's payment method is not dead (primary keys): a card the
//     gateway declined hard is never charged off-session again.
//
// The conditions are part of the query, before its LIMIT, so invoices that
// wait never take the places of chargeable ones. %[1]s is where SQLite is told
// to use the partial index, %[2]s where PostgreSQL is kept from turning the
// probes into joins (see chargeableSQL).
//
// Each row also carries what an attempt needs from the invoice's subscription,
// its customer and its card (chargeTarget), read by primary key in the same
// statement instead of by a second query over the claimed invoices' ids. The
// joins are outer joins, so an invoice whose subscription, customer or card
// row is missing still comes back (target_found false) and is voided, as it
// was when the second query found no target for it; the dead-card condition
// reads the joined card (pm.dead_at IS NULL holds for a missing card, as the
// NOT EXISTS probe it replaces did).
var claimNewQuery = `SELECT invoices.*, s.status AS target_status, s.reference AS target_reference, s.cancel_at AS target_cancel_at,
	       c.gateway_customer_id AS target_gateway_customer, pm.gateway_payment_method_id AS target_gateway_pm,
	       pm.previous_payment_id AS target_previous_payment_id,
	       (s.id IS NOT NULL AND c.id IS NOT NULL AND pm.id IS NOT NULL) AS target_found
	  FROM invoices%[1]s
	  LEFT JOIN subscriptions s ON s.id = invoices.subscription_id
	  LEFT JOIN customers c ON c.id = s.customer_id
	  LEFT JOIN payment_methods pm ON pm.id = s.payment_method_id
	 WHERE invoices.status = 'open' AND invoices.next_attempt_at IS NOT NULL AND invoices.next_attempt_at <= ?
	  AND NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.invoice_id = invoices.id
	                    AND ` + sqlBusyAttempt + `%[2]s)
	  AND NOT EXISTS (SELECT 1 FROM invoices prev WHERE prev.subscription_id = invoices.subscription_id
	                    AND prev.period_index < invoices.period_index AND prev.status = 'open'%[2]s)
	  AND pm.dead_at IS NULL
	ORDER BY invoices.next_attempt_at, invoices.id LIMIT ?`

// sqlBusyAttempt is the condition on charge_attempts ca of an attempt that
// keeps its invoice from being claimed: open (it could still take the
// customer's money), or a waiting intent whose cancel billingd gave up on.
var sqlBusyAttempt = `(` + sqlOpen.in("ca.status") + ` OR (ca.status = 'needs_review' AND ca.cancel_requested_at IS NOT NULL))`

// chargeableRow is a row of claimNewQuery: the invoice and its charge target.
type chargeableRow struct {
	models.Invoice
	TargetStatus            models.SubscriptionStatus `gorm:"column:target_status"`
	TargetReference         string                    `gorm:"column:target_reference"`
	TargetCancelAt          *time.Time                `gorm:"column:target_cancel_at"`
	TargetGatewayCustomer   string                    `gorm:"column:target_gateway_customer"`
	TargetGatewayPM         string                    `gorm:"column:target_gateway_pm"`
	TargetPreviousPaymentID string                    `gorm:"column:target_previous_payment_id"`
	TargetFound             bool                      `gorm:"column:target_found"`
}

// target is what chargeTargets returns for the row's subscription; ok is false
// where it would have found none.
func (r *chargeableRow) target() (t chargeTarget, ok bool) {
	if !r.TargetFound {
		return chargeTarget{}, false
	}
	return chargeTarget{SubscriptionID: r.SubscriptionID, Status: r.TargetStatus, Reference: r.TargetReference,
		GatewayCustomer: r.TargetGatewayCustomer, GatewayPM: r.TargetGatewayPM, PreviousPaymentID: r.TargetPreviousPaymentID,
		CancelAt: r.TargetCancelAt}, true
}

// claimNewSQL is claimNewQuery for the transaction's dialect, as the claim
// sends it.
func (tx *Tx) claimNewSQL() string {
	return tx.chargeableSQL(true)
}

// chargeableSQL is claimNewQuery for the transaction's dialect, locking its rows
// when lock is set. The invoices it reads are the ones the same pass just
// created, so neither planner can trust table statistics for them:
//   - SQLite has none (billingd never runs ANALYZE) and preferred invoices_status
//     (status = 'open'), then sorted every open invoice for each claim — a full
//     pass over the day's invoices per 64 charges. INDEXED BY pins the partial
//     index (and fails loudly if it is ever missing).
//   - PostgreSQL's statistics date from before the day's invoices (autovacuum
//     analyzes a minute or more later): it estimated about 50 chargeable rows
//     where a pass had 25,000, flattened the probes into (hash) anti joins over
//     every open invoice and every attempt, and sorted the result — 33–240 ms and
//     up to 47,000 buffers per claim. Each probe ends in OFFSET 0 (see
//     probeFence), which keeps it a per-row subplan of index lookups, and the
//     transaction tells the planner not to sort (claimNewPlanSetting): it
//     walks invoices_chargeable in order and stops at the LIMIT, whatever its
//     statistics say (about 400 buffers for 32 invoices;
//     TestClaimNewPlanWithoutStatistics).
func (tx *Tx) chargeableSQL(lock bool) string {
	hint := ""
	if tx.dialect == SQLite {
		hint = " INDEXED BY invoices_chargeable"
	}
	q := fmt.Sprintf(claimNewQuery, hint, tx.probeFence())
	if lock && tx.dialect == Postgres {
		// Only the invoices are locked, as before the targets were joined:
		// the subscription, customer and card rows are read, not claimed.
		q += " FOR UPDATE OF invoices SKIP LOCKED"
	}
	return q
}

// claimNewPlanSetting is sent before the new-attempt claim's selection on
// PostgreSQL. Fencing the probes leaves the planner one choice that still
// follows its statistics: walk invoices_chargeable in claim order and stop at
// the LIMIT, or read every chargeable invoice through a bitmap and sort them.
// When the statistics (or a generic plan's default selectivity) put only a few
// rows in the index, the sort looks as cheap, and on a new day's invoices it
// reads all of them for each claim. No plan of this query needs a sort — the
// index gives the order — so the claim's transaction turns sorting off; SET
// LOCAL ends with the transaction, which a transaction-pooling PgBouncer keeps
// on one server connection. The claim's other statements (the updates with
// their probe for newly opened attempts, and the insert) sort nothing.
const claimNewPlanSetting = "SET LOCAL enable_sort = off"

// selectChargeable is the new-attempt claim's selection: the invoices whose
// next attempt may start now, in claim order. The claim locks them; the plan of
// a pass only reads them.
func (tx *Tx) selectChargeable(now time.Time, limit int, lock bool) ([]chargeableRow, error) {
	if tx.dialect == Postgres {
		if err := tx.db.Exec(claimNewPlanSetting).Error; err != nil {
			return nil, err
		}
	}
	var rows []chargeableRow
	err := tx.db.Raw(tx.chargeableSQL(lock), now, limit).Scan(&rows).Error
	return rows, err
}

// chargeTargets loads what attempts on invs need from their subscriptions,
// keyed by subscription id.
func (tx *Tx) chargeTargets(invs []models.Invoice) (map[int64]chargeTarget, error) {
	subIDs := make([]int64, 0, len(invs))
	for _, inv := range invs {
		subIDs = append(subIDs, inv.SubscriptionID)
	}
	var targets []chargeTarget
	if err := tx.db.Raw(`SELECT s.id AS subscription_id, s.status, s.reference, c.gateway_customer_id AS gateway_customer, pm.gateway_payment_method_id AS gateway_pm,
	                            pm.previous_payment_id, s.cancel_at
	                       FROM subscriptions s
	                       JOIN customers c ON c.id = s.customer_id
	                       JOIN payment_methods pm ON pm.id = s.payment_method_id
	                      WHERE s.id IN ?`, subIDs).Scan(&targets).Error; err != nil {
		return nil, err
	}
	bySub := make(map[int64]chargeTarget, len(targets))
	for _, t := range targets {
		bySub[t.SubscriptionID] = t
	}
	return bySub, nil
}

// dropNewlyOpened removes from a claim's locked invoices (by id) those that got
// an open attempt after the claim's statement took its snapshot. On PostgreSQL
// (READ COMMITTED) a pay-link press can commit an attempt between that
// snapshot and the row lock: the lock then waits for the press and re-checks
// only the invoice's own columns, not the NOT EXISTS on charge_attempts, so the
// invoice comes back as chargeable and the insert would trip
// charge_attempts_one_open, failing the whole batch. Every path that starts an
// attempt locks the invoice row first, so a fresh statement run while the
// claim holds the locks sees every attempt that will ever race it. SQLite's
// single writer cannot interleave and needs no second look. The invoices the
// claim charges get this look inside their UPDATE (markClaimed); this one is
// for those it voids.
func (tx *Tx) dropNewlyOpened(ids []int64) ([]int64, error) {
	if tx.dialect != Postgres || len(ids) == 0 {
		return ids, nil
	}
	var busy []int64
	if err := tx.db.Raw(`SELECT DISTINCT ca.invoice_id FROM charge_attempts ca WHERE ca.invoice_id IN ? AND `+sqlBusyAttempt, ids).Scan(&busy).Error; err != nil {
		return nil, err
	}
	if len(busy) == 0 {
		return ids, nil
	}
	skip := make(map[int64]bool, len(busy))
	for _, id := range busy {
		skip[id] = true
	}
	kept := ids[:0]
	for _, id := range ids {
		if !skip[id] {
			kept = append(kept, id)
		}
	}
	return kept, nil
}

// markClaimed counts the new attempt on each invoice the claim charges and
// takes it out of invoices_chargeable, returning the ids it marked. On
// PostgreSQL the same statement is dropNewlyOpened's second look: it marks
// only invoices with no busy attempt, in a snapshot taken while the claim holds
// their locks, and the claim inserts attempts for the ids it returns — one
// statement where the look and the update were two. On SQLite it marks them
// all.
func (tx *Tx) markClaimed(now time.Time, ids []int64) ([]int64, error) {
	const q = `UPDATE invoices SET attempt_count = attempt_count + 1, next_attempt_at = NULL, updated_at = ? WHERE id IN ?`
	if tx.dialect != Postgres {
		return ids, tx.db.Exec(q, now, ids).Error
	}
	var kept []int64
	err := tx.db.Raw(q+` AND NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.invoice_id = invoices.id AND `+sqlBusyAttempt+tx.probeFence()+`)
	                    RETURNING id`, now, ids).Scan(&kept).Error
	return kept, err
}

// ClaimNewAttempts starts attempts for open invoices whose next_attempt_at has come:
// in one short transaction it commits, for each, a pending attempt with its frozen
// request, its idempotency key and a lease for owner. Only then may the caller
// send anything. Invoices of subscriptions that can no longer be billed are voided.
func (s *Store) ClaimNewAttempts(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]models.ChargeAttempt, error) {
	var claimed []models.ChargeAttempt
	start := time.Now()
	err := s.InTx(ctx, func(tx *Tx) error {
		// An invoice whose earlier attempt is still unresolved (an on-session
		// payment through a pay link, say) waits: its scheduled attempt runs once
		// that outcome is known, and the claim never trips the one-unresolved
		// index (which would fail the whole batch).
		rows, err := tx.selectChargeable(now, limit, true)
		if err != nil || len(rows) == 0 {
			return err
		}
		var chargeIDs, voidIDs []int64
		for i := range rows {
			if t, ok := rows[i].target(); !ok || !t.collects() {
				voidIDs = append(voidIDs, rows[i].ID)
			} else {
				chargeIDs = append(chargeIDs, rows[i].ID)
			}
		}
		if voidIDs, err = tx.dropNewlyOpened(voidIDs); err != nil {
			return err
		}
		if len(voidIDs) > 0 {
			// An invoice of a subscription that no longer collects (canceled
			// now, unpaid) is voided: not owed, so it is invoice.voided.
			if _, err := tx.execEmittingIn(models.EventInvoiceVoided, `UPDATE invoices SET status = 'void', next_attempt_at = NULL, updated_at = ? WHERE id IN ? AND status = 'open'`, now, voidIDs); err != nil {
				return err
			}
			if err := tx.RequestIntentCancels(now, voidIDs, ""); err != nil {
				return err
			}
		}
		if len(chargeIDs) == 0 {
			return nil
		}
		kept, err := tx.markClaimed(now, chargeIDs)
		if err != nil {
			return err
		}
		charge := make(map[int64]bool, len(kept))
		for _, id := range kept {
			charge[id] = true
		}
		claimed = make([]models.ChargeAttempt, 0, len(kept))
		until := leaseUntil
		deadline := localDeadline(start, now, leaseUntil)
		for i := range rows {
			inv := &rows[i]
			if !charge[inv.ID] {
				continue
			}
			claimed = append(claimed, models.ChargeAttempt{
				InvoiceID:         inv.ID,
				SubscriptionID:    inv.SubscriptionID,
				AttemptNo:         inv.AttemptCount + 1,
				IdempotencyKey:    IdempotencyKey(inv.PublicID, inv.AttemptCount+1),
				MerchantOrderID:   inv.PublicID,
				Amount:            inv.Amount,
				Currency:          inv.Currency,
				GatewayCustomer:   inv.TargetGatewayCustomer,
				GatewayPM:         inv.TargetGatewayPM,
				PreviousPaymentID: inv.TargetPreviousPaymentID,
				OffSession:        true,
				Status:            models.AttemptPending,
				LeaseOwner:        owner,
				LeaseUntil:        &until,
				LeaseVersion:      1,
				CreatedAt:         now,
				UpdatedAt:         now,
				LeaseDeadline:     deadline,
			})
		}
		if len(claimed) == 0 {
			return nil
		}
		return tx.insertAttempts(claimed)
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim new attempts: %w", err)
	}
	return claimed, nil
}

// claimReplayQuery finds the unresolved attempts a pass replays; the partial index
// charge_attempts_unresolved_age (created_at) holds only unresolved attempts, so the
// query reads the few of them among millions of settled ones. A replay is the
// same request under the same key — the completion of an attempt already started,
// which the gateway answers from its first result — so it is sent even if the card
// was called dead meanwhile (by another subscription's charge, say). Its first condition
// repeats that index's WHERE clause word for word: SQLite uses a partial index only
// when the query contains the index's condition itself.
var claimReplayQuery = `SELECT * FROM charge_attempts%s
	WHERE ` + sqlUnresolved.in("status") + ` AND ` + sqlReplayable.in("status") + ` AND off_session
	  AND (lease_until IS NULL OR lease_until <= ?)
	  AND (next_try_at IS NULL OR next_try_at <= ?)
	  AND created_at >= ?
	ORDER BY id LIMIT ?`

// insertAttempts writes new attempts in one multi-row INSERT and sets their ids.
// A claim inserts a whole batch at once; this is the hot path of every charge, so
// the statement is built here instead of by GORM's reflection.
func (tx *Tx) insertAttempts(as []models.ChargeAttempt) error {
	const cols = `INSERT INTO charge_attempts (invoice_id, subscription_id, attempt_no, idempotency_key, merchant_order_id,
		amount, currency, gateway_customer_id, gateway_payment_method_id, previous_payment_id, off_session, status,
		lease_owner, lease_until, lease_version, created_at, updated_at) VALUES `
	var q strings.Builder
	q.WriteString(cols)
	args := make([]any, 0, 17*len(as))
	for i := range as {
		a := &as[i]
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
		args = append(args, a.InvoiceID, a.SubscriptionID, a.AttemptNo, a.IdempotencyKey, a.MerchantOrderID,
			a.Amount, a.Currency, a.GatewayCustomer, a.GatewayPM, a.PreviousPaymentID, a.OffSession, string(a.Status),
			a.LeaseOwner, a.LeaseUntil, a.LeaseVersion, a.CreatedAt, a.UpdatedAt)
	}
	// Each row is named by (invoice_id, attempt_no), unique in the table:
	// two integers to scan and hash instead of the idempotency key's text.
	q.WriteString(" RETURNING id, invoice_id, attempt_no")
	rows, err := tx.query(q.String(), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	type attemptOf struct {
		invoice int64
		no      int
	}
	ids := make(map[attemptOf]int64, len(as))
	for rows.Next() {
		var id int64
		var k attemptOf
		if err := rows.Scan(&id, &k.invoice, &k.no); err != nil {
			return err
		}
		ids[k] = id
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range as {
		id, ok := ids[attemptOf{as[i].InvoiceID, as[i].AttemptNo}]
		if !ok {
			return fmt.Errorf("store: attempt %s was not inserted", as[i].IdempotencyKey)
		}
		as[i].ID = id
	}
	return nil
}

// ClaimReplayAttempts leases pending and unknown attempts whose lease has expired
// (at now) and whose next_try_at is at or before dueBy, so they are sent again
// with their own key. A billing pass gives its own start as dueBy: an attempt
// that turned unknown during the pass waits for the next pass instead of being
// replayed again and again while the gateway stays down, which would keep the
// pass from ever ending.
// Attempts created before notBefore are left alone: the gateway may have forgotten
// their key, so replaying could charge twice; the reconciler resolves them instead.
// On-session attempts are never replayed: their return URL (which carries the
// pay-link token) is not stored, so a replay would not be the same request.
func (s *Store) ClaimReplayAttempts(ctx context.Context, owner string, now, dueBy, leaseUntil, notBefore time.Time, limit int) ([]models.ChargeAttempt, error) {
	var claimed []models.ChargeAttempt
	start := time.Now()
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		if claimed, err = tx.selectReplays(now, dueBy, notBefore, limit, true); err != nil || len(claimed) == 0 {
			return err
		}
		ids := make([]int64, len(claimed))
		for i := range claimed {
			ids[i] = claimed[i].ID
			claimed[i].TakeLease(owner, leaseUntil)
			claimed[i].LeaseDeadline = localDeadline(start, now, leaseUntil)
		}
		return tx.db.Exec(`UPDATE charge_attempts SET lease_owner = ?, lease_until = ?, lease_version = lease_version + 1, updated_at = ?
		                    WHERE id IN ?`, owner, leaseUntil, now, ids).Error
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim replays: %w", err)
	}
	return claimed, nil
}

// ReleaseAllLeases clears every attempt, email, refund and event lease. Only
// safe when this process is the sole worker on the database (SQLite with the
// instance lock): then each lease was held by a process that has died, and its
// work can be replayed at once instead of waiting for the lease to expire.
func (s *Store) ReleaseAllLeases(ctx context.Context, now time.Time) (int64, error) {
	if !s.Exclusive() {
		return 0, errors.New("store: releasing all leases needs the exclusive instance lock")
	}
	var released int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		released, err = tx.exec(`UPDATE charge_attempts SET lease_owner = '', lease_until = NULL, lease_version = lease_version + 1, updated_at = ?
		                          WHERE lease_until IS NOT NULL AND `+sqlUnresolved.in("status"), now)
		if err != nil {
			return err
		}
		// Emails a dead process was sending are sent again (same Message-ID).
		_, err = tx.exec(`UPDATE emails SET lease_owner = '', lease_until = NULL, lease_version = lease_version + 1, updated_at = ?
		                   WHERE lease_until IS NOT NULL AND status = 'pending'`, now)
		if err != nil {
			return err
		}
		// Refunds a dead process was sending are replayed with their own keys.
		_, err = tx.exec(`UPDATE refunds SET lease_owner = '', lease_until = NULL, lease_version = lease_version + 1, updated_at = ?
		                   WHERE lease_until IS NOT NULL AND `+sqlOpenRefund.in("status"), now)
		if err != nil {
			return err
		}
		// Events a dead process was posting are posted again (same id and
		// body: delivery is at-least-once).
		_, err = tx.exec(`UPDATE events SET lease_owner = '', lease_until = NULL, lease_version = lease_version + 1, updated_at = ?
		                   WHERE lease_until IS NOT NULL AND status = 'pending'`, now)
		return err
	})
	return released, err
}

// AttemptResult is what one gateway exchange established about an attempt.
type AttemptResult struct {
	Status          models.AttemptStatus
	PaymentIntentID string
	DeclineCode     string
	AdviceCode      string
	HardDecline     bool
	ActionURL       string
	ErrorMessage    string
	Tries           int // HTTP requests sent in this exchange (added to the total)
	LastHTTPStatus  int
	NextTryAt       *time.Time // for unknown: when the attempt may be replayed
	// NextReconcileAt is when the reconciler should look again at an attempt
	// that is still unresolved (processing) after this result.
	NextReconcileAt *time.Time
}

// FinishAttempt writes a result onto an attempt, fenced by the lease version the
// caller claimed it with: if the lease was taken over, or the attempt's outcome was
// already written (by a webhook, say), nothing changes and ErrLeaseLost is
// returned. Releases the lease.
func (tx *Tx) FinishAttempt(now time.Time, a *models.ChargeAttempt, r AttemptResult) error {
	version := a.LeaseVersion
	moved, err := tx.writeAttemptResult(now, a.ID, &version, r)
	if err != nil {
		return err
	}
	if !moved {
		return ErrLeaseLost
	}
	a.Status = r.Status
	a.LeaseVersion++
	if r.PaymentIntentID != "" {
		a.PaymentIntentID = r.PaymentIntentID
	}
	return nil
}

// SettleAttempt writes an authoritative outcome learned outside the attempt's own
// request (retrieving the PaymentIntent, later a webhook). It ignores leases but
// only moves an unresolved attempt forward, and bumps the lease version so a worker
// still holding the old lease cannot overwrite it. Returns false if the attempt was
// already resolved.
func (tx *Tx) SettleAttempt(now time.Time, attemptID int64, r AttemptResult) (bool, error) {
	return tx.writeAttemptResult(now, attemptID, nil, r)
}

// SettleSucceeded records that the gateway took the money for an attempt, from
// whatever state the attempt was in (an off-session requires_action that the
// customer then authenticated, an unknown one whose answer was lost, even a
// decline that was later confirmed on-session): money moving is the one fact that
// always wins. Returns false if the attempt was already succeeded — or if this
// very payment's capture was declined: an approval of it that arrives late
// (webhooks come in any order) did not move money after all, and a capture
// decline is final for its payment.
func (tx *Tx) SettleSucceeded(now time.Time, attemptID int64, r AttemptResult) (bool, error) {
	r.Status = models.AttemptSucceeded
	res := tx.db.Exec(`UPDATE charge_attempts
	      SET status = 'succeeded', payment_intent_id = CASE WHEN ? <> '' THEN ? ELSE payment_intent_id END,
	          decline_code = '', advice_code = '', hard_decline = FALSE, action_url = '', error_message = '',
	          next_try_at = NULL, next_reconcile_at = NULL, finished_at = ?, lease_owner = '', lease_until = NULL,
	          lease_version = lease_version + 1, updated_at = ?
	    WHERE id = ? AND status <> 'succeeded'
	      AND NOT (decline_code = ? AND payment_intent_id = ? AND payment_intent_id <> '')`,
		r.PaymentIntentID, r.PaymentIntentID, now, now, attemptID, DeclineCaptureDeclined, r.PaymentIntentID)
	if res.Error == nil && res.RowsAffected == 1 {
		tx.attemptMoved(models.AttemptSucceeded)
	}
	return res.RowsAffected == 1, res.Error
}

// writeAttemptResult is the one UPDATE behind both: it only touches an unresolved
// attempt (forward only), and when leaseVersion is given, only under that lease.
func (tx *Tx) writeAttemptResult(now time.Time, id int64, leaseVersion *int64, r AttemptResult) (bool, error) {
	var finished *time.Time
	if !r.Status.Unresolved() {
		finished = &now
	}
	q := `UPDATE charge_attempts
	      SET status = ?, payment_intent_id = CASE WHEN ? <> '' THEN ? ELSE payment_intent_id END,
	          decline_code = ?, advice_code = ?, hard_decline = ?, action_url = ?, error_message = ?,
	          tries = tries + ?, last_http_status = CASE WHEN ? <> 0 THEN ? ELSE last_http_status END,
	          next_try_at = ?, next_reconcile_at = ?, finished_at = ?, lease_owner = '', lease_until = NULL,
	          lease_version = lease_version + 1, updated_at = ?
	    WHERE id = ?`
	args := []any{r.Status, r.PaymentIntentID, r.PaymentIntentID, r.DeclineCode, r.AdviceCode, r.HardDecline, r.ActionURL,
		truncate(r.ErrorMessage, 500), r.Tries, r.LastHTTPStatus, r.LastHTTPStatus, r.NextTryAt, r.NextReconcileAt, finished, now, id}
	if leaseVersion != nil {
		q += ` AND ` + sqlUnresolved.in("status") + ` AND lease_version = ?`
		args = append(args, *leaseVersion)
	} else if r.Status != models.AttemptRequiresAction {
		// An authoritative outcome (webhook, a read of the intent) also moves
		// an intent that waited for the customer: a failed or expired
		// challenge, a cancel. Waiting again changes nothing.
		q += ` AND ` + sqlOpen.in("status")
	} else {
		q += ` AND ` + sqlUnresolved.in("status")
	}
	n, err := tx.exec(q, args...)
	if err == nil && n == 1 {
		tx.attemptMoved(r.Status)
	}
	return n == 1, err
}

// MarkInvoicePaid settles an open (or written-off but then paid) invoice with the
// PaymentIntent that paid it. Returns false when it was not open or
// uncollectible (already paid, or void).
func (tx *Tx) MarkInvoicePaid(now time.Time, invoiceID int64, paymentIntentID string) (bool, error) {
	n, err := tx.exec(`UPDATE invoices SET status = 'paid', paid_at = ?, payment_intent_id = ?, next_attempt_at = NULL, updated_at = ?
	                    WHERE id = ? AND `+sqlPayableInvoice.in("status"), now, paymentIntentID, now, invoiceID)
	if err != nil || n != 1 {
		return n == 1, err
	}
	tx.emitIf(true, models.EventInvoicePaid, invoiceID)
	// Every other intent of the invoice still waiting for the customer is
	// canceled at the gateway: the wish is recorded here, in the paying
	// transaction; the intents job sends the cancels after the commit.
	return true, tx.RequestIntentCancels(now, []int64{invoiceID}, paymentIntentID)
}

// MarkSubscriptionPastDue moves an active subscription to past_due because one of
// its invoices could not be collected.
func (tx *Tx) MarkSubscriptionPastDue(now time.Time, invoiceID int64) error {
	_, err := tx.execEmitting(models.EventSubscriptionPastDue, `UPDATE subscriptions SET status = 'past_due', updated_at = ?
	                    WHERE status = 'active' AND id = (SELECT subscription_id FROM invoices WHERE id = ?)`, now, invoiceID)
	return err
}

// ReactivateIfSettled moves a past_due subscription back to active once none of
// its invoices that were tried is still open.
func (tx *Tx) ReactivateIfSettled(now time.Time, invoiceID int64) error {
	_, err := tx.execEmitting(models.EventSubscriptionReactivated, `UPDATE subscriptions SET status = 'active', updated_at = ?
	                    WHERE status = 'past_due' AND id = (SELECT subscription_id FROM invoices WHERE id = ?)
	                      AND NOT EXISTS (SELECT 1 FROM invoices o WHERE o.subscription_id = subscriptions.id
	                                         AND o.status = 'open' AND o.attempt_count > 0)`, now, invoiceID)
	return err
}

// AttemptByID loads one attempt.
func (s *Store) AttemptByID(ctx context.Context, id int64) (*models.ChargeAttempt, error) {
	var a models.ChargeAttempt
	if err := s.db.WithContext(ctx).First(&a, id).Error; err != nil {
		return nil, err
	}
	return &a, nil
}

// AttemptsByStatus lists attempts in the given states, oldest first.
func (s *Store) AttemptsByStatus(ctx context.Context, limit int, statuses ...models.AttemptStatus) ([]models.ChargeAttempt, error) {
	var out []models.ChargeAttempt
	err := s.db.WithContext(ctx).Where("status IN ?", statuses).Order("id").Limit(limit).Find(&out).Error
	return out, err
}

// StartRun records the start of a billing pass.
func (s *Store) StartRun(ctx context.Context, trigger, owner string, now time.Time) (*models.BillingRun, error) {
	run := &models.BillingRun{Trigger: trigger, Owner: owner, Status: models.RunRunning, StartedAt: now, CreatedAt: now, UpdatedAt: now}
	if err := s.InTx(ctx, func(tx *Tx) error { return tx.db.Create(run).Error }); err != nil {
		return nil, fmt.Errorf("store: start run: %w", err)
	}
	return run, nil
}

// FinishRun stores a billing pass's counts and duration.
func (s *Store) FinishRun(ctx context.Context, run *models.BillingRun, now time.Time) error {
	run.FinishedAt = &now
	run.DurationMS = now.Sub(run.StartedAt).Milliseconds()
	run.UpdatedAt = now
	run.Error = truncate(run.Error, 500)
	return s.InTx(ctx, func(tx *Tx) error { return tx.db.Save(run).Error })
}

// MarkRunInvoiced records that the pass finished invoicing (run.InvoicedAt):
// its peers on other instances need not wait for more of its invoices.
func (s *Store) MarkRunInvoiced(ctx context.Context, run *models.BillingRun, now time.Time) error {
	run.InvoicedAt = &now
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE billing_runs SET invoiced_at = ?, updated_at = ? WHERE id = ?`, now, now, run.ID)
		return err
	})
}

// PeerStillInvoicing reports whether another live instance's billing pass is
// still invoicing (PostgreSQL): its pages become chargeable as they commit,
// so a pass of owner that found nothing to claim goes on claiming instead of
// ending and leaving its share of the gateway's limits unused. A pass of a
// dead instance (its instances row expired) does not count. On SQLite, where
// one instance runs, there is no peer.
func (s *Store) PeerStillInvoicing(ctx context.Context, owner string, now time.Time) (bool, error) {
	if s.dialect != Postgres {
		return false, nil
	}
	var peers int64
	err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM billing_runs r JOIN instances i ON i.name = r.owner
	     WHERE r.status = 'running' AND r.invoiced_at IS NULL AND r.owner <> ? AND i.expires_at > ?`, owner, now.UTC()).Scan(&peers).Error
	return peers > 0, err
}

// InterruptStaleRuns marks runs left "running" by a dead process as interrupted.
func (s *Store) InterruptStaleRuns(ctx context.Context, now time.Time, owner string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE billing_runs SET status = 'interrupted', error = 'process ended before the run finished', updated_at = ?
		                    WHERE status = 'running' AND owner <> ?`, now, owner)
		return err
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// claimReplaySQL is claimReplayQuery for the transaction's dialect. Once SQLite
// has table statistics (an operator's ANALYZE or PRAGMA optimize) it prefers to
// walk charge_attempts in id order, reading every settled attempt to find the
// few unresolved ones; INDEXED BY keeps it on charge_attempts_unresolved_age.
func (tx *Tx) claimReplaySQL() string {
	return tx.replaySQL(true)
}

func (tx *Tx) replaySQL(lock bool) string {
	hint := ""
	if tx.dialect == SQLite {
		hint = " INDEXED BY charge_attempts_unresolved_age"
	}
	q := fmt.Sprintf(claimReplayQuery, hint)
	if lock {
		q += tx.forUpdateSkipLocked()
	}
	return q
}

// selectReplays is the replay claim's selection, shared with the plan of a pass.
func (tx *Tx) selectReplays(now, dueBy, notBefore time.Time, limit int, lock bool) ([]models.ChargeAttempt, error) {
	var as []models.ChargeAttempt
	err := tx.db.Raw(tx.replaySQL(lock), now, dueBy, notBefore, limit).Scan(&as).Error
	return as, err
}

// PassPlan is what a billing pass started now would find, read with the pass's
// own selections (the claims' and the sweep's queries, without their locks), for
// `billingd once --dry-run`.
type PassPlan struct {
	// Replays are the unresolved attempts the replay claim would send again.
	Replays []models.ChargeAttempt
	// Heads are the invoices the new-attempt claim would charge, in claim order:
	// each is the head of its subscription's queue.
	Heads []models.Invoice
	// Queues hold, per subscription of Replays, Heads and Due, its open
	// invoices in period order (the head first).
	Queues map[int64][]PlannedInvoice
	// Due are the subscriptions the sweep would invoice, in sweep order.
	Due []models.Subscription
	// References name the subscriptions of Replays, Heads and Due.
	References map[int64]string
	// DeadCard holds the subscriptions (of Due) whose payment method the
	// gateway called dead: their new periods are invoiced and wait.
	DeadCard map[int64]bool
}

// PlannedInvoice is an open invoice in a subscription's queue, with what the
// claim would check about it once the invoices before it are paid.
type PlannedInvoice struct {
	models.Invoice
	// Unresolved: one of its attempts is still unresolved, so no new one may
	// start for it.
	Unresolved bool
}

// planPage is how many due subscriptions the plan reads per query.
const planPage = 1000

// PlanPass reads what a pass started at now would charge, without writing or
// locking anything. Replays, heads and due subscriptions are each read up to
// limit rows (0: no cap), which bounds the memory of a dry run on a big day.
func (s *Store) PlanPass(ctx context.Context, now, notBefore time.Time, limit int) (*PassPlan, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	p := &PassPlan{Queues: map[int64][]PlannedInvoice{}, References: map[int64]string{}, DeadCard: map[int64]bool{}}
	err := s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		tx := &Tx{db: db, dialect: s.dialect}
		var err error
		if p.Replays, err = tx.selectReplays(now, now, notBefore, limit, false); err != nil {
			return err
		}
		if len(p.Replays) > 0 {
			// A replay that succeeds lets the periods behind its invoice
			// through, like a head's charge.
			var replayed []models.Invoice
			for _, a := range p.Replays {
				replayed = append(replayed, models.Invoice{ID: a.InvoiceID, SubscriptionID: a.SubscriptionID})
			}
			targets, err := tx.chargeTargets(replayed)
			if err != nil {
				return err
			}
			for id, t := range targets {
				p.References[id] = t.Reference
			}
		}
		heads, err := tx.selectChargeable(now, limit, false)
		if err != nil {
			return err
		}
		// The claim voids, not charges, an invoice whose subscription can
		// no longer be billed.
		for i := range heads {
			if t, ok := heads[i].target(); ok && t.collects() {
				p.Heads = append(p.Heads, heads[i].Invoice)
				p.References[heads[i].SubscriptionID] = t.Reference
			}
		}
		var cursor DueCursor
		for {
			page, err := tx.selectDueSubscriptions(now, cursor, planPage, false)
			if err != nil {
				return err
			}
			for _, sub := range page {
				cursor = DueCursor{NextBillingAt: sub.NextBillingAt, ID: sub.ID}
				p.References[sub.ID] = sub.Reference
			}
			p.Due = append(p.Due, page...)
			if len(page) < planPage || len(p.Due) >= limit {
				break
			}
		}
		subIDs := make([]int64, 0, len(p.References))
		for id := range p.References {
			subIDs = append(subIDs, id)
		}
		for start := 0; start < len(subIDs); start += planPage {
			ids := subIDs[start:min(start+planPage, len(subIDs))]
			var open []PlannedInvoice
			if err := db.Raw(`SELECT i.*, EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.invoice_id = i.id
			                                   AND `+sqlUnresolved.in("ca.status")+`) AS unresolved
			                    FROM invoices i WHERE i.subscription_id IN ? AND i.status = 'open'
			                   ORDER BY i.subscription_id, i.period_index`, ids).Scan(&open).Error; err != nil {
				return err
			}
			for _, inv := range open {
				p.Queues[inv.SubscriptionID] = append(p.Queues[inv.SubscriptionID], inv)
			}
			var dead []int64
			if err := db.Raw(`SELECT s.id FROM subscriptions s JOIN payment_methods pm ON pm.id = s.payment_method_id
			                   WHERE s.id IN ? AND pm.dead_at IS NOT NULL`, ids).Scan(&dead).Error; err != nil {
				return err
			}
			for _, id := range dead {
				p.DeadCard[id] = true
			}
		}
		return nil
	}, &sql.TxOptions{ReadOnly: s.dialect == Postgres})
	if err != nil {
		return nil, fmt.Errorf("store: plan pass: %w", err)
	}
	return p, nil
}
