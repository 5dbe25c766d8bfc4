package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
)

// invoiceCommands are `billingd invoices list|show|retry|void|refund`.
func (m *Main) invoiceCommands() map[string]subcommand {
	return map[string]subcommand{
		"list": m.cmdInvoicesList, "show": m.cmdInvoicesShow, "retry": m.cmdInvoicesRetry,
		"void": m.cmdInvoicesVoid, "refund": m.cmdInvoicesRefund,
	}
}

// invOneArg parses a command that takes exactly one positional argument
// (what names the object) and loads the config need names.
func (m *Main) invOneArg(name, what string, args []string, need config.Need, fs *flag.FlagSet, path *string) (*config.Config, string, error) {
	rest, err := parseArgs(fs, args)
	if err != nil {
		return nil, "", err
	}
	if len(rest) != 1 {
		return nil, "", usagef("billingd %s takes one %s (see billingd %s -h)", name, what, name)
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), need)
	return cfg, rest[0], err
}

// invParseID reads a numeric id argument.
func invParseID(what, v string) (int64, error) {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("%s %q: not a number", what, v)
	}
	return id, nil
}

func (m *Main) cmdInvoicesList(ctx context.Context, args []string) error {
	return runListing(ctx, m, "invoices list", args, "open, paid, uncollectible, void",
		"only this subscription (its reference) or invoice (its number)", "period starting", (*ops.Service).ListInvoices, invoiceTable)
}

func invoiceTable(invs []ops.Invoice) table {
	t := table{header: []string{"number", "subscription", "period_start", "total", "refunded", "status", "attempts", "next_attempt", "paid_at"}}
	for _, i := range invs {
		refunded := "-"
		if i.Refunded.Amount != 0 {
			refunded = i.Refunded.Display
		}
		t.add(i.Number, i.Subscription, when(&i.PeriodStart), i.Total.Display, refunded, i.Status,
			strconv.Itoa(i.Attempts), when(i.NextAttemptAt), when(i.PaidAt))
	}
	return t
}

func attemptTable(as []ops.Attempt) table {
	t := table{header: []string{"id", "invoice", "subscription", "no", "status", "amount", "decline_code", "payment", "created_at", "error"}}
	for _, a := range as {
		decline := a.DeclineCode
		if a.HardDecline {
			decline += " (hard)"
		}
		t.add(strconv.FormatInt(a.ID, 10), a.Invoice, a.Subscription, strconv.Itoa(a.AttemptNo), a.Status, a.Amount.Display,
			dash(decline), dash(a.Payment), when(&a.CreatedAt), dash(a.Error))
	}
	return t
}

func caseTable(cs []ops.DunningCase) table {
	t := table{header: []string{"id", "invoice", "subscription", "reason", "status", "step", "retries", "next_step", "last_decline", "opened_at", "closed_at"}}
	for _, c := range cs {
		t.add(strconv.FormatInt(c.ID, 10), c.Invoice, c.Subscription, c.Reason, c.Status, strconv.Itoa(c.Step),
			strconv.Itoa(c.Retries), when(c.NextStepAt), dash(c.LastDeclineCode), when(&c.OpenedAt), when(c.ClosedAt))
	}
	return t
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (m *Main) cmdInvoicesShow(ctx context.Context, args []string) error {
	return runShow(ctx, m, "invoices show", "invoice number", args, nil, (*ops.Service).InvoiceStoryOf,
		// A story is not one table: --csv lists its attempts.
		func(s *ops.InvoiceStory) table { return attemptTable(s.Attempts) }, printInvoiceStory)
}

// printInvoiceStory prints an invoice's story for a person, section by
// section.
func printInvoiceStory(w io.Writer, s *ops.InvoiceStory) error {
	i := s.Invoice
	fmt.Fprintf(w, "Invoice %s  (%s)\n", i.Number, i.Status)
	fmt.Fprintf(w, "  subscription  %s  customer %s\n", i.Subscription, i.Customer)
	fmt.Fprintf(w, "  period %d      %s → %s\n", i.Period, when(&i.PeriodStart), when(&i.PeriodEnd))
	fmt.Fprintf(w, "  total         %s   refunded %s\n", i.Total.Display, i.Refunded.Display)
	fmt.Fprintf(w, "  attempts      %d   next attempt %s   paid %s   payment %s\n", i.Attempts, when(i.NextAttemptAt), when(i.PaidAt), dash(i.Payment))
	section(w, "Attempts", attemptTable(s.Attempts))
	if s.Case != nil {
		section(w, "Dunning case", caseTable([]ops.DunningCase{*s.Case}))
		section(w, "Dunning steps", stepTable(s.Steps))
	}
	section(w, "Refunds", refundTable(s.Refunds))
	section(w, "Emails", emailTable(s.Emails))
	section(w, "Links", linkTable(s.Links))
	section(w, "Audit", auditTable(s.Audit))
	return nil
}

func section(w io.Writer, title string, t table) {
	fmt.Fprintf(w, "\n%s:\n", title)
	_ = printTable(w, t)
}

func stepTable(ss []ops.DunningStep) table {
	t := table{header: []string{"at", "step", "action", "detail"}}
	for _, s := range ss {
		t.add(when(&s.At), strconv.Itoa(s.Step), s.Action, dash(s.Detail))
	}
	return t
}

func refundTable(rs []ops.Refund) table {
	t := table{header: []string{"id", "amount", "reason", "status", "gateway_refund", "key", "created_at", "error"}}
	for _, r := range rs {
		t.add(strconv.FormatInt(r.ID, 10), r.Amount.Display, r.Reason, r.Status, dash(r.GatewayRefund), r.Key, when(&r.CreatedAt), dash(r.Error))
	}
	return t
}

func emailTable(es []ops.Email) table {
	t := table{header: []string{"id", "kind", "to", "status", "link", "created_at", "sent_at", "error"}}
	for _, e := range es {
		t.add(strconv.FormatInt(e.ID, 10), e.Kind, e.To, e.Status, dash(e.Link), when(&e.Created), when(e.SentAt), dash(e.Error))
	}
	return t
}

func linkTable(ls []ops.PayLink) table {
	t := table{header: []string{"id", "purpose", "state", "expires_at", "uses", "revoked_at"}}
	for _, l := range ls {
		t.add(strconv.FormatInt(l.ID, 10), l.Purpose, l.State, when(&l.ExpiresAt), strconv.Itoa(l.Uses), when(l.RevokedAt))
	}
	return t
}

func auditTable(as []ops.AuditEntry) table {
	t := table{header: []string{"at", "actor", "via", "action", "target", "reason"}}
	for _, a := range as {
		t.add(when(&a.At), a.Actor, a.Via, a.Action, a.Target, dash(a.Reason))
	}
	return t
}

// invAction runs one audited action on an invoice (or attempt, or case):
// parse NUMBER and the action flags, build the system beside the daemon,
// act.
func (m *Main) invAction(ctx context.Context, name, what string, args []string, extra func(fs *flag.FlagSet),
	act func(svc *ops.Service, who ops.Actor, reason, arg string) error) error {
	fs, path := m.newFlagSet(name)
	af := addActionFlags(fs)
	if extra != nil {
		extra(fs)
	}
	cfg, arg, err := m.invOneArg(name, what, args, needOps, fs, path)
	if err != nil {
		return err
	}
	svc, done, err := m.actOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	return act(svc, af.who(), af.reason, arg)
}

func (m *Main) cmdInvoicesRetry(ctx context.Context, args []string) error {
	return m.invAction(ctx, "invoices retry", "invoice number", args, nil, func(svc *ops.Service, who ops.Actor, reason, number string) error {
		inv, err := svc.RetryInvoice(ctx, who, number, reason)
		if inv != nil {
			fmt.Fprintf(m.Stdout, "invoice %s retried: %s after %d attempts (next attempt %s)\n", inv.Number, inv.Status, inv.Attempts, when(inv.NextAttemptAt))
		}
		return err
	})
}

func (m *Main) cmdInvoicesVoid(ctx context.Context, args []string) error {
	return m.invAction(ctx, "invoices void", "invoice number", args, nil, func(svc *ops.Service, who ops.Actor, reason, number string) error {
		inv, err := svc.VoidInvoice(ctx, who, number, reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "invoice %s voided: its dunning case is stopped, its links are dead, nothing more is sent\n", inv.Number)
		return nil
	})
}

func (m *Main) cmdInvoicesRefund(ctx context.Context, args []string) error {
	var amount int64
	var fraudulent bool
	var key string
	extra := func(fs *flag.FlagSet) {
		fs.Int64Var(&amount, "amount", -1, "refund this much, in minor units, at least 1 (default: what is left of the payment)")
		fs.BoolVar(&fraudulent, "fraudulent", false, "tell the gateway the payment was fraudulent (default reason: requested_by_customer)")
		fs.StringVar(&key, "key", "", "the refund's idempotency key: the same key again is the same refund (default: a new one)")
	}
	return m.invAction(ctx, "invoices refund", "invoice number", args, extra, func(svc *ops.Service, who ops.Actor, reason, number string) error {
		// Leave --amount out to refund what is left: an explicit 0 is
		// refused, so a script's empty variable never becomes a full refund.
		if amount == 0 || amount < -1 {
			return usagef("--amount %d: must be at least 1 (minor units); leave it out to refund what is left", amount)
		}
		o := ops.RefundOptions{Amount: max(amount, 0), Key: key}
		if fraudulent {
			o.Reason = models.RefundReasonFraudulent
		}
		rf, err := svc.RefundInvoice(ctx, who, number, reason, o)
		if rf != nil {
			fmt.Fprintf(m.Stdout, "refund %d of invoice %s: %s, %s (key %s)\n", rf.ID, rf.Invoice, rf.Amount.Display, rf.Status, rf.Key)
			if rf.Status != "succeeded" && err == nil {
				fmt.Fprintf(m.Stdout, "the refund is recorded; the daemon's refund job finishes it with the same key\n")
			}
		}
		return err
	})
}
