package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// subcommandsInUsage lists the commands the top-level usage text offers, so a
// command added there without a -h header fails TestEverySubcommandHelp.
func subcommandsInUsage(t *testing.T) []string {
	t.Helper()
	var names []string
	// "billingd invoices list|show|retry" offers three commands.
	re := regexp.MustCompile(`^  billingd ([a-z-]+)(?: ([a-z|-]+))?`)
	for _, line := range strings.Split(usage, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[2] == "" {
			names = append(names, m[1])
			continue
		}
		for _, sub := range strings.Split(m[2], "|") {
			names = append(names, m[1]+" "+sub)
		}
	}
	require.GreaterOrEqual(t, len(names), 9, "usage lists the commands")
	return names
}

func TestEverySubcommandHelp(t *testing.T) {
	for _, name := range subcommandsInUsage(t) {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runMain(t, nil, append(strings.Fields(name), "-h")...)
			require.Equal(t, exitOK, code)
			help := out + errOut
			if name == "sim" {
				require.Contains(t, help, "billingd sim — ")
				require.Regexp(t, `(?m)^example:\n  billingd sim --`, help)
				return
			}
			h, ok := commandHelp[name]
			require.True(t, ok, "commandHelp has %q", name)
			require.NotEmpty(t, h.purpose)
			require.NotContains(t, h.purpose, "\n", "the purpose is one line")
			require.True(t, strings.HasPrefix(help, "billingd "+name+" — "+h.purpose+"\n"), "purpose first:\n%s", help)
			require.Regexp(t, `(?m)^Example:\n  (\S+=\S+ )?billingd `+regexp.QuoteMeta(name)+`\b`, help)
			require.Contains(t, help, "\nUsage:\n  billingd "+name)
			require.Contains(t, help, "\nFlags:\n")
		})
	}
}

func TestHelpShowsFlags(t *testing.T) {
	_, _, errOut := runMain(t, nil, "once", "-h")
	require.Contains(t, errOut, "-dry-run")
	require.Contains(t, errOut, "-c file")
	_, _, errOut = runMain(t, nil, "subscriptions", "import", "-h")
	require.Contains(t, errOut, "-backfill")
}

// The demo and the simulator say how to run them on each provider.
func TestHelpNamesProviders(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"demo", "-h"}, []string{"billingd demo [--provider wooshpay|checkout]", "-provider string", "wooshpay or checkout"}},
		{[]string{"sim", "-h"}, []string{"billingd sim --provider checkout ", "/webhooks/checkout", "gateway.provider: checkout", "/webhooks/wooshpay"}},
		{[]string{"-h"}, []string{"--provider checkout"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runMain(t, nil, tc.args...)
			require.Equal(t, exitOK, code)
			for _, w := range tc.want {
				require.Contains(t, out+errOut, w)
			}
		})
	}
}

// An unknown provider is a usage error that names the flag and starts nothing.
func TestDemoRefusesUnknownProvider(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	code, _, errOut := runMain(t, nil, "demo", "--provider", "stripe", "--dir", dir)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, `--provider must be wooshpay or checkout, got "stripe"`)
	require.NoDirExists(t, dir)
}
