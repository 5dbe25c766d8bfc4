package sim

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTestCardsAreWhatTheSimulatorApplies(t *testing.T) {
	want := map[string]outcome{
		OutcomeSucceeded:      outcomeSucceed,
		OutcomeRequiresAction: outcomeChallenge,
		OutcomeProcessing:     outcomeProcessing,
		OutcomeDeclined:       outcomeDecline,
	}
	seen := map[string]bool{}
	for _, c := range TestCards {
		t.Run(c.Number, func(t *testing.T) {
			require.False(t, seen[c.Number], "listed once")
			seen[c.Number] = true
			require.True(t, luhnValid(c.Number))
			r := ruleFor(c.Number)
			require.Equal(t, want[c.Outcome], r.outcome, "outcome %q", c.Outcome)
			if c.Outcome == OutcomeDeclined {
				require.NotNil(t, r.decline)
				require.Equal(t, c.DeclineCode, r.decline.DeclineCode)
			} else {
				require.Nil(t, r.decline)
				require.Empty(t, c.DeclineCode)
				require.False(t, c.Hard)
			}
		})
	}
	require.Len(t, testCards, len(TestCards))
}

func TestTestCardTableInHelp(t *testing.T) {
	_, err := ParseFlags([]string{"-h"})
	require.Error(t, err)
	help := err.Error()
	require.Contains(t, help, "example:\n  billingd sim --listen")
	for _, c := range TestCards {
		require.Regexp(t, regexp.MustCompile(`(?m)^  `+c.Number+` +`+regexp.QuoteMeta(c.Describe())+`$`), help)
	}
	require.Contains(t, help, "declined: expired_card (hard)")
	require.Contains(t, help, "declined: insufficient_funds (soft)")
}

// TestTestCardsInDocs keeps docs/simulator.md's table equal to TestCards.
func TestTestCardsInDocs(t *testing.T) {
	data, err := os.ReadFile("../../../docs/simulator.md")
	require.NoError(t, err)
	rows := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		m := regexp.MustCompile("^\\| `(\\d{16})` \\| (.+) \\|$").FindStringSubmatch(line)
		if m != nil {
			rows[m[1]] = m[2]
		}
	}
	require.Len(t, rows, len(TestCards), "one docs row per test card")
	for _, c := range TestCards {
		require.Equal(t, c.Describe(), rows[c.Number], c.Number)
	}
}
