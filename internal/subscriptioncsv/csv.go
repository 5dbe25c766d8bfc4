// Package subscriptioncsv reads the subscription import file (see README.md) and checks
// every line before anything is written, so an import is all-or-nothing and ops get
// every problem, with its line and column, in one go.
package subscriptioncsv

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
)

// Columns is the required header, in the documented order (any order is accepted).
var Columns = []string{"reference", "email", "customer", "payment_method", "amount", "currency", "interval", "interval_count", "anchor"}

// OptionalColumns may be present too. timezone is the IANA zone the
// subscription's calendar is read in; an empty or missing one takes
// Options.Location.
var OptionalColumns = []string{"description", "timezone"}

// maxErrors stops reporting after this many problems; a file that bad is the wrong file.
const maxErrors = 200

// Options tune the checks.
type Options struct {
	// Location is the default zone (schedule.timezone) for rows without a
	// timezone. It must be an IANA zone (its String is stored with each row
	// that takes it); nil means UTC.
	Location *time.Location
	// Now is the import time: anchors are compared with it.
	Now time.Time
	// Backfill allows anchors more than one period in the past. Without it such a
	// row is an error, because importing it would bill every missed period at once.
	Backfill bool
}

// Parse reads and checks a whole file. It returns the rows only when every line is
// valid; otherwise store.ImportErrors lists every problem.
func Parse(r io.Reader, opts Options) ([]store.ImportRow, error) {
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	defaultZone := opts.Location.String()
	if _, err := period.LoadZone(defaultZone); err != nil {
		return nil, fmt.Errorf("subscriptioncsv: default time zone: %w", err)
	}
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3) // a spreadsheet's UTF-8 byte order mark
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var problems store.ImportErrors
	add := func(line int, col, val, msg string) {
		if len(problems) < maxErrors {
			problems = append(problems, store.RowError{Line: line, Column: col, Value: val, Message: msg})
		}
	}

	header, err := cr.Read()
	if err == io.EOF {
		return nil, store.ImportErrors{{Line: 1, Message: "the file is empty; it needs a header row: " + strings.Join(Columns, ",")}}
	}
	if err != nil {
		return nil, store.ImportErrors{{Line: lineOf(err, 1), Message: "cannot read the header: " + err.Error()}}
	}
	index := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if _, dup := index[h]; dup {
			add(1, h, "", "column appears twice in the header")
			continue
		}
		if !known(h) {
			add(1, h, "", "unknown column; expected "+strings.Join(append(append([]string{}, Columns...), OptionalColumns...), ","))
			continue
		}
		index[h] = i
	}
	for _, c := range Columns {
		if _, ok := index[c]; !ok {
			add(1, c, "", "required column is missing from the header")
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}

	var rows []store.ImportRow
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				add(pe.Line, "", "", "malformed CSV: "+pe.Err.Error())
				if len(problems) >= maxErrors {
					break
				}
				continue
			}
			return nil, fmt.Errorf("subscriptioncsv: read: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			add(line, "", "", fmt.Sprintf("has %d fields, the header has %d", len(rec), len(header)))
			continue
		}
		get := func(c string) string {
			if i, ok := index[c]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		before := len(problems)
		row := store.ImportRow{Line: line, Reference: get("reference"), Email: get("email"), Customer: get("customer"),
			PaymentMethod: get("payment_method"), Currency: get("currency"), Interval: get("interval"), Description: get("description")}

		switch {
		case row.Reference == "":
			add(line, "reference", "", "is required")
		case len(row.Reference) > 200:
			add(line, "reference", row.Reference[:40]+"…", "is longer than 200 characters")
		default:
			if first, dup := seen[row.Reference]; dup {
				add(line, "reference", row.Reference, fmt.Sprintf("duplicates line %d", first))
			} else {
				seen[row.Reference] = line
			}
		}
		if a, err := mail.ParseAddress(row.Email); err != nil || a.Address != row.Email {
			add(line, "email", row.Email, "is not a plain e-mail address")
		}
		if !strings.HasPrefix(row.Customer, "cus_") || len(row.Customer) < 5 {
			add(line, "customer", row.Customer, "must be a gateway customer id (cus_…)")
		}
		if !strings.HasPrefix(row.PaymentMethod, "pm_") || len(row.PaymentMethod) < 4 {
			add(line, "payment_method", row.PaymentMethod, "must be a gateway payment method id (pm_…)")
		}
		if amt, err := strconv.ParseInt(get("amount"), 10, 64); err != nil || amt <= 0 {
			add(line, "amount", get("amount"), "must be a positive whole number of minor units (1050 for 10.50 USD)")
		} else {
			row.Amount = amt
		}
		if !money.Valid(row.Currency) {
			add(line, "currency", row.Currency, "must be an upper-case ISO 4217 code such as USD")
		}
		iv, err := period.ParseInterval(row.Interval)
		if err != nil {
			add(line, "interval", row.Interval, "must be one of day, week, month, year")
		}
		count, cerr := strconv.Atoi(get("interval_count"))
		if cerr != nil || count < 1 {
			add(line, "interval_count", get("interval_count"), "must be a whole number >= 1")
		} else {
			row.IntervalCount = count
		}
		// The anchor is the instant written, offset included; which calendar
		// day and wall-clock time it stands for is read in the row's zone.
		anchor, aerr := time.Parse(time.RFC3339, get("anchor"))
		if aerr != nil {
			add(line, "anchor", get("anchor"), "must be an RFC 3339 time such as 2026-01-31T09:00:00Z")
		} else {
			row.Anchor = anchor.UTC()
		}
		row.Timezone = get("timezone")
		if row.Timezone == "" {
			row.Timezone = defaultZone
		}
		loc, zerr := period.LoadZone(row.Timezone)
		if zerr != nil {
			add(line, "timezone", row.Timezone, "must be an IANA time zone name such as UTC or Europe/Berlin")
		}
		if len(problems) == before {
			rec := period.Recurrence{Anchor: row.Anchor, Interval: iv, Count: row.IntervalCount, Location: loc}
			if err := rec.Validate(); err != nil {
				add(line, "interval_count", get("interval_count"), err.Error())
			} else {
				row.FirstBilling = rec.PeriodStart(0)
				if due := len(rec.Due(0, opts.Now, 0)); due > 1 && !opts.Backfill {
					add(line, "anchor", get("anchor"), fmt.Sprintf("is %d periods in the past: importing it would bill all %d at once (pass --backfill if that is intended)", due, due))
				}
			}
		}
		if len(problems) == before {
			rows = append(rows, row)
		}
		if len(problems) >= maxErrors {
			break
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	if len(rows) == 0 {
		return nil, store.ImportErrors{{Line: 2, Message: "the file has a header but no subscriptions"}}
	}
	return rows, nil
}

func known(col string) bool {
	for _, c := range Columns {
		if c == col {
			return true
		}
	}
	for _, c := range OptionalColumns {
		if c == col {
			return true
		}
	}
	return false
}

func lineOf(err error, def int) int {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Line
	}
	return def
}
