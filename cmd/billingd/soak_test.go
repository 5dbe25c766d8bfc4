package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// soakSize reads BILLINGD_SOAK=<charges>:<kills>; the default is the CI size.
func soakSize(t *testing.T) (charges, kills int) {
	charges, kills = 1000, 20
	v := os.Getenv("BILLINGD_SOAK")
	if v == "" {
		return charges, kills
	}
	c, k, ok := strings.Cut(v, ":")
	var err1, err2 error
	charges, err1 = strconv.Atoi(c)
	kills, err2 = strconv.Atoi(k)
	if !ok || err1 != nil || err2 != nil || charges < 1 || kills < 0 {
		t.Fatalf("BILLINGD_SOAK=%q: want <charges>:<kills>, for example 10000:200", v)
	}
	return charges, kills
}

// soakCard is a simulator test card and its share of the subscriptions.
type soakCard struct {
	number   string
	weight   int
	currency string
}

// The mix: mostly successful cards, plus soft declines, hard declines and 3-D
// Secure so that dunning writes emails. The processing card is left out: its
// outcome only arrives with a webhook after ProcessingDelay.
var soakCards = []soakCard{
	{"4242424242424242", 30, "USD"},
	{"4111111111111111", 25, "EUR"},
	{"4761344136141390", 15, "JPY"},
	{"4000000000009995", 10, "GBP"}, // insufficient_funds: soft decline
	{"4000000000000069", 10, "USD"}, // expired_card: hard decline
	{"4462030000000000", 10, "EUR"}, // requires_action (3-D Secure)
}

// soakFigures are what the soak prints and asserts.
type soakFigures struct {
	Seed               uint64
	Subscriptions      int
	Periods            int
	Succeeded          int // succeeded PaymentIntents in the ledger
	PaymentIntents     int
	Attempts           int
	AttemptsByState    map[string]int
	Kills              int
	MailKills          int
	StartupKills       int
	DoubleCharges      int
	MissedPeriods      int
	Emails             int // outbox rows
	EmailsSent         int
	Delivered          int // messages the SMTP server accepted
	DuplicateEmails    int
	RedeliveredEmails  int
	LostEmails         int
	Unresolved         int
	NeedsReview        int
	WebhooksReceived   int       // distinct events stored by billingd
	Webhooks           sim.Stats // the simulator's delivery counters
	Faults             sim.FaultCounts
	PaidTotals         map[string]int64
	LedgerTotals       map[string]int64
	KillPhase          time.Duration
	SettleAfterRestart time.Duration
}

func (f *soakFigures) lines() []string {
	cur := make([]string, 0, len(f.LedgerTotals))
	seen := map[string]bool{}
	for c := range f.LedgerTotals {
		seen[c] = true
	}
	for c := range f.PaidTotals {
		seen[c] = true
	}
	for c := range seen {
		cur = append(cur, c)
	}
	sort.Strings(cur)
	totals := make([]string, 0, len(cur))
	for _, c := range cur {
		mark := "ok"
		if f.PaidTotals[c] != f.LedgerTotals[c] {
			mark = "MISMATCH"
		}
		totals = append(totals, fmt.Sprintf("%s paid %d / ledger %d %s", c, f.PaidTotals[c], f.LedgerTotals[c], mark))
	}
	states := make([]string, 0, len(f.AttemptsByState))
	for s, n := range f.AttemptsByState {
		states = append(states, fmt.Sprintf("%s %d", s, n))
	}
	sort.Strings(states)
	return []string{
		fmt.Sprintf("seed:               %d", f.Seed),
		fmt.Sprintf("subscriptions:      %d daily, %d periods each due", f.Subscriptions, f.Periods),
		fmt.Sprintf("charges:            %d succeeded payment intents, %d payment intents, %d attempts (%s)", f.Succeeded, f.PaymentIntents, f.Attempts, strings.Join(states, ", ")),
		fmt.Sprintf("kills:              %d SIGKILL (%d during startup, %d during an outbox run), kill phase %s", f.Kills, f.StartupKills, f.MailKills, f.KillPhase.Round(time.Millisecond)),
		fmt.Sprintf("gateway faults:     %d 5xx-after-record, %d dropped connections, %d slow, %d 429", f.Faults.Error5xxAfter, f.Faults.Drop, f.Faults.Slow, f.Faults.RateLimit),
		fmt.Sprintf("webhooks:           %d events generated, %d distinct received, %d deliveries acknowledged (%d duplicate copies), %d attempts failed and retried, %d given up", f.Webhooks.Events, f.WebhooksReceived, f.Webhooks.WebhooksDelivered, f.Webhooks.WebhookDuplicates, f.Webhooks.WebhookRetries, f.Webhooks.WebhooksFailed),
		fmt.Sprintf("double charges:     %d", f.DoubleCharges),
		fmt.Sprintf("missed periods:     %d", f.MissedPeriods),
		fmt.Sprintf("emails:             %d outbox rows, %d sent, %d messages delivered", f.Emails, f.EmailsSent, f.Delivered),
		fmt.Sprintf("duplicate emails:   %d", f.DuplicateEmails),
		fmt.Sprintf("redelivered emails: %d", f.RedeliveredEmails),
		fmt.Sprintf("lost emails:        %d", f.LostEmails),
		fmt.Sprintf("unresolved:         %d (needs_review/failed %d)", f.Unresolved, f.NeedsReview),
		fmt.Sprintf("paid vs ledger:     %s", strings.Join(totals, "; ")),
		fmt.Sprintf("time to settle:     %s after the last restart", f.SettleAfterRestart.Round(time.Millisecond)),
	}
}

// TestKillSoak runs the real daemon (billingd run, a child process) on a SQLite
// file against the simulator with faults and webhooks, SIGKILLs it at random
// moments and restarts it at once, many times, then lets the last one settle and
// checks that nothing was charged twice, no period was missed and no email was
// lost or sent twice under two identities. BILLINGD_SOAK=<charges>:<kills> sizes
// it (default 1000:20); BILLINGD_SOAK_SEED picks the seed;
// BILLINGD_SOAK_PROVIDERS picks the gateways it runs against, one after the
// other (soakProviders).
func TestKillSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	for _, provider := range soakProviders(t) {
		// One after the other: side by side, the two soaks take as long as
		// in turn on two cores, and each one's kill timing suffers.
		t.Run(provider, func(t *testing.T) { runKillSoak(t, provider) })
	}
}

// soakProviders reads BILLINGD_SOAK_PROVIDERS, a comma-separated list of
// gateway.provider values. The default is Checkout.com alone: a soak takes
// about a minute of a 2-core machine, and the crash tests that are cheaper
// (TestRestartAfterSIGKILLMidSweep, TestFailpointCrashRecovery) already run
// on every provider; BILLINGD_SOAK_PROVIDERS=wooshpay,checkout soaks both.
func soakProviders(t *testing.T) []string {
	v := os.Getenv("BILLINGD_SOAK_PROVIDERS")
	if v == "" {
		return []string{config.ProviderCheckout}
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(daemontest.Providers, p) {
			t.Fatalf("BILLINGD_SOAK_PROVIDERS=%q: %q is not one of %v", v, p, daemontest.Providers)
		}
		out = append(out, p)
	}
	return out
}

func runKillSoak(t *testing.T, provider string) {
	charges, kills := soakSize(t)
	seed := uint64(20261123)
	if v := os.Getenv("BILLINGD_SOAK_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "BILLINGD_SOAK_SEED")
		seed = s
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	const periods = 10 // due periods per subscription
	nsubs := (charges + periods - 1) / periods
	// One kill in twenty (the last of each twenty) waits for the outbox worker
	// (it runs every 15 s) and lands right after the first message of a run
	// was accepted.
	mailKills := 0
	if kills >= 10 {
		mailKills = max(1, kills/20)
	}
	fig := &soakFigures{Seed: seed, Subscriptions: nsubs, Periods: periods, Kills: kills, MailKills: mailKills}

	dir := t.TempDir()
	if keep := os.Getenv("BILLINGD_SOAK_DIR"); keep != "" {
		// Keep the database and the daemon's log for a post-mortem.
		require.NoError(t, os.MkdirAll(keep, 0o755))
		dir = keep
		for _, f := range []string{"billingd.db", "billingd.db-wal", "billingd.db-shm", "billingd.db.lock"} {
			_ = os.Remove(filepath.Join(dir, f))
		}
		_ = os.Remove(filepath.Join(dir, "billingd.log"))
	}
	dbPath := filepath.Join(dir, "billingd.db")
	logPath := filepath.Join(dir, "billingd.log")
	ctx := context.Background()

	// billingd's listener address is fixed across restarts: the simulator's
	// webhooks must find every incarnation.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	listen := ln.Addr().String()
	require.NoError(t, ln.Close())

	const secret, whSecret = "sk_test_soak", "whsec_soak"
	gw := sim.New(sim.Options{
		Provider: provider, SecretKey: secret, Seed: int64(seed), ProcessingDelay: 500 * time.Millisecond,
		Webhook: sim.WebhookOptions{
			URL: "http://" + listen + "/webhooks/" + provider, Secret: whSecret,
			// The daemon is down for a moment at every kill: retry often and long
			// enough to outlast a few kills in a row.
			Retry:    []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second, time.Second, 2 * time.Second, 2 * time.Second, 5 * time.Second, 5 * time.Second},
			Timeout:  3 * time.Second,
			Delivery: sim.Delivery{Duplicates: 0.1, MaxDelay: 100 * time.Millisecond},
		},
	})
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	gw.Start(simCtx)
	srv := httptest.NewServer(gw)
	defer srv.Close()
	defer gw.Close()

	smtp, err := smtpcapture.Start("127.0.0.1:0", "")
	require.NoError(t, err)
	defer smtp.Close()

	// Customers save their cards at the gateway (no faults yet).
	saver, err := signup.New(signup.Gateway{Provider: provider, BaseURL: srv.URL, SecretKey: secret, Timeout: 10 * time.Second})
	require.NoError(t, err)
	totalWeight := 0
	for _, c := range soakCards {
		totalWeight += c.weight
	}
	now := time.Now().UTC().Truncate(time.Second)
	// Period k starts at anchor + k days: periods 0..periods-1 have started, the
	// next one starts 12 h from now, far from any boundary during the run.
	anchor := now.Add(-time.Duration(periods-1)*24*time.Hour - 12*time.Hour)
	subs := make([]storetest.Subscription, 0, nsubs)
	for i := range nsubs {
		w := rng.IntN(totalWeight)
		card := soakCards[0]
		for _, c := range soakCards {
			if w < c.weight {
				card = c
				break
			}
			w -= c.weight
		}
		ref := fmt.Sprintf("soak-%05d", i)
		saved, err := saver.Save(ctx, signup.Card{Number: card.number, ExpMonth: 12, ExpYear: now.Year() + 3, CVC: "123",
			Email: ref + "@example.com", Currency: card.currency})
		require.NoError(t, err)
		subs = append(subs, storetest.Subscription{Reference: ref, Customer: saved.Customer, PaymentMethod: saved.PaymentMethod,
			PreviousPaymentID: saved.PreviousPaymentID, Amount: int64(500 + rng.IntN(5000)), Currency: card.currency, Interval: "day", Anchor: anchor})
	}
	// ImportSubscriptions does not enforce the CLI's --backfill rule: every past
	// period is due at once.
	st := storetest.SQLiteAt(t, dbPath)
	storetest.Seed(t, st, now, subs...)
	require.NoError(t, st.Close())

	cfgPath := writeFile(t, dir, "config.yaml", fmt.Sprintf(`
database:  { driver: sqlite, dsn: %s }
gateway:   { provider: %s, base_url: %q, secret_key: %s, webhook_secret: %s, concurrency: 8, rate_limit: 10000, timeout: 300ms }
schedule:  { billing: "@every 1s", page_size: 200, drain_timeout: 30s }
retry:     { initial_interval: 10ms, max_interval: 100ms, max_elapsed_time: 2s }
dunning:   { retry_schedule: [1000h] }
reconcile: { every: 1s, after: 2s, backoff: [500ms, 1s, 2s, 5s, 10s, 30s, 1m, 5m] }
http:      { listen: %q, public_base_url: "https://billing.example.com" }
mail:      { host: %s, port: %d, tls: none, from: "Soak Billing <billing@example.com>" }
log:       { level: info }
`, dbPath, provider, srv.URL, secret, whSecret, listen, smtp.Host(), smtp.Port()))

	start := func() *childProc { return startChild(t, logPath, nil, "run", "-c", cfgPath) }
	kill := func(p *childProc, k int) {
		select {
		case <-p.done:
			t.Fatalf("billingd exited by itself before kill %d: %v; log: %s", k, p.err, readFile(logPath))
		default:
		}
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
		<-p.done
		require.Error(t, p.err, "killed process")
	}

	// Faults from the first request on: 5% executed-then-500, 2% dropped
	// connections, 2% answers slower than the client's 300 ms timeout, 1% 429.
	gw.SetFaults(sim.Faults{Error5xxAfter: 0.05, Drop: 0.02, RateLimit: 0.01, RetryAfter: time.Second, Slow: 0.02, SlowDelay: 700 * time.Millisecond})

	mailKillAt := map[int]bool{}
	for i := 1; i <= mailKills; i++ {
		// The last kill of every twenty: the short kills before it land in
		// the charging, which the long wait for the outbox would finish.
		mailKillAt[i*kills/mailKills-1] = true
	}
	killStart := time.Now()
	startupKills := 0
	progress := make([]string, 0, kills)
	for k := range kills {
		p := start()
		if mailKillAt[k] {
			// Wait for the outbox worker's first acceptance, then kill within a
			// few milliseconds, in the middle of its run.
			before := smtp.Count()
			deadline := time.Now().Add(40 * time.Second)
			for smtp.Count() == before && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		} else if rng.IntN(8) == 0 {
			// Now and then a kill during startup (lease release, migrations
			// check, the first claims).
			startupKills++
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		} else {
			// Most kills land a few hundred ms into the work, counted from the
			// moment the daemon answers HTTP, so that a slow start (a loaded CI
			// machine, -race) does not turn every kill into a startup kill.
			waitHTTP(t, "http://"+listen+"/healthz", p, logPath)
			time.Sleep(time.Duration(100+rng.IntN(600)) * time.Millisecond)
		}
		kill(p, k+1)
		progress = append(progress, fmt.Sprintf("%d/%d", gw.Stats().PaymentIntents, smtp.Count()))
	}
	fig.KillPhase = time.Since(killStart)
	fig.StartupKills = startupKills
	t.Logf("payment intents/emails delivered at each kill: %s", strings.Join(progress, " "))

	// The last incarnation runs without faults until everything settles.
	gw.SetFaults(sim.Faults{})
	restarted := time.Now()
	final := start()

	ro, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: dbPath})
	require.NoError(t, err)
	defer ro.Close()
	settleLimit := 90*time.Second + time.Duration(charges)*10*time.Millisecond
	var why string
	for {
		why = soakUnsettled(t, ro, gw, nsubs*periods)
		if why == "" {
			break
		}
		select {
		case <-final.done:
			t.Fatalf("the last billingd exited before settling (%v): %s; log: %s", final.err, why, readFile(logPath))
		default:
		}
		if time.Since(restarted) > settleLimit {
			t.Fatalf("not settled %s after the last restart: %s; log: %s", settleLimit, why, readFile(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
	fig.SettleAfterRestart = time.Since(restarted)

	// A graceful stop: SIGTERM, drain, exit 0. When the earlier incarnations
	// settled everything, the loop above ends at once: wait until the last one
	// is up (its signal handler installed) so the SIGTERM tests the drain, not
	// the default action on a process still starting.
	waitHTTP(t, "http://"+listen+"/healthz", final, logPath)
	require.NoError(t, final.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-final.done:
		require.NoError(t, final.err, "SIGTERM must stop billingd with exit 0; log: %s", readFile(logPath))
	case <-time.After(60 * time.Second):
		t.Fatalf("billingd did not stop after SIGTERM; log: %s", readFile(logPath))
	}

	// The figures.
	ledger := gw.Ledger()
	rep, err := invariant.Check(ctx, ro, ledger, invariant.Options{Now: time.Now().UTC()})
	require.NoError(t, err)
	fig.Succeeded, fig.PaymentIntents = rep.Succeeded, len(ledger)
	fig.AttemptsByState = rep.AttemptsByState
	for _, n := range rep.AttemptsByState {
		fig.Attempts += n
	}
	fig.DoubleCharges, fig.MissedPeriods = rep.DoubleCharges, rep.MissedPeriods
	fig.Unresolved, fig.NeedsReview = rep.Unresolved, rep.NeedsReview
	fig.PaidTotals, fig.LedgerTotals = rep.PaidTotals, rep.LedgerTotals
	stats := gw.Stats()
	fig.Faults = stats.Faults
	soakEmails(t, ro, smtp.Messages(), fig)
	var received int64
	require.NoError(t, ro.DB().Model(&models.WebhookEvent{}).Count(&received).Error)
	fig.WebhooksReceived, fig.Webhooks = int(received), stats

	for _, l := range fig.lines() {
		t.Log(l)
		fmt.Printf("KILL SOAK %s\n", l)
	}

	require.True(t, rep.OK(), rep.String())
	require.Zero(t, fig.DoubleCharges, "double charges")
	require.Zero(t, fig.MissedPeriods, "missed periods")
	require.Zero(t, fig.Unresolved, "unresolved attempts")
	require.Equal(t, nsubs*periods, rep.Invoices)
	require.Zero(t, fig.LostEmails, "lost emails")
	require.Zero(t, fig.DuplicateEmails, "duplicate emails")
	require.Equal(t, rep.LedgerTotals, rep.PaidTotals, "paid totals vs ledger")
	require.Positive(t, fig.Emails, "the card mix should make dunning write emails")
}

// soakUnsettled says what is still moving, or "" when the run has settled:
// every period invoiced, every invoice attempted, no attempt pending, unknown or
// processing, no email waiting, and no webhook left to deliver.
func soakUnsettled(t *testing.T, ro *store.Store, gw *sim.Server, invoices int) string {
	t.Helper()
	var c struct {
		Invoices, Unattempted, Unresolved, Emails int
	}
	err := ro.DB().Raw(`SELECT
		(SELECT COUNT(*) FROM invoices) AS invoices,
		(SELECT COUNT(*) FROM invoices i WHERE i.status = 'open' AND NOT EXISTS (SELECT 1 FROM charge_attempts a WHERE a.invoice_id = i.id)
		    AND NOT EXISTS (SELECT 1 FROM invoices prev WHERE prev.subscription_id = i.subscription_id
		                      AND prev.period_index < i.period_index AND prev.status = 'open')
		    AND NOT EXISTS (SELECT 1 FROM subscriptions s JOIN payment_methods pm ON pm.id = s.payment_method_id
		                     WHERE s.id = i.subscription_id AND pm.dead_at IS NOT NULL)) AS unattempted,
		(SELECT COUNT(*) FROM charge_attempts WHERE status IN ('pending','unknown','processing')) AS unresolved,
		(SELECT COUNT(*) FROM emails WHERE status = 'pending') AS emails`).Scan(&c).Error
	if err != nil {
		return "database: " + err.Error() // busy for a moment; try again
	}
	var parts []string
	if c.Invoices != invoices {
		parts = append(parts, fmt.Sprintf("%d of %d invoices", c.Invoices, invoices))
	}
	if c.Unattempted > 0 {
		parts = append(parts, fmt.Sprintf("%d invoices never attempted", c.Unattempted))
	}
	if c.Unresolved > 0 {
		parts = append(parts, fmt.Sprintf("%d attempts unresolved", c.Unresolved))
	}
	if c.Emails > 0 {
		parts = append(parts, fmt.Sprintf("%d emails pending", c.Emails))
	}
	if !gw.WebhooksIdle() {
		parts = append(parts, fmt.Sprintf("%d webhook deliveries pending", gw.Stats().WebhooksPending))
	}
	return strings.Join(parts, ", ")
}

// waitHTTP waits until url answers 200 (the daemon is up) or p exits.
func waitHTTP(t *testing.T, url string, p *childProc, logPath string) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("billingd exited during startup: %v; log: %s", p.err, readFile(logPath))
		default:
		}
		if resp, err := hc.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("billingd did not answer %s within a minute; log: %s", url, readFile(logPath))
}

var soakInvoiceLine = regexp.MustCompile(`Invoice:\s*(\S+)`)

// soakEmails compares the outbox with what the SMTP server received. An email is
// identified by its recipient, subject and invoice number (not by its
// Message-ID): two different Message-IDs for one of them is a duplicate the
// receiver cannot recognize; the same Message-ID twice is a redelivery it can.
func soakEmails(t *testing.T, ro *store.Store, msgs []smtpcapture.Message, fig *soakFigures) {
	t.Helper()
	var rows []models.Email
	require.NoError(t, ro.DB().Order("id").Find(&rows).Error)
	byMessageID := map[string]models.Email{}
	for _, e := range rows {
		byMessageID[strings.Trim(e.MessageID, "<>")] = e
		if e.Status == models.EmailSent {
			fig.EmailsSent++
		}
	}
	fig.Emails = len(rows)
	fig.Delivered = len(msgs)
	deliveries := map[string]int{}
	identities := map[string]map[string]bool{}
	for _, m := range msgs {
		id := strings.Trim(m.MessageID, "<>")
		deliveries[id]++
		who := strings.Join(m.To, ",") + "|" + m.Subject
		if inv := soakInvoiceLine.FindSubmatch(m.Raw); inv != nil {
			who += "|" + string(inv[1])
		} else {
			who += "|" + id
		}
		if identities[who] == nil {
			identities[who] = map[string]bool{}
		}
		identities[who][id] = true
		if _, ok := byMessageID[id]; !ok {
			fig.DuplicateEmails++ // a message no outbox row accounts for
			t.Errorf("delivered %q to %v is no outbox row's Message-ID", id, m.To)
		}
	}
	for who, ids := range identities {
		if len(ids) > 1 {
			fig.DuplicateEmails += len(ids) - 1
			t.Errorf("%s was delivered under %d Message-IDs", who, len(ids))
		}
	}
	for _, n := range deliveries {
		fig.RedeliveredEmails += n - 1
	}
	for _, e := range rows {
		switch {
		case e.Status == models.EmailCanceled:
		case e.Status != models.EmailSent:
			fig.LostEmails++
			t.Errorf("email %d (%s) to %s is %s: %s", e.ID, e.DedupeKey, e.ToAddress, e.Status, e.LastError)
		case deliveries[strings.Trim(e.MessageID, "<>")] == 0:
			fig.LostEmails++
			t.Errorf("email %d (%s) is marked sent but the SMTP server never accepted %s", e.ID, e.DedupeKey, e.MessageID)
		}
	}
}
