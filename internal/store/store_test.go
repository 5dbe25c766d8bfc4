package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)

// invoiceAll creates the first period's invoice for every subscription.
func invoiceAll(t *testing.T, st *store.Store, now time.Time) int {
	t.Helper()
	var created int
	require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
		subs, err := tx.DueSubscriptions(now, store.DueCursor{}, 1000)
		if err != nil {
			return err
		}
		var invs []store.NewInvoice
		for _, s := range subs {
			invs = append(invs, store.NewInvoice{SubscriptionID: s.ID, Reference: s.Reference, PeriodIndex: s.NextPeriod, PeriodStart: s.NextBillingAt,
				PeriodEnd: s.NextBillingAt.AddDate(0, 1, 0), Amount: s.Amount, Currency: s.Currency})
		}
		created, err = tx.CreateInvoices(now, invs)
		return err
	}))
	return created
}

func TestMigrationsAreCurrent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ok, err := st.MigrationsCurrent(context.Background())
		require.NoError(t, err)
		require.True(t, ok)
		applied, err := st.Migrate(context.Background())
		require.NoError(t, err)
		require.Empty(t, applied, "a second migrate applies nothing")
	})
}

func TestInvoiceCreationIsIdempotent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		storetest.Seed(t, st, t0, storetest.Subscription{}, storetest.Subscription{})
		require.Equal(t, 2, invoiceAll(t, st, t0))
		require.Equal(t, 0, invoiceAll(t, st, t0), "the same periods never get a second invoice")
		var n int64
		require.NoError(t, st.DB().Model(&models.Invoice{}).Count(&n).Error)
		require.EqualValues(t, 2, n)
	})
}

func TestClaimNewAttemptFreezesRequestAndKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "a", Amount: 2500, Currency: "EUR"})
		invoiceAll(t, st, t0)
		got, err := st.ClaimNewAttempts(ctx, "w1", t0, t0.Add(time.Minute), 10)
		require.NoError(t, err)
		require.Len(t, got, 1)
		a := got[0]
		require.NotZero(t, a.ID)
		require.Equal(t, 1, a.AttemptNo)
		require.Equal(t, a.MerchantOrderID+"-a1", a.IdempotencyKey)
		require.Equal(t, int64(2500), a.Amount)
		require.Equal(t, "EUR", a.Currency)
		require.Equal(t, "cus_a", a.GatewayCustomer)
		require.Equal(t, "pm_a", a.GatewayPM)
		require.True(t, a.OffSession)
		require.Equal(t, models.AttemptPending, a.Status)

		again, err := st.ClaimNewAttempts(ctx, "w2", t0.Add(time.Hour), t0.Add(2*time.Hour), 10)
		require.NoError(t, err)
		require.Empty(t, again, "an invoice with an attempt in flight is not claimed again")

		// The database itself refuses a second unresolved attempt for the invoice.
		dup := a
		dup.ID, dup.AttemptNo, dup.IdempotencyKey = 0, 2, a.MerchantOrderID+"-a2"
		require.Error(t, st.DB().Create(&dup).Error)
	})
}

func TestFinishAttemptIsFenced(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0, storetest.Subscription{})
		invoiceAll(t, st, t0)
		claimed, err := st.ClaimNewAttempts(ctx, "w1", t0, t0.Add(time.Minute), 10)
		require.NoError(t, err)
		stale := claimed[0]

		// The lease expires and another worker replays the attempt.
		later := t0.Add(2 * time.Minute)
		replays, err := st.ClaimReplayAttempts(ctx, "w2", later, later, later.Add(time.Minute), t0.Add(-time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, replays, 1)
		require.Equal(t, stale.LeaseVersion+1, replays[0].LeaseVersion)

		// The first worker wakes up: its write must not land.
		err = st.InTx(ctx, func(tx *store.Tx) error {
			return tx.FinishAttempt(later, &stale, store.AttemptResult{Status: models.AttemptDeclined, DeclineCode: "insufficient_funds"})
		})
		require.ErrorIs(t, err, store.ErrLeaseLost)

		fresh := replays[0]
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			return tx.FinishAttempt(later, &fresh, store.AttemptResult{Status: models.AttemptSucceeded, PaymentIntentID: "pi_1"})
		}))
		// A finished attempt is never rewritten, even with the right version.
		err = st.InTx(ctx, func(tx *store.Tx) error {
			return tx.FinishAttempt(later, &fresh, store.AttemptResult{Status: models.AttemptDeclined})
		})
		require.ErrorIs(t, err, store.ErrLeaseLost)
		got, err := st.AttemptByID(ctx, fresh.ID)
		require.NoError(t, err)
		require.Equal(t, models.AttemptSucceeded, got.Status)
		require.Equal(t, "pi_1", got.PaymentIntentID)
		require.Equal(t, 0, countInvoices(t, st, "paid"), "FinishAttempt alone does not touch the invoice")
	})
}

func TestReplayWaitsForLeaseAndRetryTime(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0, storetest.Subscription{})
		invoiceAll(t, st, t0)
		claimed, err := st.ClaimNewAttempts(ctx, "w1", t0, t0.Add(time.Minute), 10)
		require.NoError(t, err)
		a := claimed[0]
		got, err := st.ClaimReplayAttempts(ctx, "w2", t0.Add(30*time.Second), t0.Add(30*time.Second), t0.Add(time.Hour), t0.Add(-time.Hour), 10)
		require.NoError(t, err)
		require.Empty(t, got, "a live lease is respected")

		retryAt := t0.Add(10 * time.Minute)
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			return tx.FinishAttempt(t0, &a, store.AttemptResult{Status: models.AttemptUnknown, NextTryAt: &retryAt})
		}))
		got, err = st.ClaimReplayAttempts(ctx, "w2", t0.Add(5*time.Minute), t0.Add(5*time.Minute), t0.Add(time.Hour), t0.Add(-time.Hour), 10)
		require.NoError(t, err)
		require.Empty(t, got, "an unknown attempt waits for its next_try_at")
		got, err = st.ClaimReplayAttempts(ctx, "w2", retryAt, retryAt, retryAt.Add(time.Hour), t0.Add(-time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, a.IdempotencyKey, got[0].IdempotencyKey, "a replay keeps its key")

		got, err = st.ClaimReplayAttempts(ctx, "w3", t0.Add(48*time.Hour), t0.Add(48*time.Hour), t0.Add(49*time.Hour), t0.Add(25*time.Hour), 10)
		require.NoError(t, err)
		require.Empty(t, got, "attempts older than the idempotency window are never replayed")
	})
}

func TestConcurrentClaimsNeverShareAnInvoice(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		var subs []storetest.Subscription
		for i := 0; i < 200; i++ {
			subs = append(subs, storetest.Subscription{Reference: "s" + string(rune('a'+i%26)) + time.Duration(i).String()})
		}
		storetest.Seed(t, st, t0, subs...)
		invoiceAll(t, st, t0)
		seen := claimAllConcurrently(t, 4, func() ([]models.ChargeAttempt, error) {
			return st.ClaimNewAttempts(ctx, "w", t0, t0.Add(time.Minute), 7)
		}, func(a models.ChargeAttempt) int64 { return a.InvoiceID })
		require.Len(t, seen, 200)
		for id, n := range seen {
			require.Equal(t, 1, n, "invoice %d claimed %d times", id, n)
		}
	})
}

func TestImportIsAllOrNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "existing", Customer: "cus_1", PaymentMethod: "pm_1"})
		rows := []store.ImportRow{
			{Line: 2, Reference: "new-1", Email: "a@example.com", Customer: "cus_2", PaymentMethod: "pm_2", Amount: 100, Currency: "USD", Interval: "month", IntervalCount: 1, Anchor: t0, FirstBilling: t0},
			{Line: 3, Reference: "existing", Email: "b@example.com", Customer: "cus_3", PaymentMethod: "pm_3", Amount: 100, Currency: "USD", Interval: "month", IntervalCount: 1, Anchor: t0, FirstBilling: t0},
			{Line: 4, Reference: "new-2", Email: "c@example.com", Customer: "cus_4", PaymentMethod: "pm_1", Amount: 100, Currency: "USD", Interval: "month", IntervalCount: 1, Anchor: t0, FirstBilling: t0},
		}
		n, err := st.ImportSubscriptions(ctx, rows, t0)
		require.Zero(t, n)
		var ie store.ImportErrors
		require.True(t, errors.As(err, &ie), "got %v", err)
		require.Len(t, ie, 2)
		require.Equal(t, 3, ie[0].Line)
		require.Equal(t, "reference", ie[0].Column)
		require.Equal(t, 4, ie[1].Line)
		require.Equal(t, "payment_method", ie[1].Column)
		var count int64
		require.NoError(t, st.DB().Model(&models.Subscription{}).Count(&count).Error)
		require.EqualValues(t, 1, count, "nothing of the rejected file was imported")
		require.NoError(t, st.DB().Model(&models.Customer{}).Count(&count).Error)
		require.EqualValues(t, 1, count)
	})
}

func TestSQLiteAllowsOneInstance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "billingd.db")
	first := storetest.SQLiteAt(t, path)
	require.True(t, first.Exclusive())
	_, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: path, Exclusive: true})
	require.ErrorIs(t, err, store.ErrLocked)
	require.Contains(t, err.Error(), "only one billingd may run")

	reader, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: path})
	require.NoError(t, err, "read-only tools (status) still open it")
	require.NoError(t, reader.Close())

	require.NoError(t, first.Close())
	again, err := store.Open(context.Background(), store.Options{Driver: store.SQLite, DSN: path, Exclusive: true})
	require.NoError(t, err, "the lock is released on close")
	require.NoError(t, again.Close())
}

func TestReleaseAllLeasesNeedsExclusivity(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	storetest.Seed(t, st, t0, storetest.Subscription{})
	invoiceAll(t, st, t0)
	_, err := st.ClaimNewAttempts(ctx, "dead-process", t0, t0.Add(time.Hour), 10)
	require.NoError(t, err)
	n, err := st.ReleaseAllLeases(ctx, t0)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	got, err := st.ClaimReplayAttempts(ctx, "me", t0, t0, t0.Add(time.Hour), t0.Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Len(t, got, 1, "a dead process's attempt is replayable at once after the rescue")

	reader, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: filepath.Join(t.TempDir(), "other.db")})
	require.NoError(t, err)
	defer reader.Close()
	_, err = reader.ReleaseAllLeases(ctx, t0)
	require.Error(t, err)
}

func countInvoices(t *testing.T, st *store.Store, status string) int {
	var n int64
	require.NoError(t, st.DB().Model(&models.Invoice{}).Where("status = ?", status).Count(&n).Error)
	return int(n)
}

// A retry scheduled for an invoice whose on-session attempt (a pay link) is still
// unresolved must wait for it, not fail the claim batch of every invoice.
func TestClaimSkipsInvoicesWithAnUnresolvedAttempt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "busy"}, storetest.Subscription{Reference: "free"})
		require.Equal(t, 2, invoiceAll(t, st, t0))
		var busy models.Invoice
		require.NoError(t, st.DB().Where("subscription_id = 1").First(&busy).Error)
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			ic, err := tx.InvoiceContact(busy.ID)
			if err != nil {
				return err
			}
			press, err := tx.StartOnSessionAttempt(t0, ic, "pay-page", t0.Add(time.Minute), 0)
			a := press.Attempt
			require.NotNil(t, a)
			return err
		}))
		got, err := st.ClaimNewAttempts(ctx, "w", t0.Add(time.Hour), t0.Add(2*time.Hour), 10)
		require.NoError(t, err, "the busy invoice does not fail the batch")
		require.Len(t, got, 1)
		require.NotEqual(t, busy.ID, got[0].InvoiceID)
	})
}

func TestRecordPaymentMethodRefusesAnotherCustomersCard(t *testing.T) {
	st := storetest.SQLite(t)
	storetest.Seed(t, st, t0, storetest.Subscription{Reference: "a", Customer: "cus_a", PaymentMethod: "pm_a"},
		storetest.Subscription{Reference: "b", Customer: "cus_b", PaymentMethod: "pm_b"})
	require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
		ok, err := tx.RecordPaymentMethod(t0, "cus_a", "pm_new", store.SavedCard{})
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = tx.RecordPaymentMethod(t0, "cus_a", "pm_new", store.SavedCard{})
		require.NoError(t, err)
		require.True(t, ok, "recording again is harmless")
		ok, err = tx.RecordPaymentMethod(t0, "cus_a", "pm_b", store.SavedCard{})
		require.NoError(t, err)
		require.False(t, ok, "pm_b is customer b's")
		ok, err = tx.RecordPaymentMethod(t0, "cus_unknown", "pm_x", store.SavedCard{})
		require.NoError(t, err)
		require.False(t, ok)
		return nil
	}))
}

// claimAllConcurrently runs claim on `workers` goroutines until it returns
// nothing, and counts how often each row (by key) was claimed.
func claimAllConcurrently[T any](t *testing.T, workers int, claim func() ([]T, error), key func(T) int64) map[int64]int {
	t.Helper()
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				rows, err := claim()
				if err != nil {
					t.Error(err)
					return
				}
				if len(rows) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rows {
					seen[key(r)]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return seen
}
