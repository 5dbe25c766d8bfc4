// Package events delivers billingd's signed event webhooks to the merchant's
// own systems: the worker that drains the events outbox, the signature every
// delivery carries, and redelivery on an operator's request.
//
// Delivery guarantees. An event row is written in the transaction of the
// state change it reports (internal/store: Tx.Emit), so no event is lost to
// a crash and none exists for a change that rolled back. The worker claims
// rows with a fenced lease and POSTs each one's stored body: the same bytes
// on every try and every redelivery. A 2xx answer is delivered; anything else
// (an error status, a redirect, a timeout, a refused connection) is tried
// again with backoff until events.retry_for has passed since the event
// occurred, and then the event is failed. A subscription's events go out in
// the order they were written: its oldest pending event holds back the later
// ones (a failed event stops holding them). Delivery is at least once: the
// process dying between a receiver's 2xx and the "delivered" write sends the
// event again, with the same id, which is what receivers deduplicate on.
package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the header each delivery carries.
const SignatureHeader = "Billingd-Signature"

// Sign returns the Billingd-Signature value of body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>", with one
// v1 per secret (the current one first, then the previous one during a
// rotation). Empty secrets are skipped.
func Sign(t time.Time, body []byte, secrets ...string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(ts)
	for _, s := range secrets {
		if s == "" {
			continue
		}
		b.WriteString(",v1=")
		b.WriteString(mac(s, ts, body))
	}
	return b.String()
}

func mac(secret, ts string, body []byte) string {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte("."))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadSignatureHeader = errors.New("events: malformed Billingd-Signature header")
	ErrSignatureMismatch  = errors.New("events: no signature matches the body")
	ErrSignatureTooOld    = errors.New("events: signature timestamp outside the tolerance")
)

// Verify checks a delivery the way a receiver should (docs/events.md shows
// the same in Go and Python): some v1 of header is the HMAC of its t and the
// body under secret, and t is within tolerance of now (0: not checked), so a
// captured delivery cannot be replayed later.
func Verify(header string, body []byte, secret string, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadSignatureHeader
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrBadSignatureHeader
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return ErrSignatureTooOld
		}
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrSignatureMismatch
}
