package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
)

// eventCommands are `billingd events list|show|redeliver`: the events sent
// to the merchant's systems (events.url), read and sent again.
func (m *Main) eventCommands() map[string]subcommand {
	return map[string]subcommand{"list": m.cmdEventsList, "show": m.cmdEventsShow, "redeliver": m.cmdEventsRedeliver}
}

// needRedeliver is what `billingd events redeliver` reads of the config:
// the database and the events section with its signing secrets. It needs no
// gateway or SMTP secret.
var needRedeliver = config.Need{EventsSecret: true}

// repeatedFlag collects a flag given several times (each value may also be a
// comma-separated list).
type repeatedFlag []string

func (r *repeatedFlag) String() string { return strings.Join(*r, ",") }

func (r *repeatedFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*r = append(*r, part)
		}
	}
	return nil
}

// flagFieldError names the flag of a bad value ops refused (ops names the
// field: "type" is --type).
func flagFieldError(err error) error {
	var fe *ops.FieldError
	if errors.As(err, &fe) && !strings.Contains(fe.Field, ".") {
		f := *fe
		f.Field = "--" + fe.Field
		return &f
	}
	return err
}

// eventTimes reads --from and --to.
func eventTimes(from, to string) (*time.Time, *time.Time, error) {
	var out [2]*time.Time
	for i, d := range []struct{ name, v string }{{"--from", from}, {"--to", to}} {
		if v := strings.TrimSpace(d.v); v != "" {
			t, err := dateFlag(d.name, v, time.UTC)
			if err != nil {
				return nil, nil, err
			}
			t = t.UTC()
			out[i] = &t
		}
	}
	return out[0], out[1], nil
}

func (m *Main) cmdEventsList(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("events list")
	var types repeatedFlag
	var status, subscription, object, from, to string
	var failed bool
	var limit int
	fs.Var(&types, "type", "only events of this `TYPE` (repeat the flag, or comma-separate; "+strings.Join(ops.EventTypeNames(), ", ")+")")
	fs.StringVar(&status, "status", "", "only events in this `STATUS` ("+strings.Join(ops.EventStatusNames, ", ")+")")
	fs.BoolVar(&failed, "failed", false, "only failed events (same as --status failed): the ones to redeliver")
	fs.StringVar(&subscription, "subscription", "", "only this subscription's events (its `REFERENCE`)")
	fs.StringVar(&object, "object", "", "only the events of this object (`REF`: a subscription reference, an invoice number, a dunning case id)")
	fs.StringVar(&from, "from", "", "occurred at or after `DATE` (YYYY-MM-DD, midnight UTC, or RFC 3339)")
	fs.StringVar(&to, "to", "", "occurred before `DATE` (YYYY-MM-DD, midnight UTC, or RFC 3339)")
	fs.IntVar(&limit, "limit", 100, "at most `N` rows (the oldest first)")
	out := addOutputFlags(fs)
	if err := flagsOnly(fs, args, out); err != nil {
		return err
	}
	if limit <= 0 {
		return usagef("--limit %d: must be at least 1", limit)
	}
	f := ops.EventFilter{Types: types, Subscription: subscription, Object: object, Limit: limit}
	switch {
	case failed && status != "" && status != string(models.EventFailed):
		return usagef("--failed and --status %s exclude each other", status)
	case failed:
		f.Statuses = []string{string(models.EventFailed)}
	case strings.TrimSpace(status) != "":
		f.Statuses = []string{strings.TrimSpace(status)}
	}
	var err error
	if f.From, f.To, err = eventTimes(from, to); err != nil {
		return err
	}
	// Bad names fail before the config is read: the flag is the problem.
	if err := ops.CheckEventTypes(f.Types); err != nil {
		return flagFieldError(err)
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), config.NeedDatabase)
	if err != nil {
		return err
	}
	svc, done, err := m.readOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	rows, err := svc.ListEvents(ctx, f)
	if err != nil {
		return flagFieldError(err)
	}
	return out.emit(m.Stdout, eventTable(rows), rows)
}

func eventTable(es []ops.Event) table {
	t := table{header: []string{"id", "type", "subscription", "object", "status", "attempts", "last", "occurred_at", "delivered_at"}}
	for _, e := range es {
		t.add(e.ID, e.Type, e.Subscription, e.Object, e.Status, strconv.Itoa(e.Attempts), lastTry(e), when(&e.OccurredAt), when(e.DeliveredAt))
	}
	return t
}

// lastTry is an event's last answer: the HTTP status, else the error ("-"
// before the first try).
func lastTry(e ops.Event) string {
	switch {
	case e.LastStatus != 0 && e.LastError != "":
		return e.LastError
	case e.LastStatus != 0:
		return strconv.Itoa(e.LastStatus)
	case e.LastError != "":
		return e.LastError
	}
	return "-"
}

func (m *Main) cmdEventsShow(ctx context.Context, args []string) error {
	return runShow(ctx, m, "events show", "event id (evt_…)", args, nil, (*ops.Service).EventOf,
		func(e *ops.Event) table { return eventTable([]ops.Event{*e}) }, printEvent)
}

// printEvent prints one event for a person: its delivery, then the exact
// body (indented; the receiver got it compact, byte for byte as stored).
func printEvent(w io.Writer, e *ops.Event) error {
	fmt.Fprintf(w, "Event %s  %s  (%s)\n", e.ID, e.Type, e.Status)
	fmt.Fprintf(w, "  object        %s %s\n", e.ObjectType, e.Object)
	fmt.Fprintf(w, "  subscription  %s\n", e.Subscription)
	fmt.Fprintf(w, "  occurred %s, delivered %s\n", when(&e.OccurredAt), when(e.DeliveredAt))
	fmt.Fprintf(w, "  attempts %d, last answer %s, next try %s\n", e.Attempts, lastTry(*e), when(e.NextAttemptAt))
	fmt.Fprintf(w, "\nBody:\n")
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, e.Body, "", "  "); err != nil {
		pretty.Reset()
		pretty.Write(e.Body)
	}
	_, err := fmt.Fprintln(w, pretty.String())
	return err
}

func (m *Main) cmdEventsRedeliver(ctx context.Context, args []string) error {
	fs, path := m.newFlagSet("events redeliver")
	af := addActionFlags(fs)
	var types repeatedFlag
	var failed bool
	var from, to string
	fs.BoolVar(&failed, "failed", false, "redeliver every failed event (narrowed by --type, --from, --to) instead of named ones")
	fs.Var(&types, "type", "with --failed: only events of this `TYPE` (repeat the flag, or comma-separate)")
	fs.StringVar(&from, "from", "", "with --failed: occurred at or after `DATE` (YYYY-MM-DD, midnight UTC, or RFC 3339)")
	fs.StringVar(&to, "to", "", "with --failed: occurred before `DATE` (YYYY-MM-DD, midnight UTC, or RFC 3339)")
	out := addOutputFlags(fs)
	ids, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	switch {
	case len(ids) == 0 && !failed:
		return usagef("name the events to redeliver (evt_… ids) or give --failed (see billingd events redeliver -h)")
	case len(ids) > 0 && failed:
		return usagef("give event ids or --failed, not both")
	case len(ids) > 0 && (len(types) > 0 || from != "" || to != ""):
		return usagef("--type, --from and --to narrow --failed; with event ids give none of them")
	}
	sel := ops.EventSelection{IDs: ids, Failed: failed, Types: types}
	if sel.From, sel.To, err = eventTimes(from, to); err != nil {
		return err
	}
	if err := ops.CheckEventTypes(sel.Types); err != nil {
		return flagFieldError(err)
	}
	cfg, err := m.loadConfigFor(m.configPath(*path), needRedeliver)
	if err != nil {
		return err
	}
	svc, done, err := m.readOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	results, err := svc.RedeliverEvents(ctx, af.who(), af.reason, sel)
	if perr := printRedeliveries(m.Stdout, out, results); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return flagFieldError(err)
	}
	refused := 0
	for _, r := range results {
		if !r.Delivered {
			refused++
		}
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d events were not accepted (answered other than 2xx, or not at all); they keep their status", refused, len(results))
	}
	return nil
}

func printRedeliveries(w io.Writer, out *outputFormat, rs []ops.Redelivery) error {
	if rs == nil {
		rs = []ops.Redelivery{}
	}
	t := table{header: []string{"id", "type", "subscription", "http_status", "delivered", "status", "error"}}
	for _, r := range rs {
		status := "-"
		if r.HTTPStatus != 0 {
			status = strconv.Itoa(r.HTTPStatus)
		}
		t.add(r.Event.ID, r.Event.Type, r.Event.Subscription, status, strconv.FormatBool(r.Delivered), r.Event.Status, dash(r.Error))
	}
	return out.emit(w, t, rs)
}
