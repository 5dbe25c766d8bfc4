package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/web"
)

// adminTokenCommands are `billingd admin-tokens add|list|revoke`: the admin
// API's named bearer tokens in admin.tokens_file, stored as SHA-256 only.
// The daemon re-reads the file when it changes, so each command applies to
// the next request without a restart.
func (m *Main) adminTokenCommands() map[string]subcommand {
	return map[string]subcommand{"add": m.cmdAdminTokenAdd, "list": m.cmdAdminTokenList, "revoke": m.cmdAdminTokenRevoke}
}

// tokensFileOf is admin.tokens_file of the config at path. The command
// needs nothing else of the config (no database, no secrets), and the file
// need not exist yet for add.
func (m *Main) tokensFileOf(name string, args []string, extra func(*flag.FlagSet)) (path string, positional []string, err error) {
	fs, cpath := m.newFlagSet(name)
	if extra != nil {
		extra(fs)
	}
	positional, err = parseArgs(fs, args)
	if err != nil {
		return "", nil, err
	}
	cfg, err := m.loadConfigFor(m.configPath(*cpath), config.NeedAdminTokens)
	if err != nil {
		return "", nil, err
	}
	if cfg.Admin.TokensFile == "" {
		return "", nil, usagef("admin.tokens_file is not set in the config: set it (for example /etc/billingd/admin-tokens.json) and run the command again")
	}
	return cfg.Admin.TokensFile, positional, nil
}

func oneName(positional []string, synopsis string) (string, error) {
	if len(positional) != 1 {
		return "", usagef("usage: %s", synopsis)
	}
	if err := web.CheckTokenName(positional[0]); err != nil {
		return "", usageError{err}
	}
	return positional[0], nil
}

func (m *Main) cmdAdminTokenAdd(_ context.Context, args []string) error {
	path, pos, err := m.tokensFileOf("admin-tokens add", args, nil)
	if err != nil {
		return err
	}
	name, err := oneName(pos, commandHelp["admin-tokens add"].synopsis)
	if err != nil {
		return err
	}
	tf, _, err := web.ReadTokensFile(path)
	if err != nil {
		return err
	}
	for _, t := range tf.Tokens {
		if t.Name == name && t.RevokedAt != nil {
			// The audit log names the token that acted: a name is never
			// reused, so an entry always means one token.
			return usagef("a token named %q was revoked in %s; a name is never given to a second token, so the audit log's actor stays unambiguous: choose another name (for example %s-2)", name, path, name)
		}
		if t.Name == name {
			return usagef("a token named %q exists already in %s (revoke it and add one under another name to rotate it)", name, path)
		}
	}
	token, err := web.MintToken()
	if err != nil {
		return err
	}
	tf.Tokens = append(tf.Tokens, web.AdminToken{Name: name, SHA256: web.HashToken(token), CreatedAt: time.Now().UTC().Truncate(time.Second)})
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	if err := web.WriteTokensFile(path, tf); err != nil {
		return fmt.Errorf("admin.tokens_file %s: %w", path, err)
	}
	fmt.Fprintln(m.Stdout, token)
	fmt.Fprintf(m.Stderr, "token %q added to %s; it is shown only this once: give it to the client as \"Authorization: Bearer <token>\"\n", name, path)
	return nil
}

// tokenRow is one token as `admin-tokens list --json` prints it.
type tokenRow struct {
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Status    string     `json:"status"` // active | revoked
}

func (m *Main) cmdAdminTokenList(_ context.Context, args []string) error {
	var out *outputFormat
	path, pos, err := m.tokensFileOf("admin-tokens list", args, func(fs *flag.FlagSet) { out = addOutputFlags(fs) })
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if err := out.check(); err != nil {
		return err
	}
	tf, _, err := web.ReadTokensFile(path)
	if err != nil {
		return err
	}
	rows := make([]tokenRow, 0, len(tf.Tokens))
	t := table{header: []string{"name", "created", "revoked", "status"}}
	for _, tok := range tf.Tokens {
		r := tokenRow{Name: tok.Name, CreatedAt: tok.CreatedAt, RevokedAt: tok.RevokedAt, Status: "active"}
		if tok.RevokedAt != nil {
			r.Status = "revoked"
		}
		rows = append(rows, r)
		created := tok.CreatedAt
		t.add(r.Name, when(&created), when(r.RevokedAt), r.Status)
	}
	return out.emit(m.Stdout, t, rows)
}

func (m *Main) cmdAdminTokenRevoke(_ context.Context, args []string) error {
	path, pos, err := m.tokensFileOf("admin-tokens revoke", args, nil)
	if err != nil {
		return err
	}
	name, err := oneName(pos, commandHelp["admin-tokens revoke"].synopsis)
	if err != nil {
		return err
	}
	tf, exists, err := web.ReadTokensFile(path)
	if err != nil {
		return err
	}
	for i := range tf.Tokens {
		if tf.Tokens[i].Name != name {
			continue
		}
		if tf.Tokens[i].RevokedAt != nil {
			fmt.Fprintf(m.Stderr, "token %q was revoked already (%s)\n", name, when(tf.Tokens[i].RevokedAt))
			return nil
		}
		now := time.Now().UTC().Truncate(time.Second)
		tf.Tokens[i].RevokedAt = &now
		if err := web.WriteTokensFile(path, tf); err != nil {
			return fmt.Errorf("admin.tokens_file %s: %w", path, err)
		}
		fmt.Fprintf(m.Stderr, "token %q revoked: its next request gets 401\n", name)
		return nil
	}
	if !exists {
		return usagef("admin.tokens_file %s does not exist: no token %q to revoke", path, name)
	}
	return usagef("no token named %q in %s (billingd admin-tokens list shows them)", name, path)
}
