package schedule_test

import (
	"context"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

var dunningSchedule = []time.Duration{24 * time.Hour, 72 * time.Hour, 120 * time.Hour}

// withDunning sets the daemon's dunning policy: the test schedule, final as
// the final action and a seven-day pay link, with quick charge retries. The
// assembled daemon always runs dunning; this changes its config keys
// (dunning.retry_schedule, dunning.final_action, dunning.link_ttl, retry.*)
// and reloads, as an operator would.
func withDunning(s *stack, final models.FinalAction) {
	s.t.Helper()
	s.reload(s.t, func(c *config.Config) {
		c.Dunning.RetrySchedule = make([]config.Duration, len(dunningSchedule))
		for i, d := range dunningSchedule {
			c.Dunning.RetrySchedule[i] = config.Duration(d)
		}
		c.Dunning.FinalAction = string(final)
		c.Dunning.LinkTTL = config.Duration(7 * 24 * time.Hour)
		c.Retry.InitialInterval = config.Duration(10 * time.Millisecond)
		c.Retry.MaxInterval = config.Duration(100 * time.Millisecond)
		c.Retry.MaxElapsedTime = config.Duration(time.Second)
	})
}

func seedCard(t *testing.T, s *stack, number string, anchor time.Time) (customer string) {
	cus, pm := s.saveCard(t, number)
	s.b.SeedAt(t, anchor, storetest.Subscription{Reference: "dun-1", Customer: cus, PaymentMethod: pm, Amount: 2750, Currency: "KWD", Anchor: anchor})
	return cus
}

func emailsOf(t *testing.T, st *store.Store) []models.Email {
	return rowsOf[models.Email](t, st)
}

// rowsOf reads every row of a table, in id order.
func rowsOf[T any](t *testing.T, st *store.Store) []T {
	t.Helper()
	var rows []T
	require.NoError(t, st.DB().Order("id").Find(&rows).Error)
	return rows
}

func TestSoftDeclineRunsTheWholeSchedule(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start, sim.Options{})
		st = s.st // the assembled daemon's database
		withDunning(s, dunning.FinalCancel)
		seedCard(t, s, "4000000000009995", start) // insufficient_funds, every time
		ctx := context.Background()

		// Passes every hour for 10 days: retries happen when they are due, no sooner.
		for s.clk.Now().Before(start.Add(10 * 24 * time.Hour)) {
			_, err := s.biller.Pass(ctx, ctx, "test")
			require.NoError(t, err)
			s.clk.Advance(time.Hour)
		}

		var attempts []models.ChargeAttempt
		require.NoError(t, s.st.DB().Order("attempt_no").Find(&attempts).Error)
		require.Len(t, attempts, 4, "the first charge and one retry per schedule step")
		wantAt := []time.Duration{0, 24 * time.Hour, 96 * time.Hour, 216 * time.Hour}
		for i, a := range attempts {
			require.Equal(t, start.Add(wantAt[i]), a.CreatedAt.UTC(), "attempt %d", i+1)
			require.Equal(t, models.AttemptDeclined, a.Status)
			require.Equal(t, "insufficient_funds", a.DeclineCode)
			require.True(t, a.OffSession)
		}

		var c models.DunningCase
		require.NoError(t, s.st.DB().First(&c).Error)
		require.Equal(t, models.CaseExhausted, c.Status)
		require.Equal(t, models.ReasonSoftDecline, c.Reason)
		require.Equal(t, models.FinalCancel, c.FinalAction)
		require.Equal(t, start.Add(216*time.Hour), c.ClosedAt.UTC())

		var inv models.Invoice
		require.NoError(t, s.st.DB().First(&inv).Error)
		require.Equal(t, models.InvoiceUncollectible, inv.Status)
		var sub models.Subscription
		require.NoError(t, s.st.DB().First(&sub).Error)
		require.Equal(t, models.SubscriptionCanceled, sub.Status)

		es := emailsOf(t, s.st)
		kinds := make([]models.EmailKind, len(es))
		for i, e := range es {
			kinds[i] = e.Kind
			require.Equal(t, "dun-1@example.com", e.ToAddress)
			require.Equal(t, start.Add(wantAt[i]), e.NextAttemptAt.UTC(), "email %d queued with its step", i)
		}
		require.Equal(t, []models.EmailKind{models.EmailPaymentFailed, models.EmailPaymentFailed, models.EmailPaymentFailed, models.EmailSubscriptionEnded}, kinds)
		require.Equal(t, models.LinkPay, es[0].LinkPurpose)

		var steps []models.DunningStep
		require.NoError(t, s.st.DB().Order("id").Find(&steps).Error)
		actions := make([]string, len(steps))
		for i, st := range steps {
			actions[i] = string(st.Action)
		}
		require.Equal(t, []string{"opened", "retry_scheduled", "retry_scheduled", "exhausted"}, actions)
	})
}

func TestRecoveryOnRetryReactivatesAndSendsAReceipt(t *testing.T) {
	st := storetest.SQLite(t)
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	s := newStack(t, st, start, sim.Options{})
	withDunning(s, dunning.FinalCancel)
	cus := seedCard(t, s, "4000000000009995", start)
	ctx := context.Background()
	_, err := s.biller.Pass(ctx, ctx, "test")
	require.NoError(t, err)
	var sub models.Subscription
	require.NoError(t, s.st.DB().First(&sub).Error)
	require.Equal(t, models.SubscriptionPastDue, sub.Status)

	// Before the retry, the customer's working card becomes the subscription's.
	client, err := wooshpay.New(wooshpay.Options{BaseURL: s.b.Config.Gateway.BaseURL, SecretKey: daemontest.SecretKey})
	require.NoError(t, err)
	seti, err := client.CreateSetupIntent(ctx, wooshpay.SetupIntentParams{Customer: cus,
		Card: wooshpay.CardData{Number: "4242424242424242", ExpMonth: "12", ExpYear: "2035", CVC: "123"}}, "")
	require.NoError(t, err)
	require.NoError(t, s.st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.RecordPaymentMethod(start, cus, seti.PaymentMethod, store.SavedCard{}); err != nil {
			return err
		}
		pm, err := tx.PaymentMethodByGatewayID(seti.PaymentMethod)
		if err != nil {
			return err
		}
		return tx.SetSubscriptionPaymentMethod(start, sub.ID, pm.ID)
	}))
	s.clk.Advance(24 * time.Hour)
	run, err := s.biller.Pass(ctx, ctx, "test")
	require.NoError(t, err)
	require.Equal(t, 1, run.Succeeded, "the scheduled retry charges the new card")

	var c models.DunningCase
	require.NoError(t, s.st.DB().First(&c).Error)
	require.Equal(t, models.CaseRecovered, c.Status)
	require.NoError(t, s.st.DB().First(&sub).Error)
	require.Equal(t, models.SubscriptionActive, sub.Status, "recovery makes the subscription active again")
	es := emailsOf(t, s.st)
	require.Equal(t, []models.EmailKind{models.EmailPaymentFailed, models.EmailRecovered}, []models.EmailKind{es[0].Kind, es[1].Kind})

	// Billing goes on from the anchor: the next period starts a month after it.
	s.clk.Set(time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC))
	run, err = s.biller.Pass(ctx, ctx, "test")
	require.NoError(t, err)
	require.Equal(t, 1, run.InvoicesCreated)
	require.Equal(t, 1, run.Succeeded)
	var starts []time.Time
	require.NoError(t, s.st.DB().Raw(`SELECT period_start FROM invoices ORDER BY period_index`).Scan(&starts).Error)
	require.Equal(t, time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC), starts[1].UTC())
}

func TestHardDeclineAndActionRequiredAreNeverRetriedOffSession(t *testing.T) {
	for _, card := range []string{"4000000000000069", "4462030000000000"} {
		t.Run(card, func(t *testing.T) {
			st := storetest.SQLite(t)
			start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
			s := newStack(t, st, start, sim.Options{})
			withDunning(s, dunning.FinalUnpaid)
			seedCard(t, s, card, start)
			ctx := context.Background()
			for s.clk.Now().Before(start.Add(10 * 24 * time.Hour)) {
				_, err := s.biller.Pass(ctx, ctx, "test")
				require.NoError(t, err)
				s.clk.Advance(time.Hour)
			}
			var n int64
			require.NoError(t, s.st.DB().Model(&models.ChargeAttempt{}).Count(&n).Error)
			require.EqualValues(t, 1, n, "no blind retry")
			var c models.DunningCase
			require.NoError(t, s.st.DB().First(&c).Error)
			require.Equal(t, models.CaseExhausted, c.Status)
			var sub models.Subscription
			require.NoError(t, s.st.DB().First(&sub).Error)
			require.Equal(t, models.SubscriptionUnpaid, sub.Status)
			es := emailsOf(t, s.st)
			require.Len(t, es, 4, "an email per step (opening + 2 reminders) and the ending")
			require.Equal(t, models.EmailSubscriptionEnded, es[3].Kind)
		})
	}
}

var _ = schedule.DefaultKeyWindow
