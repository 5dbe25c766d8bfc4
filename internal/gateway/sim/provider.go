package sim

import (
	"net/http"
	"time"

	"github.com/billingd/billingd/internal/gateway/units"
)

// Providers the simulator can play (Options.Provider).
const (
	ProviderWooshPay = "wooshpay"
	ProviderCheckout = "checkout"
)

// payEvent is something that happened to a payment in the core's words. The
// core reports it once; the wire layer decides which webhook events (none,
// one or several) the provider sends for it and what they carry.
type payEvent uint8

const (
	payCreated         payEvent = iota // a payment object exists
	payRequiresAction                  // waiting for the customer's 3-D Secure challenge
	payProcessing                      // waiting for the issuer; settles later
	payFailed                          // declined, or the challenge failed
	paySucceeded                       // money moved (authorized, capture may follow)
	payCaptured                        // a provider that captures apart: the capture happened
	payCanceled                        // canceled by the merchant
	payExpired                         // the challenge was never completed
	payCaptureDeclined                 // the capture after an authorization was declined
	payVerified                        // a zero-amount card verification succeeded
)

// wireLayer is one provider's face of the simulator: everything a client can
// tell apart between providers. The core (objects, ledger, idempotency,
// faults, webhook delivery, hosted pages, the challenge) calls it; it never
// holds state of its own beyond a pointer back to the Server.
type wireLayer interface {
	// name is the Options.Provider value.
	name() string
	// table converts amounts between ISO minor units and the wire.
	table() *units.Table
	// isAPI reports whether a path is one of the provider's API routes (rate
	// limit, faults and auth apply); other paths are the control plane.
	isAPI(path string) bool
	// routes registers the API handlers, wrapped in Server.route.
	routes(m *http.ServeMux)
	// authenticate checks a request's credentials; on failure it sets any
	// headers the provider sends and returns the 401 body.
	authenticate(w http.ResponseWriter, r *http.Request) (body []byte, ok bool)
	// serverError is the body of an injected 500 (after: the request was
	// executed first).
	serverError(after bool) []byte
	// rateLimited is the body of a 429.
	rateLimited(msg string) []byte
	// badRequest is the answer to a body that is not one JSON object.
	badRequest(msg string) result
	// idempotencyHeader names the request header that carries the key.
	idempotencyHeader() string
	// keepReplay reports whether an executed request's answer is kept under
	// its key, given the answer and the fault about to be applied to it.
	keepReplay(res result, d faultDecision) bool
	// idemConflict is the answer while the key's first request is in flight;
	// idemMismatch the answer to the key reused with other parameters.
	idemConflict() result
	idemMismatch(key string) result
	// replaysMismatch reports whether a key reused with other parameters
	// replays the first answer instead of idemMismatch.
	replaysMismatch() bool
	// paymentStatus is the payment's status as the provider spells it.
	paymentStatus(pi *paymentIntent) string
	// onPayment emits the provider's webhook events for ev (under s.mu).
	onPayment(ev payEvent, pi *paymentIntent)
	// onRefund emits the provider's webhook events for a new refund.
	onRefund(rf *refund, pi *paymentIntent)
	// envelope is the webhook body of one event.
	envelope(id, typ string, created time.Time, obj any) []byte
	// signHeader names the signature header and signs body (at t, for a
	// provider that signs a timestamp; a stale spoil passes an old t).
	signHeader(secret string, t time.Time, body []byte, stale bool) (name, value string)
	// challengeDone is where the browser goes after the challenge page, or ""
	// for a page that says to close the window.
	challengeDone(pi *paymentIntent, passed bool) string
	// userAgent is the User-Agent of webhook deliveries.
	userAgent() string
	// expiresChallenges reports whether a payment left waiting for its
	// challenge expires after Options.ChallengeExpiry (Checkout.com) instead
	// of waiting until it is canceled (WooshPay).
	expiresChallenges() bool
}

func newWireLayer(s *Server, provider string) wireLayer {
	if provider == ProviderCheckout {
		return &checkoutWire{s: s}
	}
	return &wooshpayWire{s: s}
}
