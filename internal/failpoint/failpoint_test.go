package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain lets TestFailpointHitKills run a child that reaches an armed point.
func TestMain(m *testing.M) {
	if name := os.Getenv("FAILPOINT_TEST_CHILD"); name != "" {
		Hit(name)
		os.Exit(0) // not reached when name is armed
	}
	os.Exit(m.Run())
}

func TestFailpointArm(t *testing.T) {
	defer arm("")
	arm("")
	require.False(t, enabled)
	require.Nil(t, Armed())

	arm(" charge.after_send , mail.after_send,no.such.point,,")
	require.True(t, enabled)
	require.Equal(t, []string{ChargeAfterSend, MailAfterSend}, Armed())
	require.True(t, Enabled(ChargeAfterSend))
	require.False(t, Enabled(InvoiceAfterCommit))
	Hit(InvoiceAfterCommit) // armed list does not name it: returns

	arm("no.such.point")
	require.False(t, enabled, "only unknown names arm nothing")
}

func TestFailpointNamesAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range Names() {
		require.False(t, seen[n], n)
		seen[n] = true
	}
	require.Len(t, seen, 11)
}

func TestFailpointDisarmedHitDoesNotAllocate(t *testing.T) {
	defer arm(os.Getenv(Env))
	arm("")
	require.Zero(t, testing.AllocsPerRun(1000, func() { Hit(ChargeAfterSend) }))
}

// TestFailpointHitKills runs a child process with a point armed and checks that it died
// of SIGKILL at that point, and that a child reaching a disarmed point exits
// normally.
func TestFailpointHitKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	run := func(armedList, reach string) error {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), Env+"="+armedList, "FAILPOINT_TEST_CHILD="+reach)
		return cmd.Run()
	}
	err := run(MailAfterSend, MailAfterSend)
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "child must die: %v", err)
	ws, ok := exit.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.True(t, ws.Signaled(), "killed by a signal, not exited: %v", err)
	require.Equal(t, syscall.SIGKILL, ws.Signal())

	require.NoError(t, run(MailAfterSend, ChargeAfterSend), "a point not armed does nothing")
}

// BenchmarkHitDisarmed measures the cost of a point on the production path.
func BenchmarkHitDisarmed(b *testing.B) {
	defer arm(os.Getenv(Env))
	arm("")
	b.ReportAllocs()
	for b.Loop() {
		Hit(ChargeAfterSend)
	}
}

// BenchmarkHitArmedElsewhere measures a point that is not armed while another
// one is (a crash test's process).
func BenchmarkHitArmedElsewhere(b *testing.B) {
	defer arm(os.Getenv(Env))
	arm(MailAfterSend)
	b.ReportAllocs()
	for b.Loop() {
		Hit(ChargeAfterSend)
	}
}

func TestErrorPointsFailTheirCountThenPass(t *testing.T) {
	defer arm(os.Getenv(Env))
	arm("")
	require.NoError(t, Err(StoreMarkEmailSent), "disarmed")

	arm("store.mark_email_sent=2, store.no_such=1, store.mark_email_sent=x")
	require.False(t, enabled, "error points kill nothing")
	require.Equal(t, 2, Remaining(StoreMarkEmailSent))
	for i := 0; i < 2; i++ {
		require.ErrorIs(t, Err(StoreMarkEmailSent), ErrInjected)
	}
	require.NoError(t, Err(StoreMarkEmailSent), "the count is used up")
	require.Zero(t, Remaining(StoreMarkEmailSent))

	disarm := FailTimes(StoreMarkEmailSent, 1)
	require.ErrorIs(t, Err(StoreMarkEmailSent), ErrInjected)
	require.NoError(t, Err(StoreMarkEmailSent))
	FailTimes(StoreMarkEmailSent, 5)
	disarm()
	require.NoError(t, Err(StoreMarkEmailSent), "disarmed")
	require.NoError(t, Err("no.such.point"))
}

func TestFailpointArmStop(t *testing.T) {
	defer arm(os.Getenv(Env))
	arm("charge.before_send=stop,mail.after_send,no.such.point=stop")
	require.Equal(t, []string{MailAfterSend, ChargeBeforeSend}, Armed())
	require.True(t, stops[ChargeBeforeSend])
	require.False(t, stops[MailAfterSend], "a plain name still kills")
	stopped.Store(ChargeBeforeSend, true)
	Hit(ChargeBeforeSend) // stopped once already: passes
}
