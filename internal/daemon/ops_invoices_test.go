package daemon_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
)

var opsActor = ops.Actor{Name: "ops-test", Via: models.ViaCLI}

// auditRows counts the audit rows of one action on one target.
func auditRows(t *testing.T, b *daemontest.Bundle, action string, targetID int64) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.Store.DB().Model(&models.AuditEntry{}).Where("action = ? AND target_id = ?", action, targetID).Count(&n).Error)
	return n
}

// seedOn seeds one 10.00 USD subscription on a card with the given number
// and runs the daemon's first pass; it returns the invoice and the card.
func seedOn(t *testing.T, b *daemontest.Bundle, ref, number string) (models.Invoice, string) {
	t.Helper()
	cus, pm := b.SaveCard(t, number)
	b.Seed(t, storetest.Subscription{Reference: ref, Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
	return untilCharged(t, b, ref), pm
}

// untilCharged runs the daemon minute by minute until the subscription's
// first invoice had an attempt (the billing job runs on its cron).
func untilCharged(t *testing.T, b *daemontest.Bundle, ref string) models.Invoice {
	t.Helper()
	for i := 0; i < 10; i++ {
		b.Run(t, time.Second, time.Second)
		var inv models.Invoice
		require.NoError(t, b.Store.DB().Raw(`SELECT i.* FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id WHERE s.reference = ?`, ref).Scan(&inv).Error)
		if inv.ID != 0 && inv.AttemptCount > 0 {
			return inv
		}
		b.Clock.Advance(time.Minute)
	}
	t.Fatalf("subscription %s was not charged", ref)
	return models.Invoice{}
}

func invoiceRow(t *testing.T, b *daemontest.Bundle, id int64) models.Invoice {
	t.Helper()
	var inv models.Invoice
	require.NoError(t, b.Store.DB().First(&inv, id).Error)
	return inv
}

// paidLedger is the gateway's payments of one order: succeeded ones and what
// refunds gave back of them.
func paidLedger(b *daemontest.Bundle, order string) (succeeded int, taken, refunded int64) {
	for _, e := range b.Sim.Ledger() {
		if e.MerchantOrderID == order && e.Status == "succeeded" {
			succeeded++
			taken += e.Amount
			refunded += e.AmountRefunded
		}
	}
	return succeeded, taken, refunded
}

// Voiding an invoice in dunning closes its case as stopped, kills its links
// (410) and queues nothing more; a paid invoice cannot be voided.
func TestOperatorVoidInvoice(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		op := b.Operator(t)
		inv, _ := seedOn(t, b, "sub-void", "4000000000009995")
		require.Equal(t, models.InvoiceOpen, inv.Status)
		links := b.PayLinks(t)
		require.NotEmpty(t, links, "the decline emailed a pay link")

		_, err := op.VoidInvoice(ctx, opsActor, inv.PublicID, "")
		var fe *ops.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "reason", fe.Field)

		view, err := op.VoidInvoice(ctx, opsActor, inv.PublicID, "billed in error")
		require.NoError(t, err)
		require.Equal(t, "void", view.Status)
		require.Nil(t, view.NextAttemptAt)
		var c models.DunningCase
		require.NoError(t, b.Store.DB().Where("invoice_id = ?", inv.ID).First(&c).Error)
		require.Equal(t, models.CaseStopped, c.Status)
		require.EqualValues(t, 1, auditRows(t, b, ops.ActionInvoiceVoid, inv.ID))
		var sub models.Subscription
		require.NoError(t, b.Store.DB().Where("id = ?", inv.SubscriptionID).First(&sub).Error)
		require.Equal(t, models.SubscriptionActive, sub.Status, "nothing is owed any more: past_due no longer")

		res, err := http.Get(links[0])
		require.NoError(t, err)
		_ = res.Body.Close()
		require.Equal(t, http.StatusGone, res.StatusCode)

		var emailsBefore int64
		require.NoError(t, b.Store.DB().Model(&models.Email{}).Count(&emailsBefore).Error)
		b.Run(t, 10*24*time.Hour, 6*time.Hour)
		var emailsAfter, pending int64
		require.NoError(t, b.Store.DB().Model(&models.Email{}).Count(&emailsAfter).Error)
		require.NoError(t, b.Store.DB().Model(&models.Email{}).Where("status = 'pending'").Count(&pending).Error)
		require.Equal(t, emailsBefore, emailsAfter, "no email queued after the void")
		require.Zero(t, pending)
		n, _, _ := paidLedger(b, inv.PublicID)
		require.Zero(t, n)

		_, err = op.VoidInvoice(ctx, opsActor, inv.PublicID, "again")
		require.ErrorIs(t, err, ops.ErrConflict)

		paid, _ := seedOn(t, b, "sub-paid", "4242424242424242")
		require.Equal(t, models.InvoicePaid, paid.Status)
		_, err = op.VoidInvoice(ctx, opsActor, paid.PublicID, "no")
		require.ErrorIs(t, err, ops.ErrConflict)
		require.Contains(t, err.Error(), "refund")

		story, err := op.InvoiceStoryOf(ctx, inv.PublicID)
		require.NoError(t, err)
		require.NotNil(t, story.Case)
		require.Equal(t, "stopped", story.Case.Status)
		require.Len(t, story.Audit, 1)
		require.NotEmpty(t, story.Links)
		for _, l := range story.Links {
			require.Equal(t, "revoked", l.State)
		}
		require.Equal(t, "insufficient_funds", story.Attempts[0].DeclineCode)
	})
}

// A partial then a full refund: the gateway's ledger and the refunds table
// agree; a third is refused naming the amount; the same key twice is one
// refund.
func TestOperatorRefunds(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		op := b.Operator(t)
		inv := paidInvoice(t, b)

		part, err := op.RefundInvoice(ctx, opsActor, inv.PublicID, "partial credit", ops.RefundOptions{Amount: 400})
		require.NoError(t, err)
		require.Equal(t, "succeeded", part.Status)
		require.EqualValues(t, 400, part.Amount.Amount)
		again, err := op.RefundInvoice(ctx, opsActor, inv.PublicID, "partial credit", ops.RefundOptions{Amount: 400, Key: part.Key})
		require.NoError(t, err)
		require.Equal(t, part.ID, again.ID, "the same key is the same refund")

		rest, err := op.RefundInvoice(ctx, opsActor, inv.PublicID, "the rest", ops.RefundOptions{Reason: models.RefundReasonFraudulent})
		require.NoError(t, err)
		require.EqualValues(t, 600, rest.Amount.Amount)
		require.Equal(t, "succeeded", rest.Status)

		_, err = op.RefundInvoice(ctx, opsActor, inv.PublicID, "too much", ops.RefundOptions{Amount: 1})
		require.ErrorIs(t, err, ops.ErrConflict, "nothing is left: the invoice's state refuses it")
		require.Contains(t, err.Error(), "nothing is left to refund")

		// A key already used is the same refund only for the same terms.
		_, err = op.RefundInvoice(ctx, opsActor, inv.PublicID, "partial credit", ops.RefundOptions{Amount: 401, Key: part.Key})
		var fe *ops.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "key", fe.Field)
		require.Contains(t, fe.Message, "other terms")

		var table int64
		for _, rf := range refundRows(t, b) {
			require.Equal(t, models.RefundSucceeded, rf.Status)
			table += rf.Amount
		}
		n, taken, refunded := paidLedger(b, inv.PublicID)
		require.Equal(t, 1, n)
		require.EqualValues(t, 1000, taken)
		require.EqualValues(t, 1000, refunded)
		require.EqualValues(t, table, refunded)
		require.Len(t, b.Sim.Refunds(), 2)
		require.EqualValues(t, 2, auditRows(t, b, ops.ActionInvoiceRefund, inv.ID), "one audit row per refund, none for the replay")

		view, err := op.ListInvoices(ctx, ops.Filter{Reference: inv.PublicID})
		require.NoError(t, err)
		require.Len(t, view, 1)
		require.EqualValues(t, 1000, view[0].Refunded.Amount)
		require.Equal(t, "10.00 USD", view[0].Refunded.Display)
	})
}

// A refund answered 5xx after the gateway recorded it is still one refund at
// the gateway once the refund job replayed it with its key.
func TestOperatorRefundAfter5xx(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		op := b.Operator(t)
		inv := paidInvoice(t, b)
		b.Sim.SetFaults(sim.Faults{Error5xxAfter: 1})
		rf, err := op.RefundInvoice(ctx, opsActor, inv.PublicID, "customer asked", ops.RefundOptions{})
		require.NoError(t, err)
		require.Contains(t, []string{"unknown", "succeeded"}, rf.Status)
		b.Sim.SetFaults(sim.Faults{})
		b.Run(t, 30*time.Second, 10*time.Second)
		rows := refundRows(t, b)
		require.Len(t, rows, 1)
		require.Equal(t, models.RefundSucceeded, rows[0].Status)
		require.Len(t, b.Sim.Refunds(), 1, "exactly one refund at the gateway")
		require.EqualValues(t, 1, auditRows(t, b, ops.ActionInvoiceRefund, inv.ID))
	})
}

// An attempt in needs_review that the gateway says succeeded pays its
// invoice exactly once; one that never reached the gateway is marked failed
// only when asked to.
func TestOperatorResolveAttempt(t *testing.T) {
	daemontest.Each(t, daemontest.Options{NoWebhooks: true}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		op := b.Operator(t)
		cus, pm := b.SaveCard(t, "4242424242424242")
		// The charge executes at the gateway but its answer is lost.
		b.Sim.SetFaults(sim.Faults{Error5xxAfter: 1})
		b.Seed(t, storetest.Subscription{Reference: "sub-review", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
		untilCharged(t, b, "sub-review")
		b.Sim.SetFaults(sim.Faults{})
		var a models.ChargeAttempt
		require.NoError(t, b.Store.DB().First(&a).Error)
		require.Equal(t, models.AttemptUnknown, a.Status)
		require.NoError(t, b.Store.DB().Exec(`UPDATE charge_attempts SET status = 'needs_review', error_message = 'flagged by the test' WHERE id = ?`, a.ID).Error)

		_, err := op.ResolveAttempt(ctx, opsActor, a.ID, "", false)
		var fe *ops.FieldError
		require.ErrorAs(t, err, &fe)

		got, err := op.ResolveAttempt(ctx, opsActor, a.ID, "checked after the outage", false)
		require.NoError(t, err)
		require.Equal(t, "succeeded", got.Status)
		require.NotEmpty(t, got.Payment)
		inv := invoiceRow(t, b, a.InvoiceID)
		require.Equal(t, models.InvoicePaid, inv.Status)
		require.Equal(t, got.Payment, inv.PaymentIntentID)
		n, taken, _ := paidLedger(b, inv.PublicID)
		require.Equal(t, 1, n, "one payment at the gateway")
		require.EqualValues(t, 1000, taken)
		require.EqualValues(t, 1, auditRows(t, b, ops.ActionAttemptResolve, a.ID))
		// The subscription's story tells the actions on its attempts too.
		story, err := op.SubscriptionStoryOf(ctx, "sub-review")
		require.NoError(t, err)
		var actions []string
		for _, e := range story.Audit {
			actions = append(actions, e.Action)
		}
		require.Contains(t, actions, ops.ActionAttemptResolve)

		_, err = op.ResolveAttempt(ctx, opsActor, a.ID, "again", false)
		require.ErrorIs(t, err, ops.ErrConflict)
		b.Run(t, time.Hour, 10*time.Minute)
		n, _, _ = paidLedger(b, inv.PublicID)
		require.Equal(t, 1, n, "still one payment")

		// An attempt whose request never executed.
		cus2, pm2 := b.SaveCard(t, "4242424242424242")
		b.Sim.SetFaults(sim.Faults{Error5xxBefore: 1})
		b.Seed(t, storetest.Subscription{Reference: "sub-never", Customer: cus2, PaymentMethod: pm2, Amount: 700, Currency: "USD", Anchor: b.Clock.Now()})
		untilCharged(t, b, "sub-never")
		b.Sim.SetFaults(sim.Faults{})
		var never models.ChargeAttempt
		require.NoError(t, b.Store.DB().Where("amount = 700").First(&never).Error)
		require.NoError(t, b.Store.DB().Exec(`UPDATE charge_attempts SET status = 'needs_review' WHERE id = ?`, never.ID).Error)
		_, err = op.ResolveAttempt(ctx, opsActor, never.ID, "looked", false)
		require.ErrorIs(t, err, ops.ErrConflict)
		require.Contains(t, err.Error(), "--mark-failed")
		got, err = op.ResolveAttempt(ctx, opsActor, never.ID, "never reached the gateway", true)
		require.NoError(t, err)
		require.Equal(t, "failed", got.Status)
		require.EqualValues(t, 1, auditRows(t, b, ops.ActionAttemptResolve, never.ID))
		n, _, _ = paidLedger(b, never.MerchantOrderID)
		require.Zero(t, n, "nothing was replayed")
	})
}

// Retry now: refused while an attempt is open (naming it); after a soft
// decline and the card recovering, the invoice is paid once and its case
// recovered; a paid invoice cannot be retried.
func TestOperatorRetryInvoice(t *testing.T) {
	daemontest.Each(t, daemontest.Options{Sim: sim.Options{ProcessingDelay: time.Hour}}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		op := b.Operator(t)
		inv, pm := seedOn(t, b, "sub-retry", "4000000000009995")
		require.Equal(t, models.InvoiceOpen, inv.Status)
		require.NoError(t, b.Sim.SetCardBehaviour(pm, "4242424242424242"))

		view, err := op.RetryInvoice(ctx, opsActor, inv.PublicID, "card topped up")
		require.NoError(t, err)
		require.Equal(t, "paid", view.Status)
		require.Equal(t, 2, view.Attempts)
		var c models.DunningCase
		require.NoError(t, b.Store.DB().Where("invoice_id = ?", inv.ID).First(&c).Error)
		require.Equal(t, models.CaseRecovered, c.Status)
		n, _, _ := paidLedger(b, inv.PublicID)
		require.Equal(t, 1, n)
		require.EqualValues(t, 1, auditRows(t, b, ops.ActionInvoiceRetry, inv.ID))
		_, err = op.RetryInvoice(ctx, opsActor, inv.PublicID, "")
		require.ErrorIs(t, err, ops.ErrConflict)
		b.Run(t, 10*24*time.Hour, 12*time.Hour)
		n, _, _ = paidLedger(b, inv.PublicID)
		require.Equal(t, 1, n, "paid once")

		slow, _ := seedOn(t, b, "sub-slow", "4000000000000259")
		_, err = op.RetryInvoice(ctx, opsActor, slow.PublicID, "")
		require.ErrorIs(t, err, ops.ErrConflict)
		require.Contains(t, err.Error(), slow.PublicID+"-a1")
		require.Zero(t, auditRows(t, b, ops.ActionInvoiceRetry, slow.ID))

		dead, _ := seedOn(t, b, "sub-dead", "4000000000000069")
		_, err = op.RetryInvoice(ctx, opsActor, dead.PublicID, "")
		require.ErrorIs(t, err, ops.ErrConflict)
		require.Contains(t, err.Error(), "dead")
	})
}

// A charge still processing when its invoice is voided that succeeds
// afterwards is refunded automatically.
func TestVoidThenLateSuccessIsRefunded(t *testing.T) {
	daemontest.Each(t, daemontest.Options{Sim: sim.Options{ProcessingDelay: time.Minute}}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		op := b.Operator(t)
		inv, _ := seedOn(t, b, "sub-late", "4000000000000259")
		var a models.ChargeAttempt
		require.NoError(t, b.Store.DB().Where("invoice_id = ?", inv.ID).First(&a).Error)
		require.Equal(t, models.AttemptProcessing, a.Status)
		_, err := op.VoidInvoice(ctx, opsActor, inv.PublicID, "customer left")
		require.NoError(t, err)
		b.Run(t, 20*time.Minute, time.Minute)

		require.Equal(t, models.InvoiceVoid, invoiceRow(t, b, inv.ID).Status)
		rows := refundRows(t, b)
		require.Len(t, rows, 1)
		require.Equal(t, charge.LateVoidRefundKey(rows[0].PaymentIntentID), rows[0].IdempotencyKey)
		require.Equal(t, models.RefundSucceeded, rows[0].Status, "error: %s", rows[0].ErrorMessage)
		n, taken, refunded := paidLedger(b, inv.PublicID)
		require.Equal(t, 1, n)
		require.Equal(t, taken, refunded, "the late payment went back in full")
		require.EqualValues(t, 1, auditRows(t, b, ops.ActionInvoiceVoid, inv.ID))
	})
}

// Operator actions while the daemon ticks: refunds, stops and retries from
// another process never charge or refund twice.
func TestOperatorActionsWhileTheDaemonRuns(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		op := b.Operator(t)
		paid := paidInvoice(t, b)
		declined, pm := seedOn(t, b, "sub-busy", "4000000000009995")
		require.NoError(t, b.Sim.SetCardBehaviour(pm, "4242424242424242"))

		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Run(t, 3*24*time.Hour, time.Hour)
		}()
		var retryErr, refundErr error
		for i := 0; i < 3; i++ {
			_, err := op.RetryInvoice(ctx, opsActor, declined.PublicID, "try now")
			if i == 0 {
				retryErr = err
			}
			_, err = op.RefundInvoice(ctx, opsActor, paid.PublicID, "refund", ops.RefundOptions{Amount: 300, Key: "op-busy"})
			if err != nil {
				refundErr = err
			}
		}
		wg.Wait()
		require.NoError(t, refundErr)
		if retryErr != nil {
			// The daemon's own retry may have been in flight: then the
			// operator's is refused, never sent beside it. Or the daemon's
			// clock, racing ahead here, outran the operator's lease: the
			// operator's request is not sent (no send on a lost lease), or
			// a pass took the attempt over and the operator's late write is
			// fenced off; the attempt is finished under its own key.
			require.True(t, errors.Is(retryErr, ops.ErrConflict) || errors.Is(retryErr, store.ErrLeaseLost) ||
				errors.Is(retryErr, charge.ErrLeaseRanOut), "%v", retryErr)
		}
		b.Run(t, 24*time.Hour, time.Hour)
		n, _, _ := paidLedger(b, declined.PublicID)
		require.Equal(t, 1, n, "paid once")
		require.Equal(t, models.InvoicePaid, invoiceRow(t, b, declined.ID).Status)
		_, _, refunded := paidLedger(b, paid.PublicID)
		require.EqualValues(t, 300, refunded)
		require.Len(t, b.Sim.Refunds(), 1)
	})
}

// Stopping a case leaves the invoice open with nothing scheduled.
func TestOperatorStopDunning(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		op := b.Operator(t)
		inv, _ := seedOn(t, b, "sub-stop", "4000000000009995")
		cases, err := op.ListCases(ctx, ops.Filter{Status: []string{"open"}})
		require.NoError(t, err)
		require.Len(t, cases, 1)
		got, err := op.StopDunning(ctx, opsActor, cases[0].ID, "handled by phone")
		require.NoError(t, err)
		require.Equal(t, "stopped", got.Status)
		after := invoiceRow(t, b, inv.ID)
		require.Equal(t, models.InvoiceOpen, after.Status)
		require.Nil(t, after.NextAttemptAt)
		require.EqualValues(t, 1, auditRows(t, b, ops.ActionDunningStop, cases[0].ID))
		_, err = op.StopDunning(ctx, opsActor, cases[0].ID, "again")
		require.ErrorIs(t, err, ops.ErrConflict)
		b.Run(t, 10*24*time.Hour, 12*time.Hour)
		var attempts int64
		require.NoError(t, b.Store.DB().Model(&models.ChargeAttempt{}).Where("invoice_id = ?", inv.ID).Count(&attempts).Error)
		require.EqualValues(t, 1, attempts, "no retry after the stop")
		story, err := op.CaseStoryOf(ctx, cases[0].ID)
		require.NoError(t, err)
		require.Len(t, story.Audit, 1)
		require.Equal(t, "stopped", story.Steps[len(story.Steps)-1].Action)

		_, err = op.ListAttempts(ctx, ops.Filter{Status: []string{"bogus"}})
		var fe *ops.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "status", fe.Field)
	})
}
