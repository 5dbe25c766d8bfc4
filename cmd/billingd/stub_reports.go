package main

import "context"

// Placeholder; replaced by reports.go.
func (m *Main) reportCommands() map[string]subcommand {
	return map[string]subcommand{"revenue": m.notBuilt}
}

func (m *Main) cmdForecast(ctx context.Context, args []string) error { return m.notBuilt(ctx, args) }
