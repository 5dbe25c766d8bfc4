package schedule_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/schedule"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// Tests of the charge queue: one subscription, one queue; dead cards; the card
// networks' reattempt cap; catch-up in one pass; the dry-run plan.

// seedDaily saves a card and imports a daily subscription on it.
func seedDaily(t *testing.T, s *stack, ref, number string, anchor time.Time) (pm string) {
	t.Helper()
	cus, pm := s.saveCard(t, number)
	s.b.SeedAt(t, anchor, storetest.Subscription{Reference: ref, Customer: cus, PaymentMethod: pm,
		Amount: 500, Currency: "USD", Interval: "day", Anchor: anchor})
	return pm
}

// queuedAttempt is an attempt with the period it charged.
type queuedAttempt struct {
	ID          int64
	Reference   string
	PeriodIndex int
	AttemptNo   int
	Status      models.AttemptStatus
	OffSession  bool
	Tries       int
	Key         string
	CreatedAt   time.Time
}

// attemptsInOrder lists every attempt in creation (id) order.
func attemptsInOrder(t *testing.T, st *store.Store) []queuedAttempt {
	t.Helper()
	var out []queuedAttempt
	require.NoError(t, st.DB().Raw(`SELECT ca.id, s.reference, i.period_index, ca.attempt_no, ca.status, ca.off_session,
	       ca.tries, ca.idempotency_key AS key, ca.created_at
	  FROM charge_attempts ca JOIN invoices i ON i.id = ca.invoice_id JOIN subscriptions s ON s.id = ca.subscription_id
	 ORDER BY ca.id`).Scan(&out).Error)
	return out
}

func invoicesOf(t *testing.T, st *store.Store, ref string) []models.Invoice {
	t.Helper()
	var out []models.Invoice
	require.NoError(t, st.DB().Raw(`SELECT i.* FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
	  WHERE s.reference = ? ORDER BY i.period_index`, ref).Scan(&out).Error)
	return out
}

func passEvery(t *testing.T, s *stack, step time.Duration, until time.Time) {
	t.Helper()
	ctx := context.Background()
	for s.clk.Now().Before(until) {
		_, err := s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		s.clk.Advance(step)
	}
}

func TestLostCardIsChargedOnceWhileLaterPeriodsWait(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start, sim.Options{})
		st = s.st // the assembled daemon's database
		// past_due keeps the subscription billed after the case is exhausted:
		// its new periods are invoiced, and wait for a new card.
		withDunning(s, dunning.FinalPastDue)
		pm := seedDaily(t, s, "lost-1", "4000000000009987", start)

		passEvery(t, s, time.Hour, start.Add(10*24*time.Hour))

		as := attemptsInOrder(t, st)
		require.Len(t, as, 1, "a lost card is charged once, never again: %+v", as)
		require.Equal(t, models.AttemptDeclined, as[0].Status)
		require.True(t, as[0].OffSession)
		require.Equal(t, 0, as[0].PeriodIndex)

		var card models.PaymentMethod
		require.NoError(t, st.DB().Where("gateway_payment_method_id = ?", pm).First(&card).Error)
		require.NotNil(t, card.DeadAt, "the hard decline is remembered on the payment method")
		require.Equal(t, start, card.DeadAt.UTC())
		require.Equal(t, "lost_card", card.DeadReason)

		invs := invoicesOf(t, st, "lost-1")
		require.Len(t, invs, 10, "every daily period of the 10 days is invoiced")
		require.Equal(t, models.InvoiceUncollectible, invs[0].Status, "the case ran its schedule and was exhausted")
		for _, inv := range invs[1:] {
			require.Equal(t, models.InvoiceOpen, inv.Status, "period %d waits", inv.PeriodIndex)
			require.Zero(t, inv.AttemptCount, "period %d was never charged", inv.PeriodIndex)
		}
		var sub models.Subscription
		require.NoError(t, st.DB().First(&sub).Error)
		require.Equal(t, models.SubscriptionPastDue, sub.Status)
	})
}

func TestCardCapCountsReattemptsNotPaidPeriods(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s := newStack(t, st, start, sim.Options{})
		st = s.st // the assembled daemon's database
		withDunning(s, dunning.FinalCancel)
		pm := seedDaily(t, s, "daily-1", "4242424242424242", start)
		ctx := context.Background()

		// Twenty daily periods paid, each by a first attempt.
		for day := 0; day < 20; day++ {
			s.clk.Set(start.Add(time.Duration(day) * 24 * time.Hour))
			run, err := s.biller.Pass(ctx, ctx, "test")
			require.NoError(t, err)
			require.Equal(t, 1, run.Succeeded, "day %d", day)
		}
		// Then the card starts declining softly.
		require.NoError(t, s.gw.SetCardBehaviour(pm, "4000000000009995"))
		failedAt := start.Add(20 * 24 * time.Hour)
		s.clk.Set(failedAt)
		passEvery(t, s, time.Hour, failedAt.Add(10*24*time.Hour))

		as := attemptsInOrder(t, st)
		require.Len(t, as, 24, "20 paid periods, then the first charge and one retry per schedule step")
		wantAt := []time.Duration{0, 24 * time.Hour, 96 * time.Hour, 216 * time.Hour}
		for i, a := range as[20:] {
			require.Equal(t, 20, a.PeriodIndex, "only the head of the queue is charged")
			require.Equal(t, i+1, a.AttemptNo)
			require.Equal(t, models.AttemptDeclined, a.Status)
			require.Equal(t, failedAt.Add(wantAt[i]), a.CreatedAt.UTC(), "attempt %d", i+1)
		}

		var c models.DunningCase
		require.NoError(t, st.DB().First(&c).Error)
		require.Equal(t, models.CaseExhausted, c.Status)
		var steps []models.DunningStep
		require.NoError(t, st.DB().Where("case_id = ?", c.ID).Order("id").Find(&steps).Error)
		var actions []string
		writtenOff := 0
		for _, step := range steps {
			if step.Action == "queue_written_off" {
				writtenOff++
				continue
			}
			actions = append(actions, string(step.Action))
		}
		require.Equal(t, []string{"opened", "retry_scheduled", "retry_scheduled", "exhausted"}, actions,
			"no retry was skipped for the card-network cap")

		// The periods that waited behind the exhausted one were never charged
		// and are settled with it.
		invs := invoicesOf(t, st, "daily-1")
		require.Greater(t, len(invs), 21)
		for _, inv := range invs[21:] {
			require.Zero(t, inv.AttemptCount, "period %d", inv.PeriodIndex)
			require.Contains(t, []models.InvoiceStatus{models.InvoiceUncollectible, models.InvoiceVoid}, inv.Status, "period %d", inv.PeriodIndex)
		}
		require.Positive(t, writtenOff, "each written-off invoice is a step of the case")
		var sub models.Subscription
		require.NoError(t, st.DB().First(&sub).Error)
		require.Equal(t, models.SubscriptionCanceled, sub.Status)
	})
}

func TestCatchUpOf200PeriodsIsChargedInOrderInOnePass(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		anchor := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
		now := anchor.Add(199*24*time.Hour + 12*time.Hour) // periods 0..199 have started
		s := newStack(t, st, now, sim.Options{})
		st = s.st // the assembled daemon's database
		seedDaily(t, s, "behind-1", "4242424242424242", anchor)
		ctx := context.Background()

		plan, err := s.biller.Plan(ctx, 0)
		require.NoError(t, err)
		require.Len(t, plan, 200, "the dry run lists every missed period")
		for k, p := range plan {
			require.Equal(t, k, p.PeriodIndex)
			require.Equal(t, "(new)", p.Invoice)
			require.Equal(t, anchor.Add(time.Duration(k)*24*time.Hour), p.PeriodStart.UTC())
			want := schedule.PlanFollow
			if k == 0 {
				want = schedule.PlanCharge
			}
			require.Equal(t, want, p.Kind, "period %d", k)
		}

		run, err := s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		require.Equal(t, 200, run.InvoicesCreated, "one pass invoices every missed period")
		require.Equal(t, 200, run.AttemptsStarted)
		require.Equal(t, 200, run.Succeeded)

		as := attemptsInOrder(t, st)
		require.Len(t, as, 200)
		for k, a := range as {
			require.Equal(t, k, a.PeriodIndex, "attempts are created in period order")
			require.Equal(t, models.AttemptSucceeded, a.Status)
		}
		for _, inv := range invoicesOf(t, st, "behind-1") {
			require.Equal(t, models.InvoicePaid, inv.Status)
		}
		// The gateway saw the charges in the same order.
		ledger := s.gw.Ledger()
		require.Len(t, ledger, 200)
		invs := invoicesOf(t, st, "behind-1")
		for k, e := range ledger {
			require.Equal(t, invs[k].PublicID, e.MerchantOrderID, "gateway charge %d", k)
		}
	})
}

func TestFirstDeclineStopsCatchUpAndTheQueueResumesInOrder(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		anchor := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		now := anchor.Add(4*24*time.Hour + 6*time.Hour) // periods 0..4 have started
		s := newStack(t, st, now, sim.Options{})
		st = s.st // the assembled daemon's database
		withDunning(s, dunning.FinalCancel)
		pm := seedDaily(t, s, "resume-1", "4000000000009995", anchor)
		ctx := context.Background()

		run, err := s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		require.Equal(t, 5, run.InvoicesCreated)
		require.Equal(t, 1, run.AttemptsStarted, "the first decline stops the rest of the catch-up")
		as := attemptsInOrder(t, st)
		require.Len(t, as, 1)
		require.Equal(t, 0, as[0].PeriodIndex)
		require.Equal(t, models.AttemptDeclined, as[0].Status)

		// The customer's account is funded again before the retry.
		require.NoError(t, s.gw.SetCardBehaviour(pm, "4242424242424242"))
		s.clk.Advance(23 * time.Hour)
		run, err = s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		require.Zero(t, run.AttemptsStarted, "nothing is charged before the retry is due")
		s.clk.Advance(time.Hour) // the retry is due; period 5 has started too
		run, err = s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		require.Equal(t, 6, run.Succeeded, "the retry, then the periods that waited behind it and the new one")

		as = attemptsInOrder(t, st)
		var got []string
		for _, a := range as {
			got = append(got, fmt.Sprintf("%d/a%d/%s", a.PeriodIndex, a.AttemptNo, a.Status))
		}
		require.Equal(t, []string{"0/a1/declined", "0/a2/succeeded", "1/a1/succeeded", "2/a1/succeeded",
			"3/a1/succeeded", "4/a1/succeeded", "5/a1/succeeded"}, got)
		var c models.DunningCase
		require.NoError(t, st.DB().First(&c).Error)
		require.Equal(t, models.CaseRecovered, c.Status)
		var sub models.Subscription
		require.NoError(t, st.DB().First(&sub).Error)
		require.Equal(t, models.SubscriptionActive, sub.Status)
	})
}

// TestPlanListsExactlyTheChargesThePassStarts builds a database with every kind
// of row the claims must tell apart, plans a pass, then runs it at the same time
// (every card now succeeding, so that each queue runs to its end) and compares
// what the pass started with what the plan listed.
func TestPlanListsExactlyTheChargesThePassStarts(t *testing.T) {
	eachDB(t, func(t *testing.T, st *store.Store) {
		t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		t1 := t0.Add(24 * time.Hour)
		s := newStack(t, st, t0, sim.Options{})
		st = s.st // the assembled daemon's database
		withDunning(s, dunning.FinalCancel)
		ctx := context.Background()
		pms := map[string]string{}
		daily := func(ref, number string, anchor time.Time) { pms[ref] = seedDaily(t, s, ref, number, anchor) }

		daily("paid", "4242424242424242", t0)                          // period 0 paid; period 1 new at t1
		daily("soft-due", "4000000000009995", t0)                      // declined; its retry is due at t1; period 1 follows
		daily("action", "4462030000000000", t0)                        // waits for the customer: period 1 waits behind the case
		daily("dead", "4000000000009987", t0)                          // lost card: period 1 waits, never charged
		daily("on-session", "4000000000000002", t0)                    // declined; an on-session attempt is open when the retry is due
		daily("catch-up", "4111111111111111", t0.Add(-3*24*time.Hour)) // four periods paid in order at t0
		_, err := s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)

		// Three hours before t1: two first charges whose answers are lost
		// (5xx before the gateway did anything): they stay unknown.
		// Both are a day into their subscription: period 1 starts at t1.
		s.clk.Set(t1.Add(-3 * time.Hour))
		daily("unknown", "4761344136141390", t0)
		daily("leased", "5555555555554444", t0)
		s.gw.SetFaults(sim.Faults{Error5xxBefore: 1})
		_, err = s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		s.gw.SetFaults(sim.Faults{})

		// At t1, a peer process still holds the lease of one unknown attempt.
		var leased models.ChargeAttempt
		require.NoError(t, st.DB().Raw(`SELECT ca.* FROM charge_attempts ca JOIN subscriptions s ON s.id = ca.subscription_id
		  WHERE s.reference = 'leased'`).Scan(&leased).Error)
		require.Equal(t, models.AttemptUnknown, leased.Status)
		require.NoError(t, st.DB().Exec(`UPDATE charge_attempts SET lease_owner = 'peer', lease_until = ?, lease_version = lease_version + 1
		  WHERE id = ?`, t1.Add(time.Hour), leased.ID).Error)

		// The customer of on-session opened the pay page: an on-session
		// attempt is pending (its lease has run out).
		onSession := invoicesOf(t, st, "on-session")[0]
		// On PostgreSQL a press that finds the invoice row locked by another
		// transaction that moment answers PressBusy (the customer reloads):
		// press again, as the customer would.
		var press store.Press
		for try := 0; try < 50; try++ {
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				ic, err := tx.InvoiceContact(onSession.ID)
				if err != nil {
					return err
				}
				press, err = tx.StartOnSessionAttempt(t0.Add(time.Hour), ic, "web", t0.Add(time.Hour+time.Minute), 0)
				return err
			}))
			if press.Refused != store.PressBusy {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		var open models.ChargeAttempt
		if press.Open != nil {
			open = *press.Open
		}
		require.NotNil(t, press.Attempt, "press: %+v; open attempt: %+v", press, open)

		// Two new subscriptions start at t1, one on the dead card (the same
		// saved card as dead's): it is invoiced and waits.
		daily("new", "4242424242424242", t1)
		daily("dead-2", "4000000000009987", t1)
		require.Equal(t, pms["dead"], pms["dead-2"])

		s.clk.Set(t1)
		plan, err := s.biller.Plan(ctx, 0)
		require.NoError(t, err)
		var planned []string
		for _, p := range plan {
			if p.Kind == schedule.PlanReplay {
				planned = append(planned, "replay "+p.Key)
				continue
			}
			planned = append(planned, fmt.Sprintf("%s %s/%d", p.Kind, p.Reference, p.PeriodIndex))
		}

		// What the pass will find: the soft-due retry is the head of its
		// queue, the unknown attempt is replayed, the rest wait.
		unknown := attemptsOfRef(t, st, "unknown")
		require.Len(t, unknown, 1)
		require.ElementsMatch(t, []string{
			"replay " + unknown[0].Key, "follow unknown/1",
			"charge paid/1",
			"charge soft-due/0", "follow soft-due/1",
			"charge catch-up/4",
			"charge new/0",
		}, planned)

		// Every card succeeds from now on, so each queue runs to its end and the
		// plan's "follow" entries are charged too; a card the plan left out is
		// charged only if the pass disagrees with it.
		for _, pm := range pms {
			require.NoError(t, s.gw.SetCardBehaviour(pm, "4242424242424242"))
		}
		before := map[int64]queuedAttempt{}
		for _, a := range attemptsInOrder(t, st) {
			before[a.ID] = a
		}
		_, err = s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		var started []string
		for _, a := range attemptsInOrder(t, st) {
			old, existed := before[a.ID]
			switch {
			case !existed:
				kind := schedule.PlanFollow
				if isHead(plan, a.Reference, a.PeriodIndex) {
					kind = schedule.PlanCharge
				}
				started = append(started, fmt.Sprintf("%s %s/%d", kind, a.Reference, a.PeriodIndex))
			case a.Tries > old.Tries:
				started = append(started, "replay "+a.Key)
			}
		}
		require.ElementsMatch(t, planned, started, "the pass starts exactly the planned charges")
	})
}

func attemptsOfRef(t *testing.T, st *store.Store, ref string) []queuedAttempt {
	t.Helper()
	var out []queuedAttempt
	for _, a := range attemptsInOrder(t, st) {
		if a.Reference == ref {
			out = append(out, a)
		}
	}
	return out
}

func isHead(plan []schedule.Planned, ref string, period int) bool {
	for _, p := range plan {
		if p.Reference == ref && p.PeriodIndex == period {
			return p.Kind == schedule.PlanCharge
		}
	}
	return false
}

// While the gateway answers nothing but errors, a pass sends each attempt
// one backoff window and ends: an attempt that turns due, or turns unknown,
// while the pass runs is replayed by the next pass, not by this one. Before,
// one attempt's replay overlapped another's backoff, each made the other due
// again, and the pass never ended (on a simulated clock it ran on into later
// periods).
func TestAPassEndsWhileTheGatewayAnswersOnlyErrors(t *testing.T) {
	eachStack(t, func(t *testing.T, st *store.Store, provider string) {
		t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s := newStackOn(t, st, provider, t0, sim.Options{})
		ctx := context.Background()
		seedDaily(t, s, "early", "4242424242424242", t0)
		seedDaily(t, s, "late", "4111111111111111", t0.Add(2*time.Hour))
		s.gw.SetFaults(sim.Faults{Error5xxBefore: 1})
		_, err := s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)
		early := attemptsOfRef(t, s.st, "early")
		require.Len(t, early, 1)
		var before models.ChargeAttempt
		require.NoError(t, s.st.DB().First(&before, early[0].ID).Error)
		require.Equal(t, models.AttemptUnknown, before.Status)

		// The next pass starts just before the early attempt's retry is due
		// and charges a new subscription for a whole backoff window.
		start := t0.Add(2 * time.Hour)
		s.clk.Set(start)
		require.NoError(t, s.st.DB().Exec(`UPDATE charge_attempts SET next_try_at = ? WHERE id = ?`, start.Add(time.Second), before.ID).Error)
		_, err = s.biller.Pass(ctx, ctx, "test")
		require.NoError(t, err)

		var after models.ChargeAttempt
		require.NoError(t, s.st.DB().First(&after, before.ID).Error)
		require.Equal(t, before.Tries, after.Tries, "an attempt due only after the pass began waits for the next pass")
		late := attemptsOfRef(t, s.st, "late")
		require.Len(t, late, 1)
		var lateRow models.ChargeAttempt
		require.NoError(t, s.st.DB().First(&lateRow, late[0].ID).Error)
		window := s.b.Config.Retry.MaxElapsedTime.D()
		require.LessOrEqual(t, lateRow.Tries, int(window/s.b.Config.Retry.MaxInterval.D())+20, "sent in one backoff window")
		require.Less(t, s.clk.Now().Sub(start), 3*window, "the pass ran on past its attempts' windows")
	})
}
