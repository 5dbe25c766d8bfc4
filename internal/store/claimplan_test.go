package store_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// freshDayRows is how many subscriptions, paid invoices of the previous period
// and open invoices of the new one seedFreshDay writes.
const freshDayRows = 4000

// seedFreshDay writes what a billing pass finds halfway through a new day on a
// database whose planner statistics were taken when the tables were empty (as
// autovacuum leaves them after the migration; with analyzeEmpty unset, none
// were ever taken): per subscription a paid invoice of period 0 with its succeeded
// attempt, and an open invoice of period 1 that the pass just created. A quarter
// of the new invoices are already claimed (a pending attempt, next_attempt_at
// cleared); the rest are chargeable now.
func seedFreshDay(t *testing.T, st *store.Store, analyzeEmpty bool) {
	t.Helper()
	db := st.DB()
	if analyzeEmpty {
		require.NoError(t, db.Exec("ANALYZE customers, payment_methods, subscriptions, invoices, charge_attempts").Error)
	}
	n := strconv.Itoa(freshDayRows)
	from := " FROM generate_series(1, " + n + ") AS g(i)"
	at := func(m string) string {
		return "(timestamptz '2026-03-01 00:00:00+00' + (" + m + ") * interval '1 minute')"
	}
	stmts := []string{
		`INSERT INTO customers (id, gateway_customer_id, email, created_at, updated_at)
		 SELECT i, 'cus_' || i, 'c' || i || '@example.com', ` + at("-60000") + `, ` + at("-60000") + from,
		`INSERT INTO payment_methods (id, customer_id, gateway_payment_method_id, brand, last4, created_at, updated_at)
		 SELECT i, i, 'pm_' || i, 'visa', '4242', ` + at("-60000") + `, ` + at("-60000") + from,
		`INSERT INTO subscriptions (id, reference, customer_id, payment_method_id, amount, currency, interval_unit,
		                            interval_count, anchor_at, next_period, next_billing_at, status, created_at, updated_at)
		 SELECT i, 'sub-' || i, i, i, 1999, 'USD', 'month', 1, ` + at("-43200") + `, 2, ` + at("43200") + `, 'active',
		        ` + at("-60000") + `, ` + at("-1") + from,
		`INSERT INTO invoices (id, public_id, subscription_id, period_index, period_start, period_end, amount, currency,
		                       status, attempt_count, next_attempt_at, paid_at, payment_intent_id, created_at, updated_at)
		 SELECT i, 'inv_' || i, i, 0, ` + at("-86400") + `, ` + at("-43200") + `, 1999, 'USD', 'paid', 1, NULL,
		        ` + at("-43200") + `, 'pi_' || i, ` + at("-43200") + `, ` + at("-43200") + from,
		`INSERT INTO charge_attempts (id, invoice_id, subscription_id, attempt_no, idempotency_key, merchant_order_id,
		                              amount, currency, gateway_customer_id, gateway_payment_method_id, off_session, status,
		                              payment_intent_id, lease_version, finished_at, created_at, updated_at)
		 SELECT i, i, i, 1, 'inv_' || i || '-a1', 'inv_' || i, 1999, 'USD', 'cus_' || i, 'pm_' || i, TRUE, 'succeeded',
		        'pi_' || i, 1, ` + at("-43200") + `, ` + at("-43200") + `, ` + at("-43200") + from,
		`INSERT INTO invoices (id, public_id, subscription_id, period_index, period_start, period_end, amount, currency,
		                       status, attempt_count, next_attempt_at, payment_intent_id, created_at, updated_at)
		 SELECT ` + n + ` + i, 'inv_new_' || i, i, 1, ` + at("-43200") + `, ` + at("0") + `, 1999, 'USD', 'open',
		        CASE WHEN i % 4 = 0 THEN 1 ELSE 0 END,
		        CASE WHEN i % 4 = 0 THEN NULL ELSE ` + at("-60") + ` END, '', ` + at("-1") + `, ` + at("-1") + from,
		`INSERT INTO charge_attempts (id, invoice_id, subscription_id, attempt_no, idempotency_key, merchant_order_id,
		                              amount, currency, gateway_customer_id, gateway_payment_method_id, off_session, status,
		                              lease_owner, lease_until, lease_version, created_at, updated_at)
		 SELECT ` + n + ` + i, ` + n + ` + i, i, 1, 'inv_new_' || i || '-a1', 'inv_new_' || i, 1999, 'USD', 'cus_' || i, 'pm_' || i,
		        TRUE, 'pending', 'host:1:1', ` + at("2") + `, 1, ` + at("-1") + `, ` + at("-1") + from + ` WHERE i % 4 = 0`,
	}
	for _, s := range stmts {
		require.NoError(t, db.Exec(s).Error, s)
	}
}

// TestClaimNewPlanWithoutStatistics runs the new-attempt claim, as the store
// sends it, on the invoices a pass has just created while the planner's
// statistics still describe the empty tables (or none were ever taken), and
// requires the plan PostgreSQL picks — for the claim's own values and as the
// generic plan a cached prepared statement runs — to walk invoices_chargeable
// in claim order, probe each candidate by index and stop at the LIMIT: no
// sort, no hash or merge join and no sequential scan, and a number of buffers
// that follows the LIMIT, not the thousands of open invoices. Before the probes
// were fenced, the same claim sorted all 3,000 chargeable invoices and read
// 33,000 buffers.
func TestClaimNewPlanWithoutStatistics(t *testing.T) {
	for _, tc := range []struct {
		name          string
		analyzedEmpty bool
	}{
		{"statistics of the empty tables", true},
		{"never analyzed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.Postgres(t)
			seedFreshDay(t, st, tc.analyzedEmpty)
			q, err := store.SQLFor(st)
			require.NoError(t, err)
			now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			const limit = 32
			for _, generic := range []bool{false, true} {
				plan := explainAnalyzeJSON(t, st, q.ClaimNewSetup, q.ClaimNew, []any{now, limit}, generic)
				requireBoundedClaimPlan(t, plan, limit)
			}
		})
	}
}

// planNode is one node of EXPLAIN (FORMAT JSON) output.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	ActualRows   float64    `json:"Actual Rows"`
	ActualLoops  float64    `json:"Actual Loops"`
	SharedHit    int64      `json:"Shared Hit Blocks"`
	SharedRead   int64      `json:"Shared Read Blocks"`
	Plans        []planNode `json:"Plans"`
}

func (n planNode) walk(fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		c.walk(fn)
	}
}

// requireBoundedClaimPlan checks the executed plan of a claim of limit invoices.
func requireBoundedClaimPlan(t *testing.T, plan planNode, limit int) {
	t.Helper()
	text, _ := json.MarshalIndent(plan, "", " ")
	orderedScan := false
	plan.walk(func(n planNode) {
		switch {
		case n.NodeType == "Sort" || n.NodeType == "Incremental Sort":
			t.Fatalf("the claim sorts its candidates instead of reading them in index order:\n%s", text)
		case n.NodeType == "Hash Join" || n.NodeType == "Merge Join" || n.NodeType == "Hash":
			t.Fatalf("the claim joins whole tables (%s) instead of probing each candidate:\n%s", n.NodeType, text)
		case n.NodeType == "Seq Scan":
			t.Fatalf("the claim reads all of %s:\n%s", n.RelationName, text)
		case n.NodeType == "Index Scan" && n.RelationName == "invoices" && n.IndexName == "invoices_chargeable":
			orderedScan = true
			// Candidates read: the claimed ones plus the few the probes
			// skipped (none in this data).
			require.LessOrEqualf(t, n.ActualRows*n.ActualLoops, float64(2*limit), "invoices read by the claim:\n%s", text)
		}
	})
	require.Truef(t, orderedScan, "the claim does not walk invoices_chargeable:\n%s", text)
	// About 12 buffers per claimed invoice (its heap page, three probes); the
	// unfenced plan read 33,000 here.
	require.Lessf(t, plan.SharedHit+plan.SharedRead, int64(40*limit), "buffers read by the claim:\n%s", text)
}

// explainAnalyzeJSON runs setup and then q under EXPLAIN (ANALYZE, BUFFERS,
// FORMAT JSON) in a transaction it rolls back (a claim locks its rows) and returns the root plan
// node; with generic, the plan PostgreSQL caches for a prepared statement.
func explainAnalyzeJSON(t *testing.T, st *store.Store, setup, q string, args []any, generic bool) planNode {
	t.Helper()
	tx := st.DB().Begin()
	require.NoError(t, tx.Error)
	defer tx.Rollback()
	if setup != "" {
		require.NoError(t, tx.Exec(setup).Error)
	}
	var out string
	const explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
	if generic {
		n := 0
		prepared := regexp.MustCompile(`\?`).ReplaceAllStringFunc(q, func(string) string { n++; return "$" + strconv.Itoa(n) })
		require.Equal(t, len(args), n, "placeholders")
		require.NoError(t, tx.Exec("SET LOCAL plan_cache_mode = force_generic_plan").Error)
		require.NoError(t, tx.Exec("PREPARE billingd_claim_plan AS "+prepared).Error)
		defer tx.Exec("DEALLOCATE billingd_claim_plan")
		// EXECUTE takes literals, not bound parameters.
		lits := make([]string, len(args))
		for i, a := range args {
			if at, ok := a.(time.Time); ok {
				lits[i] = "'" + at.UTC().Format(time.RFC3339Nano) + "'"
			} else {
				lits[i] = fmt.Sprint(a)
			}
		}
		require.NoError(t, tx.Raw(explain+"EXECUTE billingd_claim_plan("+strings.Join(lits, ", ")+")").Row().Scan(&out))
	} else {
		require.NoError(t, tx.Raw(explain+q, args...).Row().Scan(&out))
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &plans), out)
	require.Len(t, plans, 1)
	return plans[0].Plan
}
