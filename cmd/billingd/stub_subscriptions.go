package main

// Placeholder; replaced by subscriptions.go.
func (m *Main) subscriptionCommands() map[string]subcommand {
	return map[string]subcommand{"list": m.notBuilt, "show": m.notBuilt, "cancel": m.notBuilt, "pause": m.notBuilt, "resume": m.notBuilt, "update": m.notBuilt}
}
