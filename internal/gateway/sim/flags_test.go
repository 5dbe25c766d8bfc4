package sim

import (
	"context"
	"errors"
	"flag"
	"math"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseFlagsDefaults(t *testing.T) {
	cfg, err := ParseFlags(nil)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:12111", cfg.Listen)
	o := cfg.Options
	require.Empty(t, o.SecretKey)
	require.NotZero(t, o.Seed, "seed from the clock when not given")
	require.Equal(t, 2*time.Second, o.ProcessingDelay)
	require.Zero(t, o.Latency, "answers at once")
	require.Zero(t, o.RateLimit, "unlimited")
	require.Zero(t, o.RateBurst, "New derives it from the limit")
	require.Equal(t, Faults{RetryAfter: time.Second, SlowDelay: 5 * time.Second}, o.Faults)
	require.Empty(t, o.Webhook.URL)
	require.Nil(t, o.Webhook.Retry, "nil: New applies the default schedule")
	require.Equal(t, Delivery{MaxCopies: 3}, o.Webhook.Delivery, "webhooks delivered once, promptly, correctly signed")
}

func TestParseFlagsAll(t *testing.T) {
	cfg, err := ParseFlags([]string{
		"--listen", "0.0.0.0:9999", "--secret-key", "sk_test_x", "--seed", "0",
		"--fault-5xx-before", "0.1", "--fault-5xx-after", "0.2", "--fault-429", "0.3", "--retry-after", "3s",
		"--fault-slow", "0.4", "--slow-delay", "250ms", "--fault-drop", "0.4",
		"--processing-delay", "1m", "--public-url", "https://sim.example",
		"--latency", "50ms", "--rate-limit", "100.5", "--rate-burst", "20",
		"--webhook-url", "http://127.0.0.1:8080/webhooks/wooshpay", "--webhook-secret", "whsec",
		"--webhook-ms", "--webhook-timeout", "3s", "--webhook-retry", "10ms, 1s",
		"--webhook-duplicates", "0.2", "--webhook-max-copies", "5", "--webhook-delay", "5ms",
		"--webhook-max-delay", "2s", "--webhook-bad-signature", "0.3", "--webhook-stale", "0.4",
		"--webhook-lose", "1",
	})
	require.NoError(t, err)
	require.Equal(t, Config{
		Listen: "0.0.0.0:9999",
		Options: Options{
			SecretKey: "sk_test_x", Seed: 0, ProcessingDelay: time.Minute, PublicURL: "https://sim.example",
			Latency: 50 * time.Millisecond, RateLimit: 100.5, RateBurst: 20,
			Faults: Faults{
				Error5xxBefore: 0.1, Error5xxAfter: 0.2, RateLimit: 0.3, RetryAfter: 3 * time.Second,
				Slow: 0.4, SlowDelay: 250 * time.Millisecond, Drop: 0.4,
			},
			Webhook: WebhookOptions{
				URL: "http://127.0.0.1:8080/webhooks/wooshpay", Secret: "whsec", TimestampMillis: true,
				Timeout: 3 * time.Second, Retry: []time.Duration{10 * time.Millisecond, time.Second},
				Delivery: Delivery{
					Duplicates: 0.2, MaxCopies: 5, Delay: 5 * time.Millisecond, MaxDelay: 2 * time.Second,
					BadSignature: 0.3, StaleTimestamp: 0.4, Lose: 1,
				},
			},
		},
	}, cfg)

	cfg, err = ParseFlags([]string{"--webhook-retry", "none"})
	require.NoError(t, err)
	require.NotNil(t, cfg.Options.Webhook.Retry)
	require.Empty(t, cfg.Options.Webhook.Retry)
}

func TestParseFlagsErrorsNameTheFlag(t *testing.T) {
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{"--fault-5xx-before", "1.1"}, "--fault-5xx-before"},
		{[]string{"--fault-5xx-after", "-0.1"}, "--fault-5xx-after"},
		{[]string{"--fault-429", "2"}, "--fault-429"},
		{[]string{"--fault-slow", "1.5"}, "--fault-slow"},
		{[]string{"--fault-drop", "NaN"}, "--fault-drop"},
		{[]string{"--fault-5xx-before", "0.5", "--fault-drop", "0.6"}, "--fault-5xx-before + --fault-5xx-after + --fault-429 + --fault-drop"},
		{[]string{"--fault-slow", "0.5", "--slow-delay", "0s"}, "--slow-delay"},
		{[]string{"--slow-delay", "-1s"}, "--slow-delay"},
		{[]string{"--retry-after", "0s"}, "--retry-after"},
		{[]string{"--processing-delay", "0s"}, "--processing-delay"},
		{[]string{"--listen", "nope"}, "--listen"},
		{[]string{"--webhook-url", "ftp://x"}, "--webhook-url"},
		{[]string{"--webhook-url", "http://127.0.0.1:1/h"}, "--webhook-secret"},
		{[]string{"--webhook-timeout", "0s"}, "--webhook-timeout"},
		{[]string{"--webhook-retry", "1s,soon"}, "--webhook-retry"},
		{[]string{"--public-url", "sim.example"}, "--public-url"},
		{[]string{"--webhook-duplicates", "1.01"}, "--webhook-duplicates"},
		{[]string{"--webhook-max-copies", "1"}, "--webhook-max-copies"},
		{[]string{"--webhook-max-copies", "101"}, "--webhook-max-copies"},
		{[]string{"--webhook-delay", "-1ms"}, "--webhook-delay"},
		{[]string{"--webhook-max-delay", "-1s"}, "--webhook-max-delay"},
		{[]string{"--webhook-bad-signature", "-0.5"}, "--webhook-bad-signature"},
		{[]string{"--webhook-stale", "NaN"}, "--webhook-stale"},
		{[]string{"--webhook-lose", "3"}, "--webhook-lose"},
		{[]string{"--latency", "-1ms"}, "--latency"},
		{[]string{"--latency", "soon"}, "latency"},
		{[]string{"--rate-limit", "-1"}, "--rate-limit"},
		{[]string{"--rate-limit", "NaN"}, "--rate-limit"},
		{[]string{"--rate-limit", "+Inf"}, "--rate-limit"},
		{[]string{"--rate-burst", "-1"}, "--rate-burst"},
		{[]string{"--rate-limit", "10", "--rate-burst", "-5"}, "--rate-burst"},
		{[]string{"--fault-429", "lots"}, "fault-429"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"extra"}, "extra"},
	}
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			_, err := ParseFlags(tc.args)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.flag)
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	_, err := ParseFlags([]string{"-h"})
	require.True(t, errors.Is(err, flag.ErrHelp))
	require.Contains(t, err.Error(), "-webhook-url")
	for _, name := range []string{"-latency", "-rate-limit", "-rate-burst"} {
		require.Contains(t, err.Error(), name)
	}
}

func TestFaultsValidate(t *testing.T) {
	require.NoError(t, Faults{}.Validate())
	require.NoError(t, Faults{Error5xxBefore: 0.25, Error5xxAfter: 0.25, RateLimit: 0.25, Drop: 0.25, Slow: 1, SlowDelay: time.Second}.Validate())
	var fe *FaultError
	err := Faults{Drop: 2}.Validate()
	require.ErrorAs(t, err, &fe)
	require.Equal(t, FieldDrop, fe.Field)
}

func TestOptionsValidate(t *testing.T) {
	require.NoError(t, Options{}.Validate())
	require.NoError(t, Options{Latency: 50 * time.Millisecond, RateLimit: 0.5, RateBurst: 3}.Validate())
	tests := []struct {
		name  string
		opts  Options
		field FaultField
	}{
		{"latency", Options{Latency: -time.Millisecond}, FieldLatency},
		{"rate limit", Options{RateLimit: -1}, FieldRequestRateLimit},
		{"rate limit NaN", Options{RateLimit: math.NaN()}, FieldRequestRateLimit},
		{"rate limit Inf", Options{RateLimit: math.Inf(1)}, FieldRequestRateLimit},
		{"rate burst", Options{RateLimit: 1, RateBurst: -1}, FieldRequestRateBurst},
		{"faults", Options{Faults: Faults{Drop: 2}}, FieldDrop},
		{"delivery", Options{Webhook: WebhookOptions{Delivery: Delivery{Lose: -1}}}, FieldWebhookLose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fe *FaultError
			require.ErrorAs(t, tc.opts.Validate(), &fe)
			require.Equal(t, tc.field, fe.Field)
		})
	}
}

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := New(Options{SecretKey: testKey})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	res, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
