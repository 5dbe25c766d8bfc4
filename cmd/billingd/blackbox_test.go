package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/invariant"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// bbCard is one subscription of the black-box run: the card its customer saved
// and everything the run must end with.
type bbCard struct {
	ref    string
	number string
	// attempts are the statuses of the invoice's off-session attempts, in order.
	attempts []models.AttemptStatus
	invoice  models.InvoiceStatus
	sub      models.SubscriptionStatus
	// caseStatus is the dunning case's final status ("" when none opens).
	caseStatus models.CaseStatus
	reason     models.DunningReason
	// emails are the outbox rows of the invoice, by kind, in order.
	emails []models.EmailKind
	// topUp: once the first attempt was declined, the card is switched to a
	// succeeding one through the simulator's control API, before its retry.
	topUp bool
	// webhook: the outcome only arrives by webhook (the processing card).
	webhook bool
}

var bbCards = []bbCard{
	{ref: "bb-soft", number: "4000000000009995",
		attempts: []models.AttemptStatus{models.AttemptDeclined, models.AttemptDeclined, models.AttemptDeclined},
		invoice:  models.InvoiceUncollectible, sub: models.SubscriptionCanceled, caseStatus: models.CaseExhausted, reason: models.ReasonSoftDecline,
		emails: []models.EmailKind{models.EmailPaymentFailed, models.EmailPaymentFailed, models.EmailSubscriptionEnded}},
	{ref: "bb-hard", number: "4000000000009987",
		attempts: []models.AttemptStatus{models.AttemptDeclined},
		invoice:  models.InvoiceUncollectible, sub: models.SubscriptionCanceled, caseStatus: models.CaseExhausted, reason: models.ReasonHardDecline,
		emails: []models.EmailKind{models.EmailCardUpdate, models.EmailCardUpdate, models.EmailSubscriptionEnded}},
	{ref: "bb-3ds", number: "4462030000000000",
		attempts: []models.AttemptStatus{models.AttemptRequiresAction},
		invoice:  models.InvoiceUncollectible, sub: models.SubscriptionCanceled, caseStatus: models.CaseExhausted, reason: models.ReasonActionRequired,
		emails: []models.EmailKind{models.EmailActionRequired, models.EmailActionRequired, models.EmailSubscriptionEnded}},
	{ref: "bb-ok", number: "4242424242424242",
		attempts: []models.AttemptStatus{models.AttemptSucceeded},
		invoice:  models.InvoicePaid, sub: models.SubscriptionActive},
	{ref: "bb-recover", number: "4000000000009995", topUp: true,
		attempts: []models.AttemptStatus{models.AttemptDeclined, models.AttemptSucceeded},
		invoice:  models.InvoicePaid, sub: models.SubscriptionActive, caseStatus: models.CaseRecovered, reason: models.ReasonSoftDecline,
		emails: []models.EmailKind{models.EmailPaymentFailed, models.EmailRecovered}},
	{ref: "bb-processing", number: "4000000000000259", webhook: true,
		attempts: []models.AttemptStatus{models.AttemptSucceeded},
		invoice:  models.InvoicePaid, sub: models.SubscriptionActive},
}

// bbSubjects is how each email kind's subject begins (the embedded templates).
var bbSubjects = map[models.EmailKind]string{
	models.EmailPaymentFailed:     "Your payment of ",
	models.EmailCardUpdate:        "Please update your card",
	models.EmailActionRequired:    "Your bank needs you to confirm",
	models.EmailRecovered:         "Payment received: ",
	models.EmailSubscriptionEnded: "Your subscription has been canceled",
}

// The retry schedule under test: a soft decline is retried 2 s, then 3 s after
// the decline before it; the other reasons get a reminder at the same steps.
const (
	bbStep1 = 2 * time.Second
	bbStep2 = 3 * time.Second
	// bbSlack is how late a step may run: the billing pass and the dunning wake
	// both run every second, plus a loaded machine.
	bbSlack = 4 * time.Second
)

// TestBlackBoxDunningLifecycle builds the billingd binary and runs it the way
// an operator does, on the wall clock: `billingd sim` and `billingd run` as
// child processes, subscriptions loaded with `billingd subscriptions import`,
// mail to a real SMTP server. It watches every dunning path through the
// database and the mailbox (soft decline retried to exhaustion, hard decline
// and 3-D Secure reminded to exhaustion, a soft decline that recovers at its
// retry, a success, a webhook-settled success), checks nothing was charged
// twice against the gateway's ledger, that /metrics counts what the database
// holds, that SIGHUP names each key as applied or needing a restart, and that
// SIGTERM ends the daemon with exit 0.
func TestBlackBoxDunningLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the billingd binary and runs it and the simulator as child processes")
	}
	ctx := context.Background()
	began := time.Now()
	bin := buildBillingd(t)
	t.Logf("built %s in %s", bin, time.Since(began).Round(time.Millisecond))

	dir := t.TempDir()
	listen := freeAddr(t)
	const key, whsec = "sk_test_blackbox", "whsec_blackbox"

	// The gateway: `billingd sim` on a free port, signing webhooks to billingd.
	simLog := filepath.Join(dir, "sim.log")
	simProc := bbStart(t, bin, simLog, "sim", "--listen", "127.0.0.1:0", "--secret-key", key, "--seed", "20261201",
		"--processing-delay", "500ms", "--webhook-url", "http://"+listen+"/webhooks/wooshpay", "--webhook-secret", whsec,
		"--webhook-retry", "200ms,500ms,1s,2s,3s,5s,5s")
	simURL := bbSimURL(t, simProc, simLog)
	// No webhooks while customers save their cards: billingd is not up yet.
	bbControl(t, http.MethodPut, simURL+"/_sim/webhooks", `{"enabled":false}`)

	smtp, err := smtpcapture.Start("127.0.0.1:0", "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = smtp.Close() })

	// Customers save their cards through SetupIntents, as the save-card flow does.
	client, err := wooshpay.New(wooshpay.Options{BaseURL: simURL, SecretKey: key, Timeout: 10 * time.Second})
	require.NoError(t, err)
	pms := map[string]string{} // reference → pm_
	var csv strings.Builder
	csv.WriteString("reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor\n")
	anchor := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	for i, c := range bbCards {
		cus, err := client.CreateCustomer(ctx, wooshpay.CustomerParams{Email: c.ref + "@example.com"}, "")
		require.NoError(t, err)
		seti, err := client.CreateSetupIntent(ctx, wooshpay.SetupIntentParams{Customer: cus.ID,
			Card: wooshpay.CardData{Number: c.number, ExpMonth: "12", ExpYear: strconv.Itoa(anchor.Year() + 3), CVC: "123"}, Usage: "off_session"}, "")
		require.NoError(t, err)
		pms[c.ref] = seti.PaymentMethod
		// Monthly: no second period starts during the test, so only dunning
		// drives attempts after the first pass.
		fmt.Fprintf(&csv, "%s,%s@example.com,%s,%s,%d,USD,month,1,%s\n", c.ref, c.ref, cus.ID, seti.PaymentMethod, 1000+i, anchor.Format(time.RFC3339))
	}

	dbPath := filepath.Join(dir, "billingd.db")
	cfgPath := filepath.Join(dir, "config.yaml")
	writeConfig := func(retrySchedule, logLevel, busyTimeout string) {
		body := fmt.Sprintf(`
database:  { driver: sqlite, dsn: %q, busy_timeout: %s }
gateway:   { base_url: %q, secret_key: %s, webhook_secret: %s, timeout: 5s, concurrency: 4, rate_limit: 100 }
schedule:  { billing: "@every 1s", drain_timeout: 10s }
retry:     { initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 5s }
dunning:   { retry_schedule: %s, final_action: cancel, wake_every: 1s }
reconcile: { every: 1s, after: 5s, backoff: [1s, 2s, 5s] }
http:      { listen: %q, public_base_url: "http://%s" }
mail:      { host: %s, port: %d, tls: none, from: "Billing <billing@example.com>" }
log:       { level: %s }
`, dbPath, busyTimeout, simURL, key, whsec, retrySchedule, listen, listen, smtp.Host(), smtp.Port(), logLevel)
		require.NoError(t, os.WriteFile(cfgPath, []byte(body), 0o600))
	}
	writeConfig("[2s, 3s]", "info", "5s")
	csvPath := writeFile(t, dir, "subscriptions.csv", csv.String())

	// The import is its own process, like an operator's.
	out, err := exec.Command(bin, "subscriptions", "import", csvPath, "-c", cfgPath).CombinedOutput()
	require.NoError(t, err, "import: %s", out)
	require.Contains(t, string(out), fmt.Sprintf("imported %d subscription(s)", len(bbCards)))

	// The daemon.
	runLog := filepath.Join(dir, "billingd.log")
	daemonProc := bbStart(t, bin, runLog, "run", "-c", cfgPath)
	started := time.Now()
	waitHTTP(t, "http://"+listen+"/healthz", daemonProc, runLog)
	bbControl(t, http.MethodPut, simURL+"/_sim/webhooks", `{"enabled":true}`)

	ro, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: dbPath})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ro.Close() })
	failf := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n--- billingd log (tail):\n%s\n--- sim log (tail):\n%s", append(args, readFile(runLog), readFile(simLog))...)
	}

	// A topped-up customer's card is switched to a succeeding one right after
	// the first decline, before the retry 2 s later.
	for _, c := range bbCards {
		if !c.topUp {
			continue
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := bbRead(t, ro, c.ref)
			if len(s.attempts) > 0 && s.attempts[0].Status == models.AttemptDeclined {
				require.Len(t, s.attempts, 1, "%s: the retry must not have started yet", c.ref)
				bbControl(t, http.MethodPost, simURL+"/_sim/payment_methods/"+pms[c.ref]+"/behaviour", "4242424242424242")
				break
			}
			if time.Now().After(deadline) {
				failf("%s: the first attempt was never declined: %s", c.ref, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Every path reaches its end state.
	deadline := time.Now().Add(40 * time.Second)
	for {
		var waiting []string
		for _, c := range bbCards {
			s := bbRead(t, ro, c.ref)
			if why := bbUnsettled(s, c); why != "" {
				waiting = append(waiting, why)
				if len(s.attempts) > len(c.attempts) || len(s.emails) > len(c.emails) || len(s.invoices) > 1 {
					// Waiting cannot take back a charge or an email.
					failf("%s went past its end state:\n%s", c.ref, why)
				}
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			failf("not settled after 40 s:\n%s", strings.Join(waiting, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	settledAt := time.Now()
	t.Logf("every path settled %s after the daemon started", settledAt.Sub(started).Round(time.Millisecond))

	// Each path in detail.
	ledger := bbLedger(t, simURL)
	for _, c := range bbCards {
		t.Run(c.ref, func(t *testing.T) {
			s := bbRead(t, ro, c.ref)
			bbCheckPath(t, s, c, pms[c.ref], ledger)
		})
	}
	t.Run("emails reached the SMTP server", func(t *testing.T) {
		bbCheckMail(t, ro, smtp.Messages())
	})
	t.Run("the processing card was settled by its webhook", func(t *testing.T) {
		for _, c := range bbCards {
			if !c.webhook {
				continue
			}
			pi := bbRead(t, ro, c.ref).attempts[0].PaymentIntentID
			var applied int64
			require.NoError(t, ro.DB().Model(&models.WebhookEvent{}).
				Where("type = ? AND object_id = ? AND result = ?", "payment_intent.succeeded", pi, models.WebhookApplied).
				Count(&applied).Error)
			require.Equal(t, int64(1), applied, "%s: payment_intent.succeeded for %s applied once, before the reconciler looked", c.ref, pi)
		}
	})
	t.Run("no double charge, no missed period", func(t *testing.T) {
		rep, err := invariant.Check(ctx, ro, ledger, invariant.Options{Now: time.Now().UTC()})
		require.NoError(t, err)
		require.True(t, rep.OK(), rep.String())
		require.Zero(t, rep.DoubleCharges)
		require.Zero(t, rep.MissedPeriods)
		require.Zero(t, rep.Unresolved)
		require.Zero(t, rep.NeedsReview)
		require.Equal(t, len(bbCards), rep.Invoices)
		require.Equal(t, 3, rep.PaidInvoices)
		require.Equal(t, rep.LedgerTotals, rep.PaidTotals)
	})

	// SIGHUP: keys that apply at once, then one that needs a restart.
	t.Run("SIGHUP applies dunning and log keys", func(t *testing.T) {
		writeConfig("[4s, 5s]", "debug", "5s")
		line := bbReload(t, daemonProc, runLog)
		require.ElementsMatch(t, []string{"dunning.retry_schedule", "log.level"}, line.Applied, "log line: %+v", line)
		require.Empty(t, line.NeedRestart)
	})
	t.Run("SIGHUP names database.busy_timeout as needing a restart", func(t *testing.T) {
		writeConfig("[4s, 5s]", "debug", "7s")
		line := bbReload(t, daemonProc, runLog)
		require.Equal(t, []string{"database.busy_timeout"}, line.NeedRestart, "log line: %+v", line)
		require.Empty(t, line.Applied)
	})

	// /metrics counts exactly the outcomes the database holds.
	t.Run("metrics match the database", func(t *testing.T) {
		counts := bbScrapeAttempts(t, "http://"+listen+"/metrics")
		want := map[models.AttemptStatus]int64{models.AttemptSucceeded: 3, models.AttemptDeclined: 5, models.AttemptRequiresAction: 1}
		for status, n := range want {
			inDB, err := ro.CountAttempts(ctx, status)
			require.NoError(t, err)
			require.Equal(t, n, inDB, "attempts %s in the database", status)
			require.Equal(t, float64(inDB), counts[string(status)], "billingd_charge_attempts_total{outcome=%q} vs the database", status)
		}
	})

	// Nothing moved after the end states: no further attempt or email, even
	// seconds past the last step (the checks above took that long).
	if wait := bbStep2 - time.Since(settledAt); wait > 0 {
		time.Sleep(wait)
	}
	for _, c := range bbCards {
		require.Empty(t, bbUnsettled(bbRead(t, ro, c.ref), c), "%s changed after it settled", c.ref)
	}
	require.Len(t, bbLedger(t, simURL), len(ledger), "no payment intent was created after the end states")

	// SIGTERM: a clean stop.
	require.NoError(t, daemonProc.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-daemonProc.done:
		require.NoError(t, daemonProc.err, "billingd must exit 0 on SIGTERM; log: %s", readFile(runLog))
	case <-time.After(30 * time.Second):
		failf("billingd did not stop within 30 s of SIGTERM")
	}
	require.Contains(t, readFile(runLog), `"billingd stopped"`)
	require.NoError(t, simProc.cmd.Process.Signal(syscall.SIGTERM))
	<-simProc.done
	require.NoError(t, simProc.err, "the simulator exits 0 on SIGTERM; log: %s", readFile(simLog))
	t.Logf("black-box run took %s", time.Since(began).Round(time.Millisecond))
}

// buildBillingd builds the binary under test from this package's sources.
func buildBillingd(t *testing.T) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	bin := filepath.Join(t.TempDir(), "billingd")
	// Without the symbol table and DWARF the link does a fifth less work;
	// panics still print symbolized stacks.
	cmd := exec.Command(goTool, "build", "-ldflags=-s -w", "-o", bin, ".")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// bbStart runs the built binary with args, its output appended to logPath. A
// failpoint armed in the test's environment is not passed on.
func bbStart(t *testing.T, bin, logPath string, args ...string) *childProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { _ = logf.Close() })
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, failpoint.Env+"=") && !strings.HasPrefix(kv, "BILLINGD_CONFIG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	require.NoError(t, cmd.Start())
	p := &childProc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	return p
}

var bbSimListening = regexp.MustCompile(`listening on (http://\S+)`)

// bbSimURL waits for `billingd sim` to print the address it listens on.
func bbSimURL(t *testing.T, p *childProc, logPath string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := bbSimListening.FindStringSubmatch(readFile(logPath)); m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("billingd sim exited: %v; log: %s", p.err, readFile(logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("billingd sim never said where it listens; log: %s", readFile(logPath))
	return ""
}

// bbControl calls the simulator's control plane and requires a 200.
func bbControl(t *testing.T, method, url, body string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s %s: %s", method, url, b)
}

// bbLedger is the gateway's record of every PaymentIntent.
func bbLedger(t *testing.T, simURL string) []sim.LedgerEntry {
	t.Helper()
	res, err := http.Get(simURL + "/_sim/ledger")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var out []sim.LedgerEntry
	require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
	return out
}

// bbState is one subscription as the database holds it.
type bbState struct {
	ref      string
	sub      models.Subscription
	invoices []models.Invoice
	attempts []models.ChargeAttempt
	cases    []models.DunningCase
	emails   []models.Email
}

func (s bbState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: subscription %s, %d invoice(s)", s.ref, s.sub.Status, len(s.invoices))
	for _, i := range s.invoices {
		fmt.Fprintf(&b, " [%s %s]", i.PublicID, i.Status)
	}
	b.WriteString(", attempts")
	for _, a := range s.attempts {
		fmt.Fprintf(&b, " %d:%s", a.AttemptNo, a.Status)
	}
	b.WriteString(", cases")
	for _, c := range s.cases {
		fmt.Fprintf(&b, " [%s %s step %d]", c.Reason, c.Status, c.Step)
	}
	b.WriteString(", emails")
	for _, e := range s.emails {
		fmt.Fprintf(&b, " %s:%s", e.Kind, e.Status)
	}
	return b.String()
}

// bbRead reads a subscription with its invoices, attempts, cases and emails.
// A read the daemon's writes make busy is retried.
func bbRead(t *testing.T, ro *store.Store, ref string) bbState {
	t.Helper()
	var s bbState
	var err error
	for range 50 {
		s, err = bbReadOnce(ro, ref)
		if err == nil {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err, "reading %s", ref)
	return s
}

func bbReadOnce(ro *store.Store, ref string) (bbState, error) {
	s := bbState{ref: ref}
	db := ro.DB()
	if err := db.Where("reference = ?", ref).First(&s.sub).Error; err != nil {
		return s, err
	}
	if err := db.Where("subscription_id = ?", s.sub.ID).Order("id").Find(&s.invoices).Error; err != nil {
		return s, err
	}
	if err := db.Where("subscription_id = ?", s.sub.ID).Order("invoice_id, attempt_no").Find(&s.attempts).Error; err != nil {
		return s, err
	}
	if err := db.Where("subscription_id = ?", s.sub.ID).Order("id").Find(&s.cases).Error; err != nil {
		return s, err
	}
	ids := make([]int64, 0, len(s.invoices))
	for _, i := range s.invoices {
		ids = append(ids, i.ID)
	}
	if len(ids) > 0 {
		if err := db.Where("invoice_id IN ?", ids).Order("id").Find(&s.emails).Error; err != nil {
			return s, err
		}
	}
	return s, nil
}

// bbUnsettled says how s differs from c's end state, or "" when it is there:
// statuses of the invoice, its attempts, case and subscription, and every
// expected email sent.
func bbUnsettled(s bbState, c bbCard) string {
	var attempts []models.AttemptStatus
	for _, a := range s.attempts {
		attempts = append(attempts, a.Status)
	}
	var kinds []models.EmailKind
	sent := true
	for _, e := range s.emails {
		kinds = append(kinds, e.Kind)
		sent = sent && e.Status == models.EmailSent
	}
	ok := len(s.invoices) == 1 && s.invoices[0].Status == c.invoice &&
		slices.Equal(attempts, c.attempts) && s.sub.Status == c.sub &&
		slices.Equal(kinds, c.emails) && sent
	if c.caseStatus == "" {
		ok = ok && len(s.cases) == 0
	} else {
		ok = ok && len(s.cases) == 1 && s.cases[0].Status == c.caseStatus && s.cases[0].Reason == c.reason
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("%s\n  want: subscription %s, invoice %s, attempts %v, case %s %s, emails %v (all sent)", s, c.sub, c.invoice, c.attempts, c.reason, c.caseStatus, c.emails)
}

// bbCheckPath checks one settled subscription: the attempts' keys, timing and
// flags, the gateway's intents for its card, the case and the final action.
func bbCheckPath(t *testing.T, s bbState, c bbCard, pm string, ledger []sim.LedgerEntry) {
	inv := s.invoices[0]
	require.Equal(t, 0, inv.PeriodIndex)
	require.Equal(t, 1, s.sub.NextPeriod, "one period invoiced")
	require.True(t, s.sub.NextBillingAt.After(time.Now().Add(27*24*time.Hour)), "the next period starts a month on: %s", s.sub.NextBillingAt)
	for i, a := range s.attempts {
		require.Equal(t, i+1, a.AttemptNo)
		require.True(t, a.OffSession, "attempt %d is off-session", a.AttemptNo)
		require.Equal(t, fmt.Sprintf("%s-a%d", inv.PublicID, a.AttemptNo), a.IdempotencyKey)
		require.Equal(t, pm, a.GatewayPM)
		require.NotEmpty(t, a.PaymentIntentID)
		require.NotNil(t, a.FinishedAt, "attempt %d finished", a.AttemptNo)
	}
	// The gateway saw exactly these intents for the card: one per attempt,
	// at most one succeeded.
	var intents []sim.LedgerEntry
	succeeded := 0
	for _, e := range ledger {
		if e.PaymentMethod == pm {
			intents = append(intents, e)
			require.Equal(t, inv.PublicID, e.MerchantOrderID)
			require.True(t, e.OffSession)
			if e.Status == "succeeded" {
				succeeded++
				require.Equal(t, inv.Amount, e.Amount)
				require.Equal(t, e.ID, inv.PaymentIntentID)
			}
		}
	}
	require.Len(t, intents, len(c.attempts), "payment intents at the gateway for %s", c.ref)
	if c.invoice == models.InvoicePaid {
		require.Equal(t, 1, succeeded, "paid exactly once")
		require.NotNil(t, inv.PaidAt)
		require.Equal(t, models.SubscriptionActive, s.sub.Status)
	} else {
		require.Zero(t, succeeded, "nothing collected")
	}

	// Retries on schedule: each one the step's delay after the decline before it.
	steps := []time.Duration{bbStep1, bbStep2}
	for i := 1; i < len(s.attempts); i++ {
		prev, cur := s.attempts[i-1], s.attempts[i]
		gap := cur.CreatedAt.Sub(*prev.FinishedAt)
		require.GreaterOrEqual(t, gap, steps[i-1]-100*time.Millisecond, "retry %d waited its step", i)
		require.Less(t, gap, steps[i-1]+bbSlack, "retry %d ran on time", i)
	}

	if c.caseStatus == "" {
		return
	}
	cs := s.cases[0]
	require.NotNil(t, cs.ClosedAt)
	require.Nil(t, cs.NextStepAt)
	// One email per step, each the step's delay after the one before (the first
	// with the failure itself); exhaustion comes one step after the last.
	for i := 1; i < len(s.emails); i++ {
		gap := s.emails[i].CreatedAt.Sub(s.emails[i-1].CreatedAt)
		require.GreaterOrEqual(t, gap, steps[i-1]-100*time.Millisecond, "email %d (%s) came a step after the one before", i+1, s.emails[i].Kind)
		require.Less(t, gap, steps[i-1]+bbSlack, "email %d (%s) came on time", i+1, s.emails[i].Kind)
	}
	require.WithinDuration(t, *s.attempts[0].FinishedAt, s.emails[0].CreatedAt, time.Second, "the first email comes with the failure")
	switch c.caseStatus {
	case models.CaseExhausted:
		require.Equal(t, models.FinalCancel, cs.FinalAction)
		require.NotNil(t, s.sub.CanceledAt)
		require.Equal(t, len(s.emails)-1, cs.Step, "every schedule step used")
	case models.CaseRecovered:
		last := s.attempts[len(s.attempts)-1]
		require.WithinDuration(t, *last.FinishedAt, s.emails[len(s.emails)-1].CreatedAt, time.Second, "the receipt comes with the payment")
	}
	if c.reason == models.ReasonHardDecline {
		require.True(t, s.attempts[0].HardDecline)
		require.Equal(t, "lost_card", s.attempts[0].DeclineCode)
		require.Equal(t, "lost_card", cs.LastDeclineCode)
	}
	if c.reason == models.ReasonSoftDecline {
		require.Equal(t, "insufficient_funds", s.attempts[0].DeclineCode)
		require.False(t, s.attempts[0].HardDecline)
	}
}

// bbCheckMail checks that every outbox email was delivered once, to its
// customer, under its own Message-ID and with its kind's subject.
func bbCheckMail(t *testing.T, ro *store.Store, msgs []smtpcapture.Message) {
	var rows []models.Email
	require.NoError(t, ro.DB().Order("id").Find(&rows).Error)
	want := 0
	for _, c := range bbCards {
		want += len(c.emails)
	}
	require.Len(t, rows, want, "outbox rows")
	byID := map[string]smtpcapture.Message{}
	for _, m := range msgs {
		_, dup := byID[m.MessageID]
		require.False(t, dup, "%s delivered twice", m.MessageID)
		byID[m.MessageID] = m
	}
	require.Len(t, msgs, len(rows), "one message per outbox row")
	for _, e := range rows {
		m, ok := byID[e.MessageID]
		require.True(t, ok, "email %d (%s to %s) never reached the server", e.ID, e.Kind, e.ToAddress)
		require.Equal(t, []string{e.ToAddress}, m.To)
		require.True(t, strings.HasPrefix(m.Subject, bbSubjects[e.Kind]), "email %d (%s) subject %q", e.ID, e.Kind, m.Subject)
	}
}

// bbReloadLine is the daemon's "config reloaded" log line.
type bbReloadLine struct {
	Message     string   `json:"message"`
	Applied     []string `json:"applied"`
	NeedRestart []string `json:"need_restart"`
}

// bbReload sends SIGHUP and returns the "config reloaded" line it caused.
func bbReload(t *testing.T, p *childProc, logPath string) bbReloadLine {
	t.Helper()
	before := len(bbReloadLines(t, logPath))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if lines := bbReloadLines(t, logPath); len(lines) > before {
			require.Len(t, lines, before+1, "one reload per SIGHUP")
			return lines[before]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no \"config reloaded\" line within 10 s of SIGHUP; log: %s", readFile(logPath))
	return bbReloadLine{}
}

func bbReloadLines(t *testing.T, logPath string) []bbReloadLine {
	t.Helper()
	f, err := os.Open(logPath)
	require.NoError(t, err)
	defer f.Close()
	var out []bbReloadLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), "config reloaded") && !strings.Contains(string(line), "reload failed") {
			continue
		}
		var l bbReloadLine
		require.NoError(t, json.Unmarshal(line, &l), "log line %s", line)
		require.Equal(t, "config reloaded", l.Message, "log line %s", line)
		out = append(out, l)
	}
	require.NoError(t, sc.Err())
	return out
}

var bbAttemptsMetric = regexp.MustCompile(`(?m)^billingd_charge_attempts_total\{outcome="([a-z_]+)"\} (\S+)$`)

// bbScrapeAttempts reads billingd_charge_attempts_total by outcome.
func bbScrapeAttempts(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	out := map[string]float64{}
	for _, m := range bbAttemptsMetric.FindAllStringSubmatch(string(body), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err)
		out[m[1]] = v
	}
	if len(out) == 0 {
		require.Fail(t, "no billingd_charge_attempts_total in /metrics", "%s", body)
	}
	return out
}
