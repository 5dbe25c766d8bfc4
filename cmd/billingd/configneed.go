package main

import (
	"flag"
	"fmt"

	"github.com/billingd/billingd/internal/config"
)

// loadConfigFor reads the config and validates only the parts need names (see
// config.Need), so a command needs only the secrets it uses: `status` or
// `migrate` run from a shell without the gateway and SMTP secrets. Problems
// are a usage error (exit 2) listing every bad key, as loadConfig's are.
func (m *Main) loadConfigFor(path string, need config.Need) (*config.Config, error) {
	cfg, err := config.LoadFor(path, need)
	if err != nil {
		return nil, usageError{fmt.Errorf("config %s:\n%w", path, indentErr(err))}
	}
	return cfg, nil
}

// parseConfigFor is parseConfigOnly for a command that uses only part of the
// config: it parses a command that takes -c and no positional arguments and
// loads what need names. extra registers more flags before parsing.
func (m *Main) parseConfigFor(name string, args []string, need config.Need, extra func(*flag.FlagSet)) (*config.Config, string, error) {
	fs, path := m.newFlagSet(name)
	if extra != nil {
		extra(fs)
	}
	if rest, err := parseArgs(fs, args); err != nil {
		return nil, "", err
	} else if len(rest) > 0 {
		return nil, "", usagef("unexpected argument %q", rest[0])
	}
	p := m.configPath(*path)
	cfg, err := m.loadConfigFor(p, need)
	return cfg, p, err
}
