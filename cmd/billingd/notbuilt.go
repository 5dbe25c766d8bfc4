package main

import "context"

// notBuilt is the placeholder subcommand of the stub files still waiting for
// their implementation; it goes with the last of them.
func (m *Main) notBuilt(ctx context.Context, args []string) error { return usagef("not built yet") }
