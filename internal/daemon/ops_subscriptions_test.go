package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store/storetest"
)

var subsActor = ops.Actor{Name: "ada", Via: models.ViaCLI}

func subscriptionRow(t *testing.T, b *daemontest.Bundle, ref string) models.Subscription {
	t.Helper()
	var s models.Subscription
	require.NoError(t, b.Store.DB().Where("reference = ?", ref).First(&s).Error)
	return s
}

func subsInvoices(t *testing.T, b *daemontest.Bundle, ref string) []models.Invoice {
	t.Helper()
	s := subscriptionRow(t, b, ref)
	var invs []models.Invoice
	require.NoError(t, b.Store.DB().Where("subscription_id = ?", s.ID).Order("period_index").Find(&invs).Error)
	return invs
}

func auditOf(t *testing.T, b *daemontest.Bundle, action string) []models.AuditEntry {
	t.Helper()
	var rows []models.AuditEntry
	require.NoError(t, b.Store.DB().Where("action = ?", action).Order("id").Find(&rows).Error)
	return rows
}

// requireOneAudit checks an action wrote exactly one audit row with its
// actor, reason, before and after.
func requireOneAudit(t *testing.T, b *daemontest.Bundle, action, ref, reason string) models.AuditEntry {
	t.Helper()
	rows := auditOf(t, b, action)
	require.Len(t, rows, 1, "one audit row for %s", action)
	e := rows[0]
	require.Equal(t, "ada", e.Actor)
	require.Equal(t, models.ViaCLI, e.Via)
	require.Equal(t, ops.TargetSubscription, e.TargetType)
	require.Equal(t, ref, e.TargetRef)
	require.Equal(t, reason, e.Reason)
	require.True(t, json.Valid([]byte(e.BeforeJSON)), "before: %s", e.BeforeJSON)
	require.True(t, json.Valid([]byte(e.AfterJSON)), "after: %s", e.AfterJSON)
	return e
}

func linkStatus(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	_ = res.Body.Close()
	return res.StatusCode
}

// A subscription in dunning canceled now: its invoice is voided, its case
// stopped, its pay link answers 410, and a month of billing later it has no
// further invoice — whether the daemon ticks while the action runs or not.
func TestCancelNowEndsDunningAndBilling(t *testing.T) {
	for _, ticking := range []bool{false, true} {
		t.Run("ticking="+strconv.FormatBool(ticking), func(t *testing.T) {
			daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
				ctx := context.Background()
				cus, pm := b.SaveCard(t, "4000000000009995") // insufficient_funds: soft decline
				b.Seed(t, storetest.Subscription{Reference: "sub-1", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
				b.Run(t, time.Minute, time.Minute)
				invs := subsInvoices(t, b, "sub-1")
				require.Len(t, invs, 1)
				var c models.DunningCase
				require.NoError(t, b.Store.DB().Where("invoice_id = ?", invs[0].ID).First(&c).Error)
				require.Equal(t, models.CaseOpen, c.Status)
				links := b.PayLinks(t)
				require.NotEmpty(t, links)
				require.Equal(t, http.StatusOK, linkStatus(t, links[0]))

				op := b.Operator(t)
				var wg sync.WaitGroup
				if ticking {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < 20; i++ {
							b.D.Tick(ctx)
							b.Clock.Advance(time.Hour)
						}
					}()
				}
				sub, err := op.CancelSubscription(ctx, subsActor, "sub-1", "customer asked", ops.CancelOptions{})
				wg.Wait()
				require.NoError(t, err)
				require.Equal(t, "canceled", sub.Status)
				require.NotNil(t, sub.CanceledAt)

				require.NoError(t, b.Store.DB().First(&c, c.ID).Error)
				require.Equal(t, models.CaseStopped, c.Status)
				require.Equal(t, models.InvoiceVoid, subsInvoices(t, b, "sub-1")[0].Status)
				require.Equal(t, http.StatusGone, linkStatus(t, links[0]))
				e := requireOneAudit(t, b, ops.ActionSubscriptionCancel, "sub-1", "customer asked")
				require.Contains(t, e.AfterJSON, invs[0].PublicID, "the after-state names the voided invoice")

				// Canceling again changes nothing and writes no second row.
				again, err := op.CancelSubscription(ctx, subsActor, "sub-1", "customer asked", ops.CancelOptions{})
				require.NoError(t, err)
				require.Equal(t, "canceled", again.Status)
				require.Len(t, auditOf(t, b, ops.ActionSubscriptionCancel), 1)
				_, err = op.ResumeSubscription(ctx, subsActor, "sub-1", "")
				require.ErrorIs(t, err, ops.ErrConflict)
				amount := int64(2000)
				_, err = op.UpdateSubscription(ctx, subsActor, "sub-1", "", ops.SubscriptionUpdate{Amount: &amount})
				require.ErrorIs(t, err, ops.ErrConflict)

				b.Run(t, 40*24*time.Hour, 12*time.Hour)
				require.Len(t, subsInvoices(t, b, "sub-1"), 1, "no invoice after the cancel")
				require.Equal(t, http.StatusGone, linkStatus(t, links[0]))
			})
		})
	}
}

// A cancel at period end: the subscription keeps its status and is billed up
// to cancel_at, then the billing pass cancels it (audited as billingd) and
// bills nothing after.
func TestCancelAtPeriodEnd(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		start := b.Clock.Now()
		cus, pm := b.SaveCard(t, "4242424242424242")
		b.Seed(t, storetest.Subscription{Reference: "sub-1", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: start})
		b.Run(t, time.Second, time.Second)
		b.Clock.Advance(40 * 24 * time.Hour) // into period 1, not yet invoiced
		b.Run(t, time.Second, time.Second)
		require.Len(t, subsInvoices(t, b, "sub-1"), 2)

		op := b.Operator(t)
		sub, err := op.CancelSubscription(ctx, subsActor, "sub-1", "moving away", ops.CancelOptions{AtPeriodEnd: true})
		require.NoError(t, err)
		require.Equal(t, "active", sub.Status)
		require.NotNil(t, sub.CancelAt)
		want := start.AddDate(0, 2, 0)
		require.True(t, sub.CancelAt.Equal(want), "cancel_at %s is the end of period 1 (%s)", sub.CancelAt, want)
		requireOneAudit(t, b, ops.ActionSubscriptionCancelAtPeriodEnd, "sub-1", "moving away")

		// Twice is idempotent.
		rep, err := op.CancelSubscriptionReport(ctx, subsActor, "sub-1", "moving away", ops.CancelOptions{AtPeriodEnd: true})
		require.NoError(t, err)
		require.False(t, rep.Changed)
		require.Len(t, auditOf(t, b, ops.ActionSubscriptionCancelAtPeriodEnd), 1)

		b.Run(t, 70*24*time.Hour, 12*time.Hour)
		invs := subsInvoices(t, b, "sub-1")
		require.Len(t, invs, 2, "billed up to cancel_at, nothing after")
		for _, inv := range invs {
			require.Equal(t, models.InvoicePaid, inv.Status)
			require.True(t, inv.PeriodStart.Before(want))
		}
		s := subscriptionRow(t, b, "sub-1")
		require.Equal(t, models.SubscriptionCanceled, s.Status)
		require.NotNil(t, s.CanceledAt)
		require.True(t, s.CanceledAt.Equal(want))
		sys := auditOf(t, b, schedule.ActionCanceledAtPeriodEnd)
		require.Len(t, sys, 1)
		require.Equal(t, "billingd", sys[0].Actor)
		require.Equal(t, models.ViaSystem, sys[0].Via)
	})
}

// Pause across two periods, then resume: no invoice for the paused periods,
// the next on its anchor day; a period that started and is not invoiced yet
// cannot be paused over.
func TestPauseAcrossTwoPeriodsThenResume(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		start := b.Clock.Now() // 2026-03-02 09:00 UTC
		cus, pm := b.SaveCard(t, "4242424242424242")
		b.Seed(t, storetest.Subscription{Reference: "sub-1", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: start})
		b.Run(t, time.Second, time.Second)
		op := b.Operator(t)

		// Period 1 has started and no pass has invoiced it yet.
		b.Clock.Set(start.AddDate(0, 1, 0).Add(time.Hour))
		_, err := op.PauseSubscription(ctx, subsActor, "sub-1", "seasonal break")
		require.ErrorIs(t, err, ops.ErrConflict)
		b.Run(t, time.Second, time.Second)
		require.Len(t, subsInvoices(t, b, "sub-1"), 2)

		sub, err := op.PauseSubscription(ctx, subsActor, "sub-1", "seasonal break")
		require.NoError(t, err)
		require.Equal(t, "paused", sub.Status)
		requireOneAudit(t, b, ops.ActionSubscriptionPause, "sub-1", "seasonal break")

		b.Run(t, 70*24*time.Hour, 12*time.Hour) // past the starts of periods 2 and 3
		require.Len(t, subsInvoices(t, b, "sub-1"), 2, "nothing invoiced while paused")

		sub, err = op.ResumeSubscription(ctx, subsActor, "sub-1", "back")
		require.NoError(t, err)
		require.Equal(t, "active", sub.Status)
		require.True(t, sub.NextBillingAt.Equal(start.AddDate(0, 4, 0)), "next billing %s", sub.NextBillingAt)
		requireOneAudit(t, b, ops.ActionSubscriptionResume, "sub-1", "back")

		b.Clock.Set(start.AddDate(0, 4, 0).Add(-time.Hour))
		b.Run(t, 2*time.Hour, time.Hour)
		invs := subsInvoices(t, b, "sub-1")
		require.Len(t, invs, 3)
		require.Equal(t, 4, invs[2].PeriodIndex)
		require.True(t, invs[2].PeriodStart.Equal(start.AddDate(0, 4, 0)), "on its anchor day: %s", invs[2].PeriodStart)
		require.Equal(t, models.InvoicePaid, invs[2].Status)

		// The periods skipped while paused are accounted for by the resume's
		// audit row; nothing else is missing, doubled or charged twice.
		rep, err := invariant.Check(ctx, b.Store, b.Sim.Ledger(), invariant.Options{Now: b.Clock.Now()})
		require.NoError(t, err)
		require.True(t, rep.OK(), "%s", rep)
		// Without that record the same gap is a missed period.
		require.NoError(t, b.Store.DB().Exec(`DELETE FROM audit_log WHERE action = ?`, ops.ActionSubscriptionResume).Error)
		rep, err = invariant.Check(ctx, b.Store, b.Sim.Ledger(), invariant.Options{Now: b.Clock.Now()})
		require.NoError(t, err)
		require.False(t, rep.OK())
		require.Contains(t, rep.String(), "period 2 has no invoice")
	})
}

// A new amount applies from the next period, the current invoice keeps its
// own; a card of another customer is refused, naming the field, and nothing
// changes; a card of the customer's own lets an open dunning case proceed as
// a card saved on the pay page does.
func TestUpdateSubscription(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		start := b.Clock.Now()
		cus, pm := b.SaveCard(t, "4000000000009995") // declines: the invoice goes into dunning
		b.Seed(t, storetest.Subscription{Reference: "sub-1", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: start})
		b.Run(t, time.Minute, time.Minute)
		op := b.Operator(t)

		amount := int64(2500)
		rep, err := op.UpdateSubscriptionReport(ctx, subsActor, "sub-1", "new plan", ops.SubscriptionUpdate{Amount: &amount})
		require.NoError(t, err)
		require.True(t, rep.Changed)
		require.Equal(t, int64(2500), rep.Subscription.Price.Amount)
		requireOneAudit(t, b, ops.ActionSubscriptionUpdate, "sub-1", "new plan")
		require.Equal(t, int64(1000), subsInvoices(t, b, "sub-1")[0].Amount, "the current invoice is unchanged")

		bad := int64(0)
		_, err = op.UpdateSubscription(ctx, subsActor, "sub-1", "", ops.SubscriptionUpdate{Amount: &bad})
		var fe *ops.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "amount", fe.Field)

		_, otherPM := b.SaveCard(t, "4242424242424242")
		_, err = op.UpdateSubscription(ctx, subsActor, "sub-1", "", ops.SubscriptionUpdate{PaymentMethod: &otherPM})
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "payment_method", fe.Field)
		require.Contains(t, fe.Message, "belongs to customer")
		s := subscriptionRow(t, b, "sub-1")
		var cur models.PaymentMethod
		require.NoError(t, b.Store.DB().First(&cur, s.PaymentMethodID).Error)
		require.Equal(t, pm, cur.GatewayID, "the card is unchanged")
		require.Len(t, auditOf(t, b, ops.ActionSubscriptionUpdate), 1, "a refused update writes no audit row")

		// A second card saved for the same customer.
		woosh, err := wooshpay.New(wooshpay.Options{BaseURL: b.Config.Gateway.BaseURL, SecretKey: daemontest.SecretKey, Timeout: 5 * time.Second})
		require.NoError(t, err)
		seti, err := woosh.CreateSetupIntent(ctx, wooshpay.SetupIntentParams{Customer: cus, Usage: "off_session",
			Card: wooshpay.CardData{Number: "4242424242424242", ExpMonth: "12", ExpYear: "2035", CVC: "123"}}, "")
		require.NoError(t, err)
		rep, err = op.UpdateSubscriptionReport(ctx, subsActor, "sub-1", "card replaced by phone", ops.SubscriptionUpdate{PaymentMethod: &seti.PaymentMethod})
		require.NoError(t, err)
		require.Equal(t, seti.PaymentMethod, rep.Subscription.Card.PaymentMethod)
		require.Equal(t, "4242", rep.Subscription.Card.Last4)
		require.Len(t, auditOf(t, b, ops.ActionSubscriptionUpdate), 2)
		var steps []models.DunningStep
		require.NoError(t, b.Store.DB().Where("action = ?", models.StepPaymentMethodUpdated).Find(&steps).Error)
		require.Len(t, steps, 1, "the dunning case proceeded as after a pay-page card")

		// The retry is due now; the daemon's next billing pass (schedule.billing,
		// every 5 minutes) sends it.
		b.Run(t, 6*time.Minute, time.Minute)
		invs := subsInvoices(t, b, "sub-1")
		require.Equal(t, models.InvoicePaid, invs[0].Status, "the invoice in dunning is retried on the new card")
		require.Equal(t, int64(1000), invs[0].Amount)

		b.Clock.Set(start.AddDate(0, 1, 0))
		b.Run(t, time.Minute, time.Minute)
		invs = subsInvoices(t, b, "sub-1")
		require.Len(t, invs, 2)
		require.Equal(t, int64(2500), invs[1].Amount, "the next period is charged the new amount")
		require.Equal(t, models.InvoicePaid, invs[1].Status)

		story, err := op.SubscriptionStoryOf(ctx, "sub-1")
		require.NoError(t, err)
		require.Len(t, story.Invoices, 2)
		require.NotEmpty(t, story.Attempts)
		require.Len(t, story.Cases, 1)
		require.Len(t, story.Audit, 2)
		list, err := op.ListSubscriptions(ctx, ops.Filter{Status: []string{"active"}})
		require.NoError(t, err)
		require.Len(t, list, 1)
		_, err = op.ListSubscriptions(ctx, ops.Filter{Status: []string{"bogus"}})
		require.True(t, errors.As(err, &fe))
	})
}

// On Checkout.com a new card needs its series payment, checked as an import
// checks it (a succeeded payment of that card and customer); the accepted
// card and its series are what the next period is charged with.
func TestUpdateCardOnCheckout(t *testing.T) {
	daemontest.Each(t, daemontest.Options{Provider: "checkout"}, func(t *testing.T, b *daemontest.Bundle) {
		ctx := context.Background()
		save := func(number, email string) signup.Saved {
			s, err := b.Signup.Save(ctx, signup.Card{Number: number, ExpMonth: 12, ExpYear: 2035, CVC: "123", Email: email})
			require.NoError(t, err)
			return s
		}
		first := save("4242424242424242", "ada@example.com")
		second := save("4111111111111111", "ada@example.com")
		require.Equal(t, first.Customer, second.Customer, "Checkout.com finds the customer by email")
		other := save("4761344136141390", "bob@example.com")
		start := b.Clock.Now()
		b.Seed(t, storetest.Subscription{Reference: "sub-1", Customer: first.Customer, PaymentMethod: first.PaymentMethod,
			PreviousPaymentID: first.PreviousPaymentID, Amount: 1000, Currency: "USD", Anchor: start})
		b.Run(t, time.Second, time.Second)
		op := b.Operator(t)

		for _, tc := range []struct {
			name    string
			u       ops.SubscriptionUpdate
			field   string
			message string
		}{
			{"no series", ops.SubscriptionUpdate{PaymentMethod: &second.PaymentMethod}, "previous_payment_id", "required"},
			{"series of another card", ops.SubscriptionUpdate{PaymentMethod: &second.PaymentMethod, PreviousPaymentID: &first.PreviousPaymentID},
				"previous_payment_id", "another card"},
			{"card of another customer", ops.SubscriptionUpdate{PaymentMethod: &other.PaymentMethod, PreviousPaymentID: &other.PreviousPaymentID},
				"payment_method", "belongs to customer"},
		} {
			_, err := op.UpdateSubscription(ctx, subsActor, "sub-1", "", tc.u)
			var fe *ops.FieldError
			require.ErrorAs(t, err, &fe, tc.name)
			require.Equal(t, tc.field, fe.Field, tc.name)
			require.Contains(t, fe.Message, tc.message, tc.name)
		}
		require.Empty(t, auditOf(t, b, ops.ActionSubscriptionUpdate))

		sub, err := op.UpdateSubscription(ctx, subsActor, "sub-1", "new card", ops.SubscriptionUpdate{PaymentMethod: &second.PaymentMethod,
			PreviousPaymentID: &second.PreviousPaymentID})
		require.NoError(t, err)
		require.Equal(t, second.PaymentMethod, sub.Card.PaymentMethod)
		requireOneAudit(t, b, ops.ActionSubscriptionUpdate, "sub-1", "new card")

		b.Clock.Set(start.AddDate(0, 1, 0))
		b.Run(t, time.Minute, time.Minute)
		invs := subsInvoices(t, b, "sub-1")
		require.Len(t, invs, 2)
		require.Equal(t, models.InvoicePaid, invs[1].Status)
		var a models.ChargeAttempt
		require.NoError(t, b.Store.DB().Where("invoice_id = ?", invs[1].ID).First(&a).Error)
		require.Equal(t, second.PaymentMethod, a.GatewayPM)
		require.Equal(t, second.PreviousPaymentID, a.PreviousPaymentID)
	})
}
