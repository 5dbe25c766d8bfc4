package main

import (
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
	re := regexp.MustCompile(`^  billingd ([a-z-]+(?: import)?)`)
	for _, line := range strings.Split(usage, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			names = append(names, m[1])
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
