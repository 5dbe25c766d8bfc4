package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestMain lets tests run billingd as a real child process (so it can be killed
// with SIGKILL): the test binary re-executes itself with BILLINGD_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("BILLINGD_TEST_MAIN") == "1" {
		// The child behaves like the real binary, signals included, so SIGTERM
		// drains and SIGKILL is the only abrupt death.
		args := strings.Split(os.Getenv("BILLINGD_TEST_ARGS"), "\x1f")
		signals := make(chan os.Signal, 4)
		signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		mm := &Main{Stdout: os.Stdout, Stderr: os.Stderr, Signals: signals, Getenv: os.Getenv}
		os.Exit(mm.Run(context.Background(), args))
	}
	os.Exit(m.Run())
}

// childProc is billingd running as a real, killable process: the test binary
// re-executed through TestMain.
type childProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // what Wait returned, valid once done is closed
}

// startChild starts `billingd args…` with its output appended to logPath and
// extraEnv added to the environment. A failpoint armed in the test's own
// environment is not inherited.
func startChild(t *testing.T, logPath string, extraEnv []string, args ...string) *childProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	t.Cleanup(func() { _ = logf.Close() })
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, failpoint.Env+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "BILLINGD_TEST_MAIN=1", "BILLINGD_TEST_ARGS="+strings.Join(args, "\x1f"))
	cmd.Env = append(cmd.Env, extraEnv...)
	require.NoError(t, cmd.Start())
	p := &childProc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	return p
}

func runMain(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}
	code := m.Run(context.Background(), args)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

const goodConfig = `
database: { driver: sqlite, dsn: %DIR%/billingd.db }
gateway:  { base_url: "http://127.0.0.1:12111", secret_key: sk_test_x, webhook_secret: whsec_x }
http:     { public_base_url: "https://billing.example.com" }
`

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		body    string
		code    int
		wantErr []string
	}{
		{"valid", goodConfig, exitOK, nil},
		{"unknown key", goodConfig + "schedule: { biling: '* * * * *' }\n", exitUsage, []string{"schedule.biling"}},
		{"bad cron", goodConfig + "schedule: { billing: '61 * * * *' }\n", exitUsage, []string{"schedule.billing"}},
		{"zero duration", goodConfig + "retry: { max_elapsed_time: 0s }\n", exitUsage, []string{"retry.max_elapsed_time"}},
		{"negative duration", goodConfig + "dunning: { link_ttl: -1h }\n", exitUsage, []string{"dunning.link_ttl"}},
		{"unknown enum", goodConfig + "dunning: { final_action: refund }\n", exitUsage, []string{"dunning.final_action", "refund"}},
		{"plain http gateway", strings.Replace(goodConfig, "http://127.0.0.1:12111", "http://api.wooshpay.com", 1), exitUsage, []string{"gateway.base_url"}},
		{"missing secret", strings.Replace(goodConfig, "secret_key: sk_test_x, ", "", 1), exitUsage, []string{"gateway.secret_key"}},
		{"several errors at once", goodConfig + "log: { level: loud, format: xml }\n", exitUsage, []string{"log.level", "log.format"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, "c.yaml", strings.ReplaceAll(tc.body, "%DIR%", dir))
			code, out, errOut := runMain(t, nil, "check-config", "-c", p)
			require.Equal(t, tc.code, code, "stdout %s stderr %s", out, errOut)
			for _, w := range tc.wantErr {
				require.Contains(t, errOut, w)
			}
			require.NotContains(t, errOut, "sk_test_x", "secrets never printed")
		})
	}
	t.Run("BILLINGD_CONFIG", func(t *testing.T) {
		p := writeFile(t, dir, "env.yaml", strings.ReplaceAll(goodConfig, "%DIR%", dir))
		code, out, _ := runMain(t, map[string]string{"BILLINGD_CONFIG": p}, "check-config")
		require.Equal(t, exitOK, code)
		require.Contains(t, out, p)
	})
	t.Run("missing file", func(t *testing.T) {
		code, _, errOut := runMain(t, nil, "check-config", "--config", filepath.Join(dir, "nope.yaml"))
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "nope.yaml")
	})
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"once", "--bogus"}, {"subscriptions"}, {"subscriptions", "import"}} {
		code, _, _ := runMain(t, nil, args...)
		require.Equal(t, exitUsage, code, "%v", args)
	}
}

func TestConfigExampleValidates(t *testing.T) {
	// The example reads its secrets from the service's systemd credentials.
	creds := t.TempDir()
	for name, v := range map[string]string{
		"wooshpay_secret_key": "sk_test_example", "wooshpay_webhook_secret": "whsec_example", "smtp_password": "example",
	} {
		writeFile(t, creds, name, v+"\n")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	code, out, errOut := runMain(t, nil, "check-config", "-c", "../../config.example.yaml")
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
}

func TestSimHelpAndBadFlags(t *testing.T) {
	code, out, _ := runMain(t, nil, "sim", "-h")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "-fault-5xx-after")
	require.Contains(t, out, "usage: billingd sim")

	code, _, errOut := runMain(t, nil, "sim", "--fault-drop", "1.5")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "--fault-drop")
}

func TestStatusScreen(t *testing.T) {
	st := storetest.SQLite(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	storetest.Seed(t, st, now.Add(-time.Hour), storetest.Subscription{Reference: "a"}, storetest.Subscription{Reference: "b"})
	var out bytes.Buffer
	require.NoError(t, printStatus(context.Background(), &out, st, now))
	for _, want := range []string{
		"subscriptions          active 2",
		"invoices               none",
		"dunning cases          none",
		"emails                 none",
		"webhook events         none",
		"due now                2 subscription(s)",
		"unresolved attempts    0",
	} {
		require.Contains(t, out.String(), want)
	}
}
