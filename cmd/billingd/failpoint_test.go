package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// fpSubscriptions is how many subscriptions each failpoint run bills.
const fpSubscriptions = 30

// Cards without an unresolved outcome: success, declines (which queue dunning
// emails) and a 3-D Secure challenge. One pass settles all of them.
var fpFinalCards = []string{"4242424242424242", "4111111111111111", "4761344136141390",
	"4000000000009995", "4000000000000069", "4462030000000000"}

// The processing card leaves attempts that only a webhook or the reconciler
// settles.
var fpProcessingCards = append([]string{"4000000000000259"}, fpFinalCards...)

type fpCase struct {
	point string
	// run starts `billingd run` (the point is reached by the webhook receiver, the
	// mail worker or the reconciler); otherwise `billingd once`.
	run      bool
	cards    []string
	webhooks bool // the simulator delivers webhooks to the child
	mail     bool // the child sends mail to an in-process SMTP server
	events   bool // the child posts events to an in-process receiver
}

var fpCases = []fpCase{
	{point: failpoint.InvoiceAfterCommit, cards: fpFinalCards},
	{point: failpoint.AttemptAfterCommit, cards: fpFinalCards},
	{point: failpoint.ChargeBeforeSend, cards: fpFinalCards},
	{point: failpoint.GatewayAfterSendCheck, cards: fpFinalCards},
	{point: failpoint.ChargeAfterSend, cards: fpFinalCards},
	{point: failpoint.ChargeBeforeCommit, cards: fpFinalCards},
	{point: failpoint.WebhookBeforeCommit, run: true, cards: fpProcessingCards, webhooks: true},
	{point: failpoint.MailAfterSend, run: true, cards: fpFinalCards, mail: true},
	{point: failpoint.ReconcileAfterRead, run: true, cards: fpProcessingCards},
	{point: failpoint.EventsBeforePost, run: true, cards: fpFinalCards, events: true},
	{point: failpoint.EventsAfterPost, run: true, cards: fpFinalCards, events: true},
}

// fpReceiver is the merchant's events endpoint in the test process: it
// accepts every POST and keeps the event id and body.
type fpReceiver struct {
	mu  sync.Mutex
	got []fpDelivery
	srv *httptest.Server
}

type fpDelivery struct {
	id   string
	body string
}

func newFPReceiver(t *testing.T) *fpReceiver {
	r := &fpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, fpDelivery{id: req.Header.Get("Billingd-Event-Id"), body: string(body)})
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// deliveries returns what was received so far, in arrival order.
func (r *fpReceiver) deliveries() []fpDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fpDelivery(nil), r.got...)
}

// TestFailpointCrashRecovery kills a real billingd process with SIGKILL at each
// boundary of the charge protocol, on SQLite and (when configured) PostgreSQL,
// restarts it without the failpoint, and checks against the gateway's ledger
// that nothing was charged twice, every due period was invoiced and paid totals
// match what the gateway captured, with no attempt left unresolved.
func TestFailpointCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	covered := map[string]bool{}
	for _, c := range fpCases {
		covered[c.point] = true
	}
	for _, n := range failpoint.Names() {
		require.True(t, covered[n], "failpoint %s has no crash test", n)
	}
	// The cases spend their time waiting for child processes and timers (the
	// mail case waits for two outbox ticks, 15 s apart), not on the CPU: they all
	// run at once, whatever -parallel says, so the test takes as long as its
	// slowest case.
	var wg sync.WaitGroup
	for _, dialect := range []string{store.SQLite, store.Postgres} {
		wg.Go(func() {
			t.Run(dialect, func(t *testing.T) {
				var providers sync.WaitGroup
				for _, provider := range daemontest.Providers {
					providers.Go(func() {
						t.Run(provider, func(t *testing.T) {
							var cases sync.WaitGroup
							for _, c := range fpCases {
								cases.Go(func() {
									t.Run(c.point, func(t *testing.T) { runFailpointCase(t, dialect, provider, c) })
								})
							}
							cases.Wait()
						})
					})
				}
				providers.Wait()
			})
		})
	}
	wg.Wait()
}

// fpStart starts billingd as a child process, with point armed when not "".
func fpStart(t *testing.T, logPath, point string, args ...string) *childProc {
	t.Helper()
	var env []string
	if point != "" {
		env = append(env, failpoint.Env+"="+point)
	}
	return startChild(t, logPath, env, args...)
}

// nextPort hands out the ports freeAddr tries, below Linux's ephemeral range
// (32768 and up), from an offset of this process's own.
var nextPort atomic.Int32

func init() { nextPort.Store(int32(20000 + os.Getpid()%10000)) }

// freeAddr returns a loopback address nobody listens on, so that both processes
// of a case listen where the simulator delivers webhooks. A port the kernel
// picks (":0") is free only until it is handed out again — to another
// outgoing connection or another case's listener, when dozens of cases start
// at once — so it comes from a range no ephemeral port uses, and each port is
// handed out once per test process.
func freeAddr(t *testing.T) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		port := nextPort.Add(1)
		if port >= 32000 {
			nextPort.Store(20000)
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		return addr
	}
	t.Fatal("no free loopback port below the ephemeral range")
	return ""
}

// postgresFailpointSlots bounds the PostgreSQL cases that run at once: each
// holds a handful of connections (its processes', its own reads', its
// schema's), and all of them at once, beside the other packages' tests,
// would pass the server's max_connections (100 by default).
var postgresFailpointSlots = make(chan struct{}, 6)

func runFailpointCase(t *testing.T, dialect, provider string, c fpCase) {
	if dialect == store.Postgres {
		postgresFailpointSlots <- struct{}{}
		t.Cleanup(func() { <-postgresFailpointSlots })
	}
	ctx := context.Background()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "billingd.log")
	listen := freeAddr(t)

	// The gateway, delivering webhooks to the child when the case needs them.
	const key, whsec = "sk_test_failpoint", "whsec_failpoint"
	opts := sim.Options{Provider: provider, SecretKey: key, Seed: 11, ProcessingDelay: 100 * time.Millisecond}
	if c.webhooks {
		// Retries span the restart, so events refused by the dying process are
		// delivered to the next one.
		opts.Webhook = sim.WebhookOptions{URL: "http://" + listen + "/webhooks/" + provider, Secret: whsec, Timeout: 2 * time.Second,
			Retry: []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, time.Second, 2 * time.Second, 3 * time.Second, 5 * time.Second},
			// Off while cards are saved, so that the first event the child
			// receives is about a charge.
			Delivery: sim.Delivery{Disabled: true}}
	}
	gw := sim.New(opts)
	simCtx, stopSim := context.WithCancel(ctx)
	gw.Start(simCtx)
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); stopSim(); gw.Close() })

	var capture *smtpcapture.Server
	mailCfg := ""
	if c.mail {
		var err error
		capture, err = smtpcapture.Start("", "")
		require.NoError(t, err)
		t.Cleanup(func() { _ = capture.Close() })
		mailCfg = fmt.Sprintf("mail: { host: %s, port: %d, tls: none, from: \"Billing <billing@example.com>\" }\n", capture.Host(), capture.Port())
	}

	eventsCfg := ""
	var receiver *fpReceiver
	if c.events {
		receiver = newFPReceiver(t)
		eventsCfg = fmt.Sprintf("events: { url: %q, secret: whsec_events_failpoint, timeout: 5s }\n", receiver.srv.URL+"/billingd")
	}

	// The database: seeded through the real import path, closed (SQLite) before
	// the child takes the instance lock.
	var dbCfg string
	var open func() *store.Store
	switch dialect {
	case store.SQLite:
		dbPath := filepath.Join(dir, "billingd.db")
		dbCfg = fmt.Sprintf("{ driver: sqlite, dsn: %q }", dbPath)
		open = func() *store.Store {
			st, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: dbPath})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st
		}
		seedFailpointCase(t, provider, srv.URL, storetest.SQLiteAt(t, dbPath), c.cards, true)
	default:
		dsn := storetest.PostgresDSN(t)
		// Every case runs at once on one server: a few connections each
		// keep the processes under its max_connections (100 by default).
		dbCfg = fmt.Sprintf("{ driver: postgres, dsn: %q, max_open_conns: 4 }", dsn)
		open = func() *store.Store {
			st, err := store.Open(ctx, store.Options{Driver: store.Postgres, DSN: dsn, MaxOpenConns: 2})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st
		}
		st := open()
		_, err := st.Migrate(ctx)
		require.NoError(t, err)
		seedFailpointCase(t, provider, srv.URL, st, c.cards, false)
	}

	if c.webhooks {
		gw.SetWebhookDelivery(sim.Delivery{})
	}

	cfgPath := writeFile(t, dir, "config.yaml", fmt.Sprintf(`
database:  %s
gateway:   { provider: %s, base_url: %q, secret_key: %s, webhook_secret: %s, concurrency: 4, rate_limit: 1000, timeout: 5s }
retry:     { initial_interval: 10ms, max_interval: 200ms, max_elapsed_time: 2s }
schedule:  { billing: "@every 1s", page_size: 10, drain_timeout: 5s }
reconcile: { every: 1s, after: 1s, backoff: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s] }
http:      { listen: %q, public_base_url: "https://billing.example.com" }
log:       { level: debug }
%s%s`, dbCfg, provider, srv.URL, key, whsec, listen, mailCfg, eventsCfg))
	cmd := "once"
	if c.run {
		cmd = "run"
	}

	// First process: dies at the failpoint.
	start := time.Now()
	first := fpStart(t, logPath, c.point, cmd, "-c", cfgPath)
	select {
	case <-first.done:
	// Every case of every database and provider starts at once, and the mail
	// case waits for outbox ticks: on a loaded 2-core machine reaching the
	// point takes well over the quiet minute.
	case <-time.After(2 * time.Minute):
		t.Fatalf("billingd never reached %s; log: %s", c.point, readFile(logPath))
	}
	err := first.err
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "billingd must die at %s, got %v; log: %s", c.point, err, readFile(logPath))
	ws, ok := exit.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "billingd must die of SIGKILL at %s, got %v; log: %s", c.point, err, readFile(logPath))
	require.Contains(t, readFile(logPath), "failpoint "+c.point+" reached")
	killedAt := len(gw.Ledger())

	// What the dead process left is consistent already.
	st := open()
	rep, err := invariant.Check(ctx, st, gw.Ledger(), invariant.Options{Now: time.Now().UTC(), AllowUnresolved: true})
	require.NoError(t, err)
	require.Zero(t, rep.DoubleCharges, rep.String())
	switch c.point {
	case failpoint.InvoiceAfterCommit:
		require.Equal(t, 10, rep.Invoices, "exactly the first page of invoices was committed")
		require.Zero(t, killedAt, "nothing was charged")
	case failpoint.AttemptAfterCommit:
		require.Zero(t, killedAt, "the claimed attempts were committed, none was sent")
		left, err := st.AttemptsByStatus(ctx, 1000, models.AttemptPending)
		require.NoError(t, err)
		require.NotEmpty(t, left)
	case failpoint.ChargeAfterSend, failpoint.ChargeBeforeCommit:
		require.Positive(t, killedAt, "the gateway executed the request")
		left, err := st.AttemptsByStatus(ctx, 1000, models.AttemptPending)
		require.NoError(t, err)
		require.NotEmpty(t, left, "the attempt whose answer was lost is still pending")
	case failpoint.WebhookBeforeCommit:
		require.Positive(t, killedAt, "the event was about a charge")
	case failpoint.MailAfterSend:
		require.Positive(t, capture.Count(), "the server accepted the email")
	}
	var beforeKill []fpDelivery
	if c.events {
		beforeKill = receiver.deliveries()
		var pending int64
		require.NoError(t, st.DB().Raw(`SELECT COUNT(*) FROM events WHERE status = 'pending'`).Scan(&pending).Error)
		require.Positive(t, pending, "the events were committed with their changes")
		var delivered int64
		require.NoError(t, st.DB().Raw(`SELECT COUNT(*) FROM events WHERE status <> 'pending'`).Scan(&delivered).Error)
		require.Zero(t, delivered, "every post passes the failpoint before its try is recorded")
		switch c.point {
		case failpoint.EventsBeforePost:
			require.Empty(t, beforeKill, "killed before the first POST")
		case failpoint.EventsAfterPost:
			require.NotEmpty(t, beforeKill, "the receiver accepted the event before the kill")
		}
	}
	if dialect == store.Postgres {
		// On PostgreSQL a restarted process cannot know the dead one is gone: it
		// waits for the leases to expire (minutes). Expire them now instead of
		// waiting.
		expireLeases(t, st)
	}

	// Second process, without the failpoint: finishes the work.
	second := fpStart(t, logPath, "", cmd, "-c", cfgPath)
	if c.run {
		waitSettled(t, st, c, logPath)
		require.NoError(t, second.cmd.Process.Signal(syscall.SIGTERM))
	}
	select {
	case <-second.done:
		if c.run && second.err != nil {
			// The re-executed test binary installs no signal handler (TestMain
			// passes no Signals), so SIGTERM ends it at once; the database was
			// settled before it was sent.
			var exit *exec.ExitError
			require.True(t, errors.As(second.err, &exit), "log: %s", readFile(logPath))
			ws, _ := exit.Sys().(syscall.WaitStatus)
			require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGTERM, "%v; log: %s", second.err, readFile(logPath))
			break
		}
		require.NoError(t, second.err, "log: %s", readFile(logPath))
	case <-time.After(60 * time.Second):
		t.Fatalf("the restarted billingd did not finish; log: %s", readFile(logPath))
	}

	rep, err = invariant.Check(ctx, st, gw.Ledger(), invariant.Options{Now: time.Now().UTC()})
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	require.Zero(t, rep.DoubleCharges)
	require.Zero(t, rep.MissedPeriods)
	require.Zero(t, rep.Unresolved, "no attempt is left pending, unknown or processing")
	require.Zero(t, rep.NeedsReview)
	require.Equal(t, fpSubscriptions, rep.Invoices)
	require.Positive(t, rep.PaidInvoices)
	for cur, total := range rep.LedgerTotals {
		require.Equal(t, total, rep.PaidTotals[cur], "paid total in %s", cur)
	}
	var maxAttemptNo int
	require.NoError(t, st.DB().Raw(`SELECT COALESCE(MAX(attempt_no), 0) FROM charge_attempts`).Scan(&maxAttemptNo).Error)
	require.Equal(t, 1, maxAttemptNo, "crashes are recovered by replaying attempts, never by creating new ones")

	switch c.point {
	case failpoint.WebhookBeforeCommit:
		var applied int64
		require.NoError(t, st.DB().Model(&models.WebhookEvent{}).Count(&applied).Error)
		require.Positive(t, applied, "webhooks were stored after the restart")
	case failpoint.MailAfterSend:
		checkMailDelivered(t, st, capture)
	case failpoint.EventsBeforePost, failpoint.EventsAfterPost:
		checkEventsDelivered(t, st, receiver, beforeKill)
	}
	t.Logf("%s/%s/%s: killed after %d payment intents; after restart (%s): %s", dialect, provider, c.point, killedAt, time.Since(start).Round(time.Millisecond), rep)
}

// seedFailpointCase saves one card per number at the provider's gateway and
// imports fpSubscriptions subscriptions cycling through them, due an hour ago.
func seedFailpointCase(t *testing.T, provider, baseURL string, st *store.Store, cards []string, closeAfter bool) {
	t.Helper()
	saved := saveTestCards(t, provider, baseURL, "sk_test_failpoint", "fp", cards)
	anchor := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var subs []storetest.Subscription
	for i := 0; i < fpSubscriptions; i++ {
		id := saved[i%len(saved)]
		subs = append(subs, storetest.Subscription{Reference: fmt.Sprintf("fp-%03d", i), Customer: id.Customer, PaymentMethod: id.PaymentMethod,
			PreviousPaymentID: id.PreviousPaymentID, Amount: int64(500 + i), Currency: []string{"USD", "EUR"}[i%2], Anchor: anchor})
	}
	storetest.Seed(t, st, anchor, subs...)
	if closeAfter {
		require.NoError(t, st.Close())
	}
}

// expireLeases moves the dead process's leases into the past, which is what
// waiting out LeaseFor does.
func expireLeases(t *testing.T, st *store.Store) {
	t.Helper()
	past := time.Now().UTC().Add(-time.Second)
	require.NoError(t, st.DB().Exec(`UPDATE charge_attempts SET lease_until = ? WHERE lease_until IS NOT NULL`, past).Error)
	require.NoError(t, st.DB().Exec(`UPDATE emails SET lease_until = ? WHERE lease_until IS NOT NULL`, past).Error)
	require.NoError(t, st.DB().Exec(`UPDATE events SET lease_until = ? WHERE lease_until IS NOT NULL`, past).Error)
}

// waitSettled waits until a running billingd has invoiced every subscription,
// charged every invoice, settled every attempt and (for mail) emptied the outbox.
func waitSettled(t *testing.T, st *store.Store, c fpCase, logPath string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var invoices, attempted, unresolved, pendingMail, mails int64
		db := st.DB()
		require.NoError(t, db.Raw(`SELECT COUNT(*) FROM invoices`).Scan(&invoices).Error)
		// An invoice on a card the gateway called dead (the subscriptions here
		// share one saved card per test number) is never charged: it waits
		// for a new card, which counts as settled.
		require.NoError(t, db.Raw(`SELECT COUNT(*) FROM invoices i WHERE EXISTS (SELECT 1 FROM charge_attempts a WHERE a.invoice_id = i.id)
		   OR EXISTS (SELECT 1 FROM subscriptions s JOIN payment_methods pm ON pm.id = s.payment_method_id
		               WHERE s.id = i.subscription_id AND pm.dead_at IS NOT NULL)`).Scan(&attempted).Error)
		require.NoError(t, db.Raw(`SELECT COUNT(*) FROM charge_attempts WHERE status IN ('pending','unknown','processing')`).Scan(&unresolved).Error)
		require.NoError(t, db.Raw(`SELECT COUNT(*) FROM emails WHERE status = 'pending'`).Scan(&pendingMail).Error)
		require.NoError(t, db.Raw(`SELECT COUNT(*) FROM emails`).Scan(&mails).Error)
		settled := invoices == fpSubscriptions && attempted == invoices && unresolved == 0
		if c.mail {
			settled = settled && mails > 0 && pendingMail == 0
		}
		if c.events {
			var events, undelivered int64
			require.NoError(t, db.Raw(`SELECT COUNT(*) FROM events`).Scan(&events).Error)
			require.NoError(t, db.Raw(`SELECT COUNT(*) FROM events WHERE status <> 'delivered'`).Scan(&undelivered).Error)
			settled = settled && events > 0 && undelivered == 0
		}
		if settled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: %d invoices (%d charged), %d unresolved attempts, %d of %d emails pending; log: %s", invoices, attempted, unresolved, pendingMail, mails, readFile(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkMailDelivered checks that every outbox email was sent and reached the
// server: a redelivery of the email that was accepted just before the kill
// carries the same Message-ID, so the distinct Message-IDs received are exactly
// the emails.
func checkMailDelivered(t *testing.T, st *store.Store, capture *smtpcapture.Server) {
	t.Helper()
	var emails []models.Email
	require.NoError(t, st.DB().Order("id").Find(&emails).Error)
	require.NotEmpty(t, emails)
	received := map[string]int{}
	for _, m := range capture.Messages() {
		received[m.MessageID]++
	}
	for _, e := range emails {
		require.Equal(t, models.EmailSent, e.Status, "email %d (%s)", e.ID, e.Kind)
		require.Positive(t, received[e.MessageID], "email %d (%s) with Message-ID %s was not delivered", e.ID, e.Kind, e.MessageID)
	}
	require.Len(t, received, len(emails), "distinct Message-IDs delivered == emails")
	redelivered := 0
	for _, n := range received {
		redelivered += n - 1
	}
	require.LessOrEqual(t, redelivered, 1, "only the email accepted just before the kill is sent twice")
}

// checkEventsDelivered checks that every event was delivered after the
// restart: an event the receiver accepted before the kill (its try was never
// recorded) arrives exactly twice, with the same id and the same body (at
// least once, deduplicable by id); every other event exactly once.
func checkEventsDelivered(t *testing.T, st *store.Store, r *fpReceiver, beforeKill []fpDelivery) {
	t.Helper()
	var evs []models.Event
	require.NoError(t, st.DB().Order("id").Find(&evs).Error)
	require.NotEmpty(t, evs)
	bodies := map[string][]string{}
	for _, d := range r.deliveries() {
		bodies[d.id] = append(bodies[d.id], d.body)
	}
	early := map[string]bool{}
	for _, d := range beforeKill {
		early[d.id] = true
	}
	for _, e := range evs {
		require.Equal(t, models.EventDelivered, e.Status, "event %s (%s)", e.PublicID, e.Type)
		got := bodies[e.PublicID]
		want := 1
		if early[e.PublicID] {
			want = 2
		}
		require.Len(t, got, want, "deliveries of event %s (%s)", e.PublicID, e.Type)
		for _, b := range got {
			require.Equal(t, e.Body, b, "event %s is posted with its stored body", e.PublicID)
		}
	}
	require.Len(t, bodies, len(evs), "the receiver got only the database's events")
	t.Logf("%d events delivered, %d of them twice (accepted before the kill)", len(evs), len(early))
}
