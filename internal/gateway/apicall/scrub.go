package apicall

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

const (
	// MaxMessageLen bounds a scrubbed message: provider text ends up in
	// errors, logs and the database, and must not grow them without bound.
	MaxMessageLen = 300
	// MaxCodeLen bounds a scrubbed short identifier (a type, a code, a
	// request id).
	MaxCodeLen = 100
	// Redacted stands where a secret or a card number was removed.
	Redacted = "[redacted]"
)

// Scrubber makes text a provider echoes back (error messages, decline
// messages, transport errors quoting a URL) safe for an error string and the
// database. A provider may quote our request, and a request can carry the
// secret key or a card number; neither may ever be stored or logged.
type Scrubber struct {
	// Secret, when set, is removed wherever it appears.
	Secret string
	// KeyPattern matches the provider's API-key shapes, whichever account
	// they belong to; every match is removed. Nil removes none.
	KeyPattern *regexp.Regexp
}

// Scrub removes the secret, anything shaped like an API key or a card number,
// and control characters, and bounds the length to MaxMessageLen.
func (s Scrubber) Scrub(text string) string {
	if text == "" {
		return ""
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "?")
	}
	// Control characters first, so "4242\n4242…" is seen as one grouped number.
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, text)
	if s.Secret != "" {
		text = strings.ReplaceAll(text, s.Secret, Redacted)
	}
	if s.KeyPattern != nil {
		text = s.KeyPattern.ReplaceAllString(text, Redacted)
	}
	text = RedactDigitRuns(text)
	return Truncate(strings.TrimSpace(text), MaxMessageLen)
}

// ScrubCode is Scrub for short identifiers (type, code, request id), bounded to
// MaxCodeLen.
func (s Scrubber) ScrubCode(text string) string {
	return Truncate(s.Scrub(text), MaxCodeLen)
}

// RedactDigitRuns replaces runs of 12 or more digits — possibly grouped by
// single spaces or dashes, as card numbers are written — with Redacted. No
// legitimate error text needs such a run, and a card number must never reach
// an error.
func RedactDigitRuns(s string) string {
	const minDigits = 12
	var out strings.Builder
	i, changed := 0, false
	for i < len(s) {
		if !isDigit(s[i]) {
			out.WriteByte(s[i])
			i++
			continue
		}
		// Scan a run of digits with single separators between groups.
		j, digits, end := i, 0, i
		for j < len(s) {
			if isDigit(s[j]) {
				digits++
				j++
				end = j
				continue
			}
			if (s[j] == ' ' || s[j] == '-') && j+1 < len(s) && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		if digits >= minDigits {
			out.WriteString(Redacted)
			changed = true
		} else {
			out.WriteString(s[i:end])
		}
		i = end
	}
	if !changed {
		return s
	}
	return out.String()
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// Truncate cuts s to at most n bytes on a rune boundary and marks the cut with
// "…", so a bounded message stays valid UTF-8 and visibly incomplete.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Rephrased returns an error that reads msg but unwraps to cause. A transport
// error's own text may quote a URL or a secret, so a client prints a scrubbed
// msg instead, while errors.Is and errors.As on the network error still work.
func Rephrased(msg string, cause error) error { return &rephrased{msg: msg, cause: cause} }

type rephrased struct {
	msg   string
	cause error
}

func (e *rephrased) Error() string { return e.msg }
func (e *rephrased) Unwrap() error { return e.cause }
