package mail_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/mail"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)

const from = "Acme Billing <billing@acme.example>"

// fakeMinter hands out numbered links and remembers what it minted.
type fakeMinter struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (f *fakeMinter) Mint(_ context.Context, e *models.Email, _ time.Time) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.calls++
	return fmt.Sprintf("https://billing.example.com/pay/tok-%d-%d", e.ID, f.calls), nil
}

func (f *fakeMinter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

type env struct {
	st     *store.Store
	smtp   *smtpcapture.Server
	clk    *clock.Fake
	minter *fakeMinter
	w      *mail.Worker
	invs   []models.Invoice
}

// newEnv seeds n subscriptions with one open invoice each and a worker sending
// to a capture server, on a fake clock at t0.
func newEnv(t *testing.T, st *store.Store, n int, sub storetest.Subscription) *env {
	t.Helper()
	ctx := context.Background()
	subs := make([]storetest.Subscription, n)
	for i := range subs {
		subs[i] = sub
		subs[i].Reference = fmt.Sprintf("sub-%d", i+1)
	}
	storetest.Seed(t, st, t0, subs...)
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		due, err := tx.DueSubscriptions(t0, store.DueCursor{}, 1000)
		if err != nil {
			return err
		}
		var invs []store.NewInvoice
		for _, s := range due {
			invs = append(invs, store.NewInvoice{SubscriptionID: s.ID, Reference: s.Reference, PeriodIndex: s.NextPeriod, PeriodStart: s.NextBillingAt,
				PeriodEnd: s.NextBillingAt.AddDate(0, 1, 0), Amount: s.Amount, Currency: s.Currency})
		}
		_, err = tx.CreateInvoices(t0, invs)
		return err
	}))
	var invs []models.Invoice
	require.NoError(t, st.DB().Order("id").Find(&invs).Error)
	require.Len(t, invs, n)

	srv := capture(t)
	tpl, err := mail.LoadTemplates("")
	require.NoError(t, err)
	e := &env{st: st, smtp: srv, clk: clock.NewFake(t0), minter: &fakeMinter{}, invs: invs}
	e.w = &mail.Worker{
		Store: st, Sender: senderFor(t, srv.Host(), srv.Port()), Templates: tpl, Links: e.minter, Clock: e.clk,
		From: from, Owner: "w1", LeaseFor: 5 * time.Minute, Batch: 2, Log: zerolog.Nop(), Metrics: metrics.New(),
	}
	return e
}

// enqueue adds an outbox row for invoice i, due now.
func (e *env) enqueue(t *testing.T, i int, kind models.EmailKind, to string, purpose models.LinkPurpose) *models.Email {
	t.Helper()
	em := &models.Email{DedupeKey: fmt.Sprintf("inv-%d/%s", e.invs[i].ID, kind), Kind: kind, InvoiceID: &e.invs[i].ID,
		ToAddress: to, LinkPurpose: purpose}
	require.NoError(t, e.st.InTx(context.Background(), func(tx *store.Tx) error {
		ok, err := tx.EnqueueEmail(e.clk.Now(), mail.AddressDomain(from), em)
		if err == nil && !ok {
			err = errors.New("duplicate")
		}
		return err
	}))
	return em
}

func (e *env) run(t *testing.T) mail.Summary {
	t.Helper()
	sum, err := e.w.RunOnce(context.Background())
	require.NoError(t, err)
	return sum
}

func (e *env) row(t *testing.T, id int64) *models.Email {
	t.Helper()
	got, err := e.st.EmailByID(context.Background(), id)
	require.NoError(t, err)
	return got
}

// byMessageID counts captured messages per Message-ID.
func (e *env) byMessageID() map[string]int {
	out := map[string]int{}
	for _, m := range e.smtp.Messages() {
		out[m.MessageID]++
	}
	return out
}

func TestWorkerSendsEachPendingEmailOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		e := newEnv(t, st, 3, storetest.Subscription{Amount: 2750, Currency: "KWD"})
		retryAt := t0.Add(72 * time.Hour)
		require.NoError(t, st.DB().Exec(`UPDATE invoices SET next_attempt_at = ? WHERE id = ?`, retryAt, e.invs[0].ID).Error)
		failed := e.enqueue(t, 0, models.EmailPaymentFailed, "sub-1@example.com", models.LinkPay)
		action := e.enqueue(t, 1, models.EmailActionRequired, "sub-2@example.com", models.LinkPay)
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.MarkInvoicePaid(t0, e.invs[2].ID, "pi_3")
			return err
		}))
		receipt := e.enqueue(t, 2, models.EmailRecovered, "sub-3@example.com", "")

		sum := e.run(t)
		require.Equal(t, mail.Summary{Sent: 3}, sum)
		require.Equal(t, 2, e.minter.count(), "only emails with a link purpose get one")
		require.Equal(t, map[string]int{failed.MessageID: 1, action.MessageID: 1, receipt.MessageID: 1}, e.byMessageID())

		for _, m := range e.smtp.Messages() {
			_, text, html := parts(t, m.Raw)
			require.Contains(t, text, "2.750 KWD")
			require.Contains(t, html, "2.750 KWD")
			switch m.MessageID {
			case failed.MessageID:
				require.Equal(t, []string{"sub-1@example.com"}, m.To)
				require.Contains(t, text, fmt.Sprintf("https://billing.example.com/pay/tok-%d-", failed.ID))
				require.Contains(t, text, "4 February 2026", "the invoice's next retry date")
				require.Contains(t, text, "Acme Billing")
			case action.MessageID:
				require.Contains(t, m.Subject, "Your bank needs you to confirm your payment")
				require.Contains(t, text, fmt.Sprintf("https://billing.example.com/pay/tok-%d-", action.ID))
			case receipt.MessageID:
				require.NotContains(t, text, "/pay/")
				require.Contains(t, text, e.invs[2].PublicID)
			}
		}
		for _, id := range []int64{failed.ID, action.ID, receipt.ID} {
			row := e.row(t, id)
			require.Equal(t, models.EmailSent, row.Status)
			require.Equal(t, 1, row.Attempts)
			require.NotNil(t, row.SentAt)
			require.True(t, row.SentAt.Equal(t0))
			require.NotEmpty(t, row.Subject, "ops can see what went out")
		}

		e.clk.Advance(24 * time.Hour)
		require.Equal(t, mail.Summary{}, e.run(t), "a sent email is never sent again")
		require.Equal(t, 3, e.smtp.Count())
	})
}

func TestWorkerRetriesWhileSMTPIsDown(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, 1, storetest.Subscription{})
		em := e.enqueue(t, 0, models.EmailPaymentFailed, "sub-1@example.com", models.LinkPay)
		e.smtp.SetDown(true)

		at := t0
		for attempt := 1; attempt <= 8; attempt++ {
			require.Equal(t, mail.Summary{Retried: 1}, e.run(t), "attempt %d", attempt)
			row := e.row(t, em.ID)
			require.Equal(t, models.EmailPending, row.Status)
			require.Equal(t, attempt, row.Attempts)
			require.Contains(t, row.LastError, "421")
			next := at.Add(mail.RetryDelay(attempt))
			require.True(t, row.NextAttemptAt.Equal(next), "attempt %d: next at %v, want %v", attempt, row.NextAttemptAt, next)

			e.clk.Set(next.Add(-time.Second))
			require.Equal(t, mail.Summary{}, e.run(t), "not due yet")
			e.clk.Set(next)
			at = next
		}
		require.Zero(t, e.smtp.Count())

		e.smtp.SetDown(false)
		require.Equal(t, mail.Summary{Sent: 1}, e.run(t))
		row := e.row(t, em.ID)
		require.Equal(t, models.EmailSent, row.Status)
		require.Equal(t, 9, row.Attempts)
		require.Empty(t, row.LastError)
		require.Equal(t, map[string]int{em.MessageID: 1}, e.byMessageID())
	})
}

// switchSender sends through live, or through dead while the outage lasts.
type switchSender struct {
	mu         sync.Mutex
	down       bool
	live, dead mail.Sender
}

func (s *switchSender) Send(ctx context.Context, m *mail.Outgoing) error {
	s.mu.Lock()
	snd := s.live
	if s.down {
		snd = s.dead
	}
	s.mu.Unlock()
	return snd.Send(ctx, m)
}

func (s *switchSender) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func TestADayOfRefusedConnectionsLosesAndDuplicatesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		const n = 5
		e := newEnv(t, st, n, storetest.Subscription{Amount: 1200, Currency: "JPY"})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		closedPort := ln.Addr().(*net.TCPAddr).Port
		require.NoError(t, ln.Close())
		sw := &switchSender{down: true, live: e.w.Sender, dead: senderFor(t, "127.0.0.1", closedPort)}
		e.w.Sender = sw

		var want []string
		for i := 0; i < n; i++ {
			want = append(want, e.enqueue(t, i, models.EmailPaymentFailed, fmt.Sprintf("sub-%d@example.com", i+1), models.LinkPay).MessageID)
		}

		const step = 7 * time.Minute
		end := t0.Add(24 * time.Hour)
		retried := 0
		for e.clk.Now().Before(end) {
			sum := e.run(t)
			require.Zero(t, sum.Sent)
			require.Zero(t, sum.Failed, "refused connections never fail an email")
			retried += sum.Retried
			e.clk.Advance(step)
		}
		require.Greater(t, retried, n*40, "each email was tried all day long, at most every 30 minutes")
		require.Zero(t, e.smtp.Count())
		var rows []models.Email
		require.NoError(t, st.DB().Order("id").Find(&rows).Error)
		for _, r := range rows {
			require.Equal(t, models.EmailPending, r.Status)
			require.Contains(t, r.LastError, "refused")
			require.False(t, r.NextAttemptAt.After(e.clk.Now().Add(30*time.Minute)), "the delay is capped at 30 minutes")
		}

		sw.setDown(false)
		sent := 0
		for i := 0; i < 10 && sent < n; i++ {
			sent += e.run(t).Sent
			e.clk.Advance(step)
		}
		require.Equal(t, n, sent)
		for i := 0; i < 20; i++ {
			require.Zero(t, e.run(t).Sent)
			e.clk.Advance(time.Hour)
		}
		got := e.byMessageID()
		require.Len(t, got, n)
		for _, id := range want {
			require.Equal(t, 1, got[id], "email %s sent exactly once", id)
		}
	})
}

func TestPermanentRefusalFailsWithoutRetry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, 2, storetest.Subscription{})
		e.smtp.SetReject(func(rcpt string) bool { return rcpt == "gone@example.com" })
		bad := e.enqueue(t, 0, models.EmailCardUpdate, "gone@example.com", models.LinkUpdateCard)
		good := e.enqueue(t, 1, models.EmailCardUpdate, "sub-2@example.com", models.LinkUpdateCard)

		require.Equal(t, mail.Summary{Sent: 1, Failed: 1}, e.run(t))
		row := e.row(t, bad.ID)
		require.Equal(t, models.EmailFailed, row.Status)
		require.Equal(t, 1, row.Attempts)
		require.Contains(t, row.LastError, "550")

		e.clk.Advance(48 * time.Hour)
		require.Equal(t, mail.Summary{}, e.run(t), "a failed email is not retried")
		require.Equal(t, map[string]int{good.MessageID: 1}, e.byMessageID())
	})
}

func TestPaidInvoiceCancelsPaymentRequests(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		e := newEnv(t, st, 1, storetest.Subscription{})
		ask := e.enqueue(t, 0, models.EmailPaymentFailed, "sub-1@example.com", models.LinkPay)
		e.smtp.SetDown(true)
		require.Equal(t, mail.Summary{Retried: 1}, e.run(t))
		minted := e.minter.count()

		// The customer pays (a webhook) while the email waits for the server.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.MarkInvoicePaid(e.clk.Now(), e.invs[0].ID, "pi_1")
			return err
		}))
		receipt := e.enqueue(t, 0, models.EmailRecovered, "sub-1@example.com", "")
		e.smtp.SetDown(false)
		e.clk.Advance(time.Hour)

		require.Equal(t, mail.Summary{Sent: 1, Canceled: 1}, e.run(t))
		row := e.row(t, ask.ID)
		require.Equal(t, models.EmailCanceled, row.Status)
		require.Contains(t, row.LastError, "paid")
		require.Equal(t, minted, e.minter.count(), "no link is minted for a canceled email")
		require.Equal(t, map[string]int{receipt.MessageID: 1}, e.byMessageID(), "only the receipt goes out")
	})
}

// takeoverSender simulates a worker paused mid-send: while it "sends", its lease
// expires and another worker claims the row.
type takeoverSender struct {
	st   *store.Store
	clk  *clock.Fake
	next mail.Sender
	took []models.Email
}

func (s *takeoverSender) Send(ctx context.Context, m *mail.Outgoing) error {
	s.clk.Advance(10 * time.Minute)
	now := s.clk.Now()
	got, err := s.st.ClaimDueEmails(ctx, "w2", now, now.Add(5*time.Minute), 10)
	if err != nil {
		return err
	}
	s.took = append(s.took, got...)
	return s.next.Send(ctx, m)
}

func TestWorkerWhoseLeaseWasTakenOverCannotMarkSent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st, 1, storetest.Subscription{})
		em := e.enqueue(t, 0, models.EmailRecovered, "sub-1@example.com", "")
		ts := &takeoverSender{st: st, clk: e.clk, next: e.w.Sender}
		e.w.Sender = ts

		require.Equal(t, mail.Summary{LeaseLost: 1}, e.run(t))
		require.Len(t, ts.took, 1)
		row := e.row(t, em.ID)
		require.Equal(t, models.EmailPending, row.Status, "the stale worker recorded nothing")
		require.Equal(t, "w2", row.LeaseOwner)
		require.Equal(t, ts.took[0].LeaseVersion, row.LeaseVersion)
		require.Zero(t, row.Attempts)

		// The new owner's outcome lands.
		taken := ts.took[0]
		require.NoError(t, st.MarkEmailSent(context.Background(), e.clk.Now(), &taken))
	})
}

func TestTemporaryProblemsBeforeSendingAreRetried(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env)
		want  string
	}{
		{name: "link minter fails", setup: func(e *env) { e.minter.err = errors.New("database is locked") }, want: "database is locked"},
		{name: "no link minter", setup: func(e *env) { e.w.Links = nil }, want: "no link minter"},
		{name: "wrong SMTP password", setup: func(e *env) {
			e.smtp.RequireAuth("billingd", "right")
			s, err := mail.NewSMTPSender(config.MailConfig{Host: e.smtp.Host(), Port: e.smtp.Port(), TLS: config.MailTLSNone,
				Username: "billingd", Password: "wrong", From: from}, time.Second)
			if err != nil {
				panic(err)
			}
			e.w.Sender = s
		}, want: "535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, storetest.SQLite(t), 1, storetest.Subscription{})
			em := e.enqueue(t, 0, models.EmailPaymentFailed, "sub-1@example.com", models.LinkPay)
			tt.setup(e)
			require.Equal(t, mail.Summary{Retried: 1}, e.run(t))
			row := e.row(t, em.ID)
			require.Equal(t, models.EmailPending, row.Status)
			require.Contains(t, row.LastError, tt.want)
			require.True(t, row.NextAttemptAt.Equal(t0.Add(30*time.Second)))
			require.Zero(t, e.smtp.Count())
		})
	}
}

func TestRunOnceDrainsSeveralBatches(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t), 5, storetest.Subscription{})
	for i := 0; i < 5; i++ {
		e.enqueue(t, i, models.EmailRecovered, fmt.Sprintf("sub-%d@example.com", i+1), "")
	}
	require.Equal(t, mail.Summary{Sent: 5}, e.run(t), "batches of 2 until none is left")
	require.Equal(t, 5, e.smtp.Count())
}

func TestRetryDelay(t *testing.T) {
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 30 * time.Second},
		{1, 30 * time.Second},
		{2, time.Minute},
		{3, 2 * time.Minute},
		{4, 4 * time.Minute},
		{5, 8 * time.Minute},
		{6, 16 * time.Minute},
		{7, 30 * time.Minute},
		{8, 30 * time.Minute},
		{100, 30 * time.Minute},
		{1 << 30, 30 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempt), func(t *testing.T) {
			require.Equal(t, tt.want, mail.RetryDelay(tt.attempt))
		})
	}
}

// slowSender takes d of (fake) time per email.
type slowSender struct {
	clk  *clock.Fake
	d    time.Duration
	next mail.Sender
}

func (s *slowSender) Send(ctx context.Context, m *mail.Outgoing) error {
	s.clk.Advance(s.d)
	return s.next.Send(ctx, m)
}

func TestRowsWhoseLeaseRanLowWaitForTheNextRun(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t), 2, storetest.Subscription{})
	first := e.enqueue(t, 0, models.EmailRecovered, "sub-1@example.com", "")
	second := e.enqueue(t, 1, models.EmailRecovered, "sub-2@example.com", "")
	e.w.Sender = &slowSender{clk: e.clk, d: 3 * time.Minute, next: e.w.Sender}

	// LeaseFor is 5m: after the first 3-minute send, the second row's lease has
	// 2m left, too little to send it safely before another worker may claim it.
	require.Equal(t, mail.Summary{Sent: 1}, e.run(t))
	require.Equal(t, models.EmailSent, e.row(t, first.ID).Status)
	require.Equal(t, models.EmailPending, e.row(t, second.ID).Status)
	require.Equal(t, mail.Summary{}, e.run(t), "still leased")

	e.clk.Advance(2 * time.Minute)
	require.Equal(t, mail.Summary{Sent: 1}, e.run(t), "reclaimed once the lease expired")
	require.Equal(t, map[string]int{first.MessageID: 1, second.MessageID: 1}, e.byMessageID())
}

func TestWorkerCountsOutcomes(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t), 2, storetest.Subscription{})
	e.smtp.SetReject(func(rcpt string) bool { return rcpt == "gone@example.com" })
	e.enqueue(t, 0, models.EmailRecovered, "sub-1@example.com", "")
	e.enqueue(t, 1, models.EmailRecovered, "gone@example.com", "")
	require.Equal(t, mail.Summary{Sent: 1, Failed: 1}, e.run(t))

	// A second worker on the same registry reuses the counter.
	w2 := &mail.Worker{Store: e.st, Sender: e.w.Sender, Templates: e.w.Templates, Clock: e.clk, From: from, Owner: "w2",
		Log: zerolog.Nop(), Metrics: e.w.Metrics}
	_, err := w2.RunOnce(context.Background())
	require.NoError(t, err)

	families, err := e.w.Metrics.Registry.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "billingd_emails_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	require.Equal(t, map[string]float64{"sent": 1, "failed": 1}, got)
}
