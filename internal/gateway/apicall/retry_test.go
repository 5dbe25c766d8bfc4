package apicall

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	const limit = 24 * time.Hour
	tests := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{name: "absent", value: "", want: 0},
		{name: "seconds", value: "7", want: 7 * time.Second},
		{name: "seconds with spaces", value: " 30 ", want: 30 * time.Second},
		{name: "zero", value: "0", want: 0},
		{name: "negative", value: "-5", want: 0},
		{name: "huge seconds capped", value: "999999999999999999", want: limit},
		{name: "HTTP date ahead", value: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "HTTP date past", value: now.Add(-time.Minute).Format(http.TimeFormat), want: 0},
		{name: "HTTP date far ahead capped", value: now.Add(72 * time.Hour).Format(http.TimeFormat), want: limit},
		{name: "garbage", value: "soon", want: 0},
		{name: "fraction", value: "1.5", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.value != "" {
				h.Set("Retry-After", tt.value)
			}
			require.Equal(t, tt.want, RetryAfter(h, now, limit))
		})
	}
}

func TestRetryAfterRoundsToWholeSeconds(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 400_000_000, time.UTC)
	h := http.Header{"Retry-After": {now.Add(10 * time.Second).Format(http.TimeFormat)}}
	// The header has whole seconds: 12:00:10 is 9.6s after now, sent as 10s.
	require.Equal(t, 10*time.Second, RetryAfter(h, now, time.Hour))
}
