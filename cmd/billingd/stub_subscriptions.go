package main

import "context"

// Placeholder; replaced by subscriptions.go.
func (m *Main) subscriptionCommands() map[string]subcommand {
	return map[string]subcommand{"list": m.notBuilt, "show": m.notBuilt, "cancel": m.notBuilt, "pause": m.notBuilt, "resume": m.notBuilt, "update": m.notBuilt}
}

func (m *Main) notBuilt(ctx context.Context, args []string) error { return usagef("not built yet") }
