package main

import "context"

// Placeholder; replaced by reports.go.
func (m *Main) reportCommands() map[string]subcommand {
	return map[string]subcommand{"revenue": m.notBuilt}
}

func (m *Main) cmdForecast(ctx context.Context, args []string) error { return m.notBuilt(ctx, args) }

// notBuilt is the placeholder subcommand; it goes with the last stub file.
func (m *Main) notBuilt(ctx context.Context, args []string) error { return usagef("not built yet") }
