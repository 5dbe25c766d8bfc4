package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/models"
)

func TestRevenueRange(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	now := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name                   string
		loc                    *time.Location
		month, from, to        string
		wantFrom, wantTo, flag string
	}{
		{name: "current month", loc: time.UTC, wantFrom: "2026-12-01T00:00:00Z", wantTo: "2027-01-01T00:00:00Z"},
		{name: "month in UTC", loc: time.UTC, month: "2026-11", wantFrom: "2026-11-01T00:00:00Z", wantTo: "2026-12-01T00:00:00Z"},
		{name: "month in Berlin across the DST end", loc: berlin, month: "2026-10", wantFrom: "2026-09-30T22:00:00Z", wantTo: "2026-10-31T23:00:00Z"},
		{name: "current month in a zone where it is still November", loc: mustZone(t, "America/Los_Angeles"), wantFrom: "2026-11-01T07:00:00Z", wantTo: "2026-12-01T08:00:00Z"},
		{name: "dates", loc: berlin, from: "2026-11-01", to: "2026-11-15", wantFrom: "2026-10-31T23:00:00Z", wantTo: "2026-11-14T23:00:00Z"},
		{name: "RFC 3339", loc: berlin, from: "2026-11-01T06:00:00Z", to: "2026-11-02T00:00:00+01:00", wantFrom: "2026-11-01T06:00:00Z", wantTo: "2026-11-01T23:00:00Z"},
		{name: "bad month", loc: time.UTC, month: "2026-13", flag: "--month"},
		{name: "month with from", loc: time.UTC, month: "2026-11", from: "2026-11-01", flag: "--month"},
		{name: "from alone", loc: time.UTC, from: "2026-11-01", flag: "--to"},
		{name: "to alone", loc: time.UTC, to: "2026-11-01", flag: "--from"},
		{name: "bad from", loc: time.UTC, from: "1 Nov", to: "2026-11-02", flag: "--from"},
		{name: "to before from", loc: time.UTC, from: "2026-11-02", to: "2026-11-01", flag: "--to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, to, err := revenueRange(now, tc.loc, tc.month, tc.from, tc.to)
			if tc.flag != "" {
				var ue usageError
				require.ErrorAs(t, err, &ue)
				require.True(t, strings.HasPrefix(err.Error(), tc.flag), "%v names %s", err, tc.flag)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantFrom, from.UTC().Format(time.RFC3339))
			require.Equal(t, tc.wantTo, to.UTC().Format(time.RFC3339))
		})
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

// `billingd report revenue` and `billingd forecast` on the demo's database,
// as an operator runs them with a config naming it: figures formatted by
// the currency's exponent, JSON and CSV for scripts, bad flags exit 2 naming
// the flag.
func TestReportCommandsOnTheDemoDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	code, out, errOut := runMain(t, nil, "demo", "--dir", dir, "--processing-delay", "50ms")
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	cfg := writeFile(t, t.TempDir(), "config.yaml", "database: { driver: sqlite, dsn: "+filepath.Join(dir, "billingd.db")+" }\n")

	// The demo's payments succeeded this month (UTC): 19.99 + 60.00 USD,
	// 49.00 EUR, 1200 JPY; nothing refunded.
	code, out, errOut = runMain(t, nil, "report", "revenue", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^USD\s+79\.99 USD\s+2\s+0\.00 USD\s+0\s+79\.99 USD\s*$`, out)
	require.Regexp(t, `(?m)^JPY\s+1200 JPY\s+1\s+0 JPY\s+0\s+1200 JPY\s*$`, out)
	require.Regexp(t, `(?m)^EUR\s+49\.00 EUR\s+1\s+`, out)

	code, out, errOut = runMain(t, nil, "report", "revenue", "--json", "--from", time.Now().Add(-time.Hour).Format(time.RFC3339),
		"--to", time.Now().Add(time.Hour).Format(time.RFC3339), "-c", cfg)
	require.Equal(t, 0, code, errOut)
	var rep struct {
		Currencies []struct {
			Currency string `json:"currency"`
			Net      struct {
				Amount  int64  `json:"amount"`
				Display string `json:"display"`
			} `json:"net"`
		} `json:"currencies"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Currencies, 3)
	require.Equal(t, "EUR", rep.Currencies[0].Currency)
	require.EqualValues(t, 4900, rep.Currencies[0].Net.Amount)

	code, out, errOut = runMain(t, nil, "report", "revenue", "--csv", "--tz", "Asia/Tokyo", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "currency,collected,payments,refunded,refunds,net\n")

	code, out, errOut = runMain(t, nil, "forecast", "--days", "31", "--csv", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Equal(t, "day,currency,charges,total,past_due,past_due_total", lines[0])
	require.Contains(t, out, ",JPY,1,1200,0,0\n", "the weekly JPY plan, each week")
	require.Regexp(t, `,USD,7,203\.98,5,123\.99\n`, out, "the monthly USD plans a month on, five of them in dunning")

	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"forecast", "--days", "0"}, "--days"},
		{[]string{"forecast", "--days", "367"}, "--days"},
		{[]string{"forecast", "--tz", "Mars/Olympus"}, "--tz"},
		{[]string{"report", "revenue", "--month", "2026-13"}, "--month"},
		{[]string{"report", "revenue", "--from", "2026-11-01"}, "--to"},
		{[]string{"report", "revenue", "--json", "--csv"}, "--json"},
	} {
		code, _, errOut := runMain(t, nil, append(tc.args, "-c", cfg)...)
		require.Equal(t, exitUsage, code, "%v: %s", tc.args, errOut)
		require.Contains(t, errOut, tc.flag, "%v", tc.args)
	}
}

// The forecast of the demo's database after its first pass, next to what 31
// days on a simulated clock then invoice: the charges of subscriptions not in
// dunning are exactly the invoices created (day, currency, count, amount);
// the past_due part is what dunning may still end first — on the demo every
// case is exhausted within its 16-day schedule (final_action cancel), so
// none of it is invoiced.
func TestForecastMatchesASimulatedMonthOfTheDemo(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "mail"), 0o755))
	start := time.Now().UTC().Truncate(time.Second)
	clk := clock.NewFake(start)
	billingLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	billingURL := "http://" + billingLn.Addr().String()
	const provider = "wooshpay"
	gw, simURL, stopSim, err := startDemoSim(ctx, sim.Options{Provider: provider, SecretKey: demoSecretKey, Seed: 1, Now: clk.Now,
		Webhook: sim.WebhookOptions{URL: billingURL + "/webhooks/" + provider, Secret: demoWebhookSecret,
			Retry: []time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond}}})
	require.NoError(t, err)
	defer stopSim()
	env, err := newDemoEnv(provider, dir, filepath.Join(dir, "billingd.db"), simURL, billingURL, billingLn.Addr().String())
	require.NoError(t, err)
	defer env.Close()
	csvPath, _, err := saveDemoCards(ctx, env.saver, provider, dir, start, start.Year()+3)
	require.NoError(t, err)
	_, err = importFile(ctx, env.cfg, csvPath, false, start)
	require.NoError(t, err)
	d, err := daemon.New(ctx, env.cfg, daemon.Options{Clock: clk, Log: env.log})
	require.NoError(t, err)
	defer d.Close()
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(billingLn) }()
	defer srv.Close()
	tick := func() {
		require.NoError(t, settleSimulator(ctx, gw))
		d.Tick(ctx)
		require.NoError(t, settleSimulator(ctx, gw))
	}
	tick() // the demo's pass

	forecast, err := d.Ops().Forecast(ctx, clk.Now(), 31, time.UTC)
	require.NoError(t, err)
	var before []models.Invoice
	require.NoError(t, d.Store().DB().Find(&before).Error)
	end := clk.Now().Add(31 * 24 * time.Hour)
	for clk.Now().Before(end) {
		next := clk.Now().Add(time.Hour)
		if next.After(end) {
			next = end
		}
		clk.Set(next)
		tick()
	}

	type day struct {
		Day, Currency string
		Count         int
		Total         int64
	}
	invoiced := map[[2]string]*day{}
	var after []models.Invoice
	require.NoError(t, d.Store().DB().Where("id > ?", before[len(before)-1].ID).Find(&after).Error)
	for _, inv := range after {
		k := [2]string{inv.PeriodStart.UTC().Format(time.DateOnly), inv.Currency}
		if invoiced[k] == nil {
			invoiced[k] = &day{Day: k[0], Currency: k[1]}
		}
		invoiced[k].Count++
		invoiced[k].Total += inv.Amount
	}
	notInDunning := map[[2]string]*day{}
	atRisk := 0
	for _, r := range forecast {
		atRisk += r.AtRisk
		if r.Count > r.AtRisk {
			notInDunning[[2]string{r.Day, r.Currency}] = &day{r.Day, r.Currency, r.Count - r.AtRisk, r.Total.Amount - r.AtRiskTotal.Amount}
		}
	}
	require.Equal(t, notInDunning, invoiced)
	require.Len(t, invoiced, 6, "4 weeks of the JPY plan, a month of the EUR and USD ones")
	require.Equal(t, 6, atRisk, "the six past_due monthly plans")
	var canceled int64
	require.NoError(t, d.Store().DB().Model(&models.Subscription{}).Where("status = ?", models.SubscriptionCanceled).Count(&canceled).Error)
	require.EqualValues(t, 7, canceled, "every case in dunning was exhausted (the yearly KWD one too)")
}
