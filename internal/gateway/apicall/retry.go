package apicall

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfter reads a Retry-After header as delay-seconds or an HTTP date
// (relative to now), capped at limit so that a malformed header cannot
// overflow a time.Duration or park the engine for days. Absent, non-positive
// or unparsable values give 0: the engine's own backoff applies.
func RetryAfter(h http.Header, now time.Time, limit time.Duration) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(limit/time.Second) {
			return limit
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	switch {
	case d <= 0:
		return 0
	case d > limit:
		return limit
	}
	// Whole seconds: the header's resolution.
	return d.Round(time.Second)
}
