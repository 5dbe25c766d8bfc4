package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/billingd/billingd/internal/web"
	"github.com/stretchr/testify/require"
)

func TestAdminTokensCommands(t *testing.T) {
	dir := t.TempDir()
	// A relative tokens_file is read beside the config file.
	p := writeFile(t, dir, "c.yaml", strings.ReplaceAll(goodConfig, "%DIR%", dir)+"admin: { tokens_file: secrets/admin-tokens.json }\n")
	file := filepath.Join(dir, "secrets", "admin-tokens.json")

	code, out, errOut := runMain(t, nil, "admin-tokens", "add", "signup-app", "-c", p)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
	token := strings.TrimSpace(out)
	require.True(t, strings.HasPrefix(token, web.TokenPrefix), token)
	require.GreaterOrEqual(t, (len(token)-len(web.TokenPrefix))*5, 128, "at least 128 random bits")
	require.Contains(t, errOut, "shown only this once")

	fi, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NotContains(t, string(raw), token, "only the token's hash is stored")
	require.Contains(t, string(raw), web.HashToken(token))

	code, _, _ = runMain(t, nil, "admin-tokens", "add", "backoffice", "-c", p)
	require.Equal(t, exitOK, code)
	code, _, errOut = runMain(t, nil, "admin-tokens", "add", "signup-app", "-c", p)
	require.Equal(t, exitUsage, code, "a name is used once")
	require.Contains(t, errOut, "exists already")
	code, _, _ = runMain(t, nil, "admin-tokens", "add", "bad name", "-c", p)
	require.Equal(t, exitUsage, code)
	code, _, _ = runMain(t, nil, "admin-tokens", "add", "-c", p)
	require.Equal(t, exitUsage, code)

	code, out, errOut = runMain(t, nil, "admin-tokens", "revoke", "backoffice", "-c", p)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
	code, _, errOut = runMain(t, nil, "admin-tokens", "revoke", "nobody", "-c", p)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "nobody")

	code, out, _ = runMain(t, nil, "admin-tokens", "list", "-c", p)
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "signup-app")
	require.Contains(t, out, "revoked")
	require.NotContains(t, out, web.HashToken(token), "list never shows hashes")

	code, out, _ = runMain(t, nil, "admin-tokens", "list", "--json", "-c", p)
	require.Equal(t, exitOK, code)
	var rows []tokenRow
	require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	require.Len(t, rows, 2)
	require.Equal(t, "active", rows[0].Status)
	require.Equal(t, "revoked", rows[1].Status)
	require.NotNil(t, rows[1].RevokedAt)

	code, out, _ = runMain(t, nil, "admin-tokens", "list", "--csv", "-c", p)
	require.Equal(t, exitOK, code)
	require.True(t, strings.HasPrefix(out, "name,created,revoked,status\n"), out)

	t.Run("tokens_file may come from the environment, as a credentials path", func(t *testing.T) {
		t.Setenv("BILLINGD_TEST_ADMIN_DIR", filepath.Join(dir, "creds"))
		q := writeFile(t, dir, "env.yaml", strings.ReplaceAll(goodConfig, "%DIR%", dir)+"admin: { tokens_file: \"${BILLINGD_TEST_ADMIN_DIR}/tokens.json\" }\n")
		code, out, errOut := runMain(t, nil, "admin-tokens", "add", "env-app", "-c", q)
		require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
		_, err := os.Stat(filepath.Join(dir, "creds", "tokens.json"))
		require.NoError(t, err)
	})
	t.Run("without admin.tokens_file the command says which key to set", func(t *testing.T) {
		q := writeFile(t, dir, "bare.yaml", strings.ReplaceAll(goodConfig, "%DIR%", dir))
		code, _, errOut := runMain(t, nil, "admin-tokens", "list", "-c", q)
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "admin.tokens_file")
	})
}

func TestCheckConfigAdmin(t *testing.T) {
	dir := t.TempDir()
	tokens := writeFile(t, dir, "tokens.json", `{"tokens":[]}`)
	cert := writeFile(t, dir, "admin.crt", "cert")
	key := writeFile(t, dir, "admin.key", "key")
	for _, tc := range []struct {
		name    string
		admin   string
		code    int
		wantErr []string
	}{
		{"off by default", "", exitOK, nil},
		{"loopback without TLS", "admin: { listen: '127.0.0.1:8443', tokens_file: " + tokens + " }", exitOK, nil},
		{"non-loopback without TLS is refused", "admin: { listen: '0.0.0.0:8443', tokens_file: " + tokens + " }", exitUsage, []string{"admin.listen", "tls_cert_file"}},
		{"all interfaces without TLS is refused", "admin: { listen: ':8443', tokens_file: " + tokens + " }", exitUsage, []string{"admin.listen"}},
		{"non-loopback with TLS", "admin: { listen: '0.0.0.0:8443', tokens_file: " + tokens + ", tls_cert_file: " + cert + ", tls_key_file: " + key + " }", exitOK, nil},
		{"tokens_file required", "admin: { listen: '127.0.0.1:8443' }", exitUsage, []string{"admin.tokens_file"}},
		{"tokens_file must exist", "admin: { listen: '127.0.0.1:8443', tokens_file: " + filepath.Join(dir, "nope.json") + " }", exitUsage, []string{"admin.tokens_file", "nope.json"}},
		{"key without certificate", "admin: { listen: '127.0.0.1:8443', tokens_file: " + tokens + ", tls_key_file: " + key + " }", exitUsage, []string{"admin.tls_cert_file"}},
		{"certificate must exist", "admin: { listen: '127.0.0.1:8443', tokens_file: " + tokens + ", tls_cert_file: /nonexistent.crt, tls_key_file: " + key + " }", exitUsage, []string{"admin.tls_cert_file"}},
		{"bad listen", "admin: { listen: 'localhost', tokens_file: " + tokens + " }", exitUsage, []string{"admin.listen"}},
		{"bad rate limit", "admin: { rate_limit: 0 }", exitUsage, []string{"admin.rate_limit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, "c.yaml", strings.ReplaceAll(goodConfig, "%DIR%", dir)+tc.admin+"\n")
			code, out, errOut := runMain(t, nil, "check-config", "-c", p)
			require.Equal(t, tc.code, code, "stdout %s stderr %s", out, errOut)
			for _, w := range tc.wantErr {
				require.Contains(t, errOut, w)
			}
		})
	}
}
