package loadtest

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseProcStat(t *testing.T) {
	// A command name with a space and a parenthesis, as the kernel writes it.
	line := "4242 (post gres) x) S 2217 4242 4242 0 -1 4194304 8046 0 0 0 250 37 12 3 20 0 1 0 3597 222543872 7613\n"
	st, err := parseProcStat(4242, line)
	require.NoError(t, err)
	require.Equal(t, ProcStat{PID: 4242, PPID: 2217, Comm: "post gres) x", CPU: 2870 * time.Millisecond, ChildrenCPU: 150 * time.Millisecond}, st)

	_, err = parseProcStat(1, "1 (init S 0")
	require.Error(t, err)
}

func TestReadProcStatOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	st, err := ReadProcStat(os.Getpid())
	require.NoError(t, err)
	require.Equal(t, os.Getppid(), st.PPID)
	total, err := TreeCPU(os.Getpid())
	require.NoError(t, err)
	require.GreaterOrEqual(t, total, st.CPU)
	rss, err := PeakRSSOf(os.Getpid())
	require.NoError(t, err)
	require.Greater(t, rss, int64(0))
}

func TestParsePgbenchTPS(t *testing.T) {
	for _, tc := range []struct {
		name, report string
		want         float64
		ok           bool
	}{
		{"PostgreSQL 14 and later", "number of failed transactions: 0 (0.000%)\nlatency average = 4.484 ms\ninitial connection time = 21.370 ms\ntps = 3568.421842 (without initial connection time)\n", 3568.421842, true},
		{"PostgreSQL 13", "tps = 1200.5 (including connections establishing)\ntps = 1210.25 (excluding connections establishing)\n", 1210.25, true},
		{"no figure", "pgbench: error: connection to server failed\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePgbenchTPS(tc.report)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
