package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestInstanceNameTellsRestartsWithTheSamePidApart(t *testing.T) {
	host := func() (string, error) { return "node-a", nil }
	first := instanceNameOf(host, 1, time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	again := instanceNameOf(host, 1, time.Date(2026, 11, 23, 9, 0, 7, 0, time.UTC))
	require.Equal(t, "node-a:1:20261123T090000Z", first)
	require.NotEqual(t, first, again, "a restart with the same pid is another owner")
	noHost := instanceNameOf(func() (string, error) { return "", errors.New("no hostname") }, 42, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	require.Equal(t, "billingd:42:20260102T030405Z", noHost)
}
