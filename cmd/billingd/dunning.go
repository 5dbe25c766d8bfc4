package main

import (
	"context"
	"fmt"
	"io"

	"github.com/billingd/billingd/internal/ops"
)

// dunningCommands are `billingd dunning list|show|stop`.
func (m *Main) dunningCommands() map[string]subcommand {
	return map[string]subcommand{"list": m.cmdDunningList, "show": m.cmdDunningShow, "stop": m.cmdDunningStop}
}

func (m *Main) cmdDunningList(ctx context.Context, args []string) error {
	return runListing(ctx, m, "dunning list", args, "open, recovered, exhausted, stopped",
		"only this subscription (its reference) or invoice (its number)", "opened", (*ops.Service).ListCases, caseTable)
}

func (m *Main) cmdDunningShow(ctx context.Context, args []string) error {
	parse := func(arg string) error { _, err := invParseID("dunning case id", arg); return err }
	return runShow(ctx, m, "dunning show", "dunning case id", args, parse,
		func(svc *ops.Service, ctx context.Context, arg string) (*ops.CaseStory, error) {
			id, err := invParseID("dunning case id", arg)
			if err != nil {
				return nil, err
			}
			return svc.CaseStoryOf(ctx, id)
		},
		func(s *ops.CaseStory) table { return stepTable(s.Steps) }, printCaseStory)
}

func printCaseStory(w io.Writer, s *ops.CaseStory) error {
	c := s.Case
	fmt.Fprintf(w, "Dunning case %d  (%s, %s)\n", c.ID, c.Status, c.Reason)
	fmt.Fprintf(w, "  invoice       %s  %s  (%s)\n", s.Invoice.Number, s.Invoice.Total.Display, s.Invoice.Status)
	fmt.Fprintf(w, "  subscription  %s\n", c.Subscription)
	fmt.Fprintf(w, "  step %d, %d retries; next step %s; last decline %s\n", c.Step, c.Retries, when(c.NextStepAt), dash(c.LastDeclineCode))
	fmt.Fprintf(w, "  opened %s, closed %s\n", when(&c.OpenedAt), when(c.ClosedAt))
	section(w, "Steps", stepTable(s.Steps))
	section(w, "Emails", emailTable(s.Emails))
	section(w, "Links", linkTable(s.Links))
	section(w, "Audit", auditTable(s.Audit))
	return nil
}

func (m *Main) cmdDunningStop(ctx context.Context, args []string) error {
	return m.invAction(ctx, "dunning stop", "dunning case id", args, nil, func(svc *ops.Service, who ops.Actor, reason, arg string) error {
		id, err := invParseID("dunning case id", arg)
		if err != nil {
			return err
		}
		c, err := svc.StopDunning(ctx, who, id, reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "dunning case %d of invoice %s stopped: no more retries or emails; the invoice stays open\n", c.ID, c.Invoice)
		return nil
	})
}
