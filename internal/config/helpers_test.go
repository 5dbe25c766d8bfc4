package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// Distinctive secret values: any error or log output containing one of them
// is a leak.
const (
	testSecretKey     = "sk_test_TOPSECRETkey123"
	testWebhookSecret = "whsec_TOPSECRETwebhook456"
	testSMTPPassword  = "smtp-TOPSECRET-pw789"
	testDSNPassword   = "pgTOPSECRETpass"
)

var allSecrets = []string{testSecretKey, testWebhookSecret, testSMTPPassword, testDSNPassword, "TOPSECRET"}

// requireNoSecret fails if s contains any test secret.
func requireNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, sec := range allSecrets {
		require.NotContains(t, s, sec, "secret leaked")
	}
}

// envMap returns a LookupEnv backed by m.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// opts uses only the given environment, never the process's.
func opts(env map[string]string) Options {
	return Options{LookupEnv: envMap(env)}
}

// remove marks a key to delete in docWith.
type remove struct{}

// baseDoc is a minimal valid configuration, with mail enabled so the mail
// rules are exercised.
func baseDoc() map[string]any {
	return map[string]any{
		"gateway": map[string]any{
			"secret_key":     testSecretKey,
			"webhook_secret": testWebhookSecret,
		},
		"http": map[string]any{
			"public_base_url": "https://billing.example.com",
		},
		"mail": map[string]any{
			"host":     "smtp.example.com",
			"username": "billing@example.com",
			"password": testSMTPPassword,
			"from":     "Billing <billing@example.com>",
		},
	}
}

// docWith renders baseDoc with dotted-key overrides applied; a remove{} value
// deletes the key.
func docWith(t *testing.T, set map[string]any) []byte {
	t.Helper()
	doc := baseDoc()
	for key, val := range set {
		parts := strings.Split(key, ".")
		m := doc
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		last := parts[len(parts)-1]
		if _, del := val.(remove); del {
			delete(m, last)
		} else {
			m[last] = val
		}
	}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return out
}

// fieldErrors extracts Errors from err, failing the test if it is not one.
func fieldErrors(t *testing.T, err error) Errors {
	t.Helper()
	require.Error(t, err)
	var errs Errors
	require.True(t, errors.As(err, &errs), "error %T is not config.Errors: %v", err, err)
	require.NotEmpty(t, errs)
	return errs
}

// stripLines clears the line bookkeeping so parsed configs compare equal to
// constructed ones.
func stripLines(c *Config) *Config {
	c.lines = nil
	return c
}
