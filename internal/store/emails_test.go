package store_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// firstInvoice seeds one subscription, invoices its first period and returns the invoice.
func firstInvoice(t *testing.T, st *store.Store, sub storetest.Subscription) models.Invoice {
	t.Helper()
	storetest.Seed(t, st, t0, sub)
	require.Equal(t, 1, invoiceAll(t, st, t0))
	var inv models.Invoice
	require.NoError(t, st.DB().Order("id DESC").First(&inv).Error)
	return inv
}

func enqueue(t *testing.T, st *store.Store, now time.Time, e *models.Email) bool {
	t.Helper()
	var inserted bool
	require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		inserted, err = tx.EnqueueEmail(now, "example.com", e)
		return err
	}))
	return inserted
}

func TestEnqueueEmailDedupes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		inv := firstInvoice(t, st, storetest.Subscription{Reference: "acme"})
		e := &models.Email{DedupeKey: "case:1/step:0/payment_failed", Kind: models.EmailPaymentFailed, InvoiceID: &inv.ID,
			ToAddress: "acme@example.com", LinkPurpose: models.LinkPay}
		require.True(t, enqueue(t, st, t0, e))
		require.NotZero(t, e.ID)
		require.Equal(t, models.EmailPending, e.Status)
		require.True(t, e.NextAttemptAt.Equal(t0), "due at once by default")
		require.Regexp(t, regexp.MustCompile(`^<[0-9a-f]{16}\.case-1-step-0-payment_failed@example\.com>$`), e.MessageID)

		again := &models.Email{DedupeKey: e.DedupeKey, Kind: models.EmailPaymentFailed, InvoiceID: &inv.ID,
			ToAddress: "someone-else@example.com"}
		require.False(t, enqueue(t, st, t0.Add(time.Hour), again), "the same step never enqueues a second email")
		require.Zero(t, again.ID)

		var n int64
		require.NoError(t, st.DB().Model(&models.Email{}).Count(&n).Error)
		require.EqualValues(t, 1, n)
		got, err := st.EmailByID(ctx, e.ID)
		require.NoError(t, err)
		require.Equal(t, "acme@example.com", got.ToAddress, "the first row is untouched")
		require.Equal(t, e.MessageID, got.MessageID)

		later := t0.Add(24 * time.Hour)
		other := &models.Email{DedupeKey: "case:1/step:1/payment_failed", Kind: models.EmailPaymentFailed, InvoiceID: &inv.ID,
			ToAddress: "acme@example.com", NextAttemptAt: later}
		require.True(t, enqueue(t, st, t0, other))
		require.True(t, other.NextAttemptAt.Equal(later), "a given send time is kept")
		require.NotEqual(t, e.MessageID, other.MessageID)
	})
}

func TestNewMessageID(t *testing.T) {
	tests := []struct {
		name, key, domain string
		want              string
	}{
		{"plain", "case-7-step-2", "billing.example.com", `^<[0-9a-f]{16}\.case-7-step-2@billing\.example\.com>$`},
		{"odd characters", "inv 9/<x>@y", "Example.COM", `^<[0-9a-f]{16}\.inv-9--x--y@example\.com>$`},
		{"no domain", "k", "", `^<[0-9a-f]{16}\.k@localhost\.localdomain>$`},
		{"bad domain", "k", "exa mple>", `^<[0-9a-f]{16}\.k@localhost\.localdomain>$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := store.NewMessageID(tt.key, tt.domain)
			require.NoError(t, err)
			require.Regexp(t, tt.want, id)
		})
	}
}

func TestClaimDueEmailsLeasesAndFences(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		inv := firstInvoice(t, st, storetest.Subscription{})
		now := enqueueN(t, st, inv.ID, 3)
		future := &models.Email{DedupeKey: "future", Kind: models.EmailRecovered, InvoiceID: &inv.ID, ToAddress: "a@example.com",
			NextAttemptAt: now.Add(time.Hour)}
		require.True(t, enqueue(t, st, now, future))

		got, err := st.ClaimDueEmails(ctx, "w1", now, now.Add(time.Minute), 2)
		require.NoError(t, err)
		require.Len(t, got, 2, "the limit is honored")
		for _, e := range got {
			require.Equal(t, "w1", e.LeaseOwner)
			require.EqualValues(t, 1, e.LeaseVersion)
			require.True(t, e.LeaseUntil.Equal(now.Add(time.Minute)))
		}
		rest, err := st.ClaimDueEmails(ctx, "w2", now, now.Add(time.Minute), 10)
		require.NoError(t, err)
		require.Len(t, rest, 1, "leased rows and rows not yet due are skipped")
		require.NotEqual(t, future.ID, rest[0].ID)

		// w1's lease on got[0] expires and w3 takes it over.
		later := now.Add(2 * time.Minute)
		over, err := st.ClaimDueEmails(ctx, "w3", later, later.Add(time.Minute), 10)
		require.NoError(t, err)
		require.Len(t, over, 3, "expired leases are reclaimed")
		var fresh models.Email
		for _, e := range over {
			if e.ID == got[0].ID {
				fresh = e
			}
		}
		require.EqualValues(t, 2, fresh.LeaseVersion)

		stale := got[0]
		stale.Subject = "stale"
		require.ErrorIs(t, st.MarkEmailSent(ctx, later, &stale), store.ErrLeaseLost, "a worker whose lease was taken over records nothing")
		require.ErrorIs(t, st.MarkEmailRetry(ctx, later, &stale, later.Add(time.Minute), "x"), store.ErrLeaseLost)
		require.ErrorIs(t, st.MarkEmailFailed(ctx, later, &stale, "x"), store.ErrLeaseLost)
		require.ErrorIs(t, st.MarkEmailCanceled(ctx, later, &stale, "x"), store.ErrLeaseLost)

		fresh.Subject = "Payment failed"
		require.NoError(t, st.MarkEmailSent(ctx, later, &fresh))
		require.Equal(t, models.EmailSent, fresh.Status)
		row, err := st.EmailByID(ctx, fresh.ID)
		require.NoError(t, err)
		require.Equal(t, models.EmailSent, row.Status)
		require.Equal(t, 1, row.Attempts)
		require.Equal(t, "Payment failed", row.Subject)
		require.NotNil(t, row.SentAt)
		require.True(t, row.SentAt.Equal(later))
		require.Empty(t, row.LeaseOwner)
		require.Nil(t, row.LeaseUntil)
		require.EqualValues(t, 3, row.LeaseVersion)
		require.ErrorIs(t, st.MarkEmailSent(ctx, later, &fresh), store.ErrLeaseLost, "a sent row is never recorded twice")

		none, err := st.ClaimDueEmails(ctx, "w4", later.Add(time.Hour), later.Add(2*time.Hour), 10)
		require.NoError(t, err)
		for _, e := range none {
			require.NotEqual(t, fresh.ID, e.ID, "a sent row is never claimed again")
		}
	})
}

// enqueueN enqueues n due emails for the invoice and returns the time they are due.
func enqueueN(t *testing.T, st *store.Store, invoiceID int64, n int) time.Time {
	t.Helper()
	now := t0.Add(time.Hour)
	for i := 0; i < n; i++ {
		e := &models.Email{DedupeKey: "k" + string(rune('a'+i)), Kind: models.EmailPaymentFailed, InvoiceID: &invoiceID,
			ToAddress: "a@example.com", LinkPurpose: models.LinkPay}
		require.True(t, enqueue(t, st, now, e))
	}
	return now
}

func TestMarkEmailRetrySchedulesAndReleases(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		inv := firstInvoice(t, st, storetest.Subscription{})
		now := enqueueN(t, st, inv.ID, 1)
		got, err := st.ClaimDueEmails(ctx, "w1", now, now.Add(10*time.Minute), 10)
		require.NoError(t, err)
		require.Len(t, got, 1)
		e := got[0]
		next := now.Add(30 * time.Second)
		long := make([]byte, 2000)
		for i := range long {
			long[i] = 'x'
		}
		require.NoError(t, st.MarkEmailRetry(ctx, now, &e, next, "421 4.3.2 try later "+string(long)))
		require.Equal(t, 1, e.Attempts)

		row, err := st.EmailByID(ctx, e.ID)
		require.NoError(t, err)
		require.Equal(t, models.EmailPending, row.Status)
		require.Equal(t, 1, row.Attempts)
		require.True(t, row.NextAttemptAt.Equal(next))
		require.Len(t, row.LastError, 500, "errors are truncated")
		require.Nil(t, row.LeaseUntil, "the lease is released")

		early, err := st.ClaimDueEmails(ctx, "w2", next.Add(-time.Second), next.Add(time.Hour), 10)
		require.NoError(t, err)
		require.Empty(t, early, "not due before next_attempt_at, even with the lease released")
		due, err := st.ClaimDueEmails(ctx, "w2", next, next.Add(time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, due, 1)
		require.Equal(t, 1, due[0].Attempts)

		f := due[0]
		require.NoError(t, st.MarkEmailFailed(ctx, next, &f, "550 5.1.1 no such user"))
		row, err = st.EmailByID(ctx, e.ID)
		require.NoError(t, err)
		require.Equal(t, models.EmailFailed, row.Status)
		require.Equal(t, 2, row.Attempts)
		require.Equal(t, "550 5.1.1 no such user", row.LastError)
		again, err := st.ClaimDueEmails(ctx, "w3", next.Add(24*time.Hour), next.Add(25*time.Hour), 10)
		require.NoError(t, err)
		require.Empty(t, again, "a failed row is never retried")
	})
}

func TestMarkEmailCanceled(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		inv := firstInvoice(t, st, storetest.Subscription{})
		now := enqueueN(t, st, inv.ID, 1)
		got, err := st.ClaimDueEmails(ctx, "w1", now, now.Add(time.Minute), 10)
		require.NoError(t, err)
		e := got[0]
		require.NoError(t, st.MarkEmailCanceled(ctx, now, &e, "invoice is paid"))
		row, err := st.EmailByID(ctx, e.ID)
		require.NoError(t, err)
		require.Equal(t, models.EmailCanceled, row.Status)
		require.Equal(t, 0, row.Attempts, "nothing was sent")
		require.Equal(t, "invoice is paid", row.LastError)
	})
}

func TestConcurrentEmailClaimsNeverShareARow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		inv := firstInvoice(t, st, storetest.Subscription{})
		now := t0.Add(time.Hour)
		for i := 0; i < 60; i++ {
			e := &models.Email{DedupeKey: "k" + time.Duration(i).String(), Kind: models.EmailRecovered, InvoiceID: &inv.ID, ToAddress: "a@example.com"}
			require.True(t, enqueue(t, st, now, e))
		}
		seen := claimAllConcurrently(t, 4, func() ([]models.Email, error) {
			return st.ClaimDueEmails(ctx, "w", now, now.Add(time.Minute), 5)
		}, func(e models.Email) int64 { return e.ID })
		require.Len(t, seen, 60)
		for id, n := range seen {
			require.Equal(t, 1, n, "email %d claimed %d times", id, n)
		}
	})
}

func TestEmailContextJoins(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		inv := firstInvoice(t, st, storetest.Subscription{Reference: "gold-42", Amount: 2750, Currency: "KWD"})
		require.NoError(t, st.DB().Exec(`UPDATE subscriptions SET description = 'Gold plan'`).Error)

		// Without a case.
		plain := &models.Email{DedupeKey: "plain", Kind: models.EmailRecovered, InvoiceID: &inv.ID, ToAddress: "gold-42@example.com"}
		require.True(t, enqueue(t, st, t0, plain))
		got, err := st.EmailContext(ctx, plain.ID)
		require.NoError(t, err)
		require.Equal(t, plain.ID, got.Email.ID)
		require.Equal(t, plain.MessageID, got.Email.MessageID)
		require.Equal(t, "gold-42@example.com", got.CustomerEmail)
		require.Equal(t, "gold-42", got.Reference)
		require.Equal(t, "Gold plan", got.Description)
		require.Equal(t, inv.PublicID, got.InvoicePublicID)
		require.EqualValues(t, 2750, got.Amount)
		require.Equal(t, "KWD", got.Currency)
		require.True(t, got.PeriodStart.Equal(inv.PeriodStart))
		require.True(t, got.PeriodEnd.Equal(inv.PeriodEnd))
		require.Equal(t, models.InvoiceOpen, got.InvoiceStatus)
		require.Empty(t, got.CaseReason)
		require.Empty(t, got.CaseStatus)
		require.NotNil(t, got.NextRetryAt, "a fresh invoice is due")
		require.Nil(t, got.PaidAt)

		// With a case, after the invoice was paid.
		dc := models.DunningCase{InvoiceID: inv.ID, SubscriptionID: inv.SubscriptionID, Reason: models.ReasonHardDecline,
			Status: models.CaseRecovered, LastDeclineCode: "expired_card", FinalAction: "cancel", OpenedAt: t0, CreatedAt: t0, UpdatedAt: t0}
		require.NoError(t, st.DB().Create(&dc).Error)
		paidAt := t0.Add(3 * time.Hour)
		var paid bool
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			var err error
			paid, err = tx.MarkInvoicePaid(paidAt, inv.ID, "pi_123")
			return err
		}))
		require.True(t, paid)
		withCase := &models.Email{DedupeKey: "case", Kind: models.EmailCardUpdate, CaseID: &dc.ID, InvoiceID: &inv.ID,
			ToAddress: "gold-42@example.com", LinkPurpose: models.LinkUpdateCard}
		require.True(t, enqueue(t, st, t0, withCase))
		got, err = st.EmailContext(ctx, withCase.ID)
		require.NoError(t, err)
		require.Equal(t, models.InvoicePaid, got.InvoiceStatus)
		require.Equal(t, models.ReasonHardDecline, got.CaseReason)
		require.Equal(t, models.CaseRecovered, got.CaseStatus)
		require.Equal(t, "expired_card", got.DeclineCode)
		require.Equal(t, "cancel", got.FinalAction)
		require.Nil(t, got.NextRetryAt)
		require.NotNil(t, got.PaidAt)
		require.True(t, got.PaidAt.Equal(paidAt))
		require.Equal(t, "pi_123", got.PaymentIntentID)
		require.Equal(t, models.LinkUpdateCard, got.Email.LinkPurpose)

		_, err = st.EmailContext(ctx, 999999)
		require.ErrorIs(t, err, store.ErrEmailNotFound)
	})
}
