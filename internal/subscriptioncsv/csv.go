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
	"unicode"
	"unicode/utf8"

	"github.com/billingd/billingd/internal/gateway/units"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
)

// Columns is the required header, in the documented order (any order is accepted).
var Columns = []string{"reference", "email", "customer", "payment_method", "amount", "currency", "interval", "interval_count", "anchor"}

// OptionalColumns may be present too. timezone is the IANA zone the
// subscription's calendar is read in; an empty or missing one takes
// Options.Location.
// previous_payment_id is the customer-initiated payment that stored the card
// on Checkout.com (pay_…), required there and refused on WooshPay.
var OptionalColumns = []string{"description", "timezone", "previous_payment_id"}

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
	// Provider is gateway.provider ("" is wooshpay): it decides the shape of
	// the card ids (pm_… or src_…), whether previous_payment_id is needed,
	// and which currencies and amounts can be charged at all.
	Provider string
}

// Limits are the longest value, in characters, each column accepts; a longer
// one is refused with its line and column (docs/amounts.md lists them). They
// bound what one row can put into the database and into an email.
var Limits = map[string]int{
	"reference":           200,
	"email":               254, // RFC 5321's longest forward path, less its brackets
	"customer":            255,
	"payment_method":      255,
	"amount":              20,
	"currency":            3,
	"interval":            16,
	"interval_count":      10,
	"anchor":              64,
	"description":         500,
	"timezone":            64,
	"previous_payment_id": 255,
}

// Parse reads and checks a whole file. It returns the rows only when every line is
// valid; otherwise store.ImportErrors lists every problem. It holds the whole
// file's rows in memory; Scan does not.
func Parse(r io.Reader, opts Options) ([]store.ImportRow, error) {
	var rows []store.ImportRow
	if err := Scan(r, opts, func(row store.ImportRow) error {
		rows = append(rows, row)
		return nil
	}); err != nil {
		return nil, err
	}
	return rows, nil
}

// Scan reads and checks a file line by line and calls fn with each valid row,
// in file order, as soon as it is read: memory stays bounded by one row (and a
// set of the references seen, to find duplicates). It returns store.ImportErrors
// listing every problem of every row, after the whole file was read, if any
// line was bad (fn has then seen only the good rows: the caller must not keep
// what it wrote), and fn's error as soon as fn fails.
func Scan(r io.Reader, opts Options, fn func(store.ImportRow) error) error {
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Provider == "" {
		opts.Provider = "wooshpay"
	}
	wire := units.ForProvider(opts.Provider)
	if wire == nil {
		return fmt.Errorf("subscriptioncsv: unknown gateway provider %q", opts.Provider)
	}
	checkout := opts.Provider == "checkout"
	defaultZone := opts.Location.String()
	if _, err := period.LoadZone(defaultZone); err != nil {
		return fmt.Errorf("subscriptioncsv: default time zone: %w", err)
	}
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3) // a spreadsheet's UTF-8 byte order mark
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	var problems store.ImportErrors
	add := func(line int, col, val, msg string) {
		if len(problems) < maxErrors {
			problems = append(problems, store.RowError{Line: line, Column: col, Value: shown(val), Message: msg})
		}
	}

	header, err := cr.Read()
	if err == io.EOF {
		return store.ImportErrors{{Line: 1, Message: "the file is empty; it needs a header row: " + strings.Join(Columns, ",")}}
	}
	if err != nil {
		return store.ImportErrors{{Line: lineOf(err, 1), Message: "cannot read the header: " + err.Error()}}
	}
	header = append([]string(nil), header...)
	index := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if msg := hygiene(h, 64); msg != "" {
			add(1, fmt.Sprintf("column %d", i+1), h, msg)
			continue
		}
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
		return problems
	}

	// order is the known columns in the header's order, so a row's problems
	// are listed left to right.
	order := make([]string, 0, len(index))
	for _, h := range header {
		if c := strings.ToLower(strings.TrimSpace(h)); index[c] >= 0 && known(c) && !contains(order, c) {
			order = append(order, c)
		}
	}
	rows := 0
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
			return fmt.Errorf("subscriptioncsv: read: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			add(line, "", "", fmt.Sprintf("has %d fields, the header has %d", len(rec), len(header)))
			continue
		}
		before := len(problems)
		// Every column is checked for encoding, control characters and
		// length first; a column that fails is not read further, the
		// others still are, so a row's every problem is reported.
		clean := map[string]bool{}
		for _, c := range order {
			i := index[c]
			if msg := hygiene(rec[i], Limits[c]); msg != "" {
				add(line, c, rec[i], msg)
			} else {
				clean[c] = true
			}
		}
		get := func(c string) string {
			if i, ok := index[c]; ok && clean[c] {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := store.ImportRow{Line: line, Reference: get("reference"), Email: get("email"), Customer: get("customer"),
			PaymentMethod: get("payment_method"), Currency: get("currency"), Interval: get("interval"), Description: get("description")}

		if clean["reference"] {
			switch {
			case row.Reference == "":
				add(line, "reference", "", "is required")
			default:
				if first, dup := seen[row.Reference]; dup {
					add(line, "reference", row.Reference, fmt.Sprintf("duplicates line %d", first))
				} else {
					seen[strings.Clone(row.Reference)] = line
				}
			}
		}
		if clean["email"] {
			if a, err := mail.ParseAddress(row.Email); err != nil || a.Address != row.Email {
				add(line, "email", row.Email, "is not a plain e-mail address")
			}
		}
		if clean["customer"] && (!strings.HasPrefix(row.Customer, "cus_") || len(row.Customer) < 5) {
			add(line, "customer", row.Customer, "must be a gateway customer id (cus_…)")
		} else if clean["customer"] && !gatewayID(row.Customer) {
			add(line, "customer", row.Customer, idCharacters)
		}
		switch {
		case !clean["payment_method"]:
		case checkout && (!strings.HasPrefix(row.PaymentMethod, "src_") || len(row.PaymentMethod) < 5):
			add(line, "payment_method", row.PaymentMethod, "must be a Checkout.com stored card id (src_…)")
		case !checkout && (!strings.HasPrefix(row.PaymentMethod, "pm_") || len(row.PaymentMethod) < 4):
			add(line, "payment_method", row.PaymentMethod, "must be a gateway payment method id (pm_…)")
		case !gatewayID(row.PaymentMethod):
			add(line, "payment_method", row.PaymentMethod, idCharacters)
		}
		row.PreviousPaymentID = get("previous_payment_id")
		switch {
		case !clean["previous_payment_id"] && hasColumn(index, "previous_payment_id"):
		case checkout && row.PreviousPaymentID == "":
			add(line, "previous_payment_id", "", "is required on Checkout.com: the id (pay_…) of the customer-initiated payment that stored the card, which every recurring charge names")
		case checkout && (!strings.HasPrefix(row.PreviousPaymentID, "pay_") || len(row.PreviousPaymentID) < 5):
			add(line, "previous_payment_id", row.PreviousPaymentID, "must be a Checkout.com payment id (pay_…)")
		case checkout && !gatewayID(row.PreviousPaymentID):
			add(line, "previous_payment_id", row.PreviousPaymentID, idCharacters)
		case !checkout && row.PreviousPaymentID != "":
			add(line, "previous_payment_id", row.PreviousPaymentID, "is used only with gateway.provider checkout; leave it empty for "+opts.Provider)
		}
		currencyOK := money.Valid(row.Currency)
		if clean["currency"] && !currencyOK {
			add(line, "currency", row.Currency, "must be an ISO 4217 currency code billingd knows, in upper case, such as USD")
		} else if _, err := wire.Rule(row.Currency); clean["currency"] && err != nil {
			add(line, "currency", row.Currency, err.Error())
			currencyOK = false
		}
		if clean["amount"] {
			amt, err := strconv.ParseInt(get("amount"), 10, 64)
			switch {
			case err != nil && errors.Is(err, strconv.ErrRange) || err == nil && amt > money.Ceiling():
				add(line, "amount", get("amount"), fmt.Sprintf("must be at most %d minor units (docs/amounts.md)", money.Ceiling()))
			case err != nil || amt <= 0:
				add(line, "amount", get("amount"), "must be a positive whole number of minor units (1050 for 10.50 USD)")
			case currencyOK:
				if err := money.CheckAmount(amt, row.Currency); err != nil {
					add(line, "amount", get("amount"), err.Error())
				} else if err := wire.Check(amt, row.Currency); err != nil {
					add(line, "amount", get("amount"), err.Error())
				} else {
					row.Amount = amt
				}
			default:
				row.Amount = amt
			}
		}
		iv, ierr := period.ParseInterval(row.Interval)
		if clean["interval"] && ierr != nil {
			add(line, "interval", row.Interval, "must be one of day, week, month, year")
		}
		if clean["interval_count"] {
			count, cerr := strconv.Atoi(get("interval_count"))
			switch {
			case cerr != nil || count < 1:
				add(line, "interval_count", get("interval_count"), "must be a whole number >= 1")
			case ierr == nil && count > iv.MaxCount():
				add(line, "interval_count", get("interval_count"), fmt.Sprintf("must be at most %d for interval %s", iv.MaxCount(), iv))
			default:
				row.IntervalCount = count
			}
		}
		// The anchor is the instant written, offset included; which calendar
		// day and wall-clock time it stands for is read in the row's zone.
		if clean["anchor"] {
			anchor, aerr := time.Parse(time.RFC3339, get("anchor"))
			switch {
			case aerr != nil:
				add(line, "anchor", get("anchor"), "must be an RFC 3339 time such as 2026-01-31T09:00:00Z")
			case anchor.UTC().Year() < 1 || anchor.UTC().Year() > 9999:
				add(line, "anchor", get("anchor"), "must fall in the years 0001 to 9999 (UTC)")
			default:
				row.Anchor = anchor.UTC()
			}
		}
		row.Timezone = get("timezone")
		if row.Timezone == "" {
			row.Timezone = defaultZone
		}
		loc, zerr := period.LoadZone(row.Timezone)
		if clean["timezone"] && zerr != nil {
			add(line, "timezone", row.Timezone, "must be an IANA time zone name such as UTC or Europe/Berlin")
		}
		if len(problems) == before {
			rec := period.Recurrence{Anchor: row.Anchor, Interval: iv, Count: row.IntervalCount, Location: loc}
			if err := rec.Validate(); err != nil {
				// The checks above cover Validate's; this is a backstop.
				add(line, "", "", err.Error())
			} else {
				row.FirstBilling = rec.PeriodStart(0)
				if due := len(rec.Due(0, opts.Now, 0)); due > 1 && !opts.Backfill {
					add(line, "anchor", get("anchor"), fmt.Sprintf("is %d periods in the past: importing it would bill all %d at once (pass --backfill if that is intended)", due, due))
				}
			}
		}
		if len(problems) == before {
			row.Reference, row.Email, row.Customer = strings.Clone(row.Reference), strings.Clone(row.Email), strings.Clone(row.Customer)
			row.PaymentMethod, row.Description = strings.Clone(row.PaymentMethod), strings.Clone(row.Description)
			row.PreviousPaymentID = strings.Clone(row.PreviousPaymentID)
			rows++
			if err := fn(row); err != nil {
				return err
			}
		}
		if len(problems) >= maxErrors {
			break
		}
	}
	if len(problems) > 0 {
		return problems
	}
	if rows == 0 {
		return store.ImportErrors{{Line: 2, Message: "the file has a header but no subscriptions"}}
	}
	return nil
}

// isBidiControl reports the Unicode bidirectional formatting characters
// (marks, embeddings, overrides and isolates). They are invisible, and in a
// description — which reaches email subjects and pay pages — they can show a
// customer text in another order than it is stored ("Trojan Source").
func isBidiControl(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F:
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// hygiene returns why a raw field is refused, or "": it must be valid UTF-8,
// hold no control characters (a tab, a line break inside quotes, NUL, DEL, the
// C1 set) nor bidirectional formatting characters, and be at most limit
// characters long (limit 0: no bound).
func hygiene(v string, limit int) string {
	if !utf8.ValidString(v) {
		for i := 0; i < len(v); {
			r, size := utf8.DecodeRuneInString(v[i:])
			if r == utf8.RuneError && size <= 1 {
				return fmt.Sprintf("is not valid UTF-8 (byte %d)", i+1)
			}
			i += size
		}
	}
	for i, r := range v {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains a control character (%U at byte %d)", r, i+1)
		}
		if isBidiControl(r) {
			return fmt.Sprintf("contains a bidirectional formatting character (%U at byte %d), which can make text read differently than it is", r, i+1)
		}
	}
	if n := utf8.RuneCountInString(v); limit > 0 && n > limit {
		return fmt.Sprintf("is %d characters long; at most %d are allowed", n, limit)
	}
	return ""
}

// shown is how an error quotes a value: valid UTF-8 (invalid bytes become
// U+FFFD, %q escapes control characters), cut to 40 characters.
func shown(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	if utf8.RuneCountInString(v) > 40 {
		r := []rune(v)
		v = string(r[:40]) + "…"
	}
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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

func hasColumn(index map[string]int, c string) bool {
	_, ok := index[c]
	return ok
}

// idCharacters is the error of a gateway id with characters no gateway id has.
const idCharacters = "must be a gateway id: letters, digits, '_', '-' and '.' only"

// gatewayID reports whether s has only the characters gateway ids are made
// of. Ids go into request paths (GET /instruments/{id}), so one with '/',
// '?', '#' or '..' would ask the gateway for something else.
func gatewayID(s string) bool {
	if strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
