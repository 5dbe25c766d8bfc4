package apicall

import (
	"errors"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestScrub(t *testing.T) {
	s := Scrubber{Secret: "whsec_or_any_custom_key_value", KeyPattern: regexp.MustCompile(`\b(?:sk|pk)_(?:test|live)_[A-Za-z0-9_*]+`)}
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "empty", in: "", want: ""},
		{name: "plain", in: "Your card was declined.", want: "Your card was declined."},
		{name: "card number", in: "card 4242424242424242 declined", want: "card [redacted] declined"},
		{name: "grouped by spaces", in: "card 4242 4242 4242 4242 declined", want: "card [redacted] declined"},
		{name: "grouped by dashes", in: "card 4242-4242-4242-4242.", want: "card [redacted]."},
		{name: "split by a newline", in: "card 4242\n4242424242424242", want: "card [redacted]"},
		{name: "short number kept", in: "order 12345678901", want: "order 12345678901"},
		{name: "twelve digits", in: "order 123456789012", want: "order [redacted]"},
		{name: "key pattern", in: "key sk_live_abcDEF123 bad", want: "key [redacted] bad"},
		{name: "masked key", in: "key sk_test_****1234 bad", want: "key [redacted] bad"},
		{name: "own secret", in: "custom whsec_or_any_custom_key_value here", want: "custom [redacted] here"},
		{name: "control characters", in: "a\x00b\x1bc\u0085d", want: "a b c d"},
		{name: "invalid UTF-8", in: "bad \xff byte", want: "bad ? byte"},
		{name: "trimmed", in: "  \n padded \t", want: "padded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, s.Scrub(tt.in))
		})
	}
}

func TestScrubWithoutPatternOrSecret(t *testing.T) {
	// A zero Scrubber still removes card numbers: that rule does not depend
	// on the provider.
	require.Equal(t, "pan [redacted] sk_live_x", Scrubber{}.Scrub("pan 4000000000000002 sk_live_x"))
}

func TestScrubBoundsLength(t *testing.T) {
	tests := []struct {
		name  string
		scrub func(string) string
		limit int
	}{
		{name: "message", scrub: Scrubber{}.Scrub, limit: MaxMessageLen},
		{name: "code", scrub: Scrubber{}.ScrubCode, limit: MaxCodeLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.scrub(strings.Repeat("é", 1000))
			require.LessOrEqual(t, len(out), tt.limit+len("…"))
			require.True(t, strings.HasSuffix(out, "…"))
			require.True(t, utf8.ValidString(out))
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{name: "short", in: "abc", n: 5, want: "abc"},
		{name: "exact", in: "abcde", n: 5, want: "abcde"},
		{name: "cut", in: "abcdef", n: 3, want: "abc…"},
		{name: "cut on a rune boundary", in: "aéb", n: 2, want: "a…"},
		{name: "nothing fits", in: "éé", n: 1, want: "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Truncate(tt.in, tt.n))
		})
	}
}

func TestRedactDigitRuns(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"no digits", "no digits"},
		{"4242424242424242", "[redacted]"},
		{"a 1234 5678 9012 b", "a [redacted] b"},
		{"double  space 1234  5678 9012", "double  space 1234  5678 9012"},
		{"ends in dash 123456-", "ends in dash 123456-"},
		{"two 111111111111 and 222222222222", "two [redacted] and [redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, RedactDigitRuns(tt.in))
		})
	}
}

func TestRephrased(t *testing.T) {
	cause := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	err := Rephrased("checkout: GET /payments: dial failed", cause)
	require.EqualError(t, err, "checkout: GET /payments: dial failed")
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var op *net.OpError
	require.True(t, errors.As(err, &op))
	require.Same(t, cause, op)
}
