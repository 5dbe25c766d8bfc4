package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestTimelineListsEveryEventInTimeOrder builds one dunning story by hand — a
// declined charge, its case, a retry settled by webhook, two emails — beside an
// invoice that was never charged, and reads it back as one ordered timeline.
func TestTimelineListsEveryEventInTimeOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0,
			storetest.Subscription{Reference: "acme", Amount: 990, Currency: "GBP"},
			storetest.Subscription{Reference: "waits", Amount: 500, Currency: "USD"})
		require.Equal(t, 2, invoiceAll(t, st, t0))
		var invs []models.Invoice
		require.NoError(t, st.DB().Order("id").Find(&invs).Error)
		acme, waits := invs[0], invs[1]
		day := t0.Add(24 * time.Hour)
		create := func(v any) { t.Helper(); require.NoError(t, st.DB().Create(v).Error) }

		attempt := func(no int, status models.AttemptStatus, decline, pi string, finished time.Time) {
			create(&models.ChargeAttempt{InvoiceID: acme.ID, SubscriptionID: acme.SubscriptionID, AttemptNo: no,
				IdempotencyKey: fmt.Sprintf("%s-a%d", acme.PublicID, no), MerchantOrderID: acme.PublicID, Amount: 990, Currency: "GBP",
				GatewayCustomer: "cus_acme", GatewayPM: "pm_acme", OffSession: true, Status: status, DeclineCode: decline,
				PaymentIntentID: pi, FinishedAt: &finished, CreatedAt: finished.Add(-time.Second), UpdatedAt: finished})
		}
		// Inserted out of time order: the timeline sorts.
		attempt(2, models.AttemptSucceeded, "", "pi_2", day)
		attempt(1, models.AttemptDeclined, "insufficient_funds", "pi_1", t0)
		c := &models.DunningCase{InvoiceID: acme.ID, SubscriptionID: acme.SubscriptionID, Reason: models.ReasonSoftDecline,
			Status: models.CaseRecovered, Step: 1, FinalAction: "cancel", OpenedAt: t0, CreatedAt: t0, UpdatedAt: day}
		create(c)
		create(&models.DunningStep{CaseID: c.ID, Step: 1, Action: "recovered", Detail: "invoice paid", At: day, CreatedAt: day, UpdatedAt: day})
		create(&models.DunningStep{CaseID: c.ID, Step: 1, Action: "opened", Detail: "off-session retry scheduled", At: t0, CreatedAt: t0, UpdatedAt: t0})
		sent := t0.Add(time.Minute)
		create(&models.Email{DedupeKey: "k1", Kind: models.EmailPaymentFailed, CaseID: &c.ID, InvoiceID: &acme.ID, ToAddress: "acme@example.com",
			MessageID: "<m1@example.com>", Subject: "Your payment of 9.90 GBP didn't go through", Status: models.EmailSent,
			NextAttemptAt: t0, SentAt: &sent, CreatedAt: t0, UpdatedAt: sent})
		create(&models.Email{DedupeKey: "k2", Kind: models.EmailRecovered, CaseID: &c.ID, InvoiceID: &acme.ID, ToAddress: "acme@example.com",
			MessageID: "<m2@example.com>", Status: models.EmailPending, NextAttemptAt: day, CreatedAt: day, UpdatedAt: day})
		require.NoError(t, st.DB().Model(&models.Invoice{}).Where("id = ?", acme.ID).
			Updates(map[string]any{"status": models.InvoicePaid, "updated_at": day}).Error)
		require.NoError(t, st.DB().Model(&models.Invoice{}).Where("id = ?", waits.ID).Update("updated_at", t0.Add(time.Hour)).Error)

		events, err := st.Timeline(ctx)
		require.NoError(t, err)
		type row struct {
			Source store.TimelineSource
			At     time.Time
			Ref    string
			Status string
			Code   string
			No     int
		}
		var got []row
		for _, e := range events {
			got = append(got, row{e.Source, e.At, e.Reference, e.Status, e.Code, e.No})
		}
		require.Equal(t, []row{
			{store.TimelineAttempt, t0, "acme", "declined", "insufficient_funds", 1},
			{store.TimelineStep, t0, "acme", "opened", "soft_decline", 1},
			{store.TimelineEmail, sent, "acme", "sent", "payment_failed", 0},
			{store.TimelineInvoice, t0.Add(time.Hour), "waits", "open", "", 0},
			{store.TimelineAttempt, day, "acme", "succeeded", "", 2},
			{store.TimelineStep, day, "acme", "recovered", "soft_decline", 1},
			{store.TimelineEmail, day, "acme", "pending", "recovered", 0},
		}, got)

		started := map[int]time.Time{}
		for _, e := range events {
			require.Equal(t, time.UTC, e.At.Location())
			switch e.Source {
			case store.TimelineAttempt:
				started[e.No] = e.Created
				require.True(t, e.OffSession)
				require.Equal(t, acme.PublicID, e.Invoice)
				require.EqualValues(t, 990, e.Amount)
				require.Equal(t, "GBP", e.Currency)
				require.True(t, e.PeriodStart.Equal(acme.PeriodStart))
			case store.TimelineEmail:
				require.Equal(t, "acme@example.com", e.To)
			case store.TimelineStep:
				require.NotEmpty(t, e.Text, "the step's detail")
				require.Equal(t, "cancel", e.FinalAction)
			}
		}
		require.Equal(t, map[int]time.Time{1: t0.Add(-time.Second), 2: day.Add(-time.Second)}, started, "when each charge started")
		require.True(t, events[6].Created.Equal(day), "a pending email is shown when it was queued")
		require.Equal(t, "Your payment of 9.90 GBP didn't go through", events[2].Text)

		totals, err := st.PaidTotals(ctx)
		require.NoError(t, err)
		require.Equal(t, []store.CurrencyTotal{{Currency: "GBP", Amount: 990, N: 1}}, totals)
	})
}

func TestTimelineOfAnEmptyDatabase(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		events, err := st.Timeline(context.Background())
		require.NoError(t, err)
		require.Empty(t, events)
		totals, err := st.PaidTotals(context.Background())
		require.NoError(t, err)
		require.Empty(t, totals)
	})
}
