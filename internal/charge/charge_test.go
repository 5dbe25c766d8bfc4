package charge_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// scripted answers CreatePaymentIntent from a list of results and records what
// it was sent.
type scripted struct {
	mu      sync.Mutex
	answers []gateway.Result
	sent    []gateway.PaymentIntentRequest
	intents map[string]gateway.PaymentIntent
	search  map[string][]gateway.PaymentIntent
}

func (s *scripted) CreatePaymentIntent(_ context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, req)
	if len(s.answers) == 0 {
		return gateway.Result{Kind: gateway.Transient, Err: errors.New("script exhausted")}
	}
	r := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	return echoAmount(r, req)
}

// echoAmount fills in the request's amount and currency where a scripted answer's
// PaymentIntent leaves them out, as the gateway reports the intent it created.
func echoAmount(r gateway.Result, req gateway.PaymentIntentRequest) gateway.Result {
	if r.Intent != nil && r.Intent.Amount == 0 && r.Intent.Currency == "" {
		pi := *r.Intent
		pi.Amount, pi.Currency = req.Amount, req.Currency
		r.Intent = &pi
	}
	return r
}
func (s *scripted) RetrievePaymentIntent(_ context.Context, id string) gateway.Result {
	pi, ok := s.intents[id]
	if !ok {
		return gateway.Result{Kind: gateway.Invalid, Err: gateway.ErrNotFound}
	}
	return gateway.ResultFromIntent(&pi, 200)
}
func (s *scripted) ConfirmPaymentIntent(context.Context, string, gateway.ConfirmRequest) gateway.Result {
	return gateway.Result{Kind: gateway.Invalid}
}
func (s *scripted) CancelPaymentIntent(context.Context, string, string) gateway.Result {
	return gateway.Result{Kind: gateway.Invalid}
}
func (s *scripted) SearchPaymentIntentsByOrder(_ context.Context, order string) ([]gateway.PaymentIntent, error) {
	return s.search[order], nil
}

func transient(status int, retryAfter time.Duration) gateway.Result {
	return gateway.Result{Kind: gateway.Transient, HTTPStatus: status, RetryAfter: retryAfter, Err: errors.New("transient")}
}

func intent(id string, status gateway.IntentStatus) gateway.Result {
	return gateway.ResultFromIntent(&gateway.PaymentIntent{ID: id, Status: status}, 200)
}

type bundle struct {
	st    *store.Store
	gw    *scripted
	clk   *clock.Fake
	eng   *charge.Engine
	slept []time.Duration
}

// sleepRecorder wraps the fake clock to record backoff waits.
type sleepRecorder struct {
	*clock.Fake
	b *bundle
}

func (r sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	r.b.slept = append(r.b.slept, d)
	return r.Fake.Sleep(ctx, d)
}

func setup(t *testing.T, answers ...gateway.Result) (*bundle, models.ChargeAttempt) {
	t.Helper()
	b := &bundle{st: storetest.SQLite(t), gw: &scripted{answers: answers}, clk: clock.NewFake(t0)}
	b.eng = charge.New(charge.Options{
		Store: b.st, Gateway: b.gw, Clock: sleepRecorder{b.clk, b},
		Retry:             charge.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second, MaxElapsedTime: time.Minute},
		UnknownRetryDelay: 5 * time.Minute,
		Log:               zerolog.Nop(),
	})
	storetest.Seed(t, b.st, t0, storetest.Subscription{Reference: "r1", Amount: 1999, Currency: "USD"})
	require.NoError(t, b.st.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, Reference: "r1", PeriodIndex: 0, PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 1999, Currency: "USD"}})
		return err
	}))
	claimed, err := b.st.ClaimNewAttempts(context.Background(), "test", t0, t0.Add(time.Hour), 1)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	return b, claimed[0]
}

func (b *bundle) invoice(t *testing.T) models.Invoice {
	var inv models.Invoice
	require.NoError(t, b.st.DB().First(&inv).Error)
	return inv
}

func (b *bundle) subscription(t *testing.T) models.Subscription {
	var s models.Subscription
	require.NoError(t, b.st.DB().First(&s).Error)
	return s
}

func TestExecuteOutcomes(t *testing.T) {
	declined := func(code string) gateway.Result {
		return gateway.Result{Kind: gateway.Declined, HTTPStatus: 402, Decline: gateway.NewDecline("card_error", "card_declined", code, "", "declined")}
	}
	for _, tc := range []struct {
		name       string
		answers    []gateway.Result
		status     models.AttemptStatus
		invoice    models.InvoiceStatus
		sub        models.SubscriptionStatus
		hard       bool
		tries      int
		nextTrySet bool
	}{
		{"succeeded", []gateway.Result{intent("pi_ok", gateway.IntentSucceeded)}, models.AttemptSucceeded, models.InvoicePaid, models.SubscriptionActive, false, 1, false},
		{"processing waits", []gateway.Result{intent("pi_p", gateway.IntentProcessing)}, models.AttemptProcessing, models.InvoiceOpen, models.SubscriptionActive, false, 1, false},
		{"requires action", []gateway.Result{intent("pi_3ds", gateway.IntentRequiresAction)}, models.AttemptRequiresAction, models.InvoiceOpen, models.SubscriptionPastDue, false, 1, false},
		{"soft decline", []gateway.Result{declined("insufficient_funds")}, models.AttemptDeclined, models.InvoiceOpen, models.SubscriptionPastDue, false, 1, false},
		{"hard decline", []gateway.Result{declined("stolen_card")}, models.AttemptDeclined, models.InvoiceOpen, models.SubscriptionPastDue, true, 1, false},
		{"invalid request", []gateway.Result{{Kind: gateway.Invalid, HTTPStatus: 400, Err: errors.New("no such payment_method")}}, models.AttemptFailed, models.InvoiceOpen, models.SubscriptionPastDue, false, 1, false},
		{"idempotency conflict needs review", []gateway.Result{{Kind: gateway.Invalid, HTTPStatus: 400, IdempotencyConflict: true, Err: errors.New("wooshpay: 400 idempotency_error: keys reused")}}, models.AttemptNeedsReview, models.InvoiceOpen, models.SubscriptionPastDue, false, 1, false},
		{"transient then success", []gateway.Result{transient(500, 0), transient(0, 0), transient(409, 0), intent("pi_ok", gateway.IntentSucceeded)}, models.AttemptSucceeded, models.InvoicePaid, models.SubscriptionActive, false, 4, false},
		{"transient past the window stays unknown", []gateway.Result{transient(503, 0)}, models.AttemptUnknown, models.InvoiceOpen, models.SubscriptionActive, false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, a := setup(t, tc.answers...)
			status, err := b.eng.Execute(context.Background(), &a)
			require.NoError(t, err)
			require.Equal(t, tc.status, status)
			got, err := b.st.AttemptByID(context.Background(), a.ID)
			require.NoError(t, err)
			require.Equal(t, tc.status, got.Status)
			require.Equal(t, tc.hard, got.HardDecline)
			require.Empty(t, got.LeaseOwner, "the lease is released")
			if tc.tries > 0 {
				require.Equal(t, tc.tries, got.Tries)
			} else {
				require.Greater(t, got.Tries, 3, "retried until the backoff window closed")
			}
			require.Equal(t, tc.nextTrySet, got.NextTryAt != nil)
			require.Equal(t, tc.invoice, b.invoice(t).Status)
			require.Equal(t, tc.sub, b.subscription(t).Status)
			for _, req := range b.gw.sent {
				require.Equal(t, a.IdempotencyKey, req.IdempotencyKey, "every try uses the attempt's own key")
				require.Equal(t, int64(1999), req.Amount)
				require.True(t, req.OffSession)
				require.Equal(t, a.MerchantOrderID, req.MerchantOrderID)
			}
		})
	}
}

func TestBackoffHonorsRetryAfterAndMaxElapsed(t *testing.T) {
	b, a := setup(t, transient(429, 7*time.Second), transient(503, 0), intent("pi", gateway.IntentSucceeded))
	_, err := b.eng.Execute(context.Background(), &a)
	require.NoError(t, err)
	require.Len(t, b.slept, 2)
	require.GreaterOrEqual(t, b.slept[0], 7*time.Second, "Retry-After is a floor on the wait")
	require.LessOrEqual(t, b.slept[1], 10*time.Second, "waits are capped by max_interval")

	b2, a2 := setup(t, transient(500, 0))
	start := b2.clk.Now()
	_, err = b2.eng.Execute(context.Background(), &a2)
	require.NoError(t, err)
	elapsed := b2.clk.Now().Sub(start)
	// backoff stops once the next wait would cross max_elapsed_time (1m); that wait
	// is at most max_interval (10s) plus 50% jitter.
	require.GreaterOrEqual(t, elapsed, time.Minute-15*time.Second)
	require.LessOrEqual(t, elapsed, time.Minute, "gives up within max_elapsed_time")
}

func TestExecuteDropsResultWhenLeaseLost(t *testing.T) {
	b, a := setup(t, intent("pi_late", gateway.IntentSucceeded))
	// Another worker took the attempt over after our lease expired.
	later := t0.Add(2 * time.Hour)
	_, err := b.st.ClaimReplayAttempts(context.Background(), "other", later, later, later.Add(time.Hour), t0.Add(-time.Hour), 1)
	require.NoError(t, err)
	_, err = b.eng.Execute(context.Background(), &a)
	require.ErrorIs(t, err, store.ErrLeaseLost)
	require.Equal(t, models.InvoiceOpen, b.invoice(t).Status, "a stale worker's answer changes nothing")
}

func TestAbortLeavesAttemptForReplay(t *testing.T) {
	b, a := setup(t, transient(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.eng.Execute(ctx, &a)
	require.ErrorIs(t, err, context.Canceled)
	got, err := b.st.AttemptByID(context.Background(), a.ID)
	require.NoError(t, err)
	require.Equal(t, models.AttemptPending, got.Status, "an aborted exchange is replayed later with the same key")
}

func TestResolveSettlesProcessingAndNeverUnpays(t *testing.T) {
	b, a := setup(t, intent("pi_slow", gateway.IntentProcessing))
	_, err := b.eng.Execute(context.Background(), &a)
	require.NoError(t, err)
	got, _ := b.st.AttemptByID(context.Background(), a.ID)

	b.gw.intents = map[string]gateway.PaymentIntent{"pi_slow": {ID: "pi_slow", Status: gateway.IntentProcessing, Amount: 1999, Currency: "USD"}}
	res, err := b.eng.Resolve(context.Background(), got)
	require.NoError(t, err)
	require.Equal(t, models.AttemptProcessing, res.Status)
	require.True(t, res.Found)
	require.False(t, res.Moved)

	b.gw.intents["pi_slow"] = gateway.PaymentIntent{ID: "pi_slow", Status: gateway.IntentSucceeded, Amount: 1999, Currency: "USD"}
	res, err = b.eng.Resolve(context.Background(), got)
	require.NoError(t, err)
	require.Equal(t, models.AttemptSucceeded, res.Status)
	require.True(t, res.Moved)
	require.Equal(t, models.InvoicePaid, b.invoice(t).Status)

	// A late contrary answer cannot move a resolved attempt back.
	b.gw.intents["pi_slow"] = gateway.PaymentIntent{ID: "pi_slow", Status: gateway.IntentRequiresPaymentMethod, Amount: 1999, Currency: "USD"}
	stale := *got
	stale.Status = models.AttemptProcessing
	_, err = b.eng.Resolve(context.Background(), &stale)
	require.NoError(t, err)
	require.Equal(t, models.InvoicePaid, b.invoice(t).Status)
	final, _ := b.st.AttemptByID(context.Background(), a.ID)
	require.Equal(t, models.AttemptSucceeded, final.Status)
}

func TestResolveBySearchMatchesTheAttemptsKey(t *testing.T) {
	b, a := setup(t, transient(0, 0))
	_, err := b.eng.Execute(context.Background(), &a)
	require.NoError(t, err)
	got, _ := b.st.AttemptByID(context.Background(), a.ID)
	require.Equal(t, models.AttemptUnknown, got.Status)
	require.Empty(t, got.PaymentIntentID)

	res, err := b.eng.Resolve(context.Background(), got)
	require.NoError(t, err)
	require.False(t, res.Found, "nothing at the gateway yet: the request never executed")

	b.gw.search = map[string][]gateway.PaymentIntent{a.MerchantOrderID: {
		{ID: "pi_other_attempt", Status: gateway.IntentRequiresPaymentMethod, Metadata: map[string]string{"idempotency_key": a.MerchantOrderID + "-a9"}},
		{ID: "pi_mine", Status: gateway.IntentSucceeded, Amount: 1999, Currency: "USD", Metadata: map[string]string{"idempotency_key": a.IdempotencyKey}},
	}}
	res, err = b.eng.Resolve(context.Background(), got)
	require.NoError(t, err)
	require.Equal(t, models.AttemptSucceeded, res.Status)
	final, _ := b.st.AttemptByID(context.Background(), a.ID)
	require.Equal(t, "pi_mine", final.PaymentIntentID)
	require.Equal(t, models.InvoicePaid, b.invoice(t).Status)
}

func TestWebhookFirstStillCountsTheOutcome(t *testing.T) {
	b, a := setup(t, intent("pi_ok", gateway.IntentSucceeded))
	// The webhook lands while our request is still out.
	require.NoError(t, b.st.InTx(context.Background(), func(tx *store.Tx) error {
		_, _, err := b.eng.Settle(tx, t0, &a, store.AttemptResult{Status: models.AttemptSucceeded, PaymentIntentID: "pi_ok"})
		return err
	}))
	status, err := b.eng.Execute(context.Background(), &a)
	require.NoError(t, err)
	require.Equal(t, models.AttemptSucceeded, status, "the pass counts what the webhook recorded")
	require.Equal(t, models.InvoicePaid, b.invoice(t).Status)
}

func TestProcessingWebhookFirstIsCountedAsProcessing(t *testing.T) {
	b, a := setup(t, intent("pi_p", gateway.IntentProcessing))
	require.NoError(t, b.st.InTx(context.Background(), func(tx *store.Tx) error {
		_, _, err := b.eng.Settle(tx, t0, &a, store.AttemptResult{Status: models.AttemptProcessing, PaymentIntentID: "pi_p"})
		return err
	}))
	status, err := b.eng.Execute(context.Background(), &a)
	require.NoError(t, err)
	require.Equal(t, models.AttemptProcessing, status)
}

func (s *scripted) KeyPolicy() gateway.KeyPolicy { return gateway.KeyPolicy{Window: 23 * time.Hour} }
