package charge_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// countingDunning is the dunning service as the engine's hook, counting the
// batches it is handed whole.
type countingDunning struct {
	*dunning.Service
	batches, outcomes int
}

func (h *countingDunning) AfterSuccesses(tx *store.Tx, outs []store.Outcome) error {
	h.batches++
	h.outcomes += len(outs)
	return h.Service.AfterSuccesses(tx, outs)
}

// outcomeCase is what one attempt of the mixed batch meets and answers.
type outcomeCase struct {
	name    string
	prepare func(t *testing.T, st *store.Store, a *models.ChargeAttempt)
	decline bool
}

func execSQL(t *testing.T, st *store.Store, q string, args ...any) {
	t.Helper()
	require.NoError(t, st.DB().Exec(q, args...).Error)
}

// mixedBatch: successes, a subscription that is past_due, an open dunning
// case, an invoice already paid by another intent, a void invoice, a lost
// lease and a decline, in one batch. The decline splits the batch into two
// runs of successes.
var mixedBatch = []outcomeCase{
	{name: "success"},
	{name: "success 2"},
	{name: "past_due subscription reactivates", prepare: func(t *testing.T, st *store.Store, a *models.ChargeAttempt) {
		execSQL(t, st, `UPDATE subscriptions SET status = 'past_due' WHERE id = ?`, a.SubscriptionID)
	}},
	{name: "open dunning case recovers", prepare: func(t *testing.T, st *store.Store, a *models.ChargeAttempt) {
		next := t0.Add(24 * time.Hour)
		require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
			return tx.SaveCase(&models.DunningCase{InvoiceID: a.InvoiceID, SubscriptionID: a.SubscriptionID, Reason: models.ReasonSoftDecline,
				Status: models.CaseOpen, Step: 1, NextStepAt: &next, OpenedAt: t0.Add(-time.Hour), CreatedAt: t0.Add(-time.Hour), UpdatedAt: t0.Add(-time.Hour)})
		}))
		execSQL(t, st, `UPDATE subscriptions SET status = 'past_due' WHERE id = ?`, a.SubscriptionID)
	}},
	{name: "invoice already paid by another intent", prepare: func(t *testing.T, st *store.Store, a *models.ChargeAttempt) {
		execSQL(t, st, `UPDATE invoices SET status = 'paid', payment_intent_id = 'pi_first', paid_at = ? WHERE id = ?`, t0.Add(-time.Minute), a.InvoiceID)
	}},
	{name: "void invoice", prepare: func(t *testing.T, st *store.Store, a *models.ChargeAttempt) {
		execSQL(t, st, `UPDATE invoices SET status = 'void' WHERE id = ?`, a.InvoiceID)
	}},
	{name: "lease lost", prepare: func(t *testing.T, st *store.Store, a *models.ChargeAttempt) {
		execSQL(t, st, `UPDATE charge_attempts SET lease_version = lease_version + 1 WHERE id = ?`, a.ID)
	}},
	{name: "decline", decline: true},
	{name: "success after the decline"},
	{name: "past_due subscription after the decline", prepare: func(t *testing.T, st *store.Store, a *models.ChargeAttempt) {
		execSQL(t, st, `UPDATE subscriptions SET status = 'past_due' WHERE id = ?`, a.SubscriptionID)
	}},
}

// recordMixed seeds the batch's invoices on st, prepares each case, and
// records the outcomes together (alone false) or each in a transaction of
// its own (alone true).
func recordMixed(t *testing.T, st *store.Store, alone bool) (warnings []string, errs []error, hook *countingDunning) {
	ctx := context.Background()
	n := len(mixedBatch)
	require.NoError(t, loadtest.SeedOpenInvoices(ctx, st, n, t0))
	claimed, err := st.ClaimNewAttempts(ctx, "test", t0, t0.Add(time.Hour), n)
	require.NoError(t, err)
	require.Len(t, claimed, n)
	sort.Slice(claimed, func(i, j int) bool { return claimed[i].ID < claimed[j].ID })
	outs := make([]store.Outcome, n)
	for i, c := range mixedBatch {
		a := &claimed[i]
		if c.prepare != nil {
			c.prepare(t, st, a)
		}
		r := store.AttemptResult{Status: models.AttemptSucceeded, PaymentIntentID: "pi_" + a.IdempotencyKey, Tries: 1, LastHTTPStatus: 200}
		if c.decline {
			r = store.AttemptResult{Status: models.AttemptDeclined, PaymentIntentID: "pi_" + a.IdempotencyKey, DeclineCode: "insufficient_funds",
				ErrorMessage: "Your card has insufficient funds.", Tries: 1, LastHTTPStatus: 402}
		}
		outs[i] = store.Outcome{Now: t0.Add(time.Duration(i+1) * time.Second), Attempt: a, Result: r}
	}
	hook = &countingDunning{Service: &dunning.Service{Store: st, Log: zerolog.Nop(), MailDomain: "example.com",
		Policy: dunning.Policy{Schedule: []time.Duration{24 * time.Hour, 72 * time.Hour}, FinalAction: models.FinalCancel}}}
	eng := charge.New(charge.Options{Store: st, Gateway: &scripted{}, Clock: clock.NewFake(t0), Log: zerolog.Nop(), Hook: hook, Retry: fastRetry})
	if !alone {
		warnings, errs = eng.CommitOutcomes(ctx, outs)
		return warnings, errs, hook
	}
	for _, o := range outs {
		w, e := eng.CommitOutcomes(ctx, []store.Outcome{o})
		warnings, errs = append(warnings, w...), append(errs, e...)
	}
	return warnings, errs, hook
}

// dumpTables reads every row of the tables an outcome can write, in id
// order, values rendered as text (the two databases' drivers give the same
// Go types for the same columns either way).
func dumpTables(t *testing.T, st *store.Store) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range []string{"charge_attempts", "invoices", "subscriptions", "dunning_cases", "dunning_steps", "refunds", "emails", "payment_methods", "events"} {
		var rows []map[string]any
		require.NoError(t, st.DB().Raw(`SELECT * FROM `+table+` ORDER BY id`).Scan(&rows).Error, table)
		for _, r := range rows {
			keys := make([]string, 0, len(r))
			for k := range r {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			line := ""
			for _, k := range keys {
				v := r[k]
				if tv, ok := v.(time.Time); ok {
					v = tv.UTC().Format(time.RFC3339Nano)
					if tv.After(t0.AddDate(0, 1, 0)) {
						// GORM's Save stamps updated_at with the wall
						// clock (a case's), not the outcome's time.
						v = "<wall clock>"
					}
				}
				if k == "message_id" {
					v = "<random>" // a Message-ID's left part is random
				}
				line += fmt.Sprintf("%s=%v ", k, v)
			}
			out[table] = append(out[table], line)
		}
	}
	return out
}

// TestBatchedOutcomesMatchOneByOne: a group commit mixing successes,
// declines, a lost lease, a second payment, a void invoice, a reactivation and
// a recovered dunning case writes exactly the rows that recording each
// outcome alone writes, on both dialects.
func TestBatchedOutcomesMatchOneByOne(t *testing.T) {
	for _, dialect := range []struct {
		name string
		open func(testing.TB) *store.Store
	}{
		{"sqlite", func(tb testing.TB) *store.Store { return storetest.SQLite(tb) }},
		{"postgres", func(tb testing.TB) *store.Store { return storetest.Postgres(tb) }},
	} {
		t.Run(dialect.name, func(t *testing.T) {
			batched, alone := dialect.open(t), dialect.open(t)
			bw, be, bh := recordMixed(t, batched, false)
			aw, ae, ah := recordMixed(t, alone, true)

			require.Equal(t, 2, bh.batches, "the two runs of successes go through the batched write")
			require.Equal(t, 8, bh.outcomes, "every success whose attempt moved is handed to dunning in a batch")
			require.Zero(t, ah.batches, "an outcome alone takes the one-row path")
			require.Equal(t, aw, bw, "warnings")
			for i, c := range mixedBatch {
				require.Equal(t, ae[i], be[i], c.name)
				if c.name == "lease lost" {
					require.ErrorIs(t, be[i], store.ErrLeaseLost, c.name)
				} else {
					require.NoError(t, be[i], c.name)
				}
			}
			require.Contains(t, bw[4], "SECOND SUCCESSFUL CHARGE", "the second payment's warning")
			require.NotEmpty(t, bw[5], "the late success on a void invoice warns")

			got, want := dumpTables(t, batched), dumpTables(t, alone)
			require.Equal(t, want, got)

			// The scenario did what it says (else the comparison proves little).
			var refunds, recovered, pastDue, declined int64
			require.NoError(t, batched.DB().Model(&models.Refund{}).Count(&refunds).Error)
			require.Equal(t, int64(2), refunds, "a refund for the second payment and for the void invoice")
			require.NoError(t, batched.DB().Model(&models.DunningCase{}).Where("status = ?", models.CaseRecovered).Count(&recovered).Error)
			require.Equal(t, int64(1), recovered)
			require.NoError(t, batched.DB().Model(&models.Subscription{}).Where("status = 'past_due'").Count(&pastDue).Error)
			require.Equal(t, int64(1), pastDue, "only the declined subscription is past due")
			require.NoError(t, batched.DB().Model(&models.ChargeAttempt{}).Where("status = 'declined'").Count(&declined).Error)
			require.Equal(t, int64(1), declined)
		})
	}
}
