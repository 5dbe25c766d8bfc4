package charge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/budget"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

func TestLeaseMargin(t *testing.T) {
	for _, tc := range []struct {
		timeout, margin time.Duration
	}{
		{30 * time.Second, time.Minute},
		{6 * time.Second, time.Minute},
		{500 * time.Millisecond, 5 * time.Second},
		{0, time.Minute},
	} {
		require.Equal(t, tc.margin, charge.LeaseMargin(tc.timeout), tc.timeout)
	}
}

// TestNoSendOnLostLease: right before each request the engine checks the
// claim's lease on the monotonic clock and on its own, and the attempt's
// idempotency window; when one has run out nothing is sent, the row is left
// as it is, and a retry that finds the lease gone records what it has.
func TestNoSendOnLostLease(t *testing.T) {
	for _, tc := range []struct {
		name string
		// spoil turns the claimed attempt into one whose check fails.
		spoil   func(b *bundle, a *models.ChargeAttempt)
		answers []gateway.Result
		sent    int
		status  models.AttemptStatus
		err     error
	}{
		{"monotonic deadline passed", func(_ *bundle, a *models.ChargeAttempt) { a.LeaseDeadline = time.Now().Add(-time.Millisecond) }, nil, 0, models.AttemptPending, charge.ErrLeaseRanOut},
		{"deadline within the margin", func(_ *bundle, a *models.ChargeAttempt) { a.LeaseDeadline = time.Now().Add(time.Second) }, nil, 0, models.AttemptPending, charge.ErrLeaseRanOut},
		{"lease passed on the engine's clock", func(b *bundle, _ *models.ChargeAttempt) { b.clk.Advance(2 * time.Hour) }, nil, 0, models.AttemptPending, charge.ErrLeaseRanOut},
		{"outside the key window", func(_ *bundle, a *models.ChargeAttempt) { a.CreatedAt = a.CreatedAt.Add(-24 * time.Hour) }, nil, 0, models.AttemptPending, charge.ErrKeyWindowClosed},
		{"a retry after the lease ran out is not sent", func(b *bundle, a *models.ChargeAttempt) {
			// The first try's backoff wait (Retry-After 2h) outlives the lease.
			b.gw.answers = []gateway.Result{transient(429, 2*time.Hour)}
		}, nil, 1, models.AttemptUnknown, nil},
		{"a live lease sends", func(*bundle, *models.ChargeAttempt) {}, []gateway.Result{intent("pi_ok", gateway.IntentSucceeded)}, 1, models.AttemptSucceeded, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, a := setup(t, tc.answers...)
			b.eng = charge.New(charge.Options{Store: b.st, Gateway: b.gw, Clock: b.clk, LeaseMargin: 5 * time.Second,
				Retry: charge.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second, MaxElapsedTime: time.Minute}})
			require.False(t, a.LeaseDeadline.IsZero(), "the claim stamps its monotonic deadline")
			require.WithinDuration(t, time.Now().Add(time.Hour), a.LeaseDeadline, time.Minute)
			tc.spoil(b, &a)
			status, err := b.eng.Execute(context.Background(), &a)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.status, status)
			require.Len(t, b.gw.sent, tc.sent)
			got, err := b.st.AttemptByID(context.Background(), a.ID)
			require.NoError(t, err)
			require.Equal(t, tc.status, got.Status)
			if tc.sent == 0 {
				require.Equal(t, "test", got.LeaseOwner, "nothing recorded: the row waits for its lease to end")
				require.Zero(t, got.Tries)
			}
		})
	}
}

// countingRefunds answers every refund as succeeded and counts the sends.
type countingRefunds struct{ sent int }

func (c *countingRefunds) CreateRefund(_ context.Context, req gateway.RefundRequest) gateway.Result {
	c.sent++
	return gateway.Result{Kind: gateway.Succeeded, HTTPStatus: 200, Refund: &gateway.Refund{ID: "re_1", Status: "succeeded", Amount: req.Amount}}
}

func (c *countingRefunds) RetrieveRefund(context.Context, string, string) gateway.Result {
	return gateway.Result{Kind: gateway.Transient}
}

// TestNoRefundSentOnLostLease: a refund whose claim has less than the margin
// of its lease left (a margin longer than the refund job's lease stands in
// for a process paused since the claim) is not sent; the row waits, unknown,
// for its next try under its own key.
func TestNoRefundSentOnLostLease(t *testing.T) {
	for _, tc := range []struct {
		name   string
		margin time.Duration
		sent   int
		status models.RefundStatus
	}{
		{"lease left", 0, 1, models.RefundSucceeded},
		{"lease within the margin", 3 * time.Hour, 0, models.RefundUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, a := setup(t, intent("pi_paid", gateway.IntentSucceeded))
			_, err := b.eng.Execute(context.Background(), &a)
			require.NoError(t, err)
			require.NoError(t, b.st.InTx(context.Background(), func(tx *store.Tx) error {
				_, _, err := tx.ReserveRefund(b.clk.Now(), store.NewRefund{InvoiceID: a.InvoiceID, Amount: 500,
					Reason: models.RefundReasonRequestedByCustomer, IdempotencyKey: "rf-lease", Status: models.RefundPending})
				return err
			}))
			refunds := &countingRefunds{}
			eng := charge.New(charge.Options{Store: b.st, Gateway: b.gw, Clock: b.clk, Refunds: refunds, RefundOwner: "test", LeaseMargin: tc.margin,
				Retry: charge.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second, MaxElapsedTime: time.Minute}})
			n, err := eng.RunRefunds(context.Background(), 10)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.Equal(t, tc.sent, refunds.sent)
			rf, err := b.st.RefundByKey(context.Background(), "rf-lease")
			require.NoError(t, err)
			require.Equal(t, tc.status, rf.Status)
		})
	}
}

// budgetWait stands for the gateway client's budget: the request waits for
// its turn — long enough here for the lease to run out — and then asks
// budget.Request, as the provider clients do right before the bytes leave.
type budgetWait struct {
	scripted
	wait func()
}

func (g *budgetWait) CreatePaymentIntent(ctx context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	g.wait()
	if err := budget.Request(ctx); err != nil {
		return gateway.Result{Kind: gateway.Transient, Err: fmt.Errorf("wooshpay: create payment intent: %w", err)}
	}
	return g.scripted.CreatePaymentIntent(ctx, req)
}

// TestNoSendAfterTheBudgetWaitOutlivedTheLease: the lease is checked again
// after the wait for a slot and a token of this instance's share, right before
// the request leaves; a lease that ran out during the wait sends nothing and
// records nothing.
func TestNoSendAfterTheBudgetWaitOutlivedTheLease(t *testing.T) {
	b, a := setup(t, intent("pi_ok", gateway.IntentSucceeded))
	gw := &budgetWait{scripted: scripted{answers: []gateway.Result{intent("pi_ok", gateway.IntentSucceeded)}}, wait: func() { b.clk.Advance(2 * time.Hour) }}
	b.eng = charge.New(charge.Options{Store: b.st, Gateway: gw, Clock: b.clk, LeaseMargin: 5 * time.Second,
		Retry: charge.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second, MaxElapsedTime: time.Minute}})
	status, err := b.eng.Execute(context.Background(), &a)
	require.ErrorIs(t, err, charge.ErrLeaseRanOut)
	require.Equal(t, models.AttemptPending, status)
	require.Empty(t, gw.sent, "nothing left after the wait")
	got, err := b.st.AttemptByID(context.Background(), a.ID)
	require.NoError(t, err)
	require.Equal(t, models.AttemptPending, got.Status)
	require.Zero(t, got.Tries)
	require.Equal(t, "test", got.LeaseOwner, "nothing recorded: the row waits for its lease to end")
}
