package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/schedule/period"
)

// ImportRow is one validated line of a subscription import.
type ImportRow struct {
	Line          int
	Reference     string
	Email         string
	Customer      string // gateway customer id
	PaymentMethod string // gateway payment method id
	Amount        int64
	Currency      string
	Interval      string
	IntervalCount int
	Anchor        time.Time
	FirstBilling  time.Time // start of period 0, in UTC
	Description   string
	// Timezone is the IANA zone the subscription's calendar is read in, fixed
	// at import; "" takes the store's DefaultTimezone (UTC if that is unset).
	Timezone string
	// PreviousPaymentID is the customer-initiated payment that stored the
	// card (Checkout.com's pay_…), the series every recurring charge on it
	// names; "" on WooshPay. A card billingd already knows keeps its series.
	PreviousPaymentID string
}

// RowError names what is wrong with one line of an import.
type RowError struct {
	Line    int
	Column  string
	Value   string
	Message string
}

func (e RowError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Message)
	}
	if e.Value == "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Column, e.Message)
	}
	return fmt.Sprintf("line %d: %s: %s (got %q)", e.Line, e.Column, e.Message, e.Value)
}

// ImportErrors is every problem of a rejected import.
type ImportErrors []RowError

func (es ImportErrors) Error() string {
	s := fmt.Sprintf("%d error(s); nothing was imported", len(es))
	for _, e := range es {
		s += "\n  " + e.Error()
	}
	return s
}

// ImportSubscriptions creates the subscriptions (and their customers and payment
// methods) in one transaction: either every row is imported or none is, and every
// conflicting row is reported with its line. It is ImportStream over a slice.
func (s *Store) ImportSubscriptions(ctx context.Context, rows []ImportRow, now time.Time) (int, error) {
	return s.ImportStream(ctx, now, func(yield func(ImportRow) error) error {
		for _, r := range rows {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// importBatch is how many rows one lookup or INSERT covers: 15 bound
// parameters per subscription make 7,500, under SQLite's 32,766 and
// PostgreSQL's 65,535, and a batch's IN lists stay short.
const importBatch = 500

// maxImportProblems stops looking for conflicts after this many: a file that
// bad is the wrong file.
const maxImportProblems = 200

// ImportStream imports the rows each yields, in batches of importBatch, in ONE
// transaction: either every row is imported or none is. Memory stays bounded
// by a batch, however long the file. each may return an error (ImportErrors
// for a file that turned out bad) and the transaction rolls back. Conflicts
// with the database (a reference that exists, a payment method of another
// customer) are gathered, by line, and returned as ImportErrors after the
// whole file was read. An existing customer takes the e-mail of the last row
// that names it.
func (s *Store) ImportStream(ctx context.Context, now time.Time, each func(yield func(ImportRow) error) error) (int, error) {
	var imported int
	err := s.InTx(ctx, func(tx *Tx) error {
		imp := &importer{tx: tx, now: now, defaultZone: s.importZone(), zones: map[string]bool{}}
		err := each(func(r ImportRow) error {
			imp.batch = append(imp.batch, r)
			if len(imp.batch) < importBatch {
				return nil
			}
			if err := imp.flush(); err != nil {
				return err
			}
			// A big import writes its batch's events (subscription.created)
			// now, so that its memory stays bounded by a batch; they commit
			// with the import, or not at all.
			return tx.flushEvents()
		})
		if err != nil {
			return err
		}
		if err := imp.flush(); err != nil {
			return err
		}
		if len(imp.problems) > 0 {
			sort.SliceStable(imp.problems, func(i, j int) bool { return imp.problems[i].Line < imp.problems[j].Line })
			return imp.problems
		}
		imported = imp.imported
		return nil
	})
	if err != nil {
		var ie ImportErrors
		if errors.As(err, &ie) {
			return 0, ie
		}
		return 0, fmt.Errorf("store: import: %w", err)
	}
	return imported, nil
}

type importer struct {
	tx          *Tx
	now         time.Time
	defaultZone string
	zones       map[string]bool // zone name -> loads
	batch       []ImportRow
	problems    ImportErrors
	imported    int
}

func (imp *importer) problem(r ImportRow, column, value, msg string) {
	if len(imp.problems) < maxImportProblems {
		imp.problems = append(imp.problems, RowError{Line: r.Line, Column: column, Value: value, Message: msg})
	}
}

// flush writes the current batch: one lookup each of references, customers
// and payment methods, one INSERT each of the new customers, payment methods
// and subscriptions. Once a problem is found nothing more is written (the
// transaction will roll back) but the rest of the file is still checked.
func (imp *importer) flush() error {
	batch := imp.batch
	imp.batch = imp.batch[:0]
	if len(batch) == 0 || len(imp.problems) >= maxImportProblems {
		return nil
	}
	tx := imp.tx
	refs := make([]string, 0, len(batch))
	custIDs := make([]string, 0, len(batch))
	pmIDs := make([]string, 0, len(batch))
	emails := map[string]string{} // customer -> the last row's email
	firstCustomer := map[string]string{}
	series := map[string]string{} // payment method -> its first row's previous_payment_id
	for _, r := range batch {
		refs = append(refs, r.Reference)
		if _, ok := emails[r.Customer]; !ok {
			custIDs = append(custIDs, r.Customer)
		}
		emails[r.Customer] = r.Email
		if _, ok := firstCustomer[r.PaymentMethod]; !ok {
			firstCustomer[r.PaymentMethod] = r.Customer
			series[r.PaymentMethod] = r.PreviousPaymentID
			pmIDs = append(pmIDs, r.PaymentMethod)
		}
	}
	var existing []string
	if err := tx.db.Raw(`SELECT reference FROM subscriptions WHERE reference IN ?`, refs).Scan(&existing).Error; err != nil {
		return err
	}
	exists := make(map[string]bool, len(existing))
	for _, r := range existing {
		exists[r] = true
	}

	// Customers: look the batch's up, create the missing, update changed emails.
	type custRow struct {
		ID        int64
		GatewayID string `gorm:"column:gateway_customer_id"`
		Email     string
	}
	customers := map[string]custRow{}
	loadCustomers := func() error {
		var found []custRow
		if err := tx.db.Raw(`SELECT id, gateway_customer_id, email FROM customers WHERE gateway_customer_id IN ?`, custIDs).Scan(&found).Error; err != nil {
			return err
		}
		for _, c := range found {
			customers[c.GatewayID] = c
		}
		return nil
	}
	if err := loadCustomers(); err != nil {
		return err
	}
	var newCust, emailCases []any
	var changed []int64
	n := 0
	for _, id := range custIDs {
		c, ok := customers[id]
		switch {
		case !ok:
			newCust = append(newCust, id, emails[id], imp.now, imp.now)
			n++
		case emails[id] != "" && c.Email != emails[id]:
			emailCases = append(emailCases, c.ID, emails[id])
			changed = append(changed, c.ID)
		}
	}
	if len(changed) > 0 {
		// One statement for the batch's changed emails, not one per customer.
		when := strings.Repeat(" WHEN ? THEN ?", len(changed))
		args := append(append(emailCases, imp.now), anySlice(changed)...)
		if _, err := tx.exec(`UPDATE customers SET email = CASE id`+when+` END, updated_at = ? WHERE id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(changed)), ",")+`)`, args...); err != nil {
			return err
		}
	}
	if n > 0 {
		if _, err := tx.exec(`INSERT INTO customers (gateway_customer_id, email, created_at, updated_at) VALUES `+placeholders(n, 4), newCust...); err != nil {
			return err
		}
		if err := loadCustomers(); err != nil {
			return err
		}
	}

	// Payment methods: an existing one keeps its customer, so a row naming
	// another customer's card is a conflict.
	type pmRow struct {
		ID         int64
		CustomerID int64
		GatewayID  string `gorm:"column:gateway_payment_method_id"`
	}
	pms := map[string]pmRow{}
	loadPMs := func() error {
		var found []pmRow
		if err := tx.db.Raw(`SELECT id, customer_id, gateway_payment_method_id FROM payment_methods WHERE gateway_payment_method_id IN ?`, pmIDs).Scan(&found).Error; err != nil {
			return err
		}
		for _, p := range found {
			pms[p.GatewayID] = p
		}
		return nil
	}
	if err := loadPMs(); err != nil {
		return err
	}
	var newPM []any
	n = 0
	for _, id := range pmIDs {
		if _, ok := pms[id]; !ok {
			newPM = append(newPM, customers[firstCustomer[id]].ID, id, series[id], imp.now, imp.now)
			n++
		}
	}
	if n > 0 {
		if _, err := tx.exec(`INSERT INTO payment_methods (customer_id, gateway_payment_method_id, previous_payment_id, created_at, updated_at) VALUES `+placeholders(n, 5), newPM...); err != nil {
			return err
		}
		if err := loadPMs(); err != nil {
			return err
		}
	}

	var subs []any
	n = 0
	for _, r := range batch {
		bad := false
		if exists[r.Reference] {
			imp.problem(r, "reference", r.Reference, "a subscription with this reference already exists")
			bad = true
		}
		cust, pm := customers[r.Customer], pms[r.PaymentMethod]
		if pm.CustomerID != cust.ID {
			imp.problem(r, "payment_method", r.PaymentMethod, "belongs to a different customer")
			bad = true
		}
		if err := money.CheckAmount(r.Amount, r.Currency); err != nil {
			imp.problem(r, "amount", strconv.FormatInt(r.Amount, 10), err.Error())
			bad = true
		}
		zone := r.Timezone
		if zone == "" {
			zone = imp.defaultZone
		}
		ok, seen := imp.zones[zone]
		if !seen {
			_, err := period.LoadZone(zone)
			ok = err == nil
			imp.zones[zone] = ok
		}
		if !ok {
			imp.problem(r, "timezone", zone, "is not an IANA time zone name such as UTC or Europe/Berlin")
			bad = true
		}
		if bad || len(imp.problems) > 0 {
			continue
		}
		subs = append(subs, r.Reference, cust.ID, pm.ID, r.Description, r.Amount, r.Currency, r.Interval, r.IntervalCount,
			r.Anchor.UTC(), zone, 0, r.FirstBilling.UTC(), string(models.SubscriptionActive), imp.now, imp.now)
		n++
	}
	if n == 0 || len(imp.problems) > 0 {
		return nil
	}
	if _, err := tx.execEmitting(models.EventSubscriptionCreated, `INSERT INTO subscriptions (reference, customer_id, payment_method_id, description, amount, currency,
		interval_unit, interval_count, anchor_at, timezone, next_period, next_billing_at, status, created_at, updated_at) VALUES `+placeholders(n, 15), subs...); err != nil {
		return err
	}
	imp.imported += n
	return nil
}

// placeholders returns n rows of k "?" each: "(?,?),(?,?)".
func placeholders(n, k int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", k), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

// importZone is the zone given to imported rows that name none.
func (s *Store) importZone() string {
	if s.defaultZone == "" {
		return "UTC"
	}
	return s.defaultZone
}

// upsertPaymentMethod returns the payment method row for a gateway id, creating
// it for customerID if it is new. An existing row is returned as it is, so the
// caller can tell when it belongs to someone else.
func (tx *Tx) upsertPaymentMethod(now time.Time, customerID int64, gatewayID string) (models.PaymentMethod, error) {
	var pm models.PaymentMethod
	if err := tx.db.Where("gateway_payment_method_id = ?", gatewayID).Limit(1).Find(&pm).Error; err != nil {
		return pm, err
	}
	if pm.ID != 0 {
		return pm, nil
	}
	pm = models.PaymentMethod{CustomerID: customerID, GatewayID: gatewayID, CreatedAt: now, UpdatedAt: now}
	err := tx.db.Create(&pm).Error
	return pm, err
}

// Count is one (state, number) pair of a status report.
type Count struct {
	Status string
	N      int64
}

// StatusReport is the one-screen summary `billingd status` prints.
type StatusReport struct {
	Subscriptions []Count
	Invoices      []Count
	Attempts      []Count
	DunningCases  []Count
	Emails        []Count
	Webhooks      []Count // by result
	// Events counts the events to the merchant's systems by delivery status.
	Events      []Count
	DueNow      int64
	Unresolved  int64
	NeedsReview int64
	// Held counts queues nothing will charge without a person (CountHeldInvoices).
	Held      int64
	LastRuns  []models.BillingRun
	PaidToday []CurrencyTotal
	// Refunds counts refunds by status; DuplicateRefunds those of second
	// payments (reason duplicate), and Refunded sums what succeeded refunds
	// gave back, by currency.
	Refunds          []Count
	DuplicateRefunds []Count
	Refunded         []CurrencyTotal
	// Unbounded counts rows whose amount is outside every currency's bound
	// (written before amounts were bounded): the sums leave them out, the
	// sweep does not invoice such a subscription.
	UnboundedSubscriptions, UnboundedInvoices int64
}

// CurrencyTotal is a sum of minor units in one currency.
type CurrencyTotal struct {
	Currency string
	Amount   int64
	N        int64
	// Unbounded is how many of the N rows were left out of Amount because
	// their amount is outside the bounds (money.Ceiling): summing them could
	// overflow.
	Unbounded int64
}

// boundedSum sums amount over in-bound rows only and counts the rest, so that
// no sum overflows even on a database written before amounts were bounded.
// It takes money.Ceiling() twice as arguments.
const boundedSum = `SUM(CASE WHEN amount BETWEEN 1 AND ? THEN amount ELSE 0 END) AS amount, COUNT(*) AS n,
	SUM(CASE WHEN amount BETWEEN 1 AND ? THEN 0 ELSE 1 END) AS unbounded`

// InSumBounds is boundedSum's rule for one amount, for a sum taken outside
// SQL (the totals of `billingd report export`): whether it counts in a sum.
func InSumBounds(amount int64) bool { return amount >= 1 && amount <= money.Ceiling() }

// webhookResultColumn is what `billingd status` counts webhook events by: their
// result, with the events stored but not applied for a human (needs_review)
// counted apart.
const webhookResultColumn = `CASE WHEN needs_review THEN 'needs_review' ELSE result END`

// Status gathers the counts by state that ops look at first.
func (s *Store) Status(ctx context.Context, now time.Time) (*StatusReport, error) {
	db := s.db.WithContext(ctx)
	r := &StatusReport{}
	for _, q := range []struct {
		table  string
		out    *[]Count
		column string
	}{{"subscriptions", &r.Subscriptions, "status"}, {"invoices", &r.Invoices, "status"}, {"charge_attempts", &r.Attempts, "status"},
		{"dunning_cases", &r.DunningCases, "status"}, {"emails", &r.Emails, "status"}, {"webhook_events", &r.Webhooks, webhookResultColumn},
		{"events", &r.Events, "status"}} {
		if err := db.Raw(`SELECT ` + q.column + ` AS status, COUNT(*) AS n FROM ` + q.table + ` GROUP BY 1 ORDER BY 1`).Scan(q.out).Error; err != nil {
			return nil, err
		}
	}
	if err := db.Raw(`SELECT COUNT(*) FROM subscriptions WHERE `+sqlBillable.in("status")+` AND next_billing_at <= ?`, now).Scan(&r.DueNow).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT COUNT(*) FROM charge_attempts WHERE ` + sqlUnresolved.in("status")).Scan(&r.Unresolved).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT COUNT(*) FROM charge_attempts WHERE ` + sqlAttention.in("status")).Scan(&r.NeedsReview).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(heldInvoicesQuery).Scan(&r.Held).Error; err != nil {
		return nil, err
	}
	dayStart := now.Truncate(24 * time.Hour)
	ceiling := money.Ceiling()
	if err := db.Raw(`SELECT currency, `+boundedSum+` FROM invoices WHERE status = 'paid' AND paid_at >= ? GROUP BY currency ORDER BY currency`, ceiling, ceiling, dayStart).Scan(&r.PaidToday).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT COUNT(*) FROM subscriptions WHERE amount NOT BETWEEN 1 AND ?`, ceiling).Scan(&r.UnboundedSubscriptions).Error; err != nil {
		return nil, err
	}
	if err := db.Raw(`SELECT COUNT(*) FROM invoices WHERE amount NOT BETWEEN 1 AND ?`, ceiling).Scan(&r.UnboundedInvoices).Error; err != nil {
		return nil, err
	}
	if err := s.refundStatus(ctx, r); err != nil {
		return nil, err
	}
	if err := db.Order("id DESC").Limit(5).Find(&r.LastRuns).Error; err != nil {
		return nil, err
	}
	return r, nil
}

// anySlice turns ids into bound arguments.
func anySlice(ids []int64) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}
