package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/store"
)

// maxDemoMonths bounds `demo --months`: three years show every renewal
// pattern, and the run stays a matter of seconds.
const maxDemoMonths = 36

// demoStep is how far the simulated clock moves between two ticks of the
// daemon. The default dunning schedule works in whole days and the demo's
// subscriptions renew at the same time of day, so half a day loses no event
// (a processing charge settles at the next tick) and keeps three years near
// two thousand ticks.
const demoStep = 12 * time.Hour

// demoTopUp is the soft-declined card whose customer tops up the account
// during the run, and when: after its first two retries were declined, before
// the third one, so the timeline shows a recovery and its receipt.
const (
	demoTopUpCard  = "4000000000009995"
	demoTopUpAfter = 5 * 24 * time.Hour
	// demoTopUpAs is the test card whose behaviour the topped-up card takes.
	demoTopUpAs = "4242424242424242"
)

// demoWebhookWait bounds how long one tick waits (wall clock) for the
// simulator's webhooks to arrive.
const demoWebhookWait = 10 * time.Second

// demoNote is something the demo itself did to the world (not billingd), shown
// in the timeline at its simulated time.
type demoNote struct {
	At        time.Time
	Reference string
	Kind      string
	What      string
}

// demoMonths runs the assembled daemon and the in-process simulator on one
// simulated clock for the given number of months, driving time with the
// daemon's own jobs (Tick), and prints the timeline it reads back from the
// database, then a summary checked against the simulator's ledger.
func (m *Main) demoMonths(ctx context.Context, provider, dir string, months int, settle time.Duration, started time.Time) error {
	out := m.Stdout
	dbPath := filepath.Join(dir, "billingd.db")
	// Ctrl-C (or SIGTERM) stops the run between two ticks.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if m.Signals != nil {
		go func() {
			select {
			case <-m.Signals:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	// Whole hours read better in the timeline than the second the demo started.
	start := time.Now().UTC().Truncate(24 * time.Hour).Add(9 * time.Hour)
	clk := clock.NewFake(start)
	end := start.AddDate(0, months, 0)

	billingLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	billingURL := "http://" + billingLn.Addr().String()

	// The simulator reads the same clock, so a processing charge settles, and
	// webhooks are signed, in simulated time.
	gw, simURL, stopSim, err := startDemoSim(ctx, sim.Options{Provider: provider, SecretKey: demoSecretKey, Seed: 1, ProcessingDelay: settle, Now: clk.Now,
		Webhook: sim.WebhookOptions{URL: billingURL + "/webhooks/" + provider, Secret: demoWebhookSecret,
			Retry: []time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond}}})
	if err != nil {
		return err
	}
	defer stopSim()

	env, err := newDemoEnv(provider, dir, dbPath, simURL, billingURL, billingLn.Addr().String())
	if err != nil {
		return err
	}
	defer env.Close()
	smtp, cfg, logFile, saver := env.smtp, env.cfg, env.log, env.saver
	mailDir := filepath.Join(dir, "mail")
	fmt.Fprintf(out, "1. %s simulator on %s; billingd on %s; both on one simulated clock\n", providerName(provider), simURL, billingURL)

	// The cards outlive the longest run.
	csvPath, pms, err := saveDemoCards(ctx, saver, provider, dir, start, end.Year()+1)
	if err != nil {
		return err
	}
	n, err := importFile(ctx, cfg, csvPath, false, start)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. Saved %d test cards and imported %d subscriptions (%s), all due at %s\n",
		len(demoCards), n, intervalMix(), start.Format(demoTimeLayout))

	d, err := daemon.New(ctx, cfg, daemon.Options{Clock: clk, Log: logFile})
	if err != nil {
		return err
	}
	defer d.Close()
	billingSrv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = billingSrv.Serve(billingLn) }()
	defer billingSrv.Close()

	fmt.Fprintf(out, "3. Running %d month(s), %s → %s, one daemon tick every %s of simulated time...\n",
		months, start.Format(demoTimeLayout), end.Format(demoTimeLayout), shortDuration(demoStep))
	topUpRef, topUpPM := "", ""
	for i, c := range demoCards {
		if c.Number == demoTopUpCard {
			topUpRef, topUpPM = demoReference(i), pms[i]
			break
		}
	}
	var notes []demoNote
	topUpAt := start.Add(demoTopUpAfter)
	ticks := 0
	runStarted := time.Now()
	for {
		if err := settleSimulator(ctx, gw); err != nil {
			return err
		}
		d.Tick(ctx)
		ticks++
		if err := settleSimulator(ctx, gw); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !clk.Now().Before(end) {
			break
		}
		next := clk.Now().Add(demoStep)
		if next.After(end) {
			next = end
		}
		clk.Set(next)
		if topUpPM != "" && !clk.Now().Before(topUpAt) {
			if err := gw.SetCardBehaviour(topUpPM, demoTopUpAs); err != nil {
				return err
			}
			notes = append(notes, demoNote{At: clk.Now(), Reference: topUpRef, Kind: "top-up",
				What: "the customer tops up the account: the card now charges like " + spaced(demoTopUpAs)})
			topUpPM = ""
		}
	}
	fmt.Fprintf(out, "   %d ticks in %s of wall time\n\n", ticks, time.Since(runStarted).Round(10*time.Millisecond))

	events, err := d.Store().Timeline(ctx)
	if err != nil {
		return err
	}
	printTimeline(out, events, notes)
	problems, err := printMonthsSummary(ctx, out, d.Store(), gw, smtp, events, end)
	if err != nil {
		return err
	}
	ledgerJSON, ledgerCSV, err := writeLedger(dir, gw.Ledger())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe simulator's ledger: %s and %s\n", ledgerJSON, ledgerCSV)
	printDBHints(out, dbPath)
	fmt.Fprintf(out, "Emails: %s\nLog: %s\nFinished in %s.\n", mailDir, logFile.Name(), time.Since(started).Round(10*time.Millisecond))
	if len(problems) > 0 {
		return fmt.Errorf("the books disagree: %s", strings.Join(problems, "; "))
	}
	return nil
}

// settleSimulator lets processing charges whose time has come settle and
// waits until the simulator's webhooks have been delivered, so that every
// tick sees the gateway's news of the one before.
func settleSimulator(ctx context.Context, gw *sim.Server) error {
	gw.SettleDue()
	wctx, cancel := context.WithTimeout(ctx, demoWebhookWait)
	defer cancel()
	if err := gw.WaitWebhooks(wctx); err != nil {
		return fmt.Errorf("the simulator's webhooks were not delivered within %s: %w", demoWebhookWait, err)
	}
	return nil
}

const demoTimeLayout = "2006-01-02 15:04"

// intervalMix says how many demo subscriptions renew at each interval.
func intervalMix() string {
	counts := map[string]int{}
	for _, c := range demoCards {
		counts[c.Interval]++
	}
	var parts []string
	for _, iv := range []struct{ unit, name string }{{"day", "daily"}, {"week", "weekly"}, {"month", "monthly"}, {"year", "yearly"}} {
		if n := counts[iv.unit]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, iv.name))
		}
	}
	return strings.Join(parts, ", ")
}

// printTimeline prints one line per event, in time order, with the demo's own
// notes placed before the database's events of the same instant.
func printTimeline(out io.Writer, events []store.TimelineEvent, notes []demoNote) {
	type line struct {
		at              time.Time
		ref, kind, what string
	}
	lines := make([]line, 0, len(events)+len(notes))
	for _, n := range notes {
		lines = append(lines, line{n.At, n.Reference, n.Kind, n.What})
	}
	for _, e := range events {
		kind, what := describeEvent(e)
		lines = append(lines, line{e.At, e.Reference, kind, what})
	}
	// Notes came first, so a stable sort keeps them ahead within an instant.
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	fmt.Fprintln(out, "Timeline (simulated time, UTC), read back from the database:")
	w := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(w, "DATE\tSUBSCRIPTION\tEVENT\tWHAT HAPPENED")
	for _, l := range lines {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", l.at.Format(demoTimeLayout), l.ref, l.kind, l.what)
	}
	_ = w.Flush()
}

// describeEvent names a timeline event's kind (the EVENT column) and says what
// happened in words.
func describeEvent(e store.TimelineEvent) (kind, what string) {
	amount := money.Format(e.Amount, e.Currency)
	period := fmt.Sprintf("period %d", e.PeriodIndex+1)
	switch e.Source {
	case store.TimelineAttempt:
		switch {
		case !e.OffSession:
			kind = "pay page"
		case e.No > 1:
			kind = "retry"
		case e.PeriodIndex > 0:
			kind = "renewal"
		default:
			kind = "charge"
		}
		var outcome string
		switch s := models.AttemptStatus(e.Status); s {
		case models.AttemptSucceeded:
			outcome = "paid " + amount
			if late := e.At.Sub(e.Created); late >= time.Minute {
				outcome += fmt.Sprintf(", settled by the gateway %s after the charge started", shortDuration(late))
			}
		case models.AttemptDeclined:
			outcome = "declined " + amount + ": " + e.Code + map[bool]string{true: " (hard)", false: " (soft)"}[e.HardDecline]
		case models.AttemptRequiresAction:
			outcome = amount + " needs 3-D Secure: only the customer can authenticate it"
		default:
			outcome = string(s) + " " + amount
			if e.Text != "" {
				outcome += ": " + e.Text
			}
		}
		return kind, fmt.Sprintf("%s (%s, attempt %d)", outcome, period, e.No)
	case store.TimelineStep:
		reason := strings.ReplaceAll(e.Code, "_", " ")
		switch e.Status {
		case "opened":
			return "dunning", fmt.Sprintf("case opened (%s, %s): %s", reason, period, e.Text)
		case "reminder":
			return "reminder", fmt.Sprintf("%s step %d: %s", reason, e.No, e.Text)
		case "exhausted":
			return "exhausted", fmt.Sprintf("%s: %s; %s uncollectible, %s", reason, e.Text, period, finalActionWords(e.FinalAction))
		case "recovered":
			return "recovered", fmt.Sprintf("%s case closed at step %d: %s paid", reason, e.No, period)
		case "payment_method_updated":
			return "card updated", e.Text
		}
		return "dunning", fmt.Sprintf("%s (%s step %d): %s", strings.ReplaceAll(e.Status, "_", " "), reason, e.No, e.Text)
	case store.TimelineInvoice:
		switch models.InvoiceStatus(e.Status) {
		case models.InvoiceOpen:
			return "invoice", fmt.Sprintf("%s invoiced (%s), not charged yet", period, amount)
		case models.InvoiceUncollectible:
			return "written off", fmt.Sprintf("%s (%s) uncollectible, never charged", period, amount)
		}
		return "invoice", fmt.Sprintf("%s (%s) %s", period, amount, e.Status)
	}
	switch models.EmailStatus(e.Status) {
	case models.EmailSent:
		return "email", fmt.Sprintf("%q to %s", e.Text, e.To)
	case models.EmailPending:
		return "email", fmt.Sprintf("%s email to %s queued, not sent yet", e.Code, e.To)
	}
	return "email", fmt.Sprintf("%s email to %s %s", e.Code, e.To, e.Status)
}

// shortDuration prints d to the minute without zero units ("6h", "1h30m").
func shortDuration(d time.Duration) string {
	s := strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func finalActionWords(action string) string {
	switch action {
	case "cancel":
		return "subscription canceled"
	case "unpaid":
		return "subscription unpaid (no longer billed)"
	case "past_due":
		return "subscription stays past_due"
	}
	return "final action " + action
}

// printMonthsSummary prints the counts by status, the emails, and the paid
// totals beside the simulator's ledger; it returns what disagrees.
func printMonthsSummary(ctx context.Context, out io.Writer, st *store.Store, gw *sim.Server, smtp *smtpcapture.Server,
	events []store.TimelineEvent, now time.Time) ([]string, error) {
	r, err := st.Status(ctx, now)
	if err != nil {
		return nil, err
	}
	books, err := st.PaidTotals(ctx)
	if err != nil {
		return nil, err
	}
	counts := func(cs []store.Count) string {
		parts := make([]string, 0, len(cs))
		for _, c := range cs {
			parts = append(parts, fmt.Sprintf("%s %d", c.Status, c.N))
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, ", ")
	}
	var sent int64
	byKind := map[string]int{}
	for _, e := range events {
		if e.Source == store.TimelineEmail && e.Status == string(models.EmailSent) {
			sent++
			byKind[e.Code]++
		}
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	kindParts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		kindParts = append(kindParts, fmt.Sprintf("%s %d", k, byKind[k]))
	}

	ledger := map[string]int64{}
	for _, e := range gw.Ledger() {
		if e.Status == "succeeded" {
			ledger[e.Currency] += e.Amount
		}
	}
	bookTotal := map[string]int64{}
	for _, t := range books {
		bookTotal[t.Currency] = t.Amount
	}
	currencies := make([]string, 0, len(ledger)+len(bookTotal))
	for c := range ledger {
		currencies = append(currencies, c)
	}
	for c := range bookTotal {
		if _, ok := ledger[c]; !ok {
			currencies = append(currencies, c)
		}
	}
	sort.Strings(currencies)
	var paid, gateway, problems []string
	for _, c := range currencies {
		paid = append(paid, money.Format(bookTotal[c], c))
		gateway = append(gateway, money.Format(ledger[c], c))
		if bookTotal[c] != ledger[c] {
			problems = append(problems, fmt.Sprintf("paid invoices %s, gateway %s", money.Format(bookTotal[c], c), money.Format(ledger[c], c)))
		}
	}
	if got := int64(smtp.Count()); got != sent {
		problems = append(problems, fmt.Sprintf("%d emails marked sent, %d received by the SMTP server", sent, got))
	}
	agree := "agree"
	if len(problems) > 0 {
		agree = "DISAGREE"
	}

	fmt.Fprintln(out, "\nSummary:")
	w := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintf(w, "  subscriptions\t%s\n", counts(r.Subscriptions))
	fmt.Fprintf(w, "  invoices\t%s\n", counts(r.Invoices))
	fmt.Fprintf(w, "  dunning cases\t%s\n", counts(r.DunningCases))
	fmt.Fprintf(w, "  emails sent\t%d (%s); %d received by the SMTP server\n", sent, strings.Join(kindParts, ", "), smtp.Count())
	fmt.Fprintf(w, "  paid invoices\t%s\n", strings.Join(paid, ", "))
	fmt.Fprintf(w, "  gateway ledger\t%s (succeeded payments): books and gateway %s\n", strings.Join(gateway, ", "), agree)
	_ = w.Flush()
	return problems, nil
}
