package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/billingd/billingd/internal/ops"
)

// attemptCommands are `billingd attempts list|resolve`.
func (m *Main) attemptCommands() map[string]subcommand {
	return map[string]subcommand{"list": m.cmdAttemptsList, "resolve": m.cmdAttemptsResolve}
}

func (m *Main) cmdAttemptsList(ctx context.Context, args []string) error {
	return runListing(ctx, m, "attempts list", args, "pending, unknown, processing, succeeded, requires_action, declined, canceled, failed, needs_review",
		"only this subscription (its reference) or invoice (its number)", "created", (*ops.Service).ListAttempts, attemptTable)
}

func (m *Main) cmdAttemptsResolve(ctx context.Context, args []string) error {
	var markFailed bool
	extra := func(fs *flag.FlagSet) {
		fs.BoolVar(&markFailed, "mark-failed", false, "mark the attempt failed when the gateway has no payment for it (never a replay)")
	}
	return m.invAction(ctx, "attempts resolve", "attempt id", args, extra, func(svc *ops.Service, who ops.Actor, reason, arg string) error {
		id, err := invParseID("attempt id", arg)
		if err != nil {
			return err
		}
		a, err := svc.ResolveAttempt(ctx, who, id, reason, markFailed)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "attempt %d (%s) of invoice %s: %s", a.ID, a.Key, a.Invoice, a.Status)
		if a.Payment != "" {
			fmt.Fprintf(m.Stdout, ", payment %s", a.Payment)
		}
		fmt.Fprintln(m.Stdout)
		return nil
	})
}
