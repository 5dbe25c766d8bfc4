package main

// Placeholder; replaced by invoices.go, attempts.go and dunning.go.
func (m *Main) invoiceCommands() map[string]subcommand {
	return map[string]subcommand{"list": m.notBuilt, "show": m.notBuilt, "retry": m.notBuilt, "void": m.notBuilt, "refund": m.notBuilt}
}

func (m *Main) attemptCommands() map[string]subcommand {
	return map[string]subcommand{"list": m.notBuilt, "resolve": m.notBuilt}
}

func (m *Main) dunningCommands() map[string]subcommand {
	return map[string]subcommand{"list": m.notBuilt, "show": m.notBuilt, "stop": m.notBuilt}
}
