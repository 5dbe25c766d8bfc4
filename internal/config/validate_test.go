package config

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBaseDocIsValid(t *testing.T) {
	cfg, err := opts(nil).ParseAndValidate(docWith(t, nil), "")
	require.NoError(t, err)
	require.True(t, cfg.Mail.Enabled())
}

// TestBadConfigs checks that each broken configuration is rejected with
// exactly one problem, on exactly the key at fault, and that no error text
// ever carries a secret.
func TestBadConfigs(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notADir, nil, 0o600))

	type tc struct {
		name string
		set  map[string]any
		key  string
		msg  string // substring of the error, optional
	}
	tests := []tc{
		{"unknown top-level key", map[string]any{"gatway.timeout": "1s"}, "gatway", "unknown key"},
		{"unknown nested key", map[string]any{"gateway.timout": "30s"}, "gateway.timout", `did you mean "timeout"`},
		{"unknown key in mail", map[string]any{"mail.tsl": "none"}, "mail.tsl", "unknown key"},
		{"bad cron spec", map[string]any{"schedule.billing": "61 * * * *"}, "schedule.billing", "invalid cron spec: end of range (61) above maximum (59)"},
		{"cron with too many fields", map[string]any{"schedule.billing": "0 */5 * * * *"}, "schedule.billing", "invalid cron spec: expected exactly 5 fields"},
		{"cron with bad descriptor", map[string]any{"schedule.billing": "@fortnightly"}, "schedule.billing", "invalid cron spec"},
		{"cron with time zone", map[string]any{"schedule.billing": "TZ=UTC"}, "schedule.billing", "set schedule.timezone"},
		{"empty cron", map[string]any{"schedule.billing": ""}, "schedule.billing", "is required"},
		{"bare number as duration", map[string]any{"gateway.timeout": 30}, "gateway.timeout", "must be a duration"},
		{"bad duration string", map[string]any{"gateway.timeout": "banana"}, "gateway.timeout", `got "banana"`},
		{"unknown driver", map[string]any{"database.driver": "mysql"}, "database.driver", "must be one of sqlite, postgres"},
		{"unknown synchronous", map[string]any{"database.synchronous": "off"}, "database.synchronous", "must be one of full, normal"},
		{"pgbouncer on sqlite", map[string]any{"database.pgbouncer": true}, "database.pgbouncer", "applies only to database.driver postgres"},
		{"pgbouncer as yes", map[string]any{"database.driver": "postgres", "database.dsn": "postgres://db/billingd", "database.pgbouncer": "yes"}, "database.pgbouncer", "must be true or false"},
		{"pgbouncer with prepared statements", map[string]any{"database.driver": "postgres", "database.dsn": "postgres://db/billingd?default_query_exec_mode=cache_statement", "database.pgbouncer": true},
			"database.pgbouncer", "default_query_exec_mode=cache_statement"},
		{"pgbouncer with prepared statements in key=value", map[string]any{"database.driver": "postgres", "database.dsn": "host=db dbname=billingd default_query_exec_mode=cache_describe", "database.pgbouncer": true},
			"database.pgbouncer", "default_query_exec_mode=cache_describe"},
		{"unknown provider", map[string]any{"gateway.provider": "stripe"}, "gateway.provider", "must be one of wooshpay"},
		{"unknown final_action", map[string]any{"dunning.final_action": "delete"}, "dunning.final_action", "must be one of cancel, unpaid, past_due"},
		{"unknown tls", map[string]any{"mail.tls": "ssl"}, "mail.tls", "must be one of starttls, tls, none"},
		{"unknown log level", map[string]any{"log.level": "verbose"}, "log.level", "must be one of debug, info, warn, error"},
		{"unknown log format", map[string]any{"log.format": "text"}, "log.format", "must be one of json, console"},
		{"enum is case-sensitive", map[string]any{"database.driver": "SQLite"}, "database.driver", "must be one of"},
		{"gateway over plain http", map[string]any{"gateway.base_url": "http://api.wooshpay.com"}, "gateway.base_url", "must use https"},
		{"gateway over http to a lookalike host", map[string]any{"gateway.base_url": "http://localhost.evil.example"}, "gateway.base_url", "must use https"},
		{"gateway over http to a private address", map[string]any{"gateway.base_url": "http://10.0.0.1:8080"}, "gateway.base_url", "must use https"},
		{"gateway without scheme", map[string]any{"gateway.base_url": "api.wooshpay.com"}, "gateway.base_url", "absolute URL"},
		{"gateway ftp", map[string]any{"gateway.base_url": "ftp://api.wooshpay.com"}, "gateway.base_url", "https"},
		{"gateway with credentials", map[string]any{"gateway.base_url": "https://user:" + testSecretKey + "@api.wooshpay.com"}, "gateway.base_url", "user name or password"},
		{"empty gateway url", map[string]any{"gateway.base_url": ""}, "gateway.base_url", "is required"},
		{"missing secret_key", map[string]any{"gateway.secret_key": remove{}}, "gateway.secret_key", "is required"},
		{"empty secret_key", map[string]any{"gateway.secret_key": ""}, "gateway.secret_key", "secret_key_file"},
		{"secret_key with newline", map[string]any{"gateway.secret_key": testSecretKey + "\n"}, "gateway.secret_key", "whitespace"},
		{"secret_key not a string", map[string]any{"gateway.secret_key": []string{testSecretKey}}, "gateway.secret_key", "must be a string"},
		{"missing webhook_secret", map[string]any{"gateway.webhook_secret": remove{}}, "gateway.webhook_secret", "is required"},
		{"missing public_base_url", map[string]any{"http.public_base_url": remove{}}, "http.public_base_url", "is required"},
		{"public url over http", map[string]any{"http.public_base_url": "http://billing.example.com"}, "http.public_base_url", "must use https"},
		{"public url with query", map[string]any{"http.public_base_url": "https://billing.example.com/?a=b"}, "http.public_base_url", "query"},
		{"public url with fragment", map[string]any{"http.public_base_url": "https://billing.example.com/#x"}, "http.public_base_url", "fragment"},
		{"public url relative", map[string]any{"http.public_base_url": "/billing"}, "http.public_base_url", "absolute URL"},
		{"bad timezone", map[string]any{"schedule.timezone": "Mars/Olympus_Mons"}, "schedule.timezone", "unknown time zone"},
		{"Local timezone", map[string]any{"schedule.timezone": "Local"}, "schedule.timezone", "IANA"},
		{"empty timezone", map[string]any{"schedule.timezone": ""}, "schedule.timezone", "is required"},
		{"concurrency 0", map[string]any{"gateway.concurrency": 0}, "gateway.concurrency", "between 1 and 1024"},
		{"concurrency too high", map[string]any{"gateway.concurrency": 1025}, "gateway.concurrency", "between 1 and 1024"},
		{"concurrency many", map[string]any{"gateway.concurrency": "many"}, "gateway.concurrency", "whole number"},
		{"rate_limit 0", map[string]any{"gateway.rate_limit": 0}, "gateway.rate_limit", "positive"},
		{"rate_limit negative", map[string]any{"gateway.rate_limit": -2.5}, "gateway.rate_limit", "positive"},
		{"rate_limit NaN", map[string]any{"gateway.rate_limit": math.NaN()}, "gateway.rate_limit", `positive number of requests per second (got "NaN"`},
		{"rate_limit infinite", map[string]any{"gateway.rate_limit": math.Inf(1)}, "gateway.rate_limit", "positive number"},
		{"rate_limit quoted", map[string]any{"gateway.rate_limit": "20"}, "gateway.rate_limit", "must be a number"},
		{"page_size 0", map[string]any{"schedule.page_size": 0}, "schedule.page_size", "between 1 and 100000"},
		{"page_size huge", map[string]any{"schedule.page_size": 100001}, "schedule.page_size", "between 1 and 100000"},
		{"max_open_conns negative", map[string]any{"database.max_open_conns": -1}, "database.max_open_conns", "0"},
		{"max_interval below initial_interval", map[string]any{"retry.initial_interval": "10s", "retry.max_interval": "5s"}, "retry.max_interval", "at least retry.initial_interval (10s)"},
		{"empty retry_schedule", map[string]any{"dunning.retry_schedule": []string{}}, "dunning.retry_schedule", "at least one"},
		{"too long retry_schedule", map[string]any{"dunning.retry_schedule": strings.Split(strings.Repeat("1h,", 16)[:47], ",")}, "dunning.retry_schedule", "at most 15"},
		{"bad retry_schedule item", map[string]any{"dunning.retry_schedule": []string{"24h", "soon"}}, "dunning.retry_schedule[1]", `got "soon"`},
		{"listen without port", map[string]any{"http.listen": "localhost"}, "http.listen", "host:port"},
		{"listen port out of range", map[string]any{"http.listen": "127.0.0.1:99999"}, "http.listen", "0 to 65535"},
		{"listen named port", map[string]any{"http.listen": "127.0.0.1:http"}, "http.listen", "0 to 65535"},
		{"bad from address", map[string]any{"mail.from": "not an address"}, "mail.from", "email address"},
		{"from required with host", map[string]any{"mail.from": remove{}}, "mail.from", "required when mail.host is set"},
		{"mail host with port", map[string]any{"mail.host": "smtp.example.com:587"}, "mail.host", "without a port"},
		{"mail port 0", map[string]any{"mail.port": 0}, "mail.port", "between 1 and 65535"},
		{"mail port too high", map[string]any{"mail.port": 65536}, "mail.port", "between 1 and 65535"},
		{"plaintext password to a remote relay", map[string]any{"mail.tls": "none"}, "mail.tls", "starttls or tls"},
		{"templates_dir missing", map[string]any{"mail.templates_dir": "/nonexistent/billingd/templates"}, "mail.templates_dir", "no such file"},
		{"templates_dir is a file", map[string]any{"mail.templates_dir": notADir}, "mail.templates_dir", "not a file"},
		{"postgres without dsn", map[string]any{"database.driver": "postgres"}, "database.dsn", "required when database.driver is postgres"},
		{"postgres with a bad dsn", map[string]any{"database.driver": "postgres", "database.dsn": testDSNPassword}, "database.dsn", "postgres URL"},
		{"postgres url without host", map[string]any{"database.driver": "postgres", "database.dsn": "postgres:///" + testDSNPassword}, "database.dsn", "postgres URL"},
		{"secret_key and secret_key_file", map[string]any{"gateway.secret_key_file": "/run/credentials/billingd.service/wooshpay_secret_key"}, "gateway.secret_key", "not both"},
		{"section of the wrong shape", map[string]any{"log": "debug"}, "log", "must be a mapping"},
	}

	durationKeys := []string{
		"database.busy_timeout",
		"gateway.webhook_tolerance",
		"gateway.timeout",
		"schedule.drain_timeout",
		"retry.initial_interval",
		"retry.max_interval",
		"retry.max_elapsed_time",
		"dunning.link_ttl",
	}
	for _, key := range durationKeys {
		for _, v := range []any{"0s", "0", 0, "-1s", "-168h"} {
			tests = append(tests, tc{
				name: fmt.Sprintf("%s %v (%T)", key, v, v),
				set:  map[string]any{key: v},
				key:  key,
				msg:  "must be a positive duration",
			})
		}
	}
	for _, v := range []string{"0s", "-24h"} {
		tests = append(tests, tc{
			name: "dunning.retry_schedule entry " + v,
			set:  map[string]any{"dunning.retry_schedule": []string{"24h", "48h", v}},
			key:  "dunning.retry_schedule[2]",
			msg:  "must be a positive duration",
		})
	}

	require.GreaterOrEqual(t, len(tests), 25)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := opts(nil).ParseAndValidate(docWith(t, tt.set), "")
			errs := fieldErrors(t, err)
			require.Equal(t, []string{tt.key}, errs.Keys(), "error: %v", err)
			require.True(t, strings.HasPrefix(err.Error(), tt.key+": "), "error %q does not start with the key", err)
			if tt.msg != "" {
				require.Contains(t, err.Error(), tt.msg)
			}
			requireNoSecret(t, err.Error())
			for _, e := range errs {
				requireNoSecret(t, e.Value)
				requireNoSecret(t, e.Message)
			}
		})
	}
}

// TestGoodValues checks values at the edges of what is accepted.
func TestGoodValues(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]any
	}{
		{"gateway on loopback IPv4 over http", map[string]any{"gateway.base_url": "http://127.0.0.1:12111"}},
		{"gateway on 127.x over http", map[string]any{"gateway.base_url": "http://127.1.2.3"}},
		{"gateway on localhost over http", map[string]any{"gateway.base_url": "http://localhost:8081"}},
		{"gateway on LOCALHOST over http", map[string]any{"gateway.base_url": "http://LOCALHOST:8081/v1"}},
		{"gateway on ::1 over http", map[string]any{"gateway.base_url": "http://[::1]:8081"}},
		{"gateway test host", map[string]any{"gateway.base_url": "https://apitest.wooshpay.com"}},
		{"public url with prefix", map[string]any{"http.public_base_url": "https://example.com/billing/"}},
		{"public url on localhost", map[string]any{"http.public_base_url": "http://localhost:8080"}},
		{"cron descriptor", map[string]any{"schedule.billing": "@hourly"}},
		{"cron every", map[string]any{"schedule.billing": "@every 1m"}},
		{"cron named fields", map[string]any{"schedule.billing": "0 6 1 JAN-DEC MON-FRI"}},
		{"timezone", map[string]any{"schedule.timezone": "Europe/Berlin"}},
		{"postgres url", map[string]any{"database.driver": "postgres", "database.dsn": "postgres://billingd:" + testDSNPassword + "@db:5432/billingd?sslmode=verify-full"}},
		{"postgresql url", map[string]any{"database.driver": "postgres", "database.dsn": "postgresql://db/billingd"}},
		{"postgres key=value", map[string]any{"database.driver": "postgres", "database.dsn": "host=db user=billingd password=" + testDSNPassword + " dbname=billingd"}},
		{"sqlite relative path", map[string]any{"database.dsn": "billingd.db"}},
		{"sqlite uri", map[string]any{"database.dsn": "file:billingd.db?_journal_mode=WAL"}},
		{"synchronous normal", map[string]any{"database.synchronous": "normal"}},
		{"max_open_conns", map[string]any{"database.max_open_conns": 16}},
		{"pgbouncer", map[string]any{"database.driver": "postgres", "database.dsn": "postgres://db/billingd", "database.pgbouncer": true}},
		{"pgbouncer with simple protocol", map[string]any{"database.driver": "postgres", "database.dsn": "host=db dbname=billingd default_query_exec_mode=simple_protocol", "database.pgbouncer": true}},
		{"pgbouncer off", map[string]any{"database.pgbouncer": false}},
		{"listen all interfaces", map[string]any{"http.listen": ":8080"}},
		{"listen ipv6", map[string]any{"http.listen": "[::1]:0"}},
		{"fractional rate limit", map[string]any{"gateway.rate_limit": 0.5}},
		{"concurrency bounds", map[string]any{"gateway.concurrency": 1024}},
		{"equal retry intervals", map[string]any{"retry.initial_interval": "5s", "retry.max_interval": "5s"}},
		{"single dunning step", map[string]any{"dunning.retry_schedule": []string{"72h"}}},
		{"non-increasing dunning steps", map[string]any{"dunning.retry_schedule": []string{"72h", "24h", "24h"}}},
		{"fifteen dunning steps", map[string]any{"dunning.retry_schedule": strings.Split(strings.Repeat("1h,", 15)[:44], ",")}},
		{"final action past_due", map[string]any{"dunning.final_action": "past_due"}},
		{"final action unpaid", map[string]any{"dunning.final_action": "unpaid"}},
		{"mail disabled", map[string]any{"mail.host": remove{}, "mail.from": remove{}}},
		{"mail tls none to loopback", map[string]any{"mail.host": "127.0.0.1", "mail.tls": "none", "mail.port": 25}},
		{"mail tls none without password", map[string]any{"mail.tls": "none", "mail.password": remove{}}},
		{"mail implicit tls", map[string]any{"mail.tls": "tls", "mail.port": 465}},
		{"bare from address", map[string]any{"mail.from": "billing@example.com"}},
		{"log console debug", map[string]any{"log.level": "debug", "log.format": "console"}},
		{"durations in other units", map[string]any{"gateway.timeout": "1m30s", "database.busy_timeout": "250ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := opts(nil).ParseAndValidate(docWith(t, tt.set), "")
			require.NoError(t, err)
		})
	}
}

func TestValidateReportsEverythingSorted(t *testing.T) {
	cfg := Default()
	cfg.Gateway.Concurrency = 0
	cfg.Log.Level = "loud"
	cfg.Database.Driver = "oracle"
	cfg.Dunning.RetrySchedule = []Duration{0, -1, 0}
	cfg.Mail.Password = testSMTPPassword + " "
	err := cfg.Validate()
	errs := fieldErrors(t, err)
	require.Equal(t, []string{
		"database.driver",
		"dunning.retry_schedule[0]",
		"dunning.retry_schedule[1]",
		"dunning.retry_schedule[2]",
		"gateway.concurrency",
		"gateway.secret_key",
		"gateway.webhook_secret",
		"http.public_base_url",
		"log.level",
	}, errs.Keys())
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, len(errs))
	require.Equal(t, `database.driver: must be one of sqlite, postgres (got "oracle")`, lines[0])
	requireNoSecret(t, err.Error())
}

// Checkout.com takes the same gateway keys; its secret keys have their own
// shapes, and its production API is the default URL.
func TestCheckoutProvider(t *testing.T) {
	good := []string{"sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e", "sk_test_0b9b5db6-f223-49d0-b68f-f6643dd4f808", "sk_5b3a0cea-ffff-4fff-bfff-b0a2c0a1c6ad"}
	for _, key := range good {
		t.Run("accepts "+key[:8], func(t *testing.T) {
			cfg, err := opts(nil).ParseAndValidate(docWith(t, map[string]any{"gateway.provider": "checkout", "gateway.secret_key": key, "gateway.base_url": remove{}}), "")
			require.NoError(t, err)
			require.Equal(t, "https://api.checkout.com", cfg.Gateway.BaseURL)
		})
	}
	bad := []struct{ key, msg string }{
		{"rk_test_abcdefgh12345678", "does not look like a Checkout.com secret key"},
		{"pk_sbox_abcdefgh12345678", "publishable key"},
		{"sk_x9", "does not look like a Checkout.com secret key"},
	}
	for _, b := range bad {
		t.Run("refuses "+b.key, func(t *testing.T) {
			_, err := opts(nil).ParseAndValidate(docWith(t, map[string]any{"gateway.provider": "checkout", "gateway.secret_key": b.key}), "")
			require.Error(t, err)
			require.Contains(t, err.Error(), "gateway.secret_key")
			require.Contains(t, err.Error(), b.msg)
			require.NotContains(t, err.Error(), b.key, "the key itself is never shown")
		})
	}
	t.Run("plain http only on loopback", func(t *testing.T) {
		_, err := opts(nil).ParseAndValidate(docWith(t, map[string]any{"gateway.provider": "checkout", "gateway.secret_key": good[0], "gateway.base_url": "http://api.checkout.com"}), "")
		require.ErrorContains(t, err, "must use https")
		_, err = opts(nil).ParseAndValidate(docWith(t, map[string]any{"gateway.provider": "checkout", "gateway.secret_key": good[0], "gateway.base_url": "http://127.0.0.1:9100"}), "")
		require.NoError(t, err)
	})
}

// A WooshPay-shaped key, or WooshPay's URL, with provider checkout is a
// copy-paste mistake that would fail every charge: refused at config time. The
// bundled simulator on loopback takes any secret key it was started with.
func TestCheckoutRefusesTheOtherProvidersKeyAndURL(t *testing.T) {
	for _, key := range []string{"sk_live_abcDEF123456", "sk_test_51HxYzAbCdEfGhIjKlMnOp"} {
		_, err := opts(nil).ParseAndValidate(docWith(t, map[string]any{"gateway.provider": "checkout", "gateway.secret_key": key, "gateway.base_url": remove{}}), "")
		require.ErrorContains(t, err, "does not look like a Checkout.com secret key", key)
		require.NotContains(t, err.Error(), key)
		_, err = opts(nil).ParseAndValidate(docWith(t, map[string]any{"gateway.provider": "checkout", "gateway.secret_key": key, "gateway.base_url": "http://127.0.0.1:12111"}), "")
		require.NoError(t, err, "the simulator takes %s", key)
	}
	for _, u := range []string{"https://api.wooshpay.com", "https://apitest.wooshpay.com"} {
		_, err := opts(nil).ParseAndValidate(docWith(t, map[string]any{"gateway.provider": "checkout", "gateway.secret_key": "sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e", "gateway.base_url": u}), "")
		require.ErrorContains(t, err, "gateway.base_url: is wooshpay's API, but gateway.provider is checkout", u)
	}
	_, err := opts(nil).ParseAndValidate(docWith(t, map[string]any{"gateway.base_url": "https://api.sandbox.checkout.com"}), "")
	require.ErrorContains(t, err, "is checkout's API, but gateway.provider is wooshpay")
}
