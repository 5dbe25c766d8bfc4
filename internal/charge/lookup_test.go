package charge_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// lookupRig is the charge engine against the simulator (through the WooshPay
// client, over HTTP), with a counter of the charges and searches that reach
// it and a switch that makes searches answer 503.
type lookupRig struct {
	st       *store.Store
	clk      *clock.Fake
	sim      *sim.Server
	client   *wooshpay.Client
	eng      *charge.Engine
	customer string
	card     string
	order    string
	creates  atomic.Int32
	searches atomic.Int32
	failSrch atomic.Bool
}

func newLookupRig(t *testing.T) *lookupRig {
	t.Helper()
	const key = "sk_test_lookup"
	r := &lookupRig{clk: clock.NewFake(t0), st: storetest.SQLite(t)}
	r.sim = sim.New(sim.Options{SecretKey: key, Now: r.clk.Now, Seed: 7, ProcessingDelay: 1000 * time.Hour})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case req.Method == http.MethodPost && req.URL.Path == "/v1/payment_intents":
			r.creates.Add(1)
		case req.URL.Path == "/v1/payment_intents/search":
			r.searches.Add(1)
			if r.failSrch.Load() {
				http.Error(w, `{"error":{"type":"api_error","message":"down"}}`, http.StatusServiceUnavailable)
				return
			}
		}
		r.sim.ServeHTTP(w, req)
	}))
	t.Cleanup(func() { srv.Close(); r.sim.Close() })
	saver, err := signup.New(signup.Gateway{BaseURL: srv.URL, SecretKey: key, Timeout: 5 * time.Second})
	require.NoError(t, err)
	saved, err := saver.Save(context.Background(), signup.Card{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2035, CVC: "123"})
	require.NoError(t, err)
	r.customer, r.card = saved.Customer, saved.PaymentMethod
	r.client, err = wooshpay.New(wooshpay.Options{BaseURL: srv.URL, SecretKey: key, Timeout: 5 * time.Second})
	require.NoError(t, err)
	r.eng = charge.New(charge.Options{Store: r.st, Gateway: r.client, Clock: r.clk,
		Retry:             charge.RetryPolicy{InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond, MaxElapsedTime: 50 * time.Millisecond},
		UnknownRetryDelay: 5 * time.Minute, Log: zerolog.Nop()})

	storetest.Seed(t, r.st, t0, storetest.Subscription{Reference: "r1", Customer: r.customer, PaymentMethod: r.card, Amount: 1999, Currency: "USD", Anchor: t0})
	require.NoError(t, r.st.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, Reference: "r1", PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 1999, Currency: "USD"}})
		return err
	}))
	r.order = store.DerivedOrderID("r1", t0)
	return r
}

// chargedBefore makes a payment of the invoice's order at the gateway that
// the database does not know of (made by a copy of it that was lost to a
// restore): same order id and first key, amount as given.
func (r *lookupRig) chargedBefore(t *testing.T, amount int64, number string) string {
	t.Helper()
	if number != "" {
		require.NoError(t, r.sim.SetCardBehaviour(r.card, number))
		defer func() { require.NoError(t, r.sim.SetCardBehaviour(r.card, "4242424242424242")) }()
	}
	res := r.client.CreatePaymentIntent(context.Background(), gateway.PaymentIntentRequest{Amount: amount, Currency: "USD", Customer: r.customer,
		PaymentMethod: r.card, OffSession: true, MerchantOrderID: r.order, IdempotencyKey: store.IdempotencyKey(r.order, 1),
		Metadata: map[string]string{"idempotency_key": store.IdempotencyKey(r.order, 1)}})
	require.NotNil(t, res.Intent, "%v", res.Err)
	r.creates.Store(0)
	return res.Intent.ID
}

func (r *lookupRig) claim(t *testing.T) models.ChargeAttempt {
	t.Helper()
	now := r.clk.Now()
	claimed, err := r.st.ClaimNewAttempts(context.Background(), "test", now, now.Add(time.Hour), 1)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	return claimed[0]
}

func (r *lookupRig) invoice(t *testing.T) models.Invoice {
	var inv models.Invoice
	require.NoError(t, r.st.DB().First(&inv).Error)
	return inv
}

func (r *lookupRig) ledgerSucceeded() int {
	n := 0
	for _, e := range r.sim.Ledger() {
		if e.MerchantOrderID == r.order && e.Status == "succeeded" {
			n++
		}
	}
	return n
}

// An attempt of a period older than the key window first asks the gateway for
// the order's payments, and takes a success instead of charging again.
func TestOldPeriodLooksBeforeCharging(t *testing.T) {
	ctx := context.Background()
	past := 48 * time.Hour // the simulator forgets keys after 24h

	t.Run("a current period's first attempt does not look", func(t *testing.T) {
		r := newLookupRig(t)
		r.clk.Advance(time.Hour)
		a := r.claim(t)
		status, err := r.eng.Execute(ctx, &a)
		require.NoError(t, err)
		require.Equal(t, models.AttemptSucceeded, status)
		require.EqualValues(t, 1, r.creates.Load())
		require.Zero(t, r.searches.Load(), "the hot path makes no lookup")
	})

	t.Run("a success found is taken, nothing is sent", func(t *testing.T) {
		r := newLookupRig(t)
		pi := r.chargedBefore(t, 1999, "")
		r.clk.Advance(past)
		a := r.claim(t)
		require.Equal(t, store.IdempotencyKey(r.order, 1), a.IdempotencyKey, "the restored period's attempt has the key the gateway forgot")
		status, err := r.eng.Execute(ctx, &a)
		require.NoError(t, err)
		require.Equal(t, models.AttemptSucceeded, status)
		require.Zero(t, r.creates.Load(), "no charge request")
		require.EqualValues(t, 1, r.searches.Load())
		inv := r.invoice(t)
		require.Equal(t, models.InvoicePaid, inv.Status)
		require.Equal(t, pi, inv.PaymentIntentID)
		require.Equal(t, 1, r.ledgerSucceeded())
	})

	t.Run("none found: charged once", func(t *testing.T) {
		r := newLookupRig(t)
		r.clk.Advance(past)
		a := r.claim(t)
		status, err := r.eng.Execute(ctx, &a)
		require.NoError(t, err)
		require.Equal(t, models.AttemptSucceeded, status)
		require.EqualValues(t, 1, r.searches.Load())
		require.EqualValues(t, 1, r.creates.Load())
		require.Equal(t, 1, r.ledgerSucceeded())
	})

	t.Run("a failed earlier payment is no reason not to charge", func(t *testing.T) {
		r := newLookupRig(t)
		r.chargedBefore(t, 1999, "4000000000009995") // insufficient funds
		r.clk.Advance(past)
		a := r.claim(t)
		status, err := r.eng.Execute(ctx, &a)
		require.NoError(t, err)
		require.Equal(t, models.AttemptSucceeded, status)
		require.EqualValues(t, 1, r.creates.Load())
		require.Equal(t, 1, r.ledgerSucceeded())
	})

	t.Run("the lookup fails: nothing is sent, the attempt is retried and looks again", func(t *testing.T) {
		r := newLookupRig(t)
		pi := r.chargedBefore(t, 1999, "")
		r.clk.Advance(past)
		r.failSrch.Store(true)
		a := r.claim(t)
		status, err := r.eng.Execute(ctx, &a)
		require.NoError(t, err)
		require.Equal(t, models.AttemptUnknown, status)
		require.Zero(t, r.creates.Load(), "nothing sent while the lookup cannot answer")
		stored, err := r.st.AttemptByID(ctx, a.ID)
		require.NoError(t, err)
		require.Equal(t, models.AttemptUnknown, stored.Status)
		require.Zero(t, stored.Tries)
		require.NotNil(t, stored.NextTryAt)
		require.Contains(t, stored.ErrorMessage, "nothing was sent")

		r.failSrch.Store(false)
		r.clk.Advance(10 * time.Minute)
		now := r.clk.Now()
		replays, err := r.st.ClaimReplayAttempts(ctx, "test", now, now, now.Add(time.Hour), now.Add(-23*time.Hour), 1)
		require.NoError(t, err)
		require.Len(t, replays, 1, "replayed like a transient answer")
		status, err = r.eng.Execute(ctx, &replays[0])
		require.NoError(t, err)
		require.Equal(t, models.AttemptSucceeded, status)
		require.Zero(t, r.creates.Load(), "the retry looked again and found the payment")
		require.Equal(t, pi, r.invoice(t).PaymentIntentID)
		require.Equal(t, 1, r.ledgerSucceeded())
	})

	t.Run("a success of another amount is needs_review, not paid", func(t *testing.T) {
		r := newLookupRig(t)
		r.chargedBefore(t, 2999, "")
		r.clk.Advance(past)
		a := r.claim(t)
		status, err := r.eng.Execute(ctx, &a)
		require.NoError(t, err)
		require.Equal(t, models.AttemptNeedsReview, status)
		require.Zero(t, r.creates.Load())
		inv := r.invoice(t)
		require.Equal(t, models.InvoiceOpen, inv.Status)
		require.Nil(t, inv.NextAttemptAt, "held for a human")
		stored, err := r.st.AttemptByID(ctx, a.ID)
		require.NoError(t, err)
		require.Contains(t, stored.ErrorMessage, "amount mismatch")
	})

	t.Run("a payment still processing is taken over, not charged again", func(t *testing.T) {
		r := newLookupRig(t)
		pi := r.chargedBefore(t, 1999, processingCard(t))
		r.clk.Advance(past)
		a := r.claim(t)
		status, err := r.eng.Execute(ctx, &a)
		require.NoError(t, err)
		require.Zero(t, r.creates.Load())
		stored, err := r.st.AttemptByID(ctx, a.ID)
		require.NoError(t, err)
		require.Equal(t, pi, stored.PaymentIntentID)
		require.Equal(t, models.AttemptProcessing, status)
		require.NotNil(t, stored.NextReconcileAt, "the reconciler looks at it again")
	})
}

// processingCard is a simulator test card whose charges are processing first.
func processingCard(t *testing.T) string {
	for _, c := range sim.TestCards {
		if c.Outcome == "processing" {
			return c.Number
		}
	}
	t.Fatal("the simulator has no processing test card")
	return ""
}
