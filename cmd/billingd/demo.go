package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
)

// demoCard is one simulator test card and what docs/simulator.md says an off-session
// charge on it does.
type demoCard struct {
	Number   string
	Expected models.AttemptStatus
	Decline  string
	Amount   int64
	Currency string
	Interval string
	// Via is the state the first answer reports before the final one (a
	// processing charge settles later).
	Via models.AttemptStatus
}

var demoCards = []demoCard{
	{Number: "4111111111111111", Expected: models.AttemptSucceeded, Decline: "", Amount: 1999, Currency: "USD", Interval: "month"},
	{Number: "4761344136141390", Expected: models.AttemptSucceeded, Decline: "", Amount: 4900, Currency: "EUR", Interval: "month"},
	{Number: "4242424242424242", Expected: models.AttemptSucceeded, Decline: "", Amount: 1200, Currency: "JPY", Interval: "week"},
	{Number: "4462030000000000", Expected: models.AttemptRequiresAction, Decline: "", Amount: 2500, Currency: "USD", Interval: "month"},
	{Number: "4000000000009995", Expected: models.AttemptDeclined, Decline: "insufficient_funds", Amount: 990, Currency: "GBP", Interval: "month"},
	{Number: "4000000000000002", Expected: models.AttemptDeclined, Decline: "generic_decline", Amount: 1500, Currency: "USD", Interval: "month"},
	{Number: "4000000000000119", Expected: models.AttemptDeclined, Decline: "processing_error", Amount: 2750, Currency: "KWD", Interval: "year"},
	{Number: "4000000000000069", Expected: models.AttemptDeclined, Decline: "expired_card", Amount: 899, Currency: "USD", Interval: "month"},
	{Number: "4000000000009987", Expected: models.AttemptDeclined, Decline: "lost_card", Amount: 3000, Currency: "USD", Interval: "month"},
	{Number: "4000000000009979", Expected: models.AttemptDeclined, Decline: "stolen_card", Amount: 4500, Currency: "USD", Interval: "month"},
	{Number: "4000000000000259", Expected: models.AttemptSucceeded, Amount: 6000, Currency: "USD", Interval: "month", Via: models.AttemptProcessing},
}

const (
	demoSecretKey     = "sk_test_billingd_demo"
	demoWebhookSecret = "whsec_billingd_demo"
)

func (m *Main) cmdDemo(ctx context.Context, args []string) error {
	fs, _ := m.newFlagSet("demo")
	dir := fs.String("dir", "", "keep the database (DIR/billingd.db), log and mail here (default: a new temporary directory)")
	settle := fs.Duration("processing-delay", 2*time.Second, "how long the simulator takes to settle a processing charge")
	serve := fs.Bool("serve", false, "keep billingd and the simulator running afterwards, so the emailed links can be opened in a browser (Ctrl-C to stop)")
	months := fs.Int("months", 0, fmt.Sprintf("run `N` months (1..%d) on a simulated clock and print their timeline", maxDemoMonths))
	provider := fs.String("provider", config.ProviderWooshPay, "the gateway the bundled simulator plays: wooshpay or checkout (Checkout.com)")
	if rest, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if *provider != config.ProviderWooshPay && *provider != config.ProviderCheckout {
		return usagef("--provider must be wooshpay or checkout, got %q", *provider)
	}
	simulated := flagSet(fs, "months")
	if simulated {
		if *months < 1 || *months > maxDemoMonths {
			return usagef("--months must be between 1 and %d, got %d", maxDemoMonths, *months)
		}
		if *serve {
			return usagef("--serve cannot be combined with --months: nothing advances the simulated clock afterwards")
		}
	}
	started := time.Now()
	if *dir == "" {
		d, err := os.MkdirTemp("", "billingd-demo-")
		if err != nil {
			return err
		}
		*dir = d
	}
	if err := os.MkdirAll(filepath.Join(*dir, "mail"), 0o755); err != nil {
		return err
	}
	dbPath := filepath.Join(*dir, "billingd.db")
	if _, err := os.Stat(dbPath); err == nil {
		return usagef("%s already exists: give --dir a new or empty directory", dbPath)
	}
	out := m.Stdout
	fmt.Fprintf(out, "billingd demo — working in %s\n\n", *dir)
	if simulated {
		return m.demoMonths(ctx, *provider, *dir, *months, *settle, started)
	}

	// billingd's own HTTP listener comes first: the simulator needs its webhook URL.
	billingLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	billingURL := "http://" + billingLn.Addr().String()

	// 1. The gateway: the bundled simulator of the provider, in-process, on
	//    loopback, delivering signed webhooks to billingd.
	gw, simURL, stopSim, err := startDemoSim(ctx, sim.Options{Provider: *provider, SecretKey: demoSecretKey, Seed: 1, ProcessingDelay: *settle,
		Webhook: sim.WebhookOptions{URL: billingURL + "/webhooks/" + *provider, Secret: demoWebhookSecret}})
	if err != nil {
		return err
	}
	defer stopSim()

	// The mail server (a real SMTP server in-process that writes what billingd
	// sends to DIR/mail/*.eml), the config every billingd command reads, the
	// log, and the signup flow customers save their cards through (billingd
	// only ever sees the gateway's card ids).
	env, err := newDemoEnv(*provider, *dir, dbPath, simURL, billingURL, billingLn.Addr().String())
	if err != nil {
		return err
	}
	defer env.Close()
	smtp, cfg, logFile, saver := env.smtp, env.cfg, env.log, env.saver
	fmt.Fprintf(out, "1. %s simulator on %s; billingd on %s (webhooks to /webhooks/%s)\n", providerName(*provider), simURL, billingURL, *provider)

	now := time.Now().UTC().Truncate(time.Second)
	csvPath, _, err := saveDemoCards(ctx, saver, *provider, *dir, now, now.Year()+3)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. Saved %d test cards through %s; subscriptions written to %s\n", len(demoCards), saveFlowName(*provider), csvPath)

	// 4. Import them exactly as `billingd subscriptions import` does.
	n, err := importFile(ctx, cfg, csvPath, false, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "3. Imported %d subscriptions (all due now)\n", n)

	// 5. One billing pass, by the same assembly `billingd run` uses.
	d, err := daemon.New(ctx, cfg, daemon.Options{Log: logFile})
	if err != nil {
		return err
	}
	defer d.Close()
	billingSrv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = billingSrv.Serve(billingLn) }()
	defer billingSrv.Close()

	run, err := d.Pass(ctx, ctx, "demo")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "4. %s\n", runSummary(run))

	// 6. Processing charges settle later: the gateway's webhook says so.
	if err := settleProcessing(ctx, d, out, *settle+15*time.Second); err != nil {
		return err
	}
	hooks, err := d.Store().WebhookResults(ctx)
	if err != nil {
		return err
	}
	parts := make([]string, 0, len(hooks))
	for _, h := range hooks {
		parts = append(parts, fmt.Sprintf("%d %s", h.N, h.Status))
	}
	fmt.Fprintf(out, "6. Webhooks received from the gateway: %s\n", strings.Join(parts, ", "))

	// 7. What happened, from the database.
	mismatches, err := printDemoTable(ctx, d, out)
	if err != nil {
		return err
	}

	// 8. Dunning emails, from the outbox through SMTP.
	sum, err := d.SendMail(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nDunning emails sent through SMTP (%d sent, %d waiting for a retry), saved in %s:\n", sum.Sent, sum.Retried, filepath.Join(*dir, "mail"))
	w := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(w, "TO\tSUBJECT\tLINK")
	for _, m := range smtp.Messages() {
		link := payLinkPattern.FindString(string(m.Raw))
		if link == "" {
			link = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", strings.Join(m.To, ","), m.Subject, link)
	}
	_ = w.Flush()
	ledger := gw.Ledger()
	succeeded := 0
	for _, e := range ledger {
		if e.Status == "succeeded" {
			succeeded++
		}
	}
	ledgerJSON, ledgerCSV, err := writeLedger(*dir, ledger)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe simulator's ledger: %d payments, %d succeeded; saved in %s and %s.\n", len(ledger), succeeded, ledgerJSON, ledgerCSV)
	printDBHints(out, dbPath)
	fmt.Fprintf(out, "Log: %s\nFinished in %s.\n", logFile.Name(), time.Since(started).Round(10*time.Millisecond))
	if mismatches > 0 {
		return fmt.Errorf("%d card(s) did not end as the simulator's test-card table says (docs/simulator.md)", mismatches)
	}
	if *serve {
		fmt.Fprintf(out, "\nServing: open the links above in a browser (the 3-D Secure link, the card-update link). Ctrl-C stops.\n")
		// Keep charging what the pay pages schedule (a retry after a new card)
		// and sending what dunning queues, until Ctrl-C; the loop has ended
		// before the daemon is closed.
		serveCtx, stopServing := context.WithCancel(ctx)
		looped := make(chan struct{})
		go func() {
			defer close(looped)
			tick := time.NewTicker(2 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-serveCtx.Done():
					return
				case <-tick.C:
				}
				_, _ = d.Pass(serveCtx, serveCtx, "demo")
				_, _ = d.SendMail(serveCtx)
			}
		}()
		select {
		case <-m.Signals:
		case <-ctx.Done():
		}
		stopServing()
		<-looped
		// What the customers paid while the demo served is the gateway's too.
		if _, _, err := writeLedger(*dir, gw.Ledger()); err != nil {
			return err
		}
		fmt.Fprintf(out, "The simulator's ledger, with what was paid while serving, saved again in %s and %s.\n", ledgerJSON, ledgerCSV)
	}
	return nil
}

// demoEnv is what both demos run beside the simulator: a real SMTP server
// writing DIR/mail/*.eml, the config pointing at it and at the simulator, the
// log file, and the signup flow to save the test cards with.
type demoEnv struct {
	smtp  *smtpcapture.Server
	cfg   *config.Config
	log   *os.File
	saver *signup.Saver
}

func newDemoEnv(provider, dir, dbPath, simURL, billingURL, listen string) (*demoEnv, error) {
	smtp, err := smtpcapture.Start("127.0.0.1:0", filepath.Join(dir, "mail"))
	if err != nil {
		return nil, err
	}
	env := &demoEnv{smtp: smtp}
	if env.cfg, err = demoConfig(provider, dbPath, simURL, billingURL, listen, smtp); err != nil {
		env.Close()
		return nil, err
	}
	if env.log, err = os.Create(filepath.Join(dir, "billingd.log")); err != nil {
		env.Close()
		return nil, err
	}
	if env.saver, err = signup.New(signup.Gateway{Provider: provider, BaseURL: simURL, SecretKey: demoSecretKey, Timeout: 5 * time.Second}); err != nil {
		env.Close()
		return nil, err
	}
	return env, nil
}

// Close stops the SMTP server and closes the log.
func (e *demoEnv) Close() {
	if e.log != nil {
		_ = e.log.Close()
	}
	_ = e.smtp.Close()
}

// startDemoSim serves the simulator in-process on a loopback port; stop ends
// its deliveries and its server.
func startDemoSim(ctx context.Context, o sim.Options) (gw *sim.Server, url string, stop func(), err error) {
	gw = sim.New(o)
	simCtx, cancel := context.WithCancel(ctx)
	gw.Start(simCtx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		gw.Close()
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return gw, "http://" + ln.Addr().String(), func() { _ = srv.Close(); cancel(); gw.Close() }, nil
}

// payLinkPattern finds the pay link in an email's text.
var payLinkPattern = regexp.MustCompile(`https?://[^\s"<>]+/pay/[A-Za-z0-9_-]+`)

// settleProcessing waits for the webhooks that settle processing charges. If
// they have not come within limit, it reads the PaymentIntents instead, as the
// reconciler would.
func settleProcessing(ctx context.Context, d *daemon.Daemon, out io.Writer, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	announced := false
	for {
		pending, err := d.Store().CountAttempts(ctx, models.UnresolvedAttemptStatuses...)
		if err != nil {
			return err
		}
		if pending == 0 {
			if announced {
				fmt.Fprintln(out, "   settled by the gateway's success webhook ("+successEvent(d.Config().Gateway.Provider)+")")
			}
			return nil
		}
		if !announced {
			fmt.Fprintf(out, "5. Waiting for %d processing charge(s) to settle...\n", pending)
			announced = true
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(out, "   no webhook yet: reading the PaymentIntents instead")
			if err := d.ResolveUnsettled(ctx); err != nil {
				return err
			}
			deadline = time.Now().Add(limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// printDemoTable prints one row per card from the database and counts the rows
// whose outcome differs from the test-card table.
func printDemoTable(ctx context.Context, d *daemon.Daemon, out io.Writer) (int, error) {
	rows, err := d.Store().InvoiceOutcomes(ctx)
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(w, "CARD\tAMOUNT\tOUTCOME\tDECLINE\tINVOICE\tSTATUS\tSUBSCRIPTION\tATTEMPTS\tAS EXPECTED")
	mismatches := 0
	for i, r := range rows {
		if i >= len(demoCards) {
			break
		}
		c := demoCards[i]
		decline := r.DeclineCode
		if r.DeclineCode != "" {
			decline += map[bool]string{true: " (hard)", false: " (soft)"}[r.HardDecline]
		}
		ok := r.AttStatus == c.Expected && r.DeclineCode == c.Decline
		mark := "yes"
		if !ok {
			mark = "NO (expected " + string(c.Expected) + ")"
			mismatches++
		}
		outcome := string(r.AttStatus)
		if c.Via != "" {
			outcome = string(c.Via) + " → " + outcome
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", spaced(c.Number), money.Format(r.Amount, r.Currency), outcome, decline, r.Invoice, r.InvStatus, r.SubStatus, r.Attempts, mark)
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	if len(rows) != len(demoCards) {
		return mismatches + 1, errors.New("expected one invoice per test card")
	}
	return mismatches, nil
}

func last4(n string) string { return n[len(n)-4:] }

func spaced(n string) string {
	var b strings.Builder
	for i, r := range n {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// flagSet reports whether the command line set the named flag (a flag given
// as its zero value is still given, and still checked).
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// demoConfig is the config both demos run billingd with: SQLite at dbPath,
// the simulator at simURL, billingd's pages at billingURL (served on listen)
// and the capturing SMTP server.
func demoConfig(provider, dbPath, simURL, billingURL, listen string, smtp *smtpcapture.Server) (*config.Config, error) {
	cfg := config.Default()
	cfg.Gateway.Provider = provider
	cfg.Database.DSN = dbPath
	cfg.Gateway.BaseURL = simURL
	cfg.Gateway.SecretKey = config.Secret(demoSecretKey)
	cfg.Gateway.WebhookSecret = config.Secret(demoWebhookSecret)
	cfg.Gateway.Concurrency = 8
	cfg.Gateway.RateLimit = 100
	cfg.Gateway.Timeout = config.Duration(5 * time.Second)
	cfg.Retry.InitialInterval = config.Duration(100 * time.Millisecond)
	cfg.Retry.MaxInterval = config.Duration(time.Second)
	cfg.Retry.MaxElapsedTime = config.Duration(10 * time.Second)
	cfg.HTTP.Listen = listen
	cfg.HTTP.PublicBaseURL = billingURL
	cfg.Mail.Host, cfg.Mail.Port, cfg.Mail.TLS = smtp.Host(), smtp.Port(), "none"
	cfg.Mail.From = "Acme Billing <billing@example.com>"
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	return cfg, nil
}

// saveDemoCards saves every demo card through the provider's signup flow
// (internal/gateway/signup: a customer and a SetupIntent on WooshPay, a
// card-storing payment on Checkout.com; billingd only ever sees the gateway's
// ids) and writes DIR/subscriptions.csv, every subscription due at now, with
// previous_payment_id on Checkout.com. It returns the CSV's path and the saved
// card of each demo card, in demoCards order.
func saveDemoCards(ctx context.Context, saver *signup.Saver, provider, dir string, now time.Time, expYear int) (string, []string, error) {
	cards := make([]subscriptionCard, len(demoCards))
	for i, c := range demoCards {
		cards[i] = subscriptionCard{Reference: demoReference(i), Email: fmt.Sprintf("customer%02d@example.com", i+1), Name: fmt.Sprintf("Demo Customer %d", i+1),
			Number: c.Number, Amount: c.Amount, Currency: c.Currency, Interval: c.Interval, Anchor: now.Add(-time.Minute),
			Description: "Plan for card ending " + last4(c.Number), Key: fmt.Sprintf("demo-%d", i)}
	}
	body, saved, err := saveSubscriptionCards(ctx, saver, provider, cards, expYear)
	if err != nil {
		return "", nil, err
	}
	csvPath := filepath.Join(dir, "subscriptions.csv")
	if err := os.WriteFile(csvPath, body, 0o644); err != nil {
		return "", nil, err
	}
	pms := make([]string, len(saved))
	for i, sv := range saved {
		pms[i] = sv.PaymentMethod
	}
	return csvPath, pms, nil
}

// demoReference is the subscription reference of demoCards[i].
func demoReference(i int) string {
	return fmt.Sprintf("demo-%02d-%s", i+1, last4(demoCards[i].Number))
}

// successEvent is the provider's webhook that settles a processing charge.
func successEvent(provider string) string {
	if provider == config.ProviderCheckout {
		return "payment_approved, payment_captured"
	}
	return "payment_intent.succeeded"
}
