package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// controlRoutes serves everything outside the provider's API: the /_sim/ control plane (no
// auth, never faulted), the hosted pages a customer's browser is sent to (the
// 3-D Secure challenge and the setup checkout page) and /healthz.
func (s *Server) controlRoutes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	m.HandleFunc("GET /_sim/ledger", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Ledger()))
	})
	m.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Stats()))
	})
	m.HandleFunc("GET /_sim/events", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Events()))
	})
	m.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Faults()))
	})
	m.HandleFunc("PUT /_sim/faults", s.putFaults)
	m.HandleFunc("GET /_sim/webhooks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.WebhookDelivery()))
	})
	m.HandleFunc("PUT /_sim/webhooks", s.putWebhooks)
	m.HandleFunc("POST /_sim/settle", func(w http.ResponseWriter, _ *http.Request) {
		s.SettleDue()
		writeJSON(w, http.StatusOK, []byte(`{"ok":true}`))
	})
	m.HandleFunc("POST /_sim/payment_intents/{id}/challenge", s.postChallenge)
	m.HandleFunc("POST /_sim/payment_intents/{id}/duplicate", s.postDuplicate)
	m.HandleFunc("GET /_sim/refunds", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Refunds()))
	})
	m.HandleFunc("POST /_sim/payment_methods/{id}/behaviour", s.postCardBehaviour)
	m.HandleFunc("POST /_sim/payment_methods/{id}/renew", s.postCardRenew)
	m.HandleFunc("GET /3ds/{id}", s.challengePage)
	m.HandleFunc("POST /3ds/{id}", s.challengeSubmit)
	m.HandleFunc("GET /checkout/setup/{id}", s.setupPage)
	m.HandleFunc("POST /checkout/setup/{id}", s.setupSubmit)
	m.HandleFunc("GET /hpp/{id}", s.setupPage)
	m.HandleFunc("POST /hpp/{id}", s.setupSubmit)
	m.HandleFunc("POST /_sim/payments/{id}/capture_decline", s.postCaptureDecline)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody(apiError{
			Type: "invalid_request_error", Message: "Unrecognized request URL (" + r.Method + ": " + r.URL.Path + ").",
		}))
	})
	return m
}

func controlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody(apiError{Type: "invalid_request_error", Message: msg}))
}

func (s *Server) putFaults(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		controlError(w, http.StatusBadRequest, "could not read body")
		return
	}
	var j faultsJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		controlError(w, http.StatusBadRequest, "invalid faults: "+err.Error())
		return
	}
	f := j.faults()
	if err := f.Validate(); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.SetFaults(f)
	s.logf("sim: faults set to %s", mustJSON(f))
	writeJSON(w, http.StatusOK, mustJSON(f))
}

// putWebhooks replaces the delivery modes (SetWebhookDelivery), including
// "enabled", which is true when omitted. "workers" may be omitted or repeat the
// current value, since the workers are started once.
func (s *Server) putWebhooks(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		controlError(w, http.StatusBadRequest, "could not read body")
		return
	}
	var j deliveryJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		controlError(w, http.StatusBadRequest, "invalid webhook delivery: "+err.Error())
		return
	}
	d := j.delivery()
	if err := d.Validate(); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if cur := s.WebhookDelivery().Workers; d.Workers != 0 && d.Workers != cur {
		controlError(w, http.StatusBadRequest, string(FieldWebhookWorkers)+": cannot change at runtime (is "+strconv.Itoa(cur)+")")
		return
	}
	s.SetWebhookDelivery(d)
	d = s.WebhookDelivery()
	s.logf("sim: webhook delivery set to %s", mustJSON(d))
	writeJSON(w, http.StatusOK, mustJSON(d))
}

// postDuplicate serves POST /_sim/payment_intents/{id}/duplicate: a second
// payment succeeds for the order of the succeeded intent id
// (DuplicateSuccess); the answer is the new intent.
func (s *Server) postDuplicate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	dup, err := s.DuplicateSuccess(id)
	switch {
	case errors.Is(err, ErrNotFound):
		controlError(w, http.StatusNotFound, "No such payment_intent: '"+id+"'")
	case err != nil:
		controlError(w, http.StatusConflict, err.Error())
	default:
		s.logf("sim: second payment %s succeeded for the order of %s", dup, id)
		writeJSON(w, http.StatusOK, s.intentJSON(dup))
	}
}

func (s *Server) postChallenge(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var err error
	switch r.URL.Query().Get("result") {
	case "pass":
		err = s.PassChallenge(id)
	case "fail":
		err = s.FailChallenge(id)
	default:
		controlError(w, http.StatusBadRequest, "result must be pass or fail")
		return
	}
	switch {
	case errors.Is(err, ErrNotFound):
		controlError(w, http.StatusNotFound, "No such payment_intent: '"+id+"'")
	case err != nil:
		controlError(w, http.StatusConflict, err.Error())
	default:
		writeJSON(w, http.StatusOK, s.intentJSON(id))
	}
}

// postCardBehaviour serves POST /_sim/payment_methods/{id}/behaviour: the body
// is a test card number (plain text, spaces and dashes allowed) whose outcome
// the saved payment method takes from its next charge on (SetCardBehaviour).
// It is how a test that runs the simulator as a separate process tops up a
// customer's account between a decline and its retry. The number must be one
// the simulator would accept when saving a card (digits, Luhn-valid); the answer
// is the payment method, whose id, brand and last 4 do not change, and the
// number is not echoed.
func (s *Server) postCardBehaviour(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
	if err != nil {
		controlError(w, http.StatusBadRequest, "could not read body")
		return
	}
	number := normalizeCardNumber(strings.TrimSpace(string(raw)))
	if !allDigits(number) || len(number) < 12 || len(number) > 19 || !luhnValid(number) {
		controlError(w, http.StatusBadRequest, "the body must be a test card number, such as 4242424242424242")
		return
	}
	// Unknown payment methods are SetCardBehaviour's only error.
	if err := s.SetCardBehaviour(id, number); err != nil {
		controlError(w, http.StatusNotFound, "No such payment_method: '"+id+"'")
		return
	}
	s.logf("sim: payment method %s now charges like a card ending %s", id, number[len(number)-4:])
	s.mu.Lock()
	var body []byte
	if s.wire.name() == ProviderCheckout {
		body = mustJSON(s.ckoInstrumentLocked(s.methods[id]))
	} else {
		body = mustJSON(s.methods[id].wire())
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// postCardRenew renews a saved card's expiry, as an account updater would:
// the body is {"exp_month": 12, "exp_year": 2031}. It answers the payment
// method as the provider's API shows it.
func (s *Server) postCardRenew(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body struct {
		ExpMonth int `json:"exp_month"`
		ExpYear  int `json:"exp_year"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&body); err != nil {
		controlError(w, http.StatusBadRequest, `the body must be JSON such as {"exp_month": 12, "exp_year": 2031}`)
		return
	}
	if err := s.SetCardExpiry(id, body.ExpMonth, body.ExpYear); err != nil {
		status := http.StatusBadRequest
		s.mu.Lock()
		if _, ok := s.methods[id]; !ok {
			status = http.StatusNotFound
		}
		s.mu.Unlock()
		controlError(w, status, err.Error())
		return
	}
	s.logf("sim: payment method %s renewed, expires %02d/%d", id, body.ExpMonth, body.ExpYear)
	s.mu.Lock()
	var out []byte
	if s.wire.name() == ProviderCheckout {
		out = mustJSON(s.ckoInstrumentLocked(s.methods[id]))
	} else {
		out = mustJSON(s.methods[id].wire())
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// intentJSON is a payment as the provider's API shows it.
func (s *Server) intentJSON(id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wire.name() == ProviderCheckout {
		return mustJSON(s.ckoPaymentLocked(s.intents[id]))
	}
	return mustJSON(s.intents[id].wire())
}

// challengeState is what the challenge page needs, copied under the lock.
type challengeState struct {
	found     bool
	pending   bool // requires_action: the challenge can still be answered
	status    string
	amount    string
	returnURL string // where "Return to the merchant" links
	passedURL string // where the browser goes after a passed challenge
	failedURL string // … and after a failed one
}

func (s *Server) challengeState(id string) challengeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[id]
	if pi == nil {
		return challengeState{}
	}
	back := pi.returnURL
	if back == "" {
		back = pi.successURL
	}
	return challengeState{
		found: true, pending: pi.status == statusRequiresAction, status: s.wire.paymentStatus(pi),
		amount: formatAmount(pi.amount, pi.currency), returnURL: back,
		passedURL: s.wire.challengeDone(pi, true), failedURL: s.wire.challengeDone(pi, false),
	}
}

// challengePage serves GET /3ds/{id}, the page next_action.challenge_redirect.url
// points at: the amount and two buttons, standing in for the issuer's page.
func (s *Server) challengePage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st := s.challengeState(id)
	if challengeUnusable(w, st) {
		return
	}
	renderPage(w, http.StatusOK, "3ds", pageView{Title: "Authenticate your payment", Amount: st.amount, PaymentIntent: id, Brand: s.brand()})
}

// challengeUnusable answers for an intent whose challenge cannot be taken and
// reports whether it did: 404 unknown, 409 not (or no longer) in requires_action.
func challengeUnusable(w http.ResponseWriter, st challengeState) bool {
	switch {
	case !st.found:
		renderMessage(w, http.StatusNotFound, "Payment not found", "There is no payment to authenticate here.", "", "")
	case !st.pending:
		renderMessage(w, http.StatusConflict, "Nothing to authenticate",
			"This payment does not need authentication now (status: "+st.status+").",
			st.returnURL, "Return to the merchant")
	default:
		return false
	}
	return true
}

// challengeSubmit is the page's buttons: it passes or fails the challenge and
// sends the customer back to return_url, as the issuer's page would, with the
// payment_intent and redirect_status query parameters Stripe adds. The outcome
// is only a hint for the return page; the webhook (or a retrieve) is the truth.
func (s *Server) challengeSubmit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		renderMessage(w, http.StatusBadRequest, "Something went wrong", "The form could not be read. Go back and try again.", "", "")
		return
	}
	var err error
	redirectStatus := "succeeded"
	switch r.Form.Get("result") { // the form body, or the query for scripted callers
	case "pass":
		err = s.PassChallenge(id)
	case "fail":
		err = s.FailChallenge(id)
		redirectStatus = "failed"
	default:
		renderMessage(w, http.StatusBadRequest, "Something went wrong", "Choose to complete or to fail the authentication.", "", "")
		return
	}
	st := s.challengeState(id)
	if err != nil {
		// Unknown, or already answered (a double click, a back button).
		challengeUnusable(w, st)
		return
	}
	s.logf("sim: POST /3ds/%s -> challenge %s", id, redirectStatus)
	next := st.passedURL
	if redirectStatus != "succeeded" {
		next = st.failedURL
	}
	if next == "" {
		renderMessage(w, http.StatusOK, "Authentication "+redirectStatus,
			"You can close this window and return to the merchant.", "", "")
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// postCaptureDecline serves POST /_sim/payments/{id}/capture_decline: the
// approved Checkout.com payment's capture is declined (CaptureDecline); the
// answer is the payment as GET /payments/{id} shows it.
func (s *Server) postCaptureDecline(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.CaptureDecline(id)
	switch {
	case errors.Is(err, ErrNotFound):
		controlError(w, http.StatusNotFound, "No such payment: '"+id+"'")
	case err != nil:
		controlError(w, http.StatusConflict, err.Error())
	default:
		s.logf("sim: capture of %s declined", id)
		writeJSON(w, http.StatusOK, s.intentJSON(id))
	}
}

// brand is the provider's name on hosted pages.
func (s *Server) brand() string {
	if s.wire.name() == ProviderCheckout {
		return "Checkout.com"
	}
	return ""
}
