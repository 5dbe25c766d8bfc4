package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway/units"
)

// checkoutWire is the Checkout.com wire layer (docs/simulator.md, "Checkout.com"):
// unprefixed routes (/payments, /customers, /instruments, /hosted-payments),
// Bearer auth with the secret key, 422 {request_id, error_type, error_codes}
// errors, Cko-Idempotency-Key keeping only answers it sent as 2xx, and events
// in Checkout.com's envelope signed with Cko-Signature. Its handlers are in
// ckoapi.go.
type checkoutWire struct{ s *Server }

func (w *checkoutWire) name() string        { return ProviderCheckout }
func (w *checkoutWire) table() *units.Table { return units.Checkout }

var checkoutPrefixes = []string{"/payments", "/customers", "/instruments", "/hosted-payments"}

func (w *checkoutWire) isAPI(path string) bool {
	for _, p := range checkoutPrefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

func (w *checkoutWire) routes(m *http.ServeMux) { w.s.checkoutRoutes(m) }

// authenticate takes the secret key as a Bearer token (or bare, as
// Checkout.com also accepts it). A missing or wrong key is 401 with an empty
// body, as Checkout.com answers it.
func (w *checkoutWire) authenticate(_ http.ResponseWriter, r *http.Request) ([]byte, bool) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	key := strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	if key == "" {
		return []byte{}, false
	}
	if w.s.opts.SecretKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(w.s.opts.SecretKey)) != 1 {
		return []byte{}, false
	}
	return nil, true
}

// ckoError is Checkout.com's error body (422, 409, 429, 5xx).
type ckoError struct {
	RequestID  string   `json:"request_id"`
	ErrorType  string   `json:"error_type"`
	ErrorCodes []string `json:"error_codes,omitempty"`
}

// ckoRequestID stands in for the request id Checkout.com puts in error bodies.
const ckoRequestID = "0HL80RJLS76I7"

func ckoErrorBody(typ string, codes ...string) []byte {
	return mustJSON(ckoError{RequestID: ckoRequestID, ErrorType: typ, ErrorCodes: codes})
}

// ckoInvalid is a 422 request_invalid naming what is wrong; nothing is kept
// under the key.
func ckoInvalid(codes ...string) result {
	return result{status: http.StatusUnprocessableEntity, body: ckoErrorBody("request_invalid", codes...)}
}

func ckoNotFound() result { return result{status: http.StatusNotFound, body: []byte{}} }

func (w *checkoutWire) serverError(bool) []byte { return ckoErrorBody("internal_server_error") }

func (w *checkoutWire) rateLimited(string) []byte {
	return ckoErrorBody("too_many_requests", "too_many_requests")
}

func (w *checkoutWire) badRequest(string) result { return ckoInvalid("request_body_malformed") }

func (w *checkoutWire) idempotencyHeader() string { return "Cko-Idempotency-Key" }

// keepReplay is Checkout.com's rule: a key keeps the answer of a request that
// was processed and answered 2xx. A 500 injected after the payment was
// recorded leaves no replay behind (the server did not answer 2xx); a dropped
// connection keeps it (the server did).
func (w *checkoutWire) keepReplay(res result, d faultDecision) bool {
	return res.status >= 200 && res.status < 300 && d.kind != fault5xxAfter
}

func (w *checkoutWire) idemConflict() result {
	return result{status: http.StatusConflict, body: ckoErrorBody("request_invalid", "duplicate_request")}
}

// idemMismatch: Checkout.com does not document a key reused with other
// parameters; the simulator replays the first answer.
func (w *checkoutWire) idemMismatch(string) result { return result{} }

func (w *checkoutWire) replaysMismatch() bool { return true }

// paymentStatus spells the core's status as Checkout.com does.
func (w *checkoutWire) paymentStatus(pi *paymentIntent) string {
	switch pi.status {
	case statusSucceeded:
		if pi.verification {
			return "Card Verified"
		}
		if refunded := w.s.refundedLocked(pi.id); refunded > 0 {
			if refunded >= pi.amount {
				return "Refunded"
			}
			return "Partially Refunded"
		}
		if pi.captured {
			return "Captured"
		}
		return "Authorized"
	case statusRequiresPaymentMethod, statusCaptureDeclined:
		return "Declined"
	case statusCanceled:
		if pi.expired {
			return "Expired"
		}
		return "Canceled"
	}
	return "Pending" // requires_action, processing
}

// Checkout.com's response codes for the core's outcomes (the test-card table).
type ckoCode struct{ code, summary string }

var (
	ckoApproved     = ckoCode{"10000", "Approved"}
	ckoDeclineCodes = map[string]ckoCode{
		"insufficient_funds":      {"20051", "Insufficient funds"},
		"generic_decline":         {"20005", "Declined - Do not honour"},
		"processing_error":        {"20096", "System malfunction"},
		"expired_card":            {"20054", "Expired card"},
		"lost_card":               {"30041", "Lost card - pick up"},
		"stolen_card":             {"30043", "Stolen card - pick up"},
		"authentication_required": {"20154", "3DS authentication required"},
		"authentication_failure":  {"20151", "Cardholder failed 3DS authentication"},
	}
)

// ckoCaptureDeclinedCode is the response code a capture-declined payment
// reports: the issuer's "Do not honour".
const ckoCaptureDeclinedCode = "20005"

// codeOf is the response code and summary of pi's last answer, "" while it
// has none (Pending).
func codeOf(pi *paymentIntent) ckoCode {
	switch {
	case pi.captureDeclined:
		return ckoCode{ckoCaptureDeclinedCode, "Declined - Do not honour"}
	case pi.lastError != nil:
		if c, ok := ckoDeclineCodes[pi.lastError.DeclineCode]; ok {
			return c
		}
		return ckoCode{"20005", "Declined - Do not honour"}
	case pi.status == statusSucceeded:
		return ckoApproved
	}
	return ckoCode{}
}

// onPayment sends Checkout.com's events. An approval is payment_approved
// (card_verified for a zero-amount verification) followed by the capture:
// at once, or after Options.CaptureDelay for a merchant-initiated payment
// (payment_captured either way).
func (w *checkoutWire) onPayment(ev payEvent, pi *paymentIntent) {
	s := w.s
	pi.responseCode = codeOf(pi).code
	switch ev {
	case payRequiresAction, payProcessing:
		s.emitLocked("payment_pending", pi.id, w.eventData(pi))
	case payFailed:
		typ := "payment_declined"
		if pi.verification {
			typ = "card_verification_declined"
		}
		s.emitLocked(typ, pi.id, w.eventData(pi))
	case paySucceeded:
		if pi.verification {
			s.emitLocked("card_verified", pi.id, w.eventData(pi))
			return
		}
		s.emitLocked("payment_approved", pi.id, w.eventData(pi))
		if pi.deferCapture {
			s.deferCaptureLocked(pi)
		} else {
			s.captureLocked(pi, s.now())
		}
	case payCaptured:
		s.emitLocked("payment_captured", pi.id, w.eventData(pi))
	case payCanceled:
		s.emitLocked("payment_canceled", pi.id, w.eventData(pi))
	case payExpired:
		s.emitLocked("payment_expired", pi.id, w.eventData(pi))
	case payCaptureDeclined:
		s.emitLocked("payment_capture_declined", pi.id, w.eventData(pi))
	}
}

func (w *checkoutWire) onRefund(rf *refund, pi *paymentIntent) {
	d := w.eventData(pi)
	d.ActionID = rf.id
	d.Amount = isoToWire(units.Checkout, rf.amount, rf.currency)
	d.ResponseCode, d.ResponseSummary = ckoApproved.code, ckoApproved.summary
	d.ProcessedOn = ckoTime(rf.created)
	w.s.emitLocked("payment_refunded", pi.id, d)
}

// ckoEventData is the data of a payment event.
type ckoEventData struct {
	ID              string            `json:"id"`
	ActionID        string            `json:"action_id,omitempty"`
	Reference       string            `json:"reference,omitempty"`
	Amount          int64             `json:"amount"`
	Currency        string            `json:"currency"`
	Customer        *ckoCustomerRef   `json:"customer,omitempty"`
	Metadata        map[string]string `json:"metadata"`
	PaymentType     string            `json:"payment_type,omitempty"`
	ProcessedOn     string            `json:"processed_on"`
	ResponseCode    string            `json:"response_code,omitempty"`
	ResponseSummary string            `json:"response_summary,omitempty"`
	SchemeID        string            `json:"scheme_id,omitempty"`
	Source          *ckoEventSource   `json:"source,omitempty"`
	ThreeDS         *ckoThreeDS       `json:"3ds,omitempty"`
}

// ckoEventSource is a card as webhooks spell it (last_4, unlike the API's
// last4).
type ckoEventSource struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	Scheme      string `json:"scheme"`
	Last4       string `json:"last_4"`
	ExpiryMonth int    `json:"expiry_month"`
	ExpiryYear  int    `json:"expiry_year"`
	CardType    string `json:"card_type"`
}

func (w *checkoutWire) eventData(pi *paymentIntent) ckoEventData {
	s := w.s
	code := codeOf(pi)
	d := ckoEventData{
		ID: pi.id, ActionID: pi.actionID, Reference: pi.merchantOrderID,
		Amount: isoToWire(units.Checkout, pi.amount, pi.currency), Currency: pi.currency,
		Metadata: metaOrEmpty(pi.metadata), PaymentType: pi.paymentType, ProcessedOn: ckoTime(s.now()),
		ResponseCode: code.code, ResponseSummary: code.summary,
	}
	if pi.status == statusSucceeded {
		d.SchemeID = schemeID(pi.id)
	}
	if cu := s.customers[pi.customer]; cu != nil {
		d.Customer = &ckoCustomerRef{ID: cu.id, Email: cu.email, Name: cu.name}
	}
	if pm := s.methods[pi.paymentMethod]; pm != nil {
		d.Source = &ckoEventSource{
			ID: pm.id, Type: "card", Scheme: strings.ToUpper(pm.brand), Last4: pm.last4,
			ExpiryMonth: pm.expMonth, ExpiryYear: pm.expYear, CardType: "CREDIT",
		}
	}
	if pi.status == statusRequiresAction {
		d.ThreeDS = &ckoThreeDS{Downgraded: false, Enrolled: "Y"}
	}
	return d
}

// ckoEnvelope is a webhook body.
type ckoEnvelope struct {
	ID        string             `json:"id"`
	Type      string             `json:"type"`
	Version   string             `json:"version"`
	CreatedOn string             `json:"created_on"`
	Data      any                `json:"data"`
	Links     map[string]ckoLink `json:"_links"`
}

type ckoLink struct {
	Href string `json:"href"`
}

func (w *checkoutWire) envelope(id, typ string, created time.Time, obj any) []byte {
	subject := ""
	if d, ok := obj.(ckoEventData); ok {
		subject = "/payments/" + d.ID
	}
	return mustJSON(ckoEnvelope{
		ID: id, Type: typ, Version: "1.0.29", CreatedOn: ckoTime(created), Data: obj,
		Links: map[string]ckoLink{"self": {Href: "/workflows/events/" + id}, "subject": {Href: subject}},
	})
}

// SignCheckout returns the Cko-Signature header value for body: the
// lower-case hex HMAC-SHA256 of the raw body with the webhook's secret key.
// There is no timestamp.
func SignCheckout(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// signHeader signs with Cko-Signature. Checkout.com signs no timestamp, so
// a stale attempt (Delivery.StaleTimestamp) cannot carry an old one: it is
// sent unsigned instead, which a receiver must refuse just the same.
func (w *checkoutWire) signHeader(secret string, _ time.Time, body []byte, stale bool) (string, string) {
	if stale {
		return "Cko-Signature", ""
	}
	return "Cko-Signature", SignCheckout(secret, body)
}

// challengeDone is success_url or failure_url, with the cko-session-id
// Checkout.com appends.
func (w *checkoutWire) challengeDone(pi *paymentIntent, passed bool) string {
	u := pi.successURL
	if !passed {
		u = pi.failureURL
	}
	if u == "" {
		return ""
	}
	return appendQuery(u, "cko-session-id", "sid_"+strings.TrimPrefix(pi.id, "pay_"))
}

func (w *checkoutWire) expiresChallenges() bool { return true }

func (w *checkoutWire) userAgent() string { return "Checkout-Simulator/1.0 (billingd)" }

// ckoTime is Checkout.com's timestamp format.
func ckoTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// schemeID stands in for the card network's transaction id of an approved
// payment.
func schemeID(payID string) string {
	return "sch_" + strings.TrimPrefix(payID, "pay_")
}
