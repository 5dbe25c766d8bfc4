package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNeedUses(t *testing.T) {
	tests := []struct {
		key  string
		need Need
		want bool
	}{
		{"database.dsn", NeedDatabase, true},
		{"database.dsn_file", NeedDatabase, true},
		{"log.level", NeedDatabase, true},
		{"gateway.secret_key", NeedDatabase, false},
		{"gateway.secret_key_file", NeedDatabase, false},
		{"gateway.webhook_secret", NeedDatabase, false},
		{"gateway", NeedDatabase, true},
		{"mail.password", NeedDatabase, false},
		{"mail", NeedDatabase, true},
		{"http.public_base_url", NeedDatabase, false},
		{"dunning.retry_schedule[1]", NeedDatabase, false},
		{"schedule.timezone", NeedDatabase, false},
		{"gateway.secret_key", NeedDatabaseAndGatewayKey, true},
		{"gateway.base_url", NeedDatabaseAndGatewayKey, true},
		{"gateway.webhook_secret_file", NeedDatabaseAndGatewayKey, false},
		{"gateway.webhook_tolerance", NeedDatabaseAndGatewayKey, false},
		{"schedule.timezone", NeedDatabaseAndGatewayKey, true},
		{"mail.password_file", NeedDatabaseAndGatewayKey, false},
		{"gateway.webhook_secret", Need{Webhooks: true}, true},
		{"gateway.secret_key", Need{Webhooks: true}, false},
		{"dunning.retry_schedule[1]", Need{Billing: true}, true},
		{"", NeedDatabase, true},
		{"nonsense", NeedDatabase, true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			require.Equal(t, tt.want, tt.need.uses(tt.key))
		})
	}
	for _, key := range allKeys(configType, "") {
		require.True(t, NeedAll.uses(key), "NeedAll uses %s", key)
	}
}

// unsetEverywhere refers to environment variables that are not set in every
// part that can be left out.
const unsetEverywhere = `
database:
  dsn: /var/lib/billingd/billingd.db
gateway:
  secret_key: "${NO_KEY}"
  webhook_secret_file: "${NO_DIR}/wooshpay_webhook_secret"
  timeout: "${NO_TIMEOUT}"
schedule:
  timezone: "${NO_TZ}"
dunning:
  retry_schedule: [24h, "${NO_STEP}"]
http:
  public_base_url: "${NO_URL}"
mail:
  host: smtp.example.com
  from: "Billing <billing@example.com>"
  password: "${NO_PASSWORD}"
`

func TestLoadForNeedsOnlyItsEnvironment(t *testing.T) {
	tests := []struct {
		name string
		need Need
		keys []string
	}{
		{"database", NeedDatabase, nil},
		{"database and gateway key", NeedDatabaseAndGatewayKey,
			[]string{"gateway.secret_key", "gateway.timeout", "schedule.timezone"}},
		{"webhooks", Need{Webhooks: true}, []string{"gateway.webhook_secret_file"}},
		{"billing", Need{Billing: true}, []string{"dunning.retry_schedule[1]"}},
		{"http", Need{HTTP: true}, []string{"http.public_base_url"}},
		{"mail", Need{Mail: true}, []string{"mail.password"}},
		{"everything", NeedAll, []string{
			"dunning.retry_schedule[1]", "gateway.secret_key", "gateway.timeout", "gateway.webhook_secret_file",
			"http.public_base_url", "mail.password", "schedule.timezone",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := opts(nil).ParseFor([]byte(unsetEverywhere), "", tt.need)
			if tt.keys == nil {
				require.NoError(t, err)
				require.Equal(t, DefaultSQLiteDSN, cfg.Database.DSN)
				require.Equal(t, Default().Gateway.Timeout, cfg.Gateway.Timeout, "an unexpanded key keeps its default")
				return
			}
			require.Equal(t, tt.keys, fieldErrors(t, err).Keys())
		})
	}
}

func TestLoadForReadsOnlyItsSecretFiles(t *testing.T) {
	doc := []byte(`
gateway:
  secret_key_file: /creds/key
  webhook_secret_file: /creds/webhook
mail:
  password_file: /creds/smtp
`)
	tests := []struct {
		need Need
		read []string
	}{
		{NeedDatabase, nil},
		{NeedDatabaseAndGatewayKey, []string{"/creds/key"}},
		{Need{Webhooks: true, Mail: true}, []string{"/creds/webhook", "/creds/smtp"}},
	}
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			var read []string
			o := Options{LookupEnv: envMap(nil), ReadFile: func(path string) ([]byte, error) {
				read = append(read, path)
				if path == "/creds/key" {
					return []byte("sk_test_s3cret"), nil
				}
				return []byte("s3cret"), nil
			}}
			_, err := o.ParseFor(doc, "", tt.need)
			require.NoError(t, err)
			require.Equal(t, tt.read, read)
		})
	}
}

func TestLoadForKeepsShapeErrorsEverywhere(t *testing.T) {
	tests := []struct {
		name, doc, key string
	}{
		{"unknown key in an unused section", "mail:\n  hots: smtp.example.com\n", "mail.hots"},
		{"unknown section", "mial:\n  host: x\n", "mial"},
		{"wrong type in an unused section", "mail:\n  port: twenty-five\n", "mail.port"},
		{"wrong shape of an unused section", "dunning: 5\n", "dunning"},
		{"duplicate key in an unused section", "gateway:\n  timeout: 1s\n  timeout: 2s\n", "gateway.timeout"},
		{"a bad database", "database:\n  driver: mysql\n", "database.driver"},
		{"a bad log level", "log:\n  level: loud\n", "log.level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := opts(nil).ParseFor([]byte(tt.doc), "", NeedDatabase)
			require.Equal(t, []string{tt.key}, fieldErrors(t, err).Keys())
		})
	}
}

func TestLoadForSkipsRulesOfUnusedParts(t *testing.T) {
	doc := []byte(`
gateway:
  secret_key: sk_test_literal
  base_url: http://api.wooshpay.com
dunning:
  final_action: refund
mail:
  host: smtp.example.com
`)
	cfg, err := opts(nil).ParseFor(doc, "", NeedDatabase)
	require.NoError(t, err, "no http.public_base_url, bad gateway and dunning values, mail without from: none used")
	require.Empty(t, cfg.Gateway.SecretKey, "a secret the command does not need is not kept")
	require.Error(t, cfg.ValidateFor(Need{Billing: true}))
	require.NoError(t, cfg.ValidateFor(NeedDatabase))

	_, err = opts(nil).ParseFor(doc, "", NeedAll)
	require.Equal(t, []string{
		"dunning.final_action", "gateway.base_url", "gateway.webhook_secret", "http.public_base_url", "mail.from",
	}, fieldErrors(t, err).Keys())
}
