package main

// Placeholder; replaced by admintokens.go.
func (m *Main) adminTokenCommands() map[string]subcommand {
	return map[string]subcommand{"add": m.notBuilt, "list": m.notBuilt, "revoke": m.notBuilt}
}
