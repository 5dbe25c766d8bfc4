package config

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const examplePath = "../../config.example.yaml"

// exampleCredentials writes the three credentials the example config reads
// (systemd/billingd.service's LoadCredential= names) into a new directory and
// returns it, to stand in for $CREDENTIALS_DIRECTORY.
func exampleCredentials(t *testing.T, names ...string) string {
	t.Helper()
	values := map[string]string{
		"wooshpay_secret_key":     testSecretKey,
		"wooshpay_webhook_secret": testWebhookSecret,
		"smtp_password":           testSMTPPassword,
	}
	if names == nil {
		names = []string{"wooshpay_secret_key", "wooshpay_webhook_secret", "smtp_password"}
	}
	dir := t.TempDir()
	for _, n := range names {
		writeFile(t, filepath.Join(dir, n), values[n]+"\n")
	}
	return dir
}

func TestExampleConfigValidates(t *testing.T) {
	creds := exampleCredentials(t)
	cfg, err := opts(map[string]string{"CREDENTIALS_DIRECTORY": creds}).LoadAndValidate(examplePath)
	require.NoError(t, err)

	// Apart from the values an operator must choose, the example shows the
	// defaults; this keeps its comments and Default() from drifting apart.
	want := Default()
	want.Gateway.BaseURL = "https://apitest.wooshpay.com"
	want.Gateway.SecretKey = testSecretKey
	want.Gateway.SecretKeyFile = filepath.Join(creds, "wooshpay_secret_key")
	want.Gateway.WebhookSecret = testWebhookSecret
	want.Gateway.WebhookSecretFile = filepath.Join(creds, "wooshpay_webhook_secret")
	want.HTTP.PublicBaseURL = "https://billing.example.com"
	want.Mail.Host = "smtp.example.com"
	want.Mail.Username = "billing@example.com"
	want.Mail.Password = testSMTPPassword
	want.Mail.PasswordFile = filepath.Join(creds, "smtp_password")
	want.Mail.From = "Billing <billing@example.com>"
	require.Equal(t, want, stripLines(cfg))
}

func TestExampleConfigNeedsItsCredentials(t *testing.T) {
	t.Run("without CREDENTIALS_DIRECTORY each *_file is named, with the way out", func(t *testing.T) {
		_, err := opts(nil).LoadAndValidate(examplePath)
		errs := fieldErrors(t, err)
		require.Equal(t, []string{"gateway.secret_key_file", "gateway.webhook_secret_file", "mail.password_file"}, errs.Keys(),
			"no extra \"is required\" for the secrets themselves")
		require.Contains(t, err.Error(), "gateway.secret_key_file: environment variable CREDENTIALS_DIRECTORY is not set")
		require.Contains(t, err.Error(), "CREDENTIALS_DIRECTORY=/etc/billingd/credentials")
	})
	t.Run("a missing credential names its file", func(t *testing.T) {
		creds := exampleCredentials(t, "wooshpay_secret_key", "wooshpay_webhook_secret")
		_, err := opts(map[string]string{"CREDENTIALS_DIRECTORY": creds}).LoadAndValidate(examplePath)
		require.Equal(t, []string{"mail.password_file"}, fieldErrors(t, err).Keys())
		require.Contains(t, err.Error(), filepath.Join(creds, "smtp_password"))
	})
}

// exampleWith returns the example config with dotted keys replaced.
func exampleWith(t *testing.T, set map[string]any) []byte {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	require.NoError(t, err)
	var doc map[string]map[string]any
	require.NoError(t, yaml.Unmarshal(data, &doc))
	for key, v := range set {
		section, name, _ := strings.Cut(key, ".")
		doc[section][name] = v
	}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return out
}

func TestExampleWithEnvironmentVariables(t *testing.T) {
	// The variant the comments describe: secrets from the environment.
	out := exampleWith(t, map[string]any{
		"gateway.secret_key":          "${WOOSHPAY_SECRET_KEY}",
		"gateway.secret_key_file":     "",
		"gateway.webhook_secret":      "${WOOSHPAY_WEBHOOK_SECRET}",
		"gateway.webhook_secret_file": "",
		"mail.password":               "${SMTP_PASSWORD}",
		"mail.password_file":          "",
	})
	cfg, err := opts(map[string]string{
		"WOOSHPAY_SECRET_KEY":     testSecretKey,
		"WOOSHPAY_WEBHOOK_SECRET": testWebhookSecret,
		"SMTP_PASSWORD":           testSMTPPassword,
	}).ParseAndValidate(out, "/etc/billingd")
	require.NoError(t, err)
	require.Equal(t, testSecretKey, cfg.Gateway.SecretKey.Reveal())
	require.Equal(t, testWebhookSecret, cfg.Gateway.WebhookSecret.Reveal())
	require.Equal(t, testSMTPPassword, cfg.Mail.Password.Reveal())
}

func TestExampleSecretAndItsFileBothSet(t *testing.T) {
	// An environment reference left beside the *_file an operator pointed at
	// the credentials: the error says to keep one, not that the variable is
	// unset (which would send them to set it, and then fail again).
	out := exampleWith(t, map[string]any{"gateway.secret_key": "${WOOSHPAY_SECRET_KEY}"})
	creds := exampleCredentials(t)
	for _, env := range []map[string]string{
		{"CREDENTIALS_DIRECTORY": creds},
		{"CREDENTIALS_DIRECTORY": creds, "WOOSHPAY_SECRET_KEY": testSecretKey},
	} {
		_, err := opts(env).ParseAndValidate(out, "/etc/billingd")
		errs := fieldErrors(t, err)
		require.Equal(t, []string{"gateway.secret_key"}, errs.Keys())
		require.Contains(t, err.Error(), "set either gateway.secret_key or gateway.secret_key_file, not both")
		require.NotContains(t, err.Error(), "is not set")
		requireNoSecret(t, err.Error())
	}
}

func TestExampleForReadOnlyCommands(t *testing.T) {
	t.Run("the database alone needs no secret and no credentials directory", func(t *testing.T) {
		cfg, err := opts(nil).LoadFor(examplePath, NeedDatabase)
		require.NoError(t, err)
		require.Equal(t, DefaultSQLiteDSN, cfg.Database.DSN)
		require.Empty(t, cfg.Gateway.SecretKey)
		require.Empty(t, cfg.Gateway.WebhookSecret)
		require.Empty(t, cfg.Mail.Password)
	})
	t.Run("database and gateway key need only the key's credential", func(t *testing.T) {
		creds := exampleCredentials(t, "wooshpay_secret_key")
		cfg, err := opts(map[string]string{"CREDENTIALS_DIRECTORY": creds}).LoadFor(examplePath, NeedDatabaseAndGatewayKey)
		require.NoError(t, err)
		require.Equal(t, testSecretKey, cfg.Gateway.SecretKey.Reveal())
		require.Empty(t, cfg.Gateway.WebhookSecret)
		require.Empty(t, cfg.Mail.Password)
	})
}

func TestExampleConfigShowsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	require.NoError(t, err)
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &doc))

	var inExample []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := joinKey(prefix, n.Content[i].Value)
			inExample = append(inExample, key)
			if v := n.Content[i+1]; v.Kind == yaml.MappingNode {
				walk(v, key)
			}
		}
	}
	walk(doc.Content[0], "")
	sort.Strings(inExample)

	require.Equal(t, allKeys(configType, ""), inExample)
}

// allKeys lists every dotted key Config accepts, sections included.
func allKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for _, f := range reflect.VisibleFields(t) {
		name := yamlName(f)
		if !f.IsExported() || name == "" {
			continue
		}
		key := joinKey(prefix, name)
		keys = append(keys, key)
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, allKeys(f.Type, key)...)
		}
	}
	sort.Strings(keys)
	return keys
}

func TestExampleWithCredentialFiles(t *testing.T) {
	// The systemd variant: secrets from $CREDENTIALS_DIRECTORY instead of env.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "wooshpay_secret_key"), testSecretKey+"\n")
	writeFile(t, filepath.Join(dir, "wooshpay_webhook_secret"), testWebhookSecret+"\n")
	writeFile(t, filepath.Join(dir, "smtp_password"), testSMTPPassword+"\n")

	data, err := os.ReadFile(examplePath)
	require.NoError(t, err)
	var doc map[string]map[string]any
	require.NoError(t, yaml.Unmarshal(data, &doc))
	doc["gateway"]["secret_key"] = nil
	doc["gateway"]["secret_key_file"] = "${CREDENTIALS_DIRECTORY}/wooshpay_secret_key"
	doc["gateway"]["webhook_secret"] = nil
	doc["gateway"]["webhook_secret_file"] = "${CREDENTIALS_DIRECTORY}/wooshpay_webhook_secret"
	doc["mail"]["password"] = nil
	doc["mail"]["password_file"] = "${CREDENTIALS_DIRECTORY}/smtp_password"
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)

	cfg, err := opts(map[string]string{"CREDENTIALS_DIRECTORY": dir}).ParseAndValidate(out, "/etc/billingd")
	require.NoError(t, err)
	require.Equal(t, testSecretKey, cfg.Gateway.SecretKey.Reveal())
	require.Equal(t, testWebhookSecret, cfg.Gateway.WebhookSecret.Reveal())
	require.Equal(t, testSMTPPassword, cfg.Mail.Password.Reveal())
}
