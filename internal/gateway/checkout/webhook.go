package checkout

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/apicall"
	"github.com/billingd/billingd/internal/gateway/units"
)

const (
	// SignatureHeader carries a webhook's signature: the hex HMAC-SHA256 of
	// the raw body under the webhook's signature key.
	SignatureHeader = "Cko-Signature"

	// DefaultWebhookMaxBody is the largest body VerifyWebhook accepts, and
	// the cap the HTTP layer should apply before reading: one event carries
	// one payment, far below it.
	DefaultWebhookMaxBody int64 = maxBodyBytes
)

// Checkout.com webhook event types billingd acts on.
const (
	EventPaymentApproved = "payment_approved"
	EventPaymentCaptured = "payment_captured"
	EventPaymentPending  = "payment_pending"
	EventPaymentDeclined = "payment_declined"
	// EventPaymentAuthenticationFailed: the cardholder failed (or left)
	// the 3-D Secure challenge; applied like a decline (20151).
	EventPaymentAuthenticationFailed = "payment_authentication_failed"
	EventPaymentExpired              = "payment_expired"
	EventPaymentCanceled             = "payment_canceled"
	EventPaymentCaptureDeclined      = "payment_capture_declined"
	EventPaymentRefunded             = "payment_refunded"
	EventPaymentRefundDeclined       = "payment_refund_declined"
	EventCardVerified                = "card_verified"
	EventCardVerificationDeclined    = "card_verification_declined"
)

// WebhookVerifier authenticates Checkout.com webhook deliveries and decodes
// them into gateway.Event. It is immutable and safe for concurrent use.
//
// Checkout.com signs only the body, with no timestamp, so a captured delivery
// verifies forever: replay protection is the receiver's store of event ids
// (deliveries are at-least-once anyway), and the now argument is unused.
type WebhookVerifier struct {
	keys    [][]byte
	maxBody int64
}

var _ gateway.WebhookVerifier = (*WebhookVerifier)(nil)

// NewWebhookVerifier takes the webhook's signature keys, current first.
// Several are accepted so that a key can be rotated without dropping
// deliveries signed with the old one. An empty list, an empty key (an empty
// HMAC key would let anyone forge events) or a key with surrounding
// whitespace (a newline left from a secrets file, which would fail every
// delivery) is refused; errors name a key by position, never by value.
func NewWebhookVerifier(secrets []string) (*WebhookVerifier, error) {
	if len(secrets) == 0 {
		return nil, errors.New("checkout: webhook signature key is required")
	}
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		if s == "" {
			return nil, fmt.Errorf("checkout: webhook signature key #%d is empty", i+1)
		}
		if strings.TrimSpace(s) != s {
			return nil, fmt.Errorf("checkout: webhook signature key #%d has leading or trailing whitespace", i+1)
		}
		keys = append(keys, []byte(s))
	}
	return &WebhookVerifier{keys: keys, maxBody: DefaultWebhookMaxBody}, nil
}

// MaxBody is the body cap the HTTP layer should apply before calling
// VerifyWebhook; a longer body is refused as malformed.
func (v *WebhookVerifier) MaxBody() int64 { return v.maxBody }

// VerifyWebhook authenticates one delivery and decodes its event. The
// signature over the raw body is checked before anything parses the body.
// Errors wrap gateway.ErrWebhookMalformed (no, several or a non-hex
// Cko-Signature header, an oversized body, or a signed body that is not an
// event) or gateway.ErrWebhookSignature; their text never contains a key, a
// signature or the body.
func (v *WebhookVerifier) VerifyWebhook(body []byte, header http.Header, _ time.Time) (*gateway.Event, error) {
	if v == nil {
		return nil, fmt.Errorf("checkout: %w", gateway.ErrWebhookSignature)
	}
	if int64(len(body)) > v.maxBody {
		return nil, malformed("body larger than the webhook size limit")
	}
	values := header.Values(SignatureHeader)
	switch len(values) {
	case 0:
		return nil, malformed("missing " + SignatureHeader + " header")
	case 1:
	default:
		return nil, malformed("more than one " + SignatureHeader + " header")
	}
	got, err := hex.DecodeString(strings.TrimSpace(values[0]))
	if err != nil || len(got) != sha256.Size {
		return nil, malformed(SignatureHeader + " is not a hex HMAC-SHA256")
	}
	ok := false
	for _, key := range v.keys {
		// hmac.Equal is constant-time: timing reveals nothing of a forgery.
		if hmac.Equal(mac(key, body), got) {
			ok = true
		}
	}
	if !ok {
		return nil, fmt.Errorf("checkout: %w", gateway.ErrWebhookSignature)
	}
	return DecodeEvent(body)
}

func mac(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}

// Sign returns the Cko-Signature value of body under key, so that tests and
// the simulator can craft deliveries VerifyWebhook accepts.
func Sign(key string, body []byte) string {
	return hex.EncodeToString(mac([]byte(key), body))
}

func malformed(what string) error {
	return fmt.Errorf("checkout: %w: %s", gateway.ErrWebhookMalformed, what)
}

// wireEvent is the webhook envelope. Checkout.com's examples date events by
// created_on, some newer ones by timestamp; both are read.
type wireEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedOn ckoTime         `json:"created_on"`
	Timestamp ckoTime         `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

func (w *wireEvent) validate() error {
	if w.ID == "" {
		return errors.New("event without id")
	}
	if err := checkID("event", w.ID); err != nil {
		return err
	}
	if w.Type == "" {
		return errors.New("event without type")
	}
	if len(w.Type) > maxCodeLen {
		return errors.New("event type too long")
	}
	for i := 0; i < len(w.Type); i++ {
		c := w.Type[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return errors.New("event type is not a lower-case name")
		}
	}
	return nil
}

// eventClient converts event data with the same rules as API answers; it
// has no secret, so scrubbing removes anything key- or card-shaped.
var eventClient = &Client{units: units.Checkout}

// DecodeEvent decodes an authenticated event body (VerifyWebhook calls it).
// Payment events carry a gateway.PaymentIntent, refund events a
// gateway.Refund, card_verified a gateway.SetupIntent; the Type is the
// neutral event type billingd acts on (docs/gateway-checkout.md lists the
// mapping). Any other type yields an Event with only ID, Type (Checkout.com's
// own name) and Created, which billingd records and ignores, so that a new
// event type is never answered with an error (Checkout.com would retry it).
//
// An envelope without id or type, or an event billingd acts on whose data is
// missing, has no payment id or carries an amount it cannot read, is an
// error wrapping gateway.ErrWebhookMalformed.
func DecodeEvent(body []byte) (*gateway.Event, error) {
	var w wireEvent
	if err := decodeObject(body, &w); err != nil {
		return nil, malformedEvent("", err)
	}
	ev := &gateway.Event{ID: w.ID, Type: w.Type, Created: w.CreatedOn.Time}
	if ev.Created.IsZero() {
		ev.Created = w.Timestamp.Time
	}
	switch w.Type {
	case EventPaymentApproved, EventPaymentCaptured, EventPaymentPending, EventPaymentDeclined, EventPaymentAuthenticationFailed,
		EventPaymentExpired, EventPaymentCanceled, EventPaymentCaptureDeclined:
		pi, typ, err := eventPayment(w.Type, w.Data)
		if err != nil {
			return nil, malformedEvent(w.Type, err)
		}
		ev.Type, ev.PaymentIntent = typ, pi
	case EventPaymentRefunded, EventPaymentRefundDeclined:
		rf, err := eventRefund(w.Type, w.Data)
		if err != nil {
			return nil, malformedEvent(w.Type, err)
		}
		ev.Type, ev.Refund = gateway.EventRefundUpdated, rf
	case EventCardVerified:
		si, err := eventCardVerified(w.Data)
		if err != nil {
			return nil, malformedEvent(w.Type, err)
		}
		ev.Type, ev.SetupIntent = gateway.EventSetupIntentSucceeded, si
	}
	return ev, nil
}

// eventData decodes an event's data as a payment. Webhooks carry no status;
// the event type says what happened.
func eventData(raw json.RawMessage) (*wirePayment, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, errors.New("no data")
	}
	var w wirePayment
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, err
	}
	if w.ID == "" {
		return nil, errors.New("data without payment id")
	}
	if err := checkID("payment", w.ID); err != nil {
		return nil, err
	}
	return &w, nil
}

func eventPayment(typ string, raw json.RawMessage) (*gateway.PaymentIntent, string, error) {
	w, err := eventData(raw)
	if err != nil {
		return nil, "", err
	}
	var neutral string
	switch typ {
	case EventPaymentApproved, EventPaymentCaptured:
		w.Status, neutral = statusCaptured, gateway.EventPaymentIntentSucceeded
		if typ == EventPaymentApproved {
			w.Status = statusAuthorized
		}
	case EventPaymentPending:
		w.Status = statusPending
		neutral = gateway.EventPaymentIntentProcessing
		if len(bytes.TrimSpace(w.ThreeDS)) > 0 && string(bytes.TrimSpace(w.ThreeDS)) != "null" {
			// Waiting for 3-D Secure; the redirect is not in the event.
			neutral = gateway.EventPaymentIntentRequiresAction
		}
	case EventPaymentDeclined, EventPaymentAuthenticationFailed:
		w.Status, neutral = statusDeclined, gateway.EventPaymentIntentPaymentFailed
	case EventPaymentExpired, EventPaymentCanceled:
		w.Status, neutral = statusExpired, gateway.EventPaymentIntentCanceled
	case EventPaymentCaptureDeclined:
		w.Status, neutral = statusDeclined, gateway.EventPaymentCaptureDeclined
	}
	pi, err := eventClient.intentFromPayment(w)
	if err != nil {
		return nil, "", err
	}
	if typ == EventPaymentPending && neutral == gateway.EventPaymentIntentRequiresAction {
		pi.Status, pi.ActionURL = gateway.IntentRequiresAction, ""
	}
	if typ == EventPaymentDeclined && pi.Status == gateway.IntentRequiresAction {
		// 20154: the issuer wants the cardholder; the same answer the API gave.
		neutral = gateway.EventPaymentIntentRequiresAction
	}
	return pi, neutral, nil
}

func eventRefund(typ string, raw json.RawMessage) (*gateway.Refund, error) {
	w, err := eventData(raw)
	if err != nil {
		return nil, err
	}
	if w.ActionID == "" {
		return nil, errors.New("refund event without action_id")
	}
	approved := typ == EventPaymentRefunded
	a := &wireAction{ID: w.ActionID, Type: "Refund", ProcessedOn: w.ProcessedOn, Amount: w.Amount,
		Approved: &approved, ResponseCode: w.ResponseCode, Reference: w.Reference, Metadata: w.Metadata}
	if w.Amount != nil && w.Currency == "" {
		return nil, errors.New("refund amount without currency")
	}
	return eventClient.refundFromAction(w.ID, w.Currency, a)
}

func eventCardVerified(raw json.RawMessage) (*gateway.SetupIntent, error) {
	w, err := eventData(raw)
	if err != nil {
		return nil, err
	}
	if w.Source == nil || w.Source.ID == "" {
		return nil, errors.New("card_verified without source.id")
	}
	si := &gateway.SetupIntent{
		ID:              w.ID,
		Status:          "succeeded",
		PaymentMethod:   w.Source.ID,
		Metadata:        map[string]string(w.Metadata),
		SeriesPaymentID: w.ID,
		Card:            cardFromSource(w.Source),
	}
	if w.Customer != nil {
		si.Customer = w.Customer.ID
	}
	return si, nil
}

// malformedEvent wraps a decoding failure; the cause is scrubbed and short,
// because a JSON error can quote a fragment of the body.
func malformedEvent(typ string, err error) error {
	what := "event"
	if typ != "" {
		what = typ + " event"
	}
	return fmt.Errorf("checkout: %w: %s: %s", gateway.ErrWebhookMalformed, what, apicall.Truncate(eventClient.scrub(err.Error()), 120))
}
