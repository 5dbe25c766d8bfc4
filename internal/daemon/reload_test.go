package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// reload applies fn to a copy of the running config and reloads it.
func reload(t *testing.T, b *daemontest.Bundle, fn func(*config.Config)) daemon.ReloadResult {
	t.Helper()
	cfg := b.D.Config().Clone()
	fn(cfg)
	require.NoError(t, cfg.Validate())
	res, err := b.D.Reload(cfg)
	require.NoError(t, err)
	return res
}

func TestNeedsRestartNamesEachKeyThatCannotChangeUnderARunningProcess(t *testing.T) {
	for key, want := range map[string]bool{
		"database.dsn": true, "database.busy_timeout": true, "gateway.base_url": true, "gateway.secret_key": true,
		"gateway.timeout": true, "gateway.provider": true, "http.listen": true,
		"gateway.rate_limit": false, "gateway.concurrency": false, "gateway.webhook_secret": false,
		"gateway.webhook_tolerance": false, "dunning.retry_schedule": false, "dunning.final_action": false,
		"dunning.wake_every": false, "mail.host": false, "reconcile.after": false, "schedule.billing": false,
		"schedule.timezone": false, "log.level": false, "log.format": false, "retry.max_elapsed_time": false,
		"http.public_base_url": false,
	} {
		require.Equal(t, want, daemon.NeedsRestart(key), key)
	}
}

func TestReloadAppliesAtOnceOrNamesTheRestart(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{})
	res := reload(t, b, func(c *config.Config) {
		c.Gateway.RateLimit = 7
		c.Gateway.Concurrency = 3
		c.Retry.MaxElapsedTime = config.Duration(time.Minute)
		c.Log.Level = "warn"
		c.Database.BusyTimeout = config.Duration(9 * time.Second)
		c.Gateway.Timeout = config.Duration(11 * time.Second)
	})
	require.Equal(t, []string{"gateway.concurrency", "gateway.rate_limit", "log.level", "retry.max_elapsed_time"}, res.Applied)
	require.Equal(t, []string{"database.busy_timeout", "gateway.timeout"}, res.NeedRestart)
	s := b.D.Settings()
	require.Equal(t, 7.0, s.RateLimit)
	require.Equal(t, 3, s.Concurrency)
	require.Equal(t, time.Minute, s.Retry.MaxElapsedTime)
	require.Equal(t, zerolog.WarnLevel, zerolog.GlobalLevel())
	zerolog.SetGlobalLevel(zerolog.InfoLevel)
	// What needs a restart keeps its running value.
	require.Equal(t, 5*time.Second, b.D.Config().Database.BusyTimeout.D())
	require.Equal(t, 5*time.Second, b.D.Config().Gateway.Timeout.D())
}

func TestReloadedScheduleMovesTheNextRuns(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{})
	b.D.Tick(context.Background()) // the startup runs: everything is scheduled from now
	now := b.Clock.Now()
	reload(t, b, func(c *config.Config) {
		c.Schedule.Billing = "0 3 * * *"
		c.Schedule.Timezone = "Asia/Tokyo"
		c.Dunning.WakeEvery = config.Duration(10 * time.Minute)
		c.Reconcile.Every = config.Duration(20 * time.Minute)
	})
	next := b.D.Settings().NextRuns
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	require.NoError(t, err)
	// 09:00 UTC is 18:00 in Tokyo: the next 03:00 there is 18:00 UTC.
	require.Equal(t, time.Date(2026, 3, 3, 3, 0, 0, 0, tokyo).UTC(), next["billing"].UTC())
	require.Equal(t, now.Add(10*time.Minute), next["dunning"])
	require.Equal(t, now.Add(20*time.Minute), next["reconcile"])
}

func TestReloadedDunningScheduleAppliesFromAnOpenCasesNextStep(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{})
	cus, pm := b.SaveCard(t, "4000000000009995") // insufficient funds, every time
	b.Seed(t, storetest.Subscription{Reference: "soft", Customer: cus, PaymentMethod: pm, Interval: "month"})
	b.Run(t, 0, 0)
	inv := onlyInvoice(t, b)
	require.Equal(t, b.Clock.Now().Add(24*time.Hour), inv.NextAttemptAt.UTC(), "the running schedule's first step")

	reload(t, b, func(c *config.Config) {
		c.Dunning.RetrySchedule = []config.Duration{config.Duration(24 * time.Hour), config.Duration(2 * time.Hour), config.Duration(2 * time.Hour)}
	})
	b.Run(t, 24*time.Hour, time.Hour) // the first retry, declined again
	inv = onlyInvoice(t, b)
	require.Equal(t, b.Clock.Now().Add(2*time.Hour), inv.NextAttemptAt.UTC(), "the next step follows the new schedule")
}

func TestReloadedMailServerTakesTheNextEmail(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{})
	second, err := smtpcapture.Start("127.0.0.1:0", "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = second.Close() })
	res := reload(t, b, func(c *config.Config) { c.Mail.Port = second.Port() })
	require.Equal(t, []string{"mail.port"}, res.Applied)

	cus, pm := b.SaveCard(t, "4000000000009987") // lost card: a card-update email
	b.Seed(t, storetest.Subscription{Reference: "lost", Customer: cus, PaymentMethod: pm})
	b.Run(t, 0, 0)
	require.Equal(t, 0, b.SMTP.Count())
	require.Equal(t, 1, second.Count())
}

func TestReloadedWebhookSecretVerifiesTheNextDelivery(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{})
	body := []byte(`{"id":"evt_reload_1","object":"event","created":1767225600,"type":"payment_intent.succeeded","data":{"object":{"id":"pi_unknown","object":"payment_intent","status":"succeeded","amount":100,"currency":"usd","metadata":{}}}}`)
	post := func(secret string) int {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/wooshpay", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Wooshpay-Signature", wooshpay.Sign(secret, b.Clock.Now().Unix(), body))
		rec := httptest.NewRecorder()
		b.D.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	require.Equal(t, http.StatusUnauthorized, post("whsec_new"))
	res := reload(t, b, func(c *config.Config) { c.Gateway.WebhookSecret = config.Secret("whsec_new") })
	require.Equal(t, []string{"gateway.webhook_secret"}, res.Applied)
	require.Equal(t, http.StatusOK, post("whsec_new"))
	require.Equal(t, http.StatusUnauthorized, post(daemontest.WebhookSecret))
}

func TestABadReloadChangesNothing(t *testing.T) {
	b := daemontest.New(t, daemontest.Options{})
	before := b.D.Config()
	cfg := before.Clone()
	cfg.Mail.TemplatesDir = "/nonexistent/billingd-templates"
	cfg.Gateway.RateLimit = 3
	_, err := b.D.Reload(cfg)
	require.ErrorContains(t, err, "mail.templates_dir")
	require.Same(t, before, b.D.Config())
	require.Equal(t, b.Config.Gateway.RateLimit, b.D.Settings().RateLimit)
}

func onlyInvoice(t *testing.T, b *daemontest.Bundle) models.Invoice {
	t.Helper()
	var invs []models.Invoice
	require.NoError(t, b.Store.DB().Find(&invs).Error)
	require.Len(t, invs, 1, fmt.Sprint(invs))
	require.NotNil(t, invs[0].NextAttemptAt)
	return invs[0]
}

// The config's final actions are the ones the dunning policy knows: a value
// check-config accepts is one the daemon applies.
func TestConfigFinalActionsAreTheModels(t *testing.T) {
	var want []string
	for _, a := range models.FinalActions {
		want = append(want, string(a))
	}
	require.Equal(t, want, []string{config.FinalActionCancel, config.FinalActionUnpaid, config.FinalActionPastDue})
}
