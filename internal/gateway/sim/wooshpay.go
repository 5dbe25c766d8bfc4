package sim

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway/units"
)

// wooshpayWire is the WooshPay wire layer: /v1/ routes with form-free JSON
// bodies, Basic auth, Stripe-shaped errors and idempotency, payment_intent.*
// events signed with Wooshpay-Signature. Its handlers are handlers.go,
// refunds.go and checkout.go.
type wooshpayWire struct{ s *Server }

func (w *wooshpayWire) name() string        { return ProviderWooshPay }
func (w *wooshpayWire) table() *units.Table { return units.WooshPay }

func (w *wooshpayWire) isAPI(path string) bool {
	return path == "/v1" || strings.HasPrefix(path, "/v1/")
}

func (w *wooshpayWire) routes(m *http.ServeMux) { w.s.wooshpayRoutes(m) }

// authenticate checks the secret key (Basic auth user name; a Bearer token is
// accepted too, as Stripe does). Messages never echo the key.
func (w *wooshpayWire) authenticate(rw http.ResponseWriter, r *http.Request) ([]byte, bool) {
	key, _, ok := r.BasicAuth()
	if !ok {
		if v, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found {
			key, ok = strings.TrimSpace(v), true
		}
	}
	msg := ""
	switch {
	case !ok || key == "":
		msg = "You did not provide an API key. Provide your secret key as the user name of HTTP Basic auth."
	case w.s.opts.SecretKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(w.s.opts.SecretKey)) != 1:
		msg = "Invalid API Key provided."
	default:
		return nil, true
	}
	rw.Header().Set("WWW-Authenticate", `Basic realm="WooshPay"`)
	return errorBody(apiError{Type: "invalid_request_error", Message: msg}), false
}

func (w *wooshpayWire) serverError(after bool) []byte {
	when := "before"
	if after {
		when = "after"
	}
	return errorBody(apiError{Type: "api_error", Message: "An unexpected error occurred (simulated, " + when + " processing)."})
}

func (w *wooshpayWire) rateLimited(msg string) []byte {
	return errorBody(apiError{Type: "api_error", Code: "rate_limit", Message: msg})
}

func (w *wooshpayWire) badRequest(msg string) result { return invalidParam("", "", "%s", msg) }

func (w *wooshpayWire) idempotencyHeader() string { return "Idempotency-Key" }

// keepReplay is Stripe's rule: every request that began executing keeps its
// answer, whatever it was and whatever fault hides it.
func (w *wooshpayWire) keepReplay(res result, _ faultDecision) bool { return res.store }

func (w *wooshpayWire) idemConflict() result {
	return result{status: http.StatusConflict, body: errorBody(apiError{
		Type: "idempotency_error", Code: "idempotency_key_in_use",
		Message: "There is currently another in-progress request using this Idempotency Key (that probably means you submitted twice, and the other request is still going through). Please try again later.",
	})}
}

func (w *wooshpayWire) idemMismatch(key string) result {
	return result{status: http.StatusBadRequest, body: errorBody(apiError{
		Type: "idempotency_error",
		Message: fmt.Sprintf("Keys for idempotent requests can only be used with the same parameters they were first used with. "+
			"Try using a key other than '%s' if you meant to execute a different request.", key),
	})}
}

func (w *wooshpayWire) replaysMismatch() bool { return false }

func (w *wooshpayWire) paymentStatus(pi *paymentIntent) string { return pi.status }

var wooshpayEvents = map[payEvent]string{
	payCreated: evtPICreated, payRequiresAction: evtPIRequiresAction, payProcessing: evtPIProcessing,
	payFailed: evtPIPaymentFailed, paySucceeded: evtPISucceeded, payCanceled: evtPICanceled,
	payExpired: evtPICanceled,
}

// onPayment sends payment_intent.<status> with the intent. WooshPay has no
// separate capture, no capture decline and no card verification payment, so
// those core events send nothing.
func (w *wooshpayWire) onPayment(ev payEvent, pi *paymentIntent) {
	if typ, ok := wooshpayEvents[ev]; ok {
		w.s.emitLocked(typ, pi.id, pi.wire())
	}
}

func (w *wooshpayWire) onRefund(rf *refund, _ *paymentIntent) {
	w.s.emitLocked(evtRefundUpdated, rf.id, rf.wire())
}

func (w *wooshpayWire) envelope(id, typ string, created time.Time, obj any) []byte {
	return mustJSON(eventWire{
		ID: id, Object: "event", Created: created.UnixMilli(), Type: typ, Data: eventDataWire{Object: obj},
	})
}

func (w *wooshpayWire) signHeader(secret string, t time.Time, body []byte, _ bool) (string, string) {
	ts := t.Unix()
	if w.s.opts.Webhook.TimestampMillis {
		ts = t.UnixMilli()
	}
	return "Wooshpay-Signature", Sign(secret, ts, body)
}

// challengeDone is return_url with the payment_intent and redirect_status
// query parameters Stripe adds.
func (w *wooshpayWire) challengeDone(pi *paymentIntent, passed bool) string {
	if pi.returnURL == "" {
		return ""
	}
	status := "succeeded"
	if !passed {
		status = "failed"
	}
	return appendQuery(pi.returnURL, "payment_intent", pi.id, "redirect_status", status)
}

func (w *wooshpayWire) expiresChallenges() bool { return false }

func (w *wooshpayWire) userAgent() string { return "WooshPay-Simulator/1.0 (billingd)" }

// wooshpayAmount converts a request's amount from WooshPay's wire units to ISO
// minor units, refusing what Stripe-shaped APIs refuse: a currency they do
// not take (400 on currency) and an amount that is not whole in the
// currency's unit, such as ISK that is not a multiple of 100 (400
// invalid_charge_amount on amount).
func wooshpayAmount(wire int64, currency string) (int64, *result) {
	code := strings.ToUpper(currency)
	if _, err := units.WooshPay.Rule(code); err != nil {
		res := invalidParam("currency", "parameter_invalid", "Invalid currency: %s. %v.", strings.ToLower(code), err)
		return 0, &res
	}
	iso, err := wireToISO(units.WooshPay, wire, code)
	if err != nil {
		res := invalidParam("amount", "invalid_charge_amount", "Invalid amount %d for %s: %v.", wire, code, err)
		return 0, &res
	}
	return iso, nil
}

// ---- WooshPay errors ----

type apiError struct {
	Type          string             `json:"type"`
	Code          string             `json:"code,omitempty"`
	DeclineCode   string             `json:"decline_code,omitempty"`
	AdviceCode    string             `json:"advice_code,omitempty"`
	Message       string             `json:"message"`
	Param         string             `json:"param,omitempty"`
	PaymentIntent *paymentIntentWire `json:"payment_intent,omitempty"`
	SetupIntent   *setupIntentWire   `json:"setup_intent,omitempty"`
}

type errorEnvelope struct {
	Error apiError `json:"error"`
}

func errorBody(e apiError) []byte { return mustJSON(errorEnvelope{Error: e}) }

func ok(v any) result { return result{status: http.StatusOK, value: v, store: true} }

// invalidParam rejects a request before it executes: nothing is stored.
func invalidParam(param, code, format string, args ...any) result {
	return result{status: http.StatusBadRequest, body: errorBody(apiError{
		Type: "invalid_request_error", Code: code, Param: param, Message: fmt.Sprintf(format, args...),
	})}
}

// invalidState rejects a request that executed against the current state; the
// answer is stored under the idempotency key like any executed request.
func invalidState(e apiError) result {
	e.Type = "invalid_request_error"
	return result{status: http.StatusBadRequest, body: errorBody(e), store: true}
}

func notFound(kind, param, id string) result {
	return result{status: http.StatusNotFound, store: true, body: errorBody(apiError{
		Type: "invalid_request_error", Code: "resource_missing", Param: param,
		Message: fmt.Sprintf("No such %s: '%s'", kind, id),
	})}
}

func cardDeclined(ce *cardError, pi *paymentIntentWire, si *setupIntentWire, param string) result {
	return result{status: http.StatusPaymentRequired, store: true, body: errorBody(apiError{
		Type: ce.Type, Code: ce.Code, DeclineCode: ce.DeclineCode, AdviceCode: ce.AdviceCode,
		Message: ce.Message, Param: param, PaymentIntent: pi, SetupIntent: si,
	})}
}

// ---- parameter decoding ----

// decodeParams decodes a POST body strictly: unknown parameters and wrong types
// are 400 invalid_request_error before execution, as Stripe answers them, so a
// client typo shows up in tests instead of being silently ignored.
func decodeParams(body []byte, v any) *result {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	var res result
	switch {
	case errors.As(err, &te):
		res = invalidParam(te.Field, "parameter_invalid", "Invalid %s for parameter %s.", te.Value, te.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		res = invalidParam(name, "parameter_unknown", "Received unknown parameter: %s", name)
	default:
		res = invalidParam("", "parameter_invalid", "Invalid parameters: %v.", err)
	}
	return &res
}

// checkMetadata applies Stripe's limits: 50 keys, keys up to 40 characters, values
// up to 500.
func checkMetadata(m map[string]string) *result {
	if len(m) > 50 {
		res := invalidParam("metadata", "parameter_invalid", "Metadata can have at most 50 keys.")
		return &res
	}
	for k, v := range m {
		if k == "" || len(k) > 40 {
			res := invalidParam("metadata", "parameter_invalid", "Metadata keys must be 1 to 40 characters long.")
			return &res
		}
		if len(v) > 500 {
			res := invalidParam("metadata["+k+"]", "parameter_invalid", "Metadata values can be at most 500 characters long.")
			return &res
		}
	}
	return nil
}

func checkPaymentMethodTypes(types []string) *result {
	for _, t := range types {
		if t != "card" {
			res := invalidParam("payment_method_types", "parameter_invalid",
				"The simulator only supports payment method type card, got %q.", t)
			return &res
		}
	}
	return nil
}
