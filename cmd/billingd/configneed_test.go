package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"

	"github.com/stretchr/testify/require"
)

// secretsFromNowhere is a config whose gateway and SMTP secrets come from an
// environment variable and a credentials directory that are not there, as in
// an operator's shell on the service's host.
const secretsFromNowhere = `
database: { driver: sqlite, dsn: %DIR%/billingd.db }
gateway:
  base_url: "http://127.0.0.1:12111"
  secret_key: "${BILLINGD_TEST_UNSET_SECRET_KEY}"
  webhook_secret_file: "${BILLINGD_TEST_UNSET_CREDENTIALS}/wooshpay_webhook_secret"
http: { public_base_url: "https://billing.example.com" }
mail: { host: smtp.example.com, from: "Billing <billing@example.com>", password_file: /nonexistent/smtp_password }
`

func TestReadOnlyCommandsNeedNoSecrets(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "c.yaml", strings.ReplaceAll(secretsFromNowhere, "%DIR%", dir))

	code, out, errOut := runMain(t, nil, "migrate", "-c", p)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
	require.Contains(t, out, "applied")

	code, out, errOut = runMain(t, nil, "status", "-c", p)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
	require.Contains(t, out, "subscriptions")

	code, out, errOut = runMain(t, nil, "once", "--dry-run", "-c", p)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
	require.Contains(t, out, "nothing was changed (dry run)")

	// An import that does not ask the gateway needs no secret either.
	csv := writeFile(t, dir, "subs.csv", "reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor\n"+
		"ns-1,a@example.com,cus_1,pm_1,1000,USD,month,1,2030-01-01T00:00:00Z\n")
	code, out, errOut = runMain(t, nil, "subscriptions", "import", csv, "--no-verify", "-c", p)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)
	require.Contains(t, out, "imported 1 subscription(s)")

	// The same file is not enough for the daemon, and check-config says why.
	code, _, errOut = runMain(t, nil, "check-config", "-c", p)
	require.Equal(t, exitUsage, code)
	for _, key := range []string{"gateway.secret_key:", "gateway.webhook_secret_file:", "mail.password_file:"} {
		require.Contains(t, errOut, key)
	}
}

func TestReadOnlyCommandsStillRejectABadFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, key string }{
		{"unknown key in a section they do not use", "\nmail: { hots: smtp.example.com }\n", "mail.hots"},
		{"bad database driver", "\ndatabase: { driver: mysql }\n", "database.driver"},
	} {
		for _, cmd := range []string{"status", "migrate"} {
			t.Run(cmd+" "+tc.name, func(t *testing.T) {
				p := writeFile(t, dir, "c.yaml", tc.body)
				code, _, errOut := runMain(t, nil, cmd, "-c", p)
				require.Equal(t, exitUsage, code)
				require.Contains(t, errOut, tc.key)
			})
		}
	}
}

// An upgrade with `billingd migrate` gives existing subscriptions the zone the
// config names, not a default: their periods were computed there.
func TestMigrateGivesExistingSubscriptionsTheConfiguredZone(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "billingd.db")
	ctx := context.Background()
	old, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: dbPath})
	require.NoError(t, err)
	_, err = old.MigrateTo(ctx, 4)
	require.NoError(t, err)
	storetest.SeedBeforeTimezones(t, old, time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC), storetest.Subscription{Reference: "old-1"})
	require.NoError(t, old.Close())

	p := writeFile(t, dir, "c.yaml", strings.ReplaceAll(secretsFromNowhere, "%DIR%", dir)+"schedule: { timezone: Europe/Berlin }\n")
	code, out, errOut := runMain(t, nil, "migrate", "-c", p)
	require.Equal(t, exitOK, code, "stdout %s stderr %s", out, errOut)

	st, err := store.Open(ctx, store.Options{Driver: store.SQLite, DSN: dbPath})
	require.NoError(t, err)
	defer st.Close()
	var sub models.Subscription
	require.NoError(t, st.DB().Where("reference = ?", "old-1").First(&sub).Error)
	require.Equal(t, "Europe/Berlin", sub.Timezone)
}
