package config

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const examplePath = "../../config.example.yaml"

var exampleEnv = map[string]string{
	"WOOSHPAY_SECRET_KEY":     testSecretKey,
	"WOOSHPAY_WEBHOOK_SECRET": testWebhookSecret,
	"SMTP_PASSWORD":           testSMTPPassword,
}

func TestExampleConfigValidates(t *testing.T) {
	cfg, err := opts(exampleEnv).LoadAndValidate(examplePath)
	require.NoError(t, err)

	// Apart from the values an operator must choose, the example shows the
	// defaults; this keeps its comments and Default() from drifting apart.
	want := Default()
	want.Gateway.BaseURL = "https://apitest.wooshpay.com"
	want.Gateway.SecretKey = testSecretKey
	want.Gateway.WebhookSecret = testWebhookSecret
	want.HTTP.PublicBaseURL = "https://billing.example.com"
	want.Mail.Host = "smtp.example.com"
	want.Mail.Username = "billing@example.com"
	want.Mail.Password = testSMTPPassword
	want.Mail.From = "Billing <billing@example.com>"
	require.Equal(t, want, stripLines(cfg))
}

func TestExampleConfigNeedsItsEnvironment(t *testing.T) {
	_, err := opts(nil).LoadAndValidate(examplePath)
	errs := fieldErrors(t, err)
	require.Equal(t, []string{"gateway.secret_key", "gateway.webhook_secret", "mail.password"}, errs.Keys())
	require.Contains(t, err.Error(), "gateway.secret_key: environment variable WOOSHPAY_SECRET_KEY is not set")
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
