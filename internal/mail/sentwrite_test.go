package mail_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/mail"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestAcceptedEmailIsMarkedSentNotSentAgain is finding 10: the SMTP server
// accepts an email and the write that marks it sent fails (three times, as a
// dropped database connection does). The worker retries the write with
// backoff, never the send: the server receives the message once, its link is
// minted once, the row ends sent after one attempt, and neither a later run
// nor another worker after the lease would have expired sends it again.
func TestAcceptedEmailIsMarkedSentNotSentAgain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, 1, storetest.Subscription{})
		em := e.enqueue(t, 0, models.EmailPaymentFailed, "", models.LinkPay)
		var waits []time.Duration
		e.w.SentWriteWait = func(d time.Duration) error { waits = append(waits, d); return nil }
		defer failpoint.FailTimes(failpoint.StoreMarkEmailSent, 3)()

		sum, err := e.w.RunOnce(context.Background())
		// Whatever runs later — this worker, or another one once the lease
		// would have run out — has nothing to send.
		e.clk.Advance(time.Hour)
		_, _ = e.w.RunOnce(context.Background())
		other := *e.w
		other.Owner = "w2"
		_, _ = other.RunOnce(context.Background())
		require.Equal(t, 1, e.smtp.Count(), "the SMTP server got the email exactly once")

		require.NoError(t, err, "a failed sent write is retried, not returned")
		require.Equal(t, 1, sum.Sent)
		require.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}, waits, "bounded backoff between tries")
		require.Zero(t, failpoint.Remaining(failpoint.StoreMarkEmailSent))
		require.Equal(t, map[string]int{em.MessageID: 1}, e.byMessageID())
		require.Equal(t, 1, e.minter.count(), "one link minted")
		row := e.row(t, em.ID)
		require.Equal(t, models.EmailSent, row.Status)
		require.Equal(t, 1, row.Attempts)
	})
}

// TestAcceptedEmailKeepsItsLeaseWhileTheSentWriteFails makes the "sent" write
// fail for longer than the lease: between tries the clock passes the lease's
// end and another worker runs. The retrying worker keeps extending the lease,
// so the other worker claims nothing and the email goes out once.
func TestAcceptedEmailKeepsItsLeaseWhileTheSentWriteFails(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, 1, storetest.Subscription{})
		em := e.enqueue(t, 0, models.EmailPaymentFailed, "", models.LinkPay)
		other := *e.w
		other.Owner = "w2"
		var otherSent int
		e.w.SentWriteWait = func(time.Duration) error {
			e.clk.Advance(2 * time.Minute) // 5m lease: the third wait passes its end
			sum, err := other.RunOnce(context.Background())
			require.NoError(t, err)
			otherSent += sum.Sent
			return nil
		}
		defer failpoint.FailTimes(failpoint.StoreMarkEmailSent, 6)()

		sum, err := e.w.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, mail.Summary{Sent: 1}, sum)
		require.Zero(t, otherSent, "the other worker never took the accepted email over")
		require.Equal(t, 1, e.smtp.Count())
		require.Equal(t, models.EmailSent, e.row(t, em.ID).Status)
	})
}

// TestAbortEndsTheSentWriteRetries: the retries of a "sent" write go on through
// the first shutdown signal (stop), but the second (abort) ends them, so the
// process can exit; the row stays pending under its lease and nothing is sent
// again by this run.
func TestAbortEndsTheSentWriteRetries(t *testing.T) {
	st := storetest.SQLite(t)
	e := newEnv(t, st, 1, storetest.Subscription{})
	em := e.enqueue(t, 0, models.EmailPaymentFailed, "", models.LinkPay)
	stop, stopNow := context.WithCancel(context.Background())
	abort, abortNow := context.WithCancel(context.Background())
	waits := 0
	e.w.SentWriteWait = func(time.Duration) error {
		waits++
		switch waits {
		case 2:
			stopNow() // first signal: the write is still retried
		case 4:
			abortNow() // second signal: the retries end
		}
		return nil
	}
	defer failpoint.FailTimes(failpoint.StoreMarkEmailSent, 100)()

	done := make(chan mail.Summary, 1)
	go func() {
		sum, _ := e.w.RunOnceUntil(stop, abort)
		done <- sum
	}()
	select {
	case sum := <-done:
		require.Equal(t, 4, waits, "retried through stop, ended by abort")
		require.Zero(t, sum.Sent)
		require.Equal(t, 1, sum.LeaseLost, "counted as an outcome not recorded")
	case <-time.After(30 * time.Second):
		t.Fatal("the worker kept retrying the sent write after abort")
	}
	require.Equal(t, 1, e.smtp.Count(), "sent once, never again in this run")
	require.Equal(t, models.EmailPending, e.row(t, em.ID).Status)
}
