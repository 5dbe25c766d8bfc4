package store_test

import (
	"context"
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

// The query-plan tests prove, on each dialect's real planner, that the sweep's due
// page, the two claim queries and the card-network cap's count stay on their indexes once the tables are big:
// no full scan of subscriptions, invoices or charge_attempts, and no sort step for
// the due page. They seed a realistic volume (most subscriptions not due, most
// invoices paid, most attempts settled) with set-based INSERTs, gather statistics,
// and EXPLAIN the exact SQL the store sends, locking suffix included, with the
// parameter values a sweep would bind. Nothing steers the planner beyond what
// the store itself sends (the new-attempt claim's SET LOCAL enable_sort = off,
// applied here as its setup): the plan asserted is the planner's own choice.

// planNow is the sweep's "now" in the seeded data.
var planNow = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// planRows is how many customers, subscriptions, invoices and (first) attempts
// are seeded.
const planRows = 20000

// planSQL is what differs between the dialects in the seed statements.
type planSQL struct {
	series func(n int) string          // a FROM item yielding column i = 1..n
	at     func(minutes string) string // planNow plus an integer expression of minutes
}

func planSQLFor(dialect string) planSQL {
	if dialect == store.Postgres {
		return planSQL{
			series: func(n int) string { return fmt.Sprintf("generate_series(1, %d) AS g(i)", n) },
			at: func(m string) string {
				return "(timestamptz '2026-03-01 00:00:00+00' + (" + m + ") * interval '1 minute')"
			},
		}
	}
	return planSQL{
		series: func(n int) string {
			return fmt.Sprintf("(WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < %d) SELECT i FROM g) AS g", n)
		},
		// go-sqlite3 binds a time.Time as "2006-01-02 15:04:05.999999999-07:00";
		// the seeded text must compare the same way.
		at: func(m string) string {
			return "strftime('%Y-%m-%d %H:%M:%S+00:00', '2026-03-01 00:00:00', (" + m + ") || ' minutes')"
		},
	}
}

// seedPlanVolume fills the billing tables. Per subscription i (1..planRows):
//   - i%50 == 0 / 25: canceled / unpaid, next_billing_at in the past (outside the
//     partial index, but a full scan would meet them);
//   - i%67 == 1: due (active or past_due), next_billing_at up to 12h ago: ~300 rows;
//   - otherwise active, due within the next 30 days.
//
// One invoice per subscription: i%67 == 2 open and chargeable now (~300), == 3
// open with a retry scheduled later, == 4 open with its attempt unresolved; a few
// void or uncollectible; all others paid. One attempt per invoice, settled except
// for the i%67 == 4 invoices (pending, unknown or processing: the replay
// candidates, some leased, some not yet due, some older than the idempotency
// window), plus an unresolved on-session attempt 2 on half of the chargeable
// invoices, which the NOT EXISTS probe must skip.
func seedPlanVolume(t *testing.T, st *store.Store) {
	t.Helper()
	d := planSQLFor(st.Dialect())
	from := " FROM " + d.series(planRows)
	longAgo := d.at("-525600")
	stmts := []string{
		`INSERT INTO customers (id, gateway_customer_id, email, created_at, updated_at)
		 SELECT i, 'cus_' || i, 'c' || i || '@example.com', ` + longAgo + `, ` + longAgo + from,

		`INSERT INTO payment_methods (id, customer_id, gateway_payment_method_id, brand, last4, created_at, updated_at)
		 SELECT i, i, 'pm_' || i, 'visa', '4242', ` + longAgo + `, ` + longAgo + from,

		`INSERT INTO subscriptions (id, reference, customer_id, payment_method_id, amount, currency, interval_unit,
		                            interval_count, anchor_at, next_period, next_billing_at, status, created_at, updated_at)
		 SELECT i, 'sub-' || i, i, i, 1999, 'USD', 'month', 1, ` + longAgo + `, 12,
		        CASE WHEN i % 50 IN (0, 25) THEN ` + d.at("-60 * (i % 1440)") + `
		             WHEN i % 67 = 1 THEN ` + d.at("-(i % 720)") + `
		             ELSE ` + d.at("1 + i % 43200") + ` END,
		        CASE WHEN i % 50 = 0 THEN 'canceled' WHEN i % 50 = 25 THEN 'unpaid'
		             WHEN i % 67 = 1 AND i % 2 = 0 THEN 'past_due' ELSE 'active' END,
		        ` + longAgo + `, ` + d.at("-(i % 1440)") + from,

		`INSERT INTO invoices (id, public_id, subscription_id, period_index, period_start, period_end, amount, currency,
		                       status, attempt_count, next_attempt_at, paid_at, payment_intent_id, created_at, updated_at)
		 SELECT i, 'inv_' || i, i, 11, ` + d.at("-43200 - (i % 1440)") + `, ` + d.at("-(i % 1440)") + `, 1999, 'USD',
		        CASE WHEN i % 67 IN (2, 3, 4) THEN 'open' WHEN i % 100 = 7 THEN 'void'
		             WHEN i % 100 = 8 THEN 'uncollectible' ELSE 'paid' END,
		        1,
		        CASE WHEN i % 67 = 2 THEN ` + d.at("-(i % 600)") + `
		             WHEN i % 67 = 3 THEN ` + d.at("1 + i % 4320") + ` END,
		        CASE WHEN i % 67 IN (2, 3, 4) OR i % 100 IN (7, 8) THEN NULL ELSE ` + d.at("-(i % 1440)") + ` END,
		        CASE WHEN i % 67 IN (2, 3, 4) OR i % 100 IN (7, 8) THEN '' ELSE 'pi_' || i END,
		        ` + d.at("-60 - (i % 1440)") + `, ` + d.at("-(i % 1440)") + from,

		`INSERT INTO charge_attempts (id, invoice_id, subscription_id, attempt_no, idempotency_key, merchant_order_id,
		                              amount, currency, gateway_customer_id, gateway_payment_method_id, off_session, status,
		                              payment_intent_id, decline_code, lease_owner, lease_until, lease_version, next_try_at,
		                              finished_at, created_at, updated_at)
		 SELECT i, i, i, 1, 'inv_' || i || '-a1', 'inv_' || i, 1999, 'USD', 'cus_' || i, 'pm_' || i,
		        (i % 67 <> 4 OR i % 3 <> 0),
		        CASE WHEN i % 67 = 4 THEN (CASE WHEN i % 3 = 0 THEN 'processing' WHEN i % 2 = 0 THEN 'pending' ELSE 'unknown' END)
		             WHEN i % 67 IN (2, 3) OR i % 100 = 8 THEN 'declined'
		             WHEN i % 100 = 7 THEN 'failed'
		             ELSE 'succeeded' END,
		        'pi_' || i,
		        CASE WHEN i % 67 IN (2, 3) OR i % 100 = 8 THEN 'insufficient_funds' ELSE '' END,
		        CASE WHEN i % 67 = 4 AND i % 5 = 0 THEN 'worker-1' ELSE '' END,
		        CASE WHEN i % 67 = 4 AND i % 5 = 0 THEN ` + d.at("2") + ` END,
		        1,
		        CASE WHEN i % 67 = 4 AND i % 4 = 0 THEN ` + d.at("1") + ` WHEN i % 67 = 4 THEN ` + d.at("-1") + ` END,
		        CASE WHEN i % 67 <> 4 THEN ` + d.at("-(i % 1440)") + ` END,
		        ` + d.at("-(i % 2000)") + `, ` + d.at("-(i % 1440)") + from,

		`INSERT INTO charge_attempts (id, invoice_id, subscription_id, attempt_no, idempotency_key, merchant_order_id,
		                              amount, currency, gateway_customer_id, gateway_payment_method_id, off_session, status,
		                              payment_intent_id, lease_version, created_at, updated_at)
		 SELECT ` + strconv.Itoa(planRows) + ` + i, i, i, 2, 'inv_' || i || '-a2', 'inv_' || i, 1999, 'USD', 'cus_' || i, 'pm_' || i,
		        FALSE, 'processing', 'pi_' || i || '_2', 0, ` + d.at("-30") + `, ` + d.at("-30") + from + `
		  WHERE i % 67 = 2 AND i % 2 = 0`,

		// A refund of every tenth paid invoice, some of them the automatic
		// refund of a second payment no attempt made.
		`INSERT INTO refunds (id, invoice_id, attempt_id, payment_intent_id, original_payment_intent_id, amount, currency, reason,
		                      idempotency_key, status, gateway_refund_id, lease_version, finished_at, created_at, updated_at)
		 SELECT i, i, i, CASE WHEN i % 100 = 0 THEN 'pi_' || i || '_dup' ELSE 'pi_' || i END,
		        CASE WHEN i % 100 = 0 THEN 'pi_' || i ELSE '' END, 500, 'USD',
		        CASE WHEN i % 100 = 0 THEN 'duplicate' ELSE 'requested_by_customer' END,
		        'refund-' || i, 'succeeded', 're_' || i, 1, ` + d.at("-(i % 1440)") + `, ` + d.at("-(i % 1440) - 1") + `,
		        ` + d.at("-(i % 1440)") + from + `
		  WHERE i % 10 = 0 AND i % 67 NOT IN (2, 3, 4) AND i % 100 NOT IN (7, 8)`,
	}
	for _, s := range stmts {
		require.NoError(t, st.DB().Exec(s).Error, s)
	}
}

// planQuery is one statement to EXPLAIN and what its plan must (not) contain.
type planQuery struct {
	name   string
	sql    string
	args   []any
	setup  string   // sent first in the statement's transaction, as the store does
	want   []string // each must match some line of the plan
	forbid []string // none may match any line of the plan
}

// planQueries are the statements as the store sends them, with the values a
// sweep binds: the first and a later keyset page (page size 500; the later page's
// cursor sits in the middle of the due rows), and claims of one batch
// (concurrency 8) with the 23h replay window.
func planQueries(t *testing.T, st *store.Store) []planQuery {
	t.Helper()
	q, err := store.SQLFor(st)
	require.NoError(t, err)
	firstPage := store.DueSubscriptionsArgs(planNow, store.DueCursor{}, 500)
	laterPage := store.DueSubscriptionsArgs(planNow, store.DueCursor{NextBillingAt: planNow.Add(-6 * time.Hour), ID: 10000}, 500)
	notBefore := planNow.Add(-23 * time.Hour)
	// An hour of the money that moved (the export and revenue queries).
	hourArgs := store.MovementsArgs(planNow.Add(-3*time.Hour), planNow.Add(-2*time.Hour), false)
	hourSums := store.MovementsArgs(planNow.Add(-3*time.Hour), planNow.Add(-2*time.Hour), true)
	if st.Dialect() == store.Postgres {
		// The succeeded charges of the range through their partial index;
		// charge_attempts is never read whole.
		succeeded := `(Index Scan using|Index Only Scan using|Bitmap Index Scan on) charge_attempts_succeeded_at\b`
		noAttemptScan := `Seq Scan on charge_attempts\b`
		movements := []planQuery{
			{name: "export movements", sql: q.Movements, args: hourArgs, want: []string{succeeded}, forbid: []string{noAttemptScan}},
			{name: "revenue collected", sql: q.Collected, args: hourSums, want: []string{succeeded}, forbid: []string{noAttemptScan}},
			{name: "revenue refunded", sql: q.Refunded, args: hourSums, forbid: []string{noAttemptScan}},
		}
		// Nodes read "->  Index Scan using <index> on <table> <alias>"; a Bitmap
		// Index Scan names only the index, its Bitmap Heap Scan the table.
		noSort := `(^|->\s+)(Incremental )?Sort\b`
		// The cursor must bound the index scan (Index Cond), not be a Filter
		// over every due row before it: else each page costs as much as all
		// the pages before it, and a sweep of n due rows is O(n²).
		cursorBound := `Index Cond: .*(next_billing_at > |ROW\(next_billing_at, id\) > ROW\()`
		return append([]planQuery{
			{name: "due first page", sql: q.DueSubscriptions, args: firstPage,
				want:   []string{`Index Scan using subscriptions_due on subscriptions\b`},
				forbid: []string{`Seq Scan`, `Bitmap`, noSort}},
			{name: "due later page", sql: q.DueSubscriptions, args: laterPage,
				want:   []string{`Index Scan using subscriptions_due on subscriptions\b`, cursorBound},
				forbid: []string{`Seq Scan`, `Bitmap`, noSort}},
			// The queue and dead-card conditions are probes: the previous
			// period by UNIQUE (subscription_id, period_index), the card by
			// primary keys.
			{name: "claim new", sql: q.ClaimNew, setup: q.ClaimNewSetup, args: []any{planNow, 8},
				want: []string{`Index Scan using invoices_chargeable on invoices\b`,
					`(Index Scan|Index Only Scan) using charge_attempts_\w+ on charge_attempts ca\b|Bitmap Index Scan on charge_attempts_\w+`,
					`(Index Scan|Index Only Scan) using invoices_subscription_id_period_index_key on invoices prev\b|Bitmap Index Scan on invoices_subscription_id_period_index_key`,
					`(Index Scan|Index Only Scan) using payment_methods_pkey on payment_methods pm\b`},
				forbid: []string{`Seq Scan`, `invoices_pkey`, `charge_attempts_pkey`, noSort}},
			// Unresolved attempts are few: reading them through the status or
			// unresolved-age index and sorting them is the plan; walking the
			// primary key in id order would read the settled millions.
			{name: "claim replay", sql: q.ClaimReplay, args: []any{planNow, planNow, notBefore, 8},
				want:   []string{`(Index Scan using|Bitmap Index Scan on) (charge_attempts_status|charge_attempts_unresolved_age|charge_attempts_one_unresolved|charge_attempts_one_open)\b`},
				forbid: []string{`Seq Scan`, `charge_attempts_pkey`}},
			{name: "card reattempts", sql: q.CardReattempts, args: []any{"pm_4", notBefore},
				want:   []string{`(Index Scan using|Index Only Scan using|Bitmap Index Scan on) charge_attempts_card_reattempts\b`},
				forbid: []string{`Seq Scan`}},
		}, movements...)
	}
	// SQLite: "SEARCH t USING INDEX i (col<?)" is a range or point lookup; "SCAN t"
	// reads the whole table (with USING INDEX, the whole index).
	return []planQuery{
		{name: "due first page", sql: q.DueSubscriptions, args: firstPage,
			want:   []string{`^SEARCH subscriptions USING INDEX subscriptions_due \(`},
			forbid: []string{`SCAN subscriptions\b`, `USE TEMP B-TREE`}},
		// The cursor must be part of the index search, not only "next_billing_at<?"
		// (see cursorBound above).
		{name: "due later page", sql: q.DueSubscriptions, args: laterPage,
			want:   []string{`^SEARCH subscriptions USING INDEX subscriptions_due \((next_billing_at>\?|\(next_billing_at,id\)>\(\?,\?\))`},
			forbid: []string{`SCAN subscriptions\b`, `USE TEMP B-TREE`}},
		{name: "claim new", sql: q.ClaimNew, args: []any{planNow, 8},
			want: []string{`^SEARCH invoices USING INDEX invoices_chargeable \(next_attempt_at`,
				`^SEARCH (ca|charge_attempts) USING (COVERING )?INDEX \w+ \(invoice_id=\?`,
				`^SEARCH prev USING (COVERING )?INDEX \w+ \(subscription_id=\? AND period_index<\?\)`,
				`^SEARCH pm USING INTEGER PRIMARY KEY`},
			forbid: []string{`SCAN invoices\b`, `SCAN (ca|charge_attempts|prev|s|pm)\b`, `USE TEMP B-TREE FOR ORDER BY`}},
		{name: "claim replay", sql: q.ClaimReplay, args: []any{planNow, planNow, notBefore, 8},
			want:   []string{`^SEARCH charge_attempts USING INDEX (charge_attempts_status \(status=\?|charge_attempts_unresolved_age \(created_at>\?)`},
			forbid: []string{`SCAN charge_attempts\b`}},
		{name: "card reattempts", sql: q.CardReattempts, args: []any{"pm_4", notBefore},
			want:   []string{`^SEARCH charge_attempts USING (COVERING )?INDEX charge_attempts_card_reattempts \(gateway_payment_method_id=\?`},
			forbid: []string{`SCAN charge_attempts\b`}},
		// The money that moved in a range: the succeeded charges through
		// their partial index, a duplicate's probe by payment id; the
		// attempts are never read whole.
		{name: "export movements", sql: q.Movements, args: hourArgs,
			want:   []string{`^SEARCH ca USING INDEX charge_attempts_succeeded_at \(finished_at>\? AND finished_at<\?\)`},
			forbid: []string{`SCAN (ca|charge_attempts)\b`}},
		{name: "revenue collected", sql: q.Collected, args: hourSums,
			want:   []string{`^SEARCH ca USING INDEX charge_attempts_succeeded_at \(finished_at>\? AND finished_at<\?\)`},
			forbid: []string{`SCAN (ca|charge_attempts)\b`}},
		{name: "revenue refunded", sql: q.Refunded, args: hourSums,
			forbid: []string{`SCAN (ca|charge_attempts)\b`}},
	}
}

// explain returns the plan of q as the dialect prints it, one node per line,
// after setup (if any) in the same transaction.
func explain(t *testing.T, st *store.Store, setup, q string, args []any) []string {
	t.Helper()
	var lines []string
	if st.Dialect() == store.Postgres {
		tx := st.DB().Begin()
		require.NoError(t, tx.Error)
		defer tx.Rollback()
		if setup != "" {
			require.NoError(t, tx.Exec(setup).Error)
		}
		rows, err := tx.Raw("EXPLAIN "+q, args...).Rows()
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			lines = append(lines, line)
		}
		require.NoError(t, rows.Err())
		return lines
	}
	require.Empty(t, setup, "SQLite statements have no setup")
	rows, err := st.DB().Raw("EXPLAIN QUERY PLAN "+q, args...).Rows()
	require.NoError(t, err)
	defer rows.Close()
	depth := map[int]int{0: -1}
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		depth[id] = depth[parent] + 1
		lines = append(lines, strings.Repeat("  ", depth[id])+detail)
	}
	require.NoError(t, rows.Err())
	return lines
}

// explainGeneric returns PostgreSQL's generic plan of q: the plan a prepared
// statement runs once the plan cache stops re-planning for each execution's
// values. pgx's default exec mode prepares and caches every statement on each
// connection, so from the sixth execution on PostgreSQL runs this plan whenever
// its estimated cost is not above the custom plans' average.
func explainGeneric(t *testing.T, st *store.Store, setup, q string, args []any) []string {
	t.Helper()
	ctx := context.Background()
	sqlDB, err := st.DB().DB()
	require.NoError(t, err)
	tx, err := sqlDB.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	n := 0
	prepared := regexp.MustCompile(`\?`).ReplaceAllStringFunc(q, func(string) string { n++; return "$" + strconv.Itoa(n) })
	require.Equal(t, len(args), n, "placeholders")
	lits := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case time.Time:
			lits[i] = "'" + v.UTC().Format("2006-01-02 15:04:05.999999Z07:00") + "'"
		case string:
			lits[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		default:
			lits[i] = fmt.Sprint(v)
		}
	}
	_, err = tx.ExecContext(ctx, "SET LOCAL plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	if setup != "" {
		_, err = tx.ExecContext(ctx, setup)
		require.NoError(t, err)
	}
	_, err = tx.ExecContext(ctx, "PREPARE billingd_plan_test AS "+prepared)
	require.NoError(t, err)
	// A prepared statement outlives the transaction: drop it before the
	// connection goes back to the pool.
	defer func() { _, _ = tx.ExecContext(ctx, "DEALLOCATE billingd_plan_test") }()
	rows, err := tx.QueryContext(ctx, "EXPLAIN EXECUTE billingd_plan_test("+strings.Join(lits, ", ")+")")
	require.NoError(t, err)
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		lines = append(lines, line)
	}
	require.NoError(t, rows.Err())
	return lines
}

func checkPlan(t *testing.T, q planQuery, plan []string) {
	t.Helper()
	text := strings.Join(plan, "\n")
	t.Logf("plan of %s:\n%s", q.name, text)
	for _, w := range q.want {
		re := regexp.MustCompile(w)
		found := false
		for _, line := range plan {
			if re.MatchString(strings.TrimSpace(line)) {
				found = true
				break
			}
		}
		require.Truef(t, found, "%s: the plan has no step matching %q; plan:\n%s\nquery:\n%s", q.name, w, text, q.sql)
	}
	for _, f := range q.forbid {
		re := regexp.MustCompile(f)
		for _, line := range plan {
			require.Falsef(t, re.MatchString(strings.TrimSpace(line)), "%s: the plan has a step matching %q (%q); plan:\n%s\nquery:\n%s",
				q.name, f, strings.TrimSpace(line), text, q.sql)
		}
	}
}

func TestQueryPlansUseIndexes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		seedPlanVolume(t, st)
		queries := planQueries(t, st)
		check := func(t *testing.T, explainFn func(*testing.T, *store.Store, string, string, []any) []string) {
			for _, q := range queries {
				t.Run(q.name, func(t *testing.T) { checkPlan(t, q, explainFn(t, st, q.setup, q.sql, q.args)) })
			}
		}
		if st.Dialect() == store.SQLite {
			// billingd never runs ANALYZE on SQLite: the daemon plans without
			// statistics, so that is checked first, then with them.
			t.Run("without statistics", func(t *testing.T) { check(t, explain) })
			require.NoError(t, st.DB().Exec("ANALYZE").Error)
			t.Run("analyzed", func(t *testing.T) { check(t, explain) })
			return
		}
		// Autovacuum analyzes a production server's tables; here it may not have
		// run yet.
		require.NoError(t, st.DB().Exec("ANALYZE customers, payment_methods, subscriptions, invoices, charge_attempts, refunds").Error)
		t.Run("custom plan", func(t *testing.T) { check(t, explain) })
		t.Run("generic plan", func(t *testing.T) { check(t, explainGeneric) })
	})
}
