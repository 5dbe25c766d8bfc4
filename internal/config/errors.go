package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem with one configuration key. Every stage (parsing,
// expansion, *_file reading, Validate) reports through it so the CLI can print
// problems uniformly, one per line, each starting with the key to fix.
type FieldError struct {
	// Key is the dotted path, e.g. "gateway.timeout" or
	// "dunning.retry_schedule[2]". Empty only for problems that belong to no
	// key, such as YAML syntax errors.
	Key string
	// Value is the offending value as written, or Redacted for secret keys.
	// Empty when there is nothing useful to show (missing key, wrong shape).
	Value string
	// Message says what is wrong, phrased to follow "key: ".
	Message string
	// Line is the 1-based line of the key in the config file, 0 if unknown.
	Line int
}

// Error renders `key: message (got "value", line N)`.
func (e FieldError) Error() string {
	var b strings.Builder
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	// Keep one problem per line whatever a message quotes (a path, a
	// parser's text).
	b.WriteString(strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(e.Message))
	var extra []string
	switch {
	case e.Value == Redacted:
		extra = append(extra, "got "+Redacted)
	case e.Value != "":
		extra = append(extra, fmt.Sprintf("got %q", e.Value))
	}
	if e.Line > 0 {
		extra = append(extra, fmt.Sprintf("line %d", e.Line))
	}
	if len(extra) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(extra, ", "))
		b.WriteString(")")
	}
	return b.String()
}

// Errors is every problem found in a configuration. Load, Parse and Validate
// return it (never an empty one) so callers can use errors.As to list the
// problems individually, for example to print them or to test for a key.
type Errors []FieldError

// Error renders one problem per line, sorted by key.
func (es Errors) Error() string {
	sorted := slices.Clone(es)
	sorted.sort()
	lines := make([]string, len(sorted))
	for i, e := range sorted {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each FieldError to errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Keys lists the keys with a problem, sorted, with repeats. It is what tests
// and scripts usually want to compare.
func (es Errors) Keys() []string {
	sorted := slices.Clone(es)
	sorted.sort()
	keys := make([]string, len(sorted))
	for i, e := range sorted {
		keys[i] = e.Key
	}
	return keys
}

// sort orders by key (numeric indexes numerically, so [10] follows [9]), then
// by line and message, giving stable output across runs.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b FieldError) int {
		if c := naturalCompare(a.Key, b.Key); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Line, b.Line); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
}

// asError returns nil for no problems, avoiding the typed-nil trap of
// returning an empty Errors as an error.
func (es Errors) asError() error {
	if len(es) == 0 {
		return nil
	}
	sorted := slices.Clone(es)
	sorted.sort()
	return sorted
}

// naturalCompare compares strings treating runs of ASCII digits as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			na, ra := splitDigits(a)
			nb, rb := splitDigits(b)
			na = strings.TrimLeft(na, "0")
			nb = strings.TrimLeft(nb, "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func splitDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}
