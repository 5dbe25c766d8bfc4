package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultsWithOnlyRequiredKeys(t *testing.T) {
	data := []byte(`
gateway:
  secret_key: sk_test_abc
  webhook_secret: whsec_abc
http:
  public_base_url: https://billing.example.com/
`)
	cfg, err := opts(nil).Parse(data, "")
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	want := Default()
	want.Gateway.SecretKey = "sk_test_abc"
	want.Gateway.WebhookSecret = "whsec_abc"
	want.HTTP.PublicBaseURL = "https://billing.example.com"
	require.Equal(t, want, stripLines(cfg))

	// Spot-check the documented defaults rather than only trusting Default().
	require.Equal(t, "sqlite", cfg.Database.Driver)
	require.Equal(t, "/var/lib/billingd/billingd.db", cfg.Database.DSN)
	require.Equal(t, "full", cfg.Database.Synchronous)
	require.Equal(t, 5*time.Second, cfg.Database.BusyTimeout.D())
	require.Equal(t, 0, cfg.Database.MaxOpenConns)
	require.Equal(t, "wooshpay", cfg.Gateway.Provider)
	require.Equal(t, "https://api.wooshpay.com", cfg.Gateway.BaseURL)
	require.Equal(t, 5*time.Minute, cfg.Gateway.WebhookTolerance.D())
	require.Equal(t, 30*time.Second, cfg.Gateway.Timeout.D())
	require.Equal(t, 8, cfg.Gateway.Concurrency)
	require.Equal(t, 20.0, cfg.Gateway.RateLimit)
	require.Equal(t, "*/5 * * * *", cfg.Schedule.Billing)
	require.Equal(t, "UTC", cfg.Schedule.Timezone)
	require.Equal(t, 60*time.Second, cfg.Schedule.DrainTimeout.D())
	require.Equal(t, 500, cfg.Schedule.PageSize)
	require.Equal(t, time.Second, cfg.Retry.InitialInterval.D())
	require.Equal(t, 30*time.Second, cfg.Retry.MaxInterval.D())
	require.Equal(t, 5*time.Minute, cfg.Retry.MaxElapsedTime.D())
	require.Equal(t, []time.Duration{24 * time.Hour, 72 * time.Hour, 120 * time.Hour, 168 * time.Hour}, cfg.Dunning.RetryDelays())
	require.Equal(t, "cancel", cfg.Dunning.FinalAction)
	require.Equal(t, 168*time.Hour, cfg.Dunning.LinkTTL.D())
	require.Equal(t, "127.0.0.1:8080", cfg.HTTP.Listen)
	require.Equal(t, "", cfg.Mail.Host)
	require.False(t, cfg.Mail.Enabled())
	require.Equal(t, 587, cfg.Mail.Port)
	require.Equal(t, "starttls", cfg.Mail.TLS)
	require.Equal(t, "info", cfg.Log.Level)
	require.Equal(t, "json", cfg.Log.Format)
	loc, err := cfg.Schedule.Location()
	require.NoError(t, err)
	require.Equal(t, time.UTC.String(), loc.String())
}

func TestEmptyDocuments(t *testing.T) {
	for _, doc := range []string{"", "\n\n", "# only a comment\n", "---\n", "~\n", "null\n", "---\n# c\n...\n"} {
		t.Run(fmt.Sprintf("%q", doc), func(t *testing.T) {
			cfg, err := opts(nil).Parse([]byte(doc), "")
			require.NoError(t, err)
			require.Equal(t, Default(), stripLines(cfg))

			errs := fieldErrors(t, cfg.Validate())
			require.Equal(t, []string{"gateway.secret_key", "gateway.webhook_secret", "http.public_base_url"}, errs.Keys())
		})
	}
}

func TestNullKeepsDefaults(t *testing.T) {
	cfg, err := opts(nil).Parse([]byte(`
database:
gateway:
  timeout: ~
  concurrency: null
dunning:
  retry_schedule:
log: {}
`), "")
	require.NoError(t, err)
	require.Equal(t, Default(), stripLines(cfg))
}

func TestEnvExpansion(t *testing.T) {
	env := map[string]string{
		"USER_A":  "alice",
		"USER_B":  "bob",
		"DOLLARS": "a$b${USER_A}",
		"PORT":    "2525",
		"TIMEOUT": "45s",
		"EMPTY":   "",
		"SK":      testSecretKey,
	}
	tests := []struct {
		name  string
		value string // YAML text of mail.username
		want  string
	}{
		{"whole value", `"${USER_A}"`, "alice"},
		{"plain scalar", `${USER_A}`, "alice"},
		{"single quoted", `'${USER_A}'`, "alice"},
		{"embedded", `pre-${USER_A}-post`, "pre-alice-post"},
		{"two references", `${USER_A}${USER_B}`, "alicebob"},
		{"double dollar is a literal dollar", `"pa$$word"`, "pa$word"},
		{"escaped reference stays literal", `"$${USER_A}"`, "${USER_A}"},
		{"four dollars", `"$$$$"`, "$$"},
		{"bare $NAME is not expanded", `"$USER_A"`, "$USER_A"},
		{"lone dollar kept", `"cost: 5$"`, "cost: 5$"},
		{"dollar before other char kept", `"a$-b"`, "a$-b"},
		{"value is not re-expanded", `${DOLLARS}`, "a$b${USER_A}"},
		{"set but empty", `"x${EMPTY}y"`, "xy"},
		{"block scalar", "|-\n    ${USER_A}", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := opts(env).Parse([]byte("mail:\n  username: "+tt.value+"\n"), "")
			require.NoError(t, err)
			require.Equal(t, tt.want, cfg.Mail.Username)
		})
	}

	t.Run("typed fields", func(t *testing.T) {
		cfg, err := opts(env).Parse([]byte(`
gateway:
  secret_key: "${SK}"
  timeout: ${TIMEOUT}
mail:
  port: "${PORT}"
dunning:
  retry_schedule: ["${TIMEOUT}", 1h]
`), "")
		require.NoError(t, err)
		require.Equal(t, testSecretKey, cfg.Gateway.SecretKey.Reveal())
		require.Equal(t, 45*time.Second, cfg.Gateway.Timeout.D())
		require.Equal(t, 2525, cfg.Mail.Port)
		require.Equal(t, []time.Duration{45 * time.Second, time.Hour}, cfg.Dunning.RetryDelays())
	})

	t.Run("keys are not expanded", func(t *testing.T) {
		_, err := opts(env).Parse([]byte("mail:\n  ${USER_A}: x\n"), "")
		require.Equal(t, []string{"mail.${USER_A}"}, fieldErrors(t, err).Keys())
	})

	t.Run("comments are not expanded", func(t *testing.T) {
		_, err := opts(nil).Parse([]byte("# ${NOT_SET}\nlog:\n  level: info # ${NOT_SET}\n"), "")
		require.NoError(t, err)
	})

	bad := []struct {
		name    string
		doc     string
		key     string
		message string
	}{
		{"unset variable", "gateway:\n  secret_key: ${WOOSHPAY_SECRET_KEY}\n",
			"gateway.secret_key", "environment variable WOOSHPAY_SECRET_KEY is not set"},
		{"unset in the middle", "mail:\n  username: a-${NOPE}-b\n",
			"mail.username", "environment variable NOPE is not set"},
		{"unterminated", "mail:\n  username: \"a${USER_A\"\n",
			"mail.username", "unterminated ${"},
		{"empty name", "mail:\n  username: \"${}\"\n",
			"mail.username", "invalid ${...} reference"},
		{"shell default syntax", "mail:\n  username: \"${USER_A:-x}\"\n",
			"mail.username", "only ${NAME} with letters, digits and _ is supported"},
		{"name starting with digit", "mail:\n  username: \"${1A}\"\n",
			"mail.username", "invalid ${...} reference"},
		{"unset in list item", "dunning:\n  retry_schedule: [1h, \"${NOPE}\"]\n",
			"dunning.retry_schedule[1]", "environment variable NOPE is not set"},
		{"empty into integer", "gateway:\n  concurrency: ${EMPTY}\n",
			"gateway.concurrency", "must be a whole number"},
		{"bad duration from env", "gateway:\n  timeout: ${USER_A}\n",
			"gateway.timeout", "must be a duration"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := opts(env).Parse([]byte(tt.doc), "")
			errs := fieldErrors(t, err)
			require.Equal(t, []string{tt.key}, errs.Keys())
			require.Contains(t, err.Error(), tt.message)
			require.Contains(t, err.Error(), tt.key+": ")
		})
	}

	t.Run("every unset variable is reported", func(t *testing.T) {
		_, err := opts(nil).Parse([]byte(`
gateway:
  secret_key: ${WOOSHPAY_SECRET_KEY}
  webhook_secret: ${WOOSHPAY_WEBHOOK_SECRET}
mail:
  username: ${A}-${B}
`), "")
		errs := fieldErrors(t, err)
		require.Equal(t, []string{"gateway.secret_key", "gateway.webhook_secret", "mail.username", "mail.username"}, errs.Keys())
		msg := err.Error()
		for _, name := range []string{"WOOSHPAY_SECRET_KEY", "WOOSHPAY_WEBHOOK_SECRET", "A is not set", "B is not set"} {
			require.Contains(t, msg, name)
		}
	})

	t.Run("secret value with a bad reference is redacted", func(t *testing.T) {
		_, err := opts(nil).Parse([]byte("gateway:\n  secret_key: \"TOPSECRET${\"\n"), "")
		errs := fieldErrors(t, err)
		require.Equal(t, Redacted, errs[0].Value)
		requireNoSecret(t, err.Error())
	})

	t.Run("process environment is the default", func(t *testing.T) {
		t.Setenv("BILLINGD_CONFIG_TEST_LEVEL", "debug")
		cfg, err := Parse([]byte("log:\n  level: ${BILLINGD_CONFIG_TEST_LEVEL}\n"), "")
		require.NoError(t, err)
		require.Equal(t, "debug", cfg.Log.Level)
	})
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	writeFile(t, filepath.Join(creds, "wooshpay_secret_key"), testSecretKey+"\n")
	writeFile(t, filepath.Join(creds, "webhook"), testWebhookSecret+" \r\n\t\n")
	writeFile(t, filepath.Join(creds, "smtp"), "  "+testSMTPPassword+"\n")
	writeFile(t, filepath.Join(creds, "dsn"), "postgres://billingd:"+testDSNPassword+"@db:5432/billingd\n")
	writeFile(t, filepath.Join(creds, "empty"), " \n\n")

	t.Run("absolute, relative and env paths", func(t *testing.T) {
		cfg, err := opts(map[string]string{"CREDENTIALS_DIRECTORY": creds}).Parse([]byte(`
database:
  driver: postgres
  dsn_file: credentials/dsn
gateway:
  secret_key_file: ${CREDENTIALS_DIRECTORY}/wooshpay_secret_key
  webhook_secret_file: `+filepath.Join(creds, "webhook")+`
mail:
  password_file: ./credentials/smtp
`), dir)
		require.NoError(t, err)
		require.Equal(t, testSecretKey, cfg.Gateway.SecretKey.Reveal())
		require.Equal(t, testWebhookSecret, cfg.Gateway.WebhookSecret.Reveal(), "trailing whitespace is trimmed")
		require.Equal(t, "  "+testSMTPPassword, cfg.Mail.Password.Reveal(), "leading whitespace is kept")
		require.Equal(t, "postgres://billingd:"+testDSNPassword+"@db:5432/billingd", cfg.Database.DSN)
		require.Equal(t, filepath.Join(creds, "dsn"), cfg.Database.DSNFile, "relative path resolved against the base dir")
		require.Equal(t, filepath.Join(creds, "wooshpay_secret_key"), cfg.Gateway.SecretKeyFile)
		requireNoSecret(t, cfg.String())
	})

	t.Run("Load resolves relative paths against the config file's directory", func(t *testing.T) {
		path := writeFile(t, filepath.Join(dir, "etc", "config.yaml"), `
gateway:
  secret_key_file: ../credentials/wooshpay_secret_key
  webhook_secret: whsec_x
http:
  public_base_url: https://billing.example.com
`)
		// Run from elsewhere so a cwd-relative lookup would fail.
		t.Chdir(t.TempDir())
		cfg, err := opts(nil).Load(path)
		require.NoError(t, err)
		require.Equal(t, testSecretKey, cfg.Gateway.SecretKey.Reveal())
		require.NoError(t, cfg.Validate())
	})

	bad := []struct {
		name     string
		doc      string
		key      string
		contains []string
	}{
		{"both set", "gateway:\n  secret_key: " + testSecretKey + "\n  secret_key_file: credentials/wooshpay_secret_key\n",
			"gateway.secret_key", []string{"gateway.secret_key", "gateway.secret_key_file", "not both"}},
		{"both webhook", "gateway:\n  webhook_secret: x\n  webhook_secret_file: credentials/webhook\n",
			"gateway.webhook_secret", []string{"gateway.webhook_secret_file"}},
		{"both password", "mail:\n  password: x\n  password_file: credentials/smtp\n",
			"mail.password", []string{"mail.password_file"}},
		{"both dsn", "database:\n  dsn: /tmp/x.db\n  dsn_file: credentials/dsn\n",
			"database.dsn", []string{"database.dsn_file"}},
		{"missing file", "gateway:\n  secret_key_file: credentials/nope\n",
			"gateway.secret_key_file", []string{filepath.Join(creds, "nope"), "no such file"}},
		{"directory", "mail:\n  password_file: credentials\n",
			"mail.password_file", []string{"cannot read " + creds}},
		{"empty file", "gateway:\n  webhook_secret_file: credentials/empty\n",
			"gateway.webhook_secret_file", []string{"is empty"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := opts(nil).Parse([]byte(tt.doc), dir)
			errs := fieldErrors(t, err)
			require.Equal(t, []string{tt.key}, errs.Keys())
			for _, s := range tt.contains {
				require.Contains(t, err.Error(), s)
			}
			requireNoSecret(t, err.Error())
			require.Equal(t, 2, errs[0].Line, "points at the line of the key")
		})
	}

	t.Run("unreadable file through an injected reader", func(t *testing.T) {
		o := Options{
			LookupEnv: envMap(nil),
			ReadFile: func(path string) ([]byte, error) {
				return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrPermission}
			},
		}
		_, err := o.Parse([]byte("gateway:\n  secret_key_file: /run/credentials/billingd.service/key\n"), "")
		require.Equal(t, []string{"gateway.secret_key_file"}, fieldErrors(t, err).Keys())
		require.Contains(t, err.Error(), "/run/credentials/billingd.service/key: permission denied")
	})

	t.Run("oversized file", func(t *testing.T) {
		big := writeFile(t, filepath.Join(dir, "big"), strings.Repeat("x", maxSecretFileSize+1))
		_, err := opts(nil).Parse([]byte("gateway:\n  secret_key_file: "+big+"\n"), "")
		require.Equal(t, []string{"gateway.secret_key_file"}, fieldErrors(t, err).Keys())
	})
}

func TestParseErrorsNameKeyAndLine(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // the whole rendered error
	}{
		{"unknown nested key with suggestion", "gateway:\n  secret_key: x\n  timout: 30s\n",
			`gateway.timout: unknown key (did you mean "timeout"?) (line 3)`},
		{"unknown top-level key", "log:\n  level: info\nlogging: {}\n",
			`logging: unknown key (did you mean "log"?) (line 3)`},
		{"unknown key far from any", "gateway:\n  zzzzzzzz: 1\n",
			`gateway.zzzzzzzz: unknown key (line 2)`},
		{"type mismatch", "gateway:\n  concurrency: many\n",
			`gateway.concurrency: must be a whole number (got "many", line 2)`},
		{"float into int", "gateway:\n  concurrency: 1.5\n",
			`gateway.concurrency: must be a whole number (got "1.5", line 2)`},
		{"quoted number into int", "gateway:\n  concurrency: \"8x\"\n",
			`gateway.concurrency: must be a whole number (got "8x", line 2)`},
		{"bad duration", "\n\ngateway:\n  timeout: banana\n",
			`gateway.timeout: must be a duration such as 30s, 5m or 168h (got "banana", line 4)`},
		{"duration without unit", "gateway:\n  timeout: 30\n",
			`gateway.timeout: must be a duration such as 30s, 5m or 168h (got "30", line 2)`},
		{"mapping where a value belongs", "gateway:\n  timeout:\n    seconds: 3\n",
			`gateway.timeout: must be a duration such as 30s, 5m or 168h, not a mapping (line 3)`},
		{"list where a string belongs", "log:\n  level: [info]\n",
			`log.level: must be a string, not a list (line 2)`},
		{"section is not a mapping", "gateway: 5\n",
			`gateway: must be a mapping of keys, not a single value (line 1)`},
		{"retry_schedule not a list", "dunning:\n  retry_schedule: 24h\n",
			`dunning.retry_schedule: must be a list of durations such as [24h, 72h], not a single value (line 2)`},
		{"bad retry_schedule item", "dunning:\n  retry_schedule:\n    - 24h\n    - soon\n",
			`dunning.retry_schedule[1]: must be a duration such as 30s, 5m or 168h (got "soon", line 4)`},
		{"duplicate key", "log:\n  level: info\n  level: debug\n",
			`log.level: duplicate key (first set on line 2) (line 3)`},
		{"custom tag", "gateway:\n  secret_key: !vault billing/key\n",
			`gateway.secret_key: unsupported YAML tag !vault; write ${NAME} to read the environment (line 2)`},
		{"syntax error", "gateway:\n  timeout: 30s\n bad indent: x\n",
			`invalid YAML: did not find expected key (line 2)`},
		{"top level is a list", "- a\n- b\n",
			`the configuration must be a YAML mapping of sections (database:, gateway:, …) (line 1)`},
		{"two documents", "log: {}\n---\nlog: {}\n",
			`the file holds more than one YAML document; put the whole configuration in one (line 2)`},
		{"secret type mismatch is redacted", "gateway:\n  secret_key: {a: " + testSecretKey + "}\n",
			`gateway.secret_key: must be a string, not a mapping (line 2)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := opts(nil).Parse([]byte(tt.doc), "")
			fieldErrors(t, err)
			require.Equal(t, tt.want, err.Error())
		})
	}

	t.Run("all parse problems at once, sorted", func(t *testing.T) {
		_, err := opts(nil).Parse([]byte(`
log:
  level: [x]
gateway:
  timout: 1s
  concurrency: many
database:
  drivr: sqlite
`), "")
		errs := fieldErrors(t, err)
		require.Equal(t, []string{"database.drivr", "gateway.concurrency", "gateway.timout", "log.level"}, errs.Keys())
		require.Len(t, strings.Split(err.Error(), "\n"), 4)
	})
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	cfg, err := opts(nil).Parse([]byte(`
retry:
  initial_interval: &short 2s
  max_interval: *short
  max_elapsed_time: 1m
gateway: &gw
  timeout: 10s
  concurrency: 4
dunning:
  retry_schedule: &sched [1h, *short]
  link_ttl: 48h
log:
  <<: {level: warn, format: console}
  level: error
mail:
  <<: [{port: 25}, {port: 26, tls: none}]
`), "")
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, cfg.Retry.InitialInterval.D())
	require.Equal(t, 2*time.Second, cfg.Retry.MaxInterval.D())
	require.Equal(t, 10*time.Second, cfg.Gateway.Timeout.D())
	require.Equal(t, []time.Duration{time.Hour, 2 * time.Second}, cfg.Dunning.RetryDelays())
	require.Equal(t, "error", cfg.Log.Level, "explicit key wins over merged")
	require.Equal(t, "console", cfg.Log.Format)
	require.Equal(t, 25, cfg.Mail.Port, "first merged mapping wins")
	require.Equal(t, "none", cfg.Mail.TLS)

	t.Run("unknown key inside a merge", func(t *testing.T) {
		_, err := opts(nil).Parse([]byte("base: &b {levl: x}\n"), "")
		require.Equal(t, []string{"base"}, fieldErrors(t, err).Keys())
		_, err = opts(nil).Parse([]byte("log:\n  <<: {levl: x}\n"), "")
		require.Equal(t, []string{"log.levl"}, fieldErrors(t, err).Keys())
	})

	t.Run("alias bomb is cut short", func(t *testing.T) {
		var doc strings.Builder
		doc.WriteString("x0: &x0 {level: info}\n")
		for i := 1; i <= 9; i++ {
			fmt.Fprintf(&doc, "x%d: &x%d {<<: [", i, i)
			for j := 0; j < 10; j++ {
				fmt.Fprintf(&doc, "*x%d,", i-1)
			}
			doc.WriteString("]}\n")
		}
		doc.WriteString("log: *x9\n")
		start := time.Now()
		_, err := opts(nil).Parse([]byte(doc.String()), "")
		require.Less(t, time.Since(start), 10*time.Second)
		require.ErrorContains(t, err, "the document expands to too many values")
	})

	t.Run("self-referencing merge terminates", func(t *testing.T) {
		_, err := opts(nil).Parse([]byte("log: &a\n  <<: *a\n"), "")
		_ = err // must simply return
	})
}

func TestSecretsNeverPrinted(t *testing.T) {
	cfg, err := opts(nil).Parse(docWith(t, map[string]any{
		"database.driver": "postgres",
		"database.dsn":    "postgres://billingd:" + testDSNPassword + "@db:5432/billingd?sslmode=require",
	}), "")
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	outputs := map[string]string{
		"String":            cfg.String(),
		"%v pointer":        fmt.Sprintf("%v", cfg),
		"%+v value":         fmt.Sprintf("%+v", *cfg),
		"%#v value":         fmt.Sprintf("%#v", *cfg),
		"%+v gateway":       fmt.Sprintf("%+v", cfg.Gateway),
		"%#v gateway":       fmt.Sprintf("%#v", cfg.Gateway),
		"%v mail":           fmt.Sprintf("%v", cfg.Mail),
		"%s secret":         fmt.Sprintf("%s", cfg.Gateway.SecretKey),
		"Redacted().String": cfg.Redacted().String(),
	}
	j, err := json.Marshal(cfg.Redacted())
	require.NoError(t, err)
	outputs["json"] = string(j)
	jg, err := json.Marshal(cfg.Gateway)
	require.NoError(t, err)
	outputs["json gateway"] = string(jg)

	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			requireNoSecret(t, out)
		})
	}
	require.Contains(t, cfg.String(), "secret_key: <redacted>")
	require.Contains(t, cfg.String(), "postgres://billingd:xxxxx@db:5432/billingd")
	require.Equal(t, testSecretKey, cfg.Gateway.SecretKey.Reveal(), "Redacted must not change the original")
	require.Equal(t, "", Secret("").String(), "an unset secret shows as unset")

	t.Run("String output parses back", func(t *testing.T) {
		back, err := opts(nil).Parse([]byte(cfg.String()), "")
		require.NoError(t, err)
		require.Equal(t, cfg.Gateway.Timeout, back.Gateway.Timeout)
		require.Equal(t, cfg.Dunning.RetrySchedule, back.Dunning.RetrySchedule)
		require.Equal(t, Secret(Redacted), back.Gateway.SecretKey)
	})
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/var/lib/billingd/billingd.db", "/var/lib/billingd/billingd.db"},
		{"postgres://u:" + testDSNPassword + "@h/db", "postgres://u:xxxxx@h/db"},
		{"postgresql://u@h:5432/db?sslmode=disable", "postgresql://u@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db?password=" + testDSNPassword, "postgres://u@h/db?password=xxxxx"},
		{"host=h user=u password=" + testDSNPassword + " dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password='" + testDSNPassword + " x' dbname=d", "host=h password=xxxxx dbname=d"},
		{"file:/x.db?_auth_pass=" + testDSNPassword + "&mode=rwc", "file:/x.db?_auth_pass=xxxxx&mode=rwc"},
		{"postgres://u:p@h:notaport/db", Redacted},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, RedactDSN(tt.in))
		})
	}
}

func TestURLNormalization(t *testing.T) {
	cfg, err := opts(nil).Parse([]byte(`
gateway:
  base_url: http://127.0.0.1:12111/
http:
  public_base_url: https://example.com/billing//
`), "")
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:12111", cfg.Gateway.BaseURL)
	require.Equal(t, "https://example.com/billing", cfg.HTTP.PublicBaseURL)
}

func TestTemplatesDirRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "templates"), 0o755))
	cfg, err := opts(nil).Parse(docWith(t, map[string]any{"mail.templates_dir": "templates"}), dir)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "templates"), cfg.Mail.TemplatesDir)
	require.NoError(t, cfg.Validate())
}

func TestLoad(t *testing.T) {
	t.Run("missing file is a plain os error", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
		require.Error(t, err)
		require.True(t, errors.Is(err, fs.ErrNotExist))
		var errs Errors
		require.False(t, errors.As(err, &errs))
	})

	t.Run("LoadAndValidate reports both stages once", func(t *testing.T) {
		path := writeFile(t, filepath.Join(t.TempDir(), "config.yaml"), `
gateway:
  secret_key: ${NOT_SET_ANYWHERE}
  timout: 1s
  concurrency: 0
http:
  listen: nowhere
`)
		_, err := opts(nil).LoadAndValidate(path)
		errs := fieldErrors(t, err)
		// secret_key is reported once (unset variable), not again as "required".
		require.Equal(t, []string{
			"gateway.concurrency",
			"gateway.secret_key",
			"gateway.timout",
			"gateway.webhook_secret",
			"http.listen",
			"http.public_base_url",
		}, errs.Keys())
		require.Contains(t, err.Error(), "gateway.secret_key: environment variable NOT_SET_ANYWHERE is not set (line 3)\n")
		require.Contains(t, err.Error(), `gateway.concurrency: must be between 1 and 1024 (got "0", line 5)`)
	})

	t.Run("section with wrong shape does not cascade", func(t *testing.T) {
		_, err := opts(nil).ParseAndValidate([]byte("gateway: [1]\nhttp:\n  public_base_url: https://x.example\n"), "")
		require.Equal(t, []string{"gateway"}, fieldErrors(t, err).Keys())
	})

	t.Run("unreadable secret file does not cascade", func(t *testing.T) {
		_, err := opts(nil).ParseAndValidate(docWith(t, map[string]any{
			"gateway.secret_key":      remove{},
			"gateway.secret_key_file": "/nonexistent/billingd/key",
		}), "")
		require.Equal(t, []string{"gateway.secret_key_file"}, fieldErrors(t, err).Keys())
	})

	t.Run("valid", func(t *testing.T) {
		path := writeFile(t, filepath.Join(t.TempDir(), "config.yaml"), string(docWith(t, nil)))
		cfg, err := opts(nil).LoadAndValidate(path)
		require.NoError(t, err)
		require.Equal(t, testSecretKey, cfg.Gateway.SecretKey.Reveal())
	})
}

func TestErrorsRendering(t *testing.T) {
	errs := Errors{
		{Key: "gateway.timeout", Value: "-1s", Message: "must be a positive duration"},
		{Key: "dunning.retry_schedule[10]", Value: "0s", Message: "must be a positive duration"},
		{Key: "dunning.retry_schedule[2]", Value: "0s", Message: "must be a positive duration"},
		{Key: "gateway.secret_key", Value: Redacted, Message: "must not contain whitespace"},
		{Message: "invalid YAML: x", Line: 7},
	}
	require.Equal(t, `invalid YAML: x (line 7)
dunning.retry_schedule[2]: must be a positive duration (got "0s")
dunning.retry_schedule[10]: must be a positive duration (got "0s")
gateway.secret_key: must not contain whitespace (got <redacted>)
gateway.timeout: must be a positive duration (got "-1s")`, errs.Error())

	var fe FieldError
	require.True(t, errors.As(error(errs), &fe))
	require.Nil(t, Errors(nil).asError())
}

func TestValidateExampleMessage(t *testing.T) {
	cfg := Default()
	cfg.Gateway.SecretKey = "sk_test_x"
	cfg.Gateway.WebhookSecret = "wh"
	cfg.HTTP.PublicBaseURL = "https://billing.example.com"
	cfg.Gateway.Timeout = Duration(-time.Second)
	err := cfg.Validate()
	require.EqualError(t, err, `gateway.timeout: must be a positive duration (got "-1s")`)
	require.True(t, errors.As(err, &Errors{}))
}
