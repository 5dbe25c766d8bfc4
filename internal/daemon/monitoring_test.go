package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
)

// metricName finds the metric names in a PromQL expression: billingd's own
// and the Go and process collectors' (label names, functions and label values
// never start with these prefixes followed by a name).
var metricName = regexp.MustCompile(`\b(?:billingd|go|process)_[a-zA-Z0-9_]+\b`)

// monitoringExpressions reads every PromQL expression of the monitoring kit:
// the alerting rules and the dashboard's panel queries and variables.
func monitoringExpressions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	raw, err := os.ReadFile("../../docs/monitoring/alerts.yml")
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &rules))
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	raw, err = os.ReadFile("../../docs/monitoring/billingd-dashboard.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, q := range p.Targets {
			out["panel "+p.Title+" "+q.RefID] = q.Expr
		}
	}
	for _, v := range dash.Templating.List {
		out["variable "+v.Name] = v.Definition
	}
	return out
}

// servedMetrics is the set of series names /metrics serves (a histogram's
// _bucket, _sum and _count each by name).
func servedMetrics(t *testing.T, b *daemontest.Bundle) map[string]bool {
	t.Helper()
	res, err := http.Get(b.URL + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	served := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		served[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	return served
}

// Every metric the alerting rules and the Grafana dashboard in
// docs/monitoring query is one billingd serves on /metrics after a pass: a
// renamed metric or a typo in the kit fails here, not silently in
// production.
func TestMonitoringKitQueriesServedMetrics(t *testing.T) {
	exprs := monitoringExpressions(t)
	require.Greater(t, len(exprs), 20)

	b := daemontest.New(t, daemontest.Options{})
	cus, pm := b.SaveCard(t, "4242424242424242")
	// A declined card opens a dunning case, whose email the outbox sends.
	cus2, pm2 := b.SaveCard(t, "4000000000000002")
	b.Seed(t, storetest.Subscription{Reference: "kit-1", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()},
		storetest.Subscription{Reference: "kit-2", Customer: cus2, PaymentMethod: pm2, Amount: 1500, Currency: "EUR", Anchor: b.Clock.Now()})
	b.Run(t, time.Second, time.Second)
	var inv models.Invoice
	require.NoError(t, b.Store.DB().Where("status = ?", models.InvoicePaid).First(&inv).Error)
	_, err := b.D.Refund(context.Background(), inv.ID, 250, models.RefundReasonRequestedByCustomer, "kit-refund")
	require.NoError(t, err)
	b.Run(t, time.Minute, 30*time.Second)

	served := servedMetrics(t, b)
	var missing []string
	used := map[string]bool{}
	for where, expr := range exprs {
		names := metricName.FindAllString(expr, -1)
		require.NotEmpty(t, names, "%s names no billingd metric: %s", where, expr)
		for _, n := range names {
			used[n] = true
			if !served[n] {
				missing = append(missing, where+": "+n)
			}
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "queried but not served by /metrics")
	require.GreaterOrEqual(t, len(used), 15, "the kit covers the money path")
}

// gaugeValue reads one unlabelled (or fully labelled) series from /metrics.
func gaugeValue(t *testing.T, b *daemontest.Bundle, series string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(metricsText(t, b))
	require.NotNil(t, m, "%s not served", series)
	return m[1]
}

// The database gauges the alerts read: an outbox that cannot send (no mail
// host) ages its oldest due email; a dunning case exhausted is counted as
// closed for 7 days, then no longer.
func TestOutboxAndRecoveryGauges(t *testing.T) {
	daemontest.Each(t, daemontest.Options{NoMail: true}, func(t *testing.T, b *daemontest.Bundle) {
		cus, pm := b.SaveCard(t, "4000000000000002") // generic_decline (soft)
		b.Seed(t, storetest.Subscription{Reference: "gauge-1", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
		require.Equal(t, "0", gaugeValue(t, b, "billingd_oldest_due_email_age_seconds"))
		b.Run(t, time.Second, time.Second)
		b.Clock.Advance(10 * time.Minute)
		require.Equal(t, "601", gaugeValue(t, b, "billingd_oldest_due_email_age_seconds"), "the dunning email has waited since the decline")
		require.Equal(t, "0", gaugeValue(t, b, `billingd_dunning_cases_closed_7d{status="exhausted"}`))

		b.Run(t, 20*24*time.Hour, time.Hour) // the 16-day schedule runs out
		require.Equal(t, "1", gaugeValue(t, b, `billingd_dunning_cases_closed_7d{status="exhausted"}`))
		require.Equal(t, "0", gaugeValue(t, b, `billingd_dunning_cases_closed_7d{status="recovered"}`))
		b.Clock.Advance(8 * 24 * time.Hour)
		require.Equal(t, "0", gaugeValue(t, b, `billingd_dunning_cases_closed_7d{status="exhausted"}`))
	})
}
