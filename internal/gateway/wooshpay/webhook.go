package wooshpay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
)

const (
	// SignatureHeader carries the webhook signature:
	// "t=<timestamp>,v1=<hex HMAC-SHA256(secret, t + "." + raw body)>".
	SignatureHeader = "Wooshpay-Signature"

	// DefaultWebhookTolerance is how far a signed timestamp may be from the
	// receiver's clock when WebhookOptions.Tolerance is zero. It is the value
	// Stripe-style SDKs use: long enough for clock skew and a slow delivery, short
	// enough that a captured request cannot be replayed hours later.
	DefaultWebhookTolerance = 300 * time.Second

	// DefaultWebhookMaxBody is the body cap suggested to the HTTP layer when
	// WebhookOptions.MaxBody is zero. An event holds one PaymentIntent or
	// SetupIntent, far below this; it matches the client's response cap.
	DefaultWebhookMaxBody int64 = maxBodyBytes

	// millisThreshold separates the two timestamp units the gateway uses: as
	// seconds, 1e11 is in the year 5138; as milliseconds, it is in 1973. Every
	// plausible timestamp is therefore unambiguous.
	millisThreshold = 100_000_000_000

	// maxTimestampDigits keeps a timestamp inside int64 (and its text short).
	maxTimestampDigits = 18
)

// WebhookOptions configures a WebhookVerifier.
type WebhookOptions struct {
	// Secrets are the endpoint's signing secrets (whsec_…), current one first.
	// Several are accepted so that a secret can be rotated without dropping the
	// deliveries signed with the old one while both are live.
	Secrets []string
	// Tolerance is the largest accepted distance between the signed timestamp and
	// the receiver's clock, in either direction. Default DefaultWebhookTolerance.
	Tolerance time.Duration
	// MaxBody is the body size the HTTP layer should accept (default
	// DefaultWebhookMaxBody). The verifier does not enforce it: it is handed an
	// already-read body, and a truncated body fails the signature anyway.
	MaxBody int64
}

// WebhookVerifier authenticates WooshPay webhook deliveries and decodes them
// into gateway.Event. It is immutable and safe for concurrent use.
type WebhookVerifier struct {
	keys      [][]byte
	tolerance time.Duration
	maxBody   int64
}

var _ gateway.WebhookVerifier = (*WebhookVerifier)(nil)

// NewWebhookVerifier validates opts. It refuses an empty secret list and empty
// secrets (an empty HMAC key would let anyone forge events), and secrets with
// surrounding whitespace (almost always a newline left over from a secrets file,
// which would make every delivery fail verification): failing at startup beats
// answering 401 to every event. Errors name a secret by position, never by value.
func NewWebhookVerifier(opts WebhookOptions) (*WebhookVerifier, error) {
	if len(opts.Secrets) == 0 {
		return nil, errors.New("wooshpay: webhook secret is required")
	}
	keys := make([][]byte, 0, len(opts.Secrets))
	for i, s := range opts.Secrets {
		if s == "" {
			return nil, fmt.Errorf("wooshpay: webhook secret #%d is empty", i+1)
		}
		if strings.TrimSpace(s) != s {
			return nil, fmt.Errorf("wooshpay: webhook secret #%d has leading or trailing whitespace", i+1)
		}
		keys = append(keys, []byte(s))
	}
	if opts.Tolerance < 0 {
		return nil, errors.New("wooshpay: webhook tolerance must not be negative")
	}
	if opts.MaxBody < 0 {
		return nil, errors.New("wooshpay: webhook max body must not be negative")
	}
	v := &WebhookVerifier{keys: keys, tolerance: opts.Tolerance, maxBody: opts.MaxBody}
	if v.tolerance == 0 {
		v.tolerance = DefaultWebhookTolerance
	}
	if v.maxBody == 0 {
		v.maxBody = DefaultWebhookMaxBody
	}
	return v, nil
}

// Tolerance returns the effective timestamp tolerance.
func (v *WebhookVerifier) Tolerance() time.Duration { return v.tolerance }

// MaxBody returns the body cap the HTTP layer should apply before calling
// VerifyWebhook.
func (v *WebhookVerifier) MaxBody() int64 { return v.maxBody }

// VerifyWebhook authenticates one delivery and decodes its event. The order of
// the checks is the point: the signature over the raw body is checked first, so
// nothing an attacker sends is ever parsed as JSON; the timestamp second, so a
// captured delivery cannot be replayed outside the tolerance window (it is signed,
// so it cannot be re-dated); only then is the body decoded.
//
// Errors wrap gateway.ErrWebhookMalformed (bad header, or a signed body that is
// not an event), gateway.ErrWebhookSignature or gateway.ErrWebhookStale. Their
// text never contains a secret, a signature or the body, because receivers log it.
func (v *WebhookVerifier) VerifyWebhook(body []byte, header http.Header, now time.Time) (*gateway.Event, error) {
	values := header.Values(SignatureHeader)
	switch len(values) {
	case 0:
		return nil, malformed("missing " + SignatureHeader + " header")
	case 1:
	default:
		// Two header lines could come from a proxy appending its own; rather
		// than guess which one the gateway sent, refuse.
		return nil, malformed("more than one " + SignatureHeader + " header")
	}
	sh, err := parseSignature(values[0])
	if err != nil {
		return nil, err
	}
	if v == nil || !v.matches(sh, body) {
		return nil, fmt.Errorf("wooshpay: %w", gateway.ErrWebhookSignature)
	}
	signedAt := timestampTime(sh.t)
	if d := now.Sub(signedAt); d > v.tolerance || d < -v.tolerance {
		// Sub saturates, so an absurd timestamp cannot overflow into the window.
		return nil, fmt.Errorf("wooshpay: %w", gateway.ErrWebhookStale)
	}
	return DecodeEvent(body)
}

// matches reports whether any v1 signature in sh is the HMAC of the payload
// under any of the secrets. Each MAC is compared with hmac.Equal, in constant
// time, so response timing reveals nothing about how close a forgery came.
func (v *WebhookVerifier) matches(sh sigHeader, body []byte) bool {
	for _, key := range v.keys {
		want := signature(key, sh.tRaw, body)
		for _, got := range sh.v1 {
			if hmac.Equal(want, got) {
				return true
			}
		}
	}
	return false
}

// signature is HMAC-SHA256(key, t + "." + body), with t exactly as it appears in
// the header: the sender signed its own text, so re-formatting the parsed number
// (dropping a leading zero, say) would break a genuine signature.
func signature(key []byte, t string, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(t))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// Sign returns a Wooshpay-Signature header value for body signed with secret at
// timestamp t (Unix seconds or milliseconds; the receiver accepts both). It lets
// tests elsewhere craft deliveries that VerifyWebhook accepts, or, with another
// secret, rejects.
func Sign(secret string, t int64, body []byte) string {
	ts := strconv.FormatInt(t, 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(signature([]byte(secret), ts, body))
}

// timestampTime reads a signed timestamp in whichever unit it was sent.
func timestampTime(t int64) time.Time {
	if t >= millisThreshold {
		return time.UnixMilli(t)
	}
	return time.Unix(t, 0)
}

// sigHeader is a parsed signature header. tRaw is the timestamp's text, which
// is what was signed.
type sigHeader struct {
	t    int64
	tRaw string
	v1   [][]byte
}

// ParseSignatureHeader parses a Wooshpay-Signature value,
// "t=<ts>,v1=<hex>[,v1=<hex>…]": the timestamp (Unix seconds or milliseconds,
// as sent) and every v1 signature, decoded. Parts are separated by commas and
// may be surrounded by whitespace. Other schemes (v0=…) and parts without "="
// are ignored, so that the gateway can add schemes without breaking receivers;
// a missing, repeated or non-numeric t, no v1, or a v1 that is not a hex
// SHA-256 MAC is an error wrapping gateway.ErrWebhookMalformed.
//
// It does not verify anything. VerifyWebhook signs the timestamp's original
// text, which may differ from strconv.FormatInt(t) (leading zeros).
func ParseSignatureHeader(value string) (t int64, v1 [][]byte, err error) {
	sh, err := parseSignature(value)
	if err != nil {
		return 0, nil, err
	}
	return sh.t, sh.v1, nil
}

func parseSignature(value string) (sigHeader, error) {
	var sh sigHeader
	seenT := false
	for part := range strings.SplitSeq(value, ",") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		switch k {
		case "t":
			if seenT {
				return sigHeader{}, malformed("signature header has more than one t")
			}
			seenT = true
			n, err := parseTimestamp(val)
			if err != nil {
				return sigHeader{}, err
			}
			sh.t, sh.tRaw = n, val
		case "v1":
			if len(val) != 2*sha256.Size {
				return sigHeader{}, malformed("v1 signature is not 64 hex digits")
			}
			mac, err := hex.DecodeString(val)
			if err != nil {
				return sigHeader{}, malformed("v1 signature is not hex")
			}
			sh.v1 = append(sh.v1, mac)
		}
	}
	if !seenT {
		return sigHeader{}, malformed("signature header has no t")
	}
	if len(sh.v1) == 0 {
		return sigHeader{}, malformed("signature header has no v1")
	}
	return sh, nil
}

// parseTimestamp accepts only decimal digits: strconv.ParseInt alone would also
// take a sign, and "-0" or "+1" are not timestamps the gateway sends.
func parseTimestamp(s string) (int64, error) {
	if s == "" {
		return 0, malformed("signature timestamp is empty")
	}
	if len(s) > maxTimestampDigits {
		return 0, malformed("signature timestamp is too long")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, malformed("signature timestamp is not a number")
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, nil
}

// malformed wraps gateway.ErrWebhookMalformed with a fixed description. The
// description never quotes the input.
func malformed(what string) error {
	return fmt.Errorf("wooshpay: %w: %s", gateway.ErrWebhookMalformed, what)
}

// wireEvent is the event envelope. data.object is kept raw and decoded only
// once the type says what it should be.
type wireEvent struct {
	ID       string `json:"id"`
	Object   string `json:"object"`
	Created  msTime `json:"created"`
	Livemode bool   `json:"livemode"`
	Type     string `json:"type"`
	Data     *struct {
		Object json.RawMessage `json:"object"`
	} `json:"data"`
}

func (w *wireEvent) validate() error {
	if err := checkObject(w.Object, "event", w.ID); err != nil {
		return err
	}
	// The id is the inbox's unique key and the type is stored next to it:
	// both must be short, plain tokens.
	if err := checkID("event", w.ID); err != nil {
		return err
	}
	if w.Type == "" {
		return errors.New("event without type")
	}
	if !isEventType(w.Type) {
		return errors.New("event type is not a dotted lower-case name")
	}
	return nil
}

// isEventType accepts names like payment_intent.succeeded or
// charge.refund.updated.
func isEventType(s string) bool {
	if len(s) > maxCodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Event type families whose object billingd decodes.
const (
	paymentIntentEventPrefix = "payment_intent."
	setupIntentEventPrefix   = "setup_intent."
)

// eventScrubber cleans gateway text inside events (decline messages, decoding
// errors). A Client with no secret still removes anything shaped like an API key
// or a card number, which is all an event could carry that must not be stored or
// logged.
var eventScrubber = &Client{}

// DecodeEvent decodes an event body that has already been authenticated.
// payment_intent.* events carry a gateway.PaymentIntent and setup_intent.* a
// gateway.SetupIntent and charge.refund.* a gateway.Refund, decoded with the same rules as API answers; any other
// type yields an Event with neither set, which billingd records and ignores, so
// that a new event type from the gateway is never answered with an error (the
// gateway would retry it for days).
//
// An envelope without id or type, or a payment_intent/setup_intent event whose
// data.object is missing, of another object type, or without id or status, is
// an error wrapping gateway.ErrWebhookMalformed. Call it only on verified bodies:
// VerifyWebhook does.
func DecodeEvent(body []byte) (*gateway.Event, error) {
	var w wireEvent
	if err := decodeObject(body, &w); err != nil {
		return nil, malformedEvent("", err)
	}
	ev := &gateway.Event{ID: w.ID, Type: w.Type, Created: w.Created.Time}
	var raw json.RawMessage
	if w.Data != nil {
		raw = w.Data.Object
	}
	switch {
	case strings.HasPrefix(w.Type, paymentIntentEventPrefix):
		pi, err := decodeEventIntent(raw)
		if err != nil {
			return nil, malformedEvent(w.Type, err)
		}
		ev.PaymentIntent = pi
	case strings.HasPrefix(w.Type, setupIntentEventPrefix):
		si, err := decodeEventSetupIntent(raw)
		if err != nil {
			return nil, malformedEvent(w.Type, err)
		}
		ev.SetupIntent = si
	case strings.HasPrefix(w.Type, refundEventPrefix):
		rf, err := decodeEventRefund(raw)
		if err != nil {
			return nil, malformedEvent(w.Type, err)
		}
		ev.Refund = rf
	}
	return ev, nil
}

func decodeEventIntent(raw json.RawMessage) (*gateway.PaymentIntent, error) {
	if isAbsent(raw) {
		return nil, errors.New("no data.object")
	}
	var wi wireIntent
	if err := decodeObject(raw, &wi); err != nil {
		return nil, err
	}
	// API answers may omit "object" (the endpoint says what it is); in an
	// event it is the only thing tying data.object to the event type.
	if wi.Object != "payment_intent" {
		return nil, errors.New("data.object is not a payment_intent")
	}
	return eventScrubber.intentFromWire(&wi), nil
}

func decodeEventSetupIntent(raw json.RawMessage) (*gateway.SetupIntent, error) {
	if isAbsent(raw) {
		return nil, errors.New("no data.object")
	}
	var ws wireSetupIntent
	if err := decodeObject(raw, &ws); err != nil {
		return nil, err
	}
	if ws.Object != "setup_intent" {
		return nil, errors.New("data.object is not a setup_intent")
	}
	return &gateway.SetupIntent{
		ID:            ws.ID,
		Status:        ws.Status,
		Customer:      string(ws.Customer),
		PaymentMethod: string(ws.PaymentMethod),
		Metadata:      map[string]string(ws.Metadata),
	}, nil
}

func isAbsent(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// malformedEvent wraps a decoding failure. The cause is scrubbed and short: a
// JSON error can quote a fragment of the body.
func malformedEvent(typ string, err error) error {
	what := "event"
	if typ != "" {
		what = typ + " event"
	}
	return fmt.Errorf("wooshpay: %w: %s: %s", gateway.ErrWebhookMalformed, what, apicall.Truncate(eventScrubber.scrub(err.Error()), 120))
}
