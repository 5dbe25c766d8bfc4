package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/stretchr/testify/require"
)

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunServesHealthMetricsAndGuardsWebhooks starts the daemon in-process and
// talks to it over HTTP the way systemd, Prometheus and the gateway do.
func TestRunServesHealthMetricsAndGuardsWebhooks(t *testing.T) {
	dir := t.TempDir()
	listen := freePort(t)
	cfg := writeFile(t, dir, "config.yaml", fmt.Sprintf(`
database: { dsn: %s }
gateway:  { base_url: "http://127.0.0.1:1", secret_key: sk_test_run, webhook_secret: whsec_run, timeout: 1s }
retry:    { initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 50ms }
schedule: { billing: "@every 1h" }
http:     { listen: %q, public_base_url: "https://billing.example.com" }
`, filepath.Join(dir, "billingd.db"), listen))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	out := &daemontest.LogBuffer{}
	go func() {
		m := &Main{Stdout: out, Stderr: out, Getenv: func(string) string { return "" }}
		done <- m.Run(ctx, []string{"run", "-c", cfg})
	}()
	base := "http://" + listen
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "daemon did not come up: %s", out.String())

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/readyz")
	require.Equal(t, 200, code, body)
	require.Contains(t, body, `"migrations":"ok"`)

	post := func(body []byte, sig string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/wooshpay", bytes.NewReader(body))
		if sig != "" {
			req.Header.Set(wooshpay.SignatureHeader, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	event := []byte(`{"id":"evt_run_1","object":"event","created":1767225600000,"type":"payment_intent.succeeded",
		"data":{"object":{"id":"pi_foreign","object":"payment_intent","status":"succeeded","amount":100,"currency":"USD"}}}`)
	now := time.Now().Unix()
	require.Equal(t, 400, post(event, ""), "no signature")
	require.Equal(t, 401, post(event, wooshpay.Sign("whsec_forged", now, event)), "forged")
	require.Equal(t, 401, post(event, wooshpay.Sign("whsec_run", now-3600, event)), "replayed an hour later")
	big := append([]byte(`{"id":"evt_big","pad":"`), bytes.Repeat([]byte("x"), 2<<20)...)
	require.Equal(t, 413, post(big, wooshpay.Sign("whsec_run", now, big)), "oversized")
	require.Equal(t, 200, post(event, wooshpay.Sign("whsec_run", now*1000, event)), "valid, t in milliseconds")
	require.Equal(t, 200, post(event, wooshpay.Sign("whsec_run", now, event)), "duplicate")

	code, body = get("/metrics")
	require.Equal(t, 200, code)
	for _, want := range []string{
		`billingd_webhook_events_total{result="rejected",type="unknown"} 4`,
		`billingd_webhook_events_total{result="ignored",type="payment_intent.succeeded"} 1`,
		`billingd_webhook_events_total{result="duplicate",type="payment_intent.succeeded"} 1`,
		"billingd_unresolved_attempts 0",
		"billingd_charge_attempt_duration_seconds_bucket",
	} {
		require.True(t, strings.Contains(body, want), "metrics lack %q", want)
	}

	cancel()
	select {
	case code := <-done:
		require.Equal(t, exitOK, code, out.String())
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not stop")
	}
}
