package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/ops"
)

// subscriptionCommands are `billingd subscriptions list|show|cancel|pause|resume|update`
// (import is dispatched on its own).
func (m *Main) subscriptionCommands() map[string]subcommand {
	return map[string]subcommand{
		"list":   m.cmdSubscriptionsList,
		"show":   m.cmdSubscriptionsShow,
		"cancel": m.cmdSubscriptionsCancel,
		"pause":  m.cmdSubscriptionsPause,
		"resume": m.cmdSubscriptionsResume,
		"update": m.cmdSubscriptionsUpdate,
	}
}

func (m *Main) cmdSubscriptionsList(ctx context.Context, args []string) error {
	return runListing(ctx, m, "subscriptions list", args, "active, past_due, unpaid, paused, canceled",
		"only this subscription reference", "created", (*ops.Service).ListSubscriptions, subscriptionTable)
}

func subscriptionTable(subs []ops.Subscription) table {
	t := table{header: []string{"reference", "status", "customer", "email", "price", "amount", "currency", "every", "next_billing_at", "cancel_at", "card"}}
	for _, s := range subs {
		t.add(s.Reference, s.Status, s.Customer, s.Email, s.Price.Display, strconv.FormatInt(s.Price.Amount, 10), s.Price.Currency,
			subsEvery(s), when(&s.NextBillingAt), when(s.CancelAt), subsCard(s.Card))
	}
	return t
}

func (m *Main) cmdSubscriptionsShow(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("subscriptions show")
	asJSON := fs.Bool("json", false, "print the whole story as JSON (for scripts)")
	ref, err := subsReference(fs, args, "billingd subscriptions show REFERENCE [--json] [-c FILE]")
	if err != nil {
		return err
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), config.NeedDatabase)
	if err != nil {
		return err
	}
	svc, done, err := m.readOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	story, err := svc.SubscriptionStoryOf(ctx, ref)
	if err != nil {
		return err
	}
	if *asJSON {
		return (&outputFormat{json: true}).emit(m.Stdout, table{}, story)
	}
	return printSubscriptionStory(m.Stdout, story)
}

// printSubscriptionStory prints a subscription's story in sections, as a
// person reads it.
func printSubscriptionStory(w io.Writer, st *ops.SubscriptionStory) error {
	s := st.Subscription
	fmt.Fprintf(w, "Subscription %s  (%s)\n", s.Reference, s.Status)
	fmt.Fprintf(w, "  customer     %s <%s>\n", s.Customer, s.Email)
	fmt.Fprintf(w, "  price        %s every %s\n", s.Price.Display, subsEvery(s))
	fmt.Fprintf(w, "  card         %s\n", subsCard(s.Card))
	if s.Description != "" {
		fmt.Fprintf(w, "  description  %s\n", s.Description)
	}
	fmt.Fprintf(w, "  anchor       %s (%s)\n", when(&s.Anchor), s.Timezone)
	fmt.Fprintf(w, "  next billing %s\n", when(&s.NextBillingAt))
	if s.CancelAt != nil {
		fmt.Fprintf(w, "  cancels at   %s\n", when(s.CancelAt))
	}
	if s.CanceledAt != nil {
		fmt.Fprintf(w, "  canceled at  %s\n", when(s.CanceledAt))
	}
	if s.PausedAt != nil {
		fmt.Fprintf(w, "  paused at    %s\n", when(s.PausedAt))
	}
	fmt.Fprintf(w, "  created      %s\n", when(&s.CreatedAt))

	section := func(title string, t table) error {
		fmt.Fprintf(w, "\n%s\n", title)
		return printTable(w, t)
	}
	inv := table{header: []string{"period", "invoice", "start", "end", "total", "refunded", "status", "attempts", "next_attempt", "paid_at"}}
	for _, i := range st.Invoices {
		inv.add(strconv.Itoa(i.Period), i.Number, when(&i.PeriodStart), when(&i.PeriodEnd), i.Total.Display, i.Refunded.Display,
			i.Status, strconv.Itoa(i.Attempts), when(i.NextAttemptAt), when(i.PaidAt))
	}
	att := table{header: []string{"id", "invoice", "no", "status", "session", "amount", "decline", "payment", "created", "error"}}
	for _, a := range st.Attempts {
		session := "off"
		if !a.OffSession {
			session = "on"
		}
		decline := a.DeclineCode
		if a.HardDecline {
			decline += " (hard)"
		}
		att.add(strconv.FormatInt(a.ID, 10), a.Invoice, strconv.Itoa(a.AttemptNo), a.Status, session, a.Amount.Display,
			subsDash(decline), subsDash(a.Payment), when(&a.CreatedAt), subsDash(a.Error))
	}
	cases := table{header: []string{"id", "invoice", "reason", "status", "step", "retries", "next_step", "last_decline", "opened", "closed"}}
	for _, c := range st.Cases {
		cases.add(strconv.FormatInt(c.ID, 10), c.Invoice, c.Reason, c.Status, strconv.Itoa(c.Step), strconv.Itoa(c.Retries),
			when(c.NextStepAt), subsDash(c.LastDeclineCode), when(&c.OpenedAt), when(c.ClosedAt))
	}
	refunds := table{header: []string{"id", "invoice", "amount", "reason", "status", "gateway_refund", "created"}}
	for _, r := range st.Refunds {
		refunds.add(strconv.FormatInt(r.ID, 10), r.Invoice, r.Amount.Display, r.Reason, r.Status, subsDash(r.GatewayRefund), when(&r.CreatedAt))
	}
	emails := table{header: []string{"id", "kind", "to", "status", "link", "invoice", "created", "sent"}}
	for _, e := range st.Emails {
		emails.add(strconv.FormatInt(e.ID, 10), e.Kind, e.To, e.Status, subsDash(e.Link), subsDash(e.Invoice), when(&e.Created), when(e.SentAt))
	}
	links := table{header: []string{"id", "purpose", "invoice", "state", "expires", "uses"}}
	for _, l := range st.Links {
		links.add(strconv.FormatInt(l.ID, 10), l.Purpose, subsDash(l.Invoice), l.State, when(&l.ExpiresAt), strconv.Itoa(l.Uses))
	}
	auditT := table{header: []string{"at", "actor", "via", "action", "target", "reason"}}
	for _, a := range st.Audit {
		auditT.add(when(&a.At), a.Actor, a.Via, a.Action, a.Target, subsDash(a.Reason))
	}
	for _, s := range []struct {
		title string
		t     table
	}{{"Invoices", inv}, {"Attempts", att}, {"Dunning cases", cases}, {"Refunds", refunds}, {"Emails", emails}, {"Links", links}, {"Audit log", auditT}} {
		if err := section(s.title, s.t); err != nil {
			return err
		}
	}
	for _, a := range st.Audit {
		if a.Before != "" || a.After != "" {
			fmt.Fprintf(w, "\n%s %s by %s:\n  before %s\n  after  %s\n", when(&a.At), a.Action, a.Actor, subsDash(a.Before), subsDash(a.After))
		}
	}
	return nil
}

func (m *Main) cmdSubscriptionsCancel(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("subscriptions cancel")
	act := addActionFlags(fs)
	atEnd := fs.Bool("at-period-end", false, "cancel when the current period ends (cancel_at) instead of now")
	ref, err := subsReference(fs, args, "billingd subscriptions cancel REFERENCE --reason TEXT [--at-period-end] [--actor NAME] [-c FILE]")
	if err != nil {
		return err
	}
	return m.subsAct(ctx, *path, func(svc *ops.Service) (*ops.SubscriptionReport, error) {
		return svc.CancelSubscriptionReport(ctx, act.who(), ref, act.reason, ops.CancelOptions{AtPeriodEnd: *atEnd})
	})
}

func (m *Main) cmdSubscriptionsPause(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("subscriptions pause")
	act := addActionFlags(fs)
	ref, err := subsReference(fs, args, "billingd subscriptions pause REFERENCE --reason TEXT [--actor NAME] [-c FILE]")
	if err != nil {
		return err
	}
	return m.subsAct(ctx, *path, func(svc *ops.Service) (*ops.SubscriptionReport, error) {
		return svc.PauseSubscriptionReport(ctx, act.who(), ref, act.reason)
	})
}

func (m *Main) cmdSubscriptionsResume(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("subscriptions resume")
	act := addActionFlags(fs)
	ref, err := subsReference(fs, args, "billingd subscriptions resume REFERENCE [--reason TEXT] [--actor NAME] [-c FILE]")
	if err != nil {
		return err
	}
	return m.subsAct(ctx, *path, func(svc *ops.Service) (*ops.SubscriptionReport, error) {
		return svc.ResumeSubscriptionReport(ctx, act.who(), ref, act.reason)
	})
}

func (m *Main) cmdSubscriptionsUpdate(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("subscriptions update")
	act := addActionFlags(fs)
	amount := fs.String("amount", "", "the new amount in minor units (2900 for 29.00 USD), from the next period not invoiced yet")
	description := fs.String("description", "", "the new description, from the next period not invoiced yet")
	pm := fs.String("payment-method", "", "the gateway id of a card saved for the subscription's customer (verified with the gateway)")
	prev := fs.String("previous-payment-id", "", "Checkout.com: the customer-initiated payment that stored the new card")
	email := fs.String("email", "", "the customer's new email address")
	ref, err := subsReference(fs, args, "billingd subscriptions update REFERENCE [--amount N] [--description TEXT] [--payment-method ID [--previous-payment-id ID]] [--email ADDR] [--reason TEXT] [--actor NAME] [-c FILE]")
	if err != nil {
		return err
	}
	var u ops.SubscriptionUpdate
	var bad error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "amount":
			n, err := strconv.ParseInt(strings.TrimSpace(*amount), 10, 64)
			if err != nil {
				bad = usagef("--amount %q: must be a whole number of minor units (2900 for 29.00 USD)", *amount)
			}
			u.Amount = &n
		case "description":
			u.Description = description
		case "payment-method":
			u.PaymentMethod = pm
		case "previous-payment-id":
			u.PreviousPaymentID = prev
		case "email":
			u.Email = email
		}
	})
	if bad != nil {
		return bad
	}
	if u.Amount == nil && u.Description == nil && u.PaymentMethod == nil && u.Email == nil && u.PreviousPaymentID == nil {
		return usagef("nothing to change: give --amount, --description, --payment-method or --email")
	}
	return m.subsAct(ctx, *path, func(svc *ops.Service) (*ops.SubscriptionReport, error) {
		return svc.UpdateSubscriptionReport(ctx, act.who(), ref, act.reason, u)
	})
}

// subsAct runs one subscription action through the daemon's assembly and
// prints what changed.
func (m *Main) subsAct(ctx context.Context, path string, fn func(*ops.Service) (*ops.SubscriptionReport, error)) error {
	cfg, err := m.loadConfigFor(m.configPath(path), needOps)
	if err != nil {
		return err
	}
	svc, done, err := m.actOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	rep, err := fn(svc)
	if err != nil {
		if errors.Is(err, ops.ErrNoGateway) {
			return usageError{err}
		}
		return err
	}
	s := rep.Subscription
	verb := "unchanged"
	if rep.Changed {
		verb = "changed"
	}
	fmt.Fprintf(m.Stdout, "subscription %s %s: status %s, %s every %s, next billing %s", s.Reference, verb, s.Status, s.Price.Display, subsEvery(s), when(&s.NextBillingAt))
	if s.CancelAt != nil {
		fmt.Fprintf(m.Stdout, ", cancels at %s", when(s.CancelAt))
	}
	if s.CanceledAt != nil {
		fmt.Fprintf(m.Stdout, ", canceled at %s", when(s.CanceledAt))
	}
	fmt.Fprintln(m.Stdout)
	for _, n := range rep.Notes {
		fmt.Fprintf(m.Stdout, "  - %s\n", n)
	}
	return nil
}

// subsReference parses an action's flags and its one positional argument.
func subsReference(fs *flag.FlagSet, args []string, synopsis string) (string, error) {
	rest, err := parseArgs(fs, args)
	if err != nil {
		return "", err
	}
	if len(rest) != 1 || strings.TrimSpace(rest[0]) == "" {
		return "", usagef("usage: %s", synopsis)
	}
	return rest[0], nil
}

func subsEvery(s ops.Subscription) string {
	if s.IntervalCount == 1 {
		return s.Interval
	}
	return fmt.Sprintf("%d %ss", s.IntervalCount, s.Interval)
}

func subsCard(c ops.Card) string {
	out := c.PaymentMethod
	if c.Brand != "" || c.Last4 != "" {
		out += fmt.Sprintf(" (%s •%s", c.Brand, c.Last4)
		if c.ExpMonth > 0 {
			out += fmt.Sprintf(", exp %02d/%d", c.ExpMonth, c.ExpYear)
		}
		out += ")"
	}
	if c.Dead != "" {
		out += " dead: " + c.Dead
	}
	return out
}

func subsDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
