package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/schedule/period"
)

// reportCommands are `billingd report …`.
func (m *Main) reportCommands() map[string]subcommand {
	return map[string]subcommand{"revenue": m.cmdRevenue, "export": m.cmdExport}
}

// cmdRevenue is `billingd report revenue`: collected, refunded and net per
// currency over a month (in --tz) or [--from, --to).
func (m *Main) cmdRevenue(ctx context.Context, args []string) error {
	var rf reportRange
	var out *outputFormat
	cfg, _, err := m.parseConfigFor("report revenue", args, config.NeedDatabase, func(fs *flag.FlagSet) {
		rf.add(fs)
		out = addOutputFlags(fs)
	})
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	from, to, loc, err := rf.resolve()
	if err != nil {
		return err
	}
	svc, closeOps, err := m.readOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeOps()
	rows, err := svc.Revenue(ctx, from, to)
	if err != nil {
		return err
	}
	return out.emit(m.Stdout, revenueTable(rows, out.csv), map[string]any{
		"from": from, "to": to, "timezone": loc.String(), "currencies": rows,
	})
}

// reportRange is the range flags of the report commands: a month or
// [--from, --to), read in --tz.
type reportRange struct{ month, from, to, tz string }

func (r *reportRange) add(fs *flag.FlagSet) {
	fs.StringVar(&r.month, "month", "", "the calendar `YYYY-MM` in --tz (default: the current month)")
	fs.StringVar(&r.from, "from", "", "start of the range, included: `DATE` YYYY-MM-DD (midnight in --tz) or RFC 3339")
	fs.StringVar(&r.to, "to", "", "end of the range, excluded: `DATE` YYYY-MM-DD (midnight in --tz) or RFC 3339")
	fs.StringVar(&r.tz, "tz", "UTC", "IANA time `zone` that dates and months are read in")
}

// resolve is the range the flags name, and the zone they were read in.
func (r *reportRange) resolve() (from, to time.Time, loc *time.Location, err error) {
	if loc, err = zoneFlag(r.tz); err != nil {
		return
	}
	from, to, err = revenueRange(time.Now(), loc, r.month, r.from, r.to)
	return
}

// revenueTable prints amounts by the currency's ISO 4217 exponent; CSV
// carries the decimal without the code (the currency is its own column).
func revenueTable(rows []ops.RevenueRow, csv bool) table {
	t := table{header: []string{"currency", "collected", "payments", "refunded", "refunds", "net"}}
	show := func(m ops.Money) string {
		if csv {
			return strings.TrimSuffix(m.Display, " "+m.Currency)
		}
		return m.Display
	}
	for _, r := range rows {
		t.add(r.Currency, show(r.Collected), strconv.Itoa(r.Payments), show(r.Refunded), strconv.Itoa(r.Refunds), show(r.Net))
	}
	return t
}

// exportHeader is the CSV header of `billingd report export`: a public
// contract (README, "Operating without SQL"); columns are only ever added at
// the end. The JSON rows carry the same names.
var exportHeader = []string{"kind", "at", "invoice", "subscription", "customer", "email", "payment", "refund", "amount", "display", "currency"}

// cmdExport is `billingd report export`: every money movement over a month
// (in --tz) or [--from, --to), one row each — as a table with a totals
// footer per currency, or CSV, or JSON with the totals beside the rows. The
// range flags are report revenue's, and so are the totals.
func (m *Main) cmdExport(ctx context.Context, args []string) error {
	var rf reportRange
	var format string
	fs, path := m.newFlagSet("report export")
	rf.add(fs)
	fs.StringVar(&format, "format", "", "output `format`: table, csv or json (--csv and --json are short for the last two)")
	out := addOutputFlags(fs)
	if err := flagsOnly(fs, args, out); err != nil {
		return err
	}
	if err := out.setFormat(format); err != nil {
		return err
	}
	from, to, loc, err := rf.resolve()
	if err != nil {
		return err
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), config.NeedDatabase)
	if err != nil {
		return err
	}
	svc, closeOps, err := m.readOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeOps()
	switch {
	case out.csv:
		return exportCSV(ctx, m.Stdout, svc, from, to)
	case out.json:
		return exportJSON(ctx, m.Stdout, svc, from, to, loc)
	}
	return exportTable(ctx, m.Stdout, svc, from, to)
}

// exportCells are one row's CSV cells, in exportHeader's order.
func exportCells(r ops.ExportRow) []string {
	return []string{r.Kind, r.At.Format(time.RFC3339), r.Invoice, r.Subscription, r.Customer, r.Email, r.Payment, r.Refund,
		strconv.FormatInt(r.Amount, 10), r.Display, r.Currency}
}

// exportCSV writes the header and each row as it is read: a month of
// payments never sits in memory at once.
func exportCSV(ctx context.Context, w io.Writer, svc *ops.Service, from, to time.Time) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(exportHeader); err != nil {
		return err
	}
	_, err := svc.Export(ctx, from, to, func(r ops.ExportRow) error { return cw.Write(exportCells(r)) })
	cw.Flush()
	if err != nil {
		return err
	}
	return cw.Error()
}

// exportJSON writes {"from","to","timezone","rows":[…],"totals":[…]},
// indented like every --json, each row as it is read; totals are report
// revenue's rows.
func exportJSON(ctx context.Context, w io.Writer, svc *ops.Service, from, to time.Time, loc *time.Location) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("{\n")
	for _, f := range []struct {
		name string
		v    any
	}{{"from", from}, {"to", to}, {"timezone", loc.String()}} {
		b, err := json.Marshal(f.v)
		if err != nil {
			return err
		}
		fmt.Fprintf(bw, "  %q: %s,\n", f.name, b)
	}
	bw.WriteString(`  "rows": [`)
	n := 0
	totals, err := svc.Export(ctx, from, to, func(r ops.ExportRow) error {
		b, err := json.MarshalIndent(r, "    ", "  ")
		if err != nil {
			return err
		}
		if n > 0 {
			bw.WriteByte(',')
		}
		n++
		bw.WriteString("\n    ")
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	if n > 0 {
		bw.WriteString("\n  ")
	}
	t, err := json.MarshalIndent(totals, "  ", "  ")
	if err != nil {
		return err
	}
	bw.WriteString("],\n  \"totals\": ")
	bw.Write(t)
	bw.WriteString("\n}\n")
	return bw.Flush()
}

// exportTable prints the rows aligned, amounts by the currency's exponent,
// then report revenue's table of the same range as the totals.
func exportTable(ctx context.Context, w io.Writer, svc *ops.Service, from, to time.Time) error {
	t := table{header: []string{"kind", "at", "invoice", "subscription", "customer", "email", "payment", "refund", "amount"}}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	totals, err := svc.Export(ctx, from, to, func(r ops.ExportRow) error {
		t.add(r.Kind, r.At.Format(time.RFC3339), dash(r.Invoice), dash(r.Subscription), dash(r.Customer), dash(r.Email),
			dash(r.Payment), dash(r.Refund), r.Display)
		return nil
	})
	if err != nil {
		return err
	}
	if err := printTable(w, t); err != nil {
		return err
	}
	if len(totals) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nTotals %s to %s:\n", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	return printTable(w, revenueTable(totals, false))
}

// zoneFlag loads --tz.
func zoneFlag(tz string) (*time.Location, error) {
	loc, err := period.LoadZone(tz)
	if err != nil {
		return nil, usagef("--tz %q: %v", tz, err)
	}
	return loc, nil
}

// revenueRange is the [from, to) of `report revenue`: --month (its first
// instant to the next month's, in loc), or --from and --to together, or the
// current month in loc when none is given.
func revenueRange(now time.Time, loc *time.Location, month, fromArg, toArg string) (time.Time, time.Time, error) {
	switch {
	case month != "" && (fromArg != "" || toArg != ""):
		return time.Time{}, time.Time{}, usagef("--month excludes --from and --to")
	case (fromArg == "") != (toArg == ""):
		if fromArg == "" {
			return time.Time{}, time.Time{}, usagef("--from: required with --to")
		}
		return time.Time{}, time.Time{}, usagef("--to: required with --from")
	case fromArg != "":
		from, err := dateFlag("--from", fromArg, loc)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		to, err := dateFlag("--to", toArg, loc)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		if !from.Before(to) {
			return time.Time{}, time.Time{}, usagef("--to %q: must be after --from %q", toArg, fromArg)
		}
		return from, to, nil
	}
	var y int
	var mo time.Month
	if month == "" {
		y, mo, _ = now.In(loc).Date()
	} else {
		t, err := time.ParseInLocation("2006-01", month, loc)
		if err != nil {
			return time.Time{}, time.Time{}, usagef("--month %q: want YYYY-MM", month)
		}
		y, mo = t.Year(), t.Month()
	}
	// Midnight exists in every zone billingd knows except where a DST change
	// happens at midnight; time.Date then picks an instant of that day, the
	// same one for the end of one month and the start of the next.
	return time.Date(y, mo, 1, 0, 0, 0, 0, loc), time.Date(y, mo+1, 1, 0, 0, 0, 0, loc), nil
}

// cmdForecast is `billingd forecast`: the new-period charges of the next
// --days days, per day in --tz and currency.
func (m *Main) cmdForecast(ctx context.Context, args []string) error {
	var days int
	var tz string
	var out *outputFormat
	cfg, _, err := m.parseConfigFor("forecast", args, config.NeedDatabase, func(fs *flag.FlagSet) {
		fs.IntVar(&days, "days", 30, fmt.Sprintf("how many days ahead, 1..%d", ops.MaxForecastDays))
		fs.StringVar(&tz, "tz", "UTC", "IANA time `zone` whose calendar days the charges are grouped by")
		out = addOutputFlags(fs)
	})
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	if days < 1 || days > ops.MaxForecastDays {
		return usagef("--days %d: must be between 1 and %d", days, ops.MaxForecastDays)
	}
	loc, err := zoneFlag(tz)
	if err != nil {
		return err
	}
	svc, closeOps, err := m.readOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeOps()
	now := time.Now().UTC()
	rows, err := svc.Forecast(ctx, now, days, loc)
	if err != nil {
		return err
	}
	t := table{header: []string{"day", "currency", "charges", "total", "past_due", "past_due_total"}}
	show := func(m ops.Money) string {
		if out.csv {
			return strings.TrimSuffix(m.Display, " "+m.Currency)
		}
		return m.Display
	}
	for _, r := range rows {
		t.add(r.Day, r.Currency, strconv.Itoa(r.Count), show(r.Total), strconv.Itoa(r.AtRisk), show(r.AtRiskTotal))
	}
	return out.emit(m.Stdout, t, map[string]any{
		"from": now, "until": now.Add(time.Duration(days) * 24 * time.Hour), "timezone": loc.String(), "days": rows,
	})
}
