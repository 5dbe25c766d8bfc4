package sim

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// checkoutSessionTTL is how long a hosted checkout page stays usable. WooshPay
// documents "about 24 hours"; Stripe's default is exactly that.
const checkoutSessionTTL = 24 * time.Hour

// Checkout session statuses, as Stripe spells them.
const (
	sessionOpen     = "open"
	sessionComplete = "complete"
	sessionExpired  = "expired"
)

// checkoutSession is a setup-mode checkout session: a hosted page on which the
// customer saves a card, backed by a SetupIntent created with the session. It
// never holds card data; the card exists only while the page's POST is handled.
type checkoutSession struct {
	id          string
	created     time.Time
	expiresAt   time.Time
	customer    string
	setupIntent string
	url         string
	successURL  string
	cancelURL   string
	metadata    map[string]string // shared with the setup intent, never mutated
	completed   bool
	// verify is set on a Checkout.com hosted payment page: completing it
	// verifies the card instead of succeeding a SetupIntent.
	verify *hostedVerification
}

// statusAt derives the status from the clock instead of storing "expired", so
// a fake clock moved past expires_at expires the session without a sweeper.
func (cs *checkoutSession) statusAt(now time.Time) string {
	switch {
	case cs.completed:
		return sessionComplete
	case !now.Before(cs.expiresAt):
		return sessionExpired
	}
	return sessionOpen
}

type checkoutSessionWire struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Created            int64             `json:"created"`
	Mode               string            `json:"mode"`
	Status             string            `json:"status"`
	Customer           string            `json:"customer"`
	SetupIntent        string            `json:"setup_intent"`
	PaymentMethodTypes []string          `json:"payment_method_types"`
	URL                *string           `json:"url"`
	SuccessURL         string            `json:"success_url"`
	CancelURL          string            `json:"cancel_url"`
	Metadata           map[string]string `json:"metadata"`
	ExpiresAt          int64             `json:"expires_at"`
	Livemode           bool              `json:"livemode"`
}

// wire renders the session as of now. Like Stripe, url is null once the session
// is no longer open: there is no page left to send anyone to.
func (cs *checkoutSession) wire(now time.Time) checkoutSessionWire {
	w := checkoutSessionWire{
		ID: cs.id, Object: "checkout.session", Created: cs.created.UnixMilli(), Mode: "setup",
		Status: cs.statusAt(now), Customer: cs.customer, SetupIntent: cs.setupIntent,
		PaymentMethodTypes: []string{"card"}, SuccessURL: cs.successURL, CancelURL: cs.cancelURL,
		Metadata: metaOrEmpty(cs.metadata), ExpiresAt: cs.expiresAt.UnixMilli(),
	}
	if w.Status == sessionOpen {
		w.URL = strOrNil(cs.url)
	}
	return w
}

// checkRedirectURL validates a URL the customer's browser will be sent to.
func checkRedirectURL(param, u string) *result {
	if u == "" {
		res := invalidParam(param, "parameter_missing", "Missing required param: %s.", param)
		return &res
	}
	if !absoluteHTTPURL(u) {
		res := invalidParam(param, "url_invalid", "%s must be an absolute http(s) URL.", param)
		return &res
	}
	return nil
}

// createSetupCheckoutSession serves POST /v1/checkout/sessions/setup (the
// endpoint WooshPay's save-card guide names) and, with modeRequired, the
// Stripe-shaped POST /v1/checkout/sessions with "mode":"setup".
func (s *Server) createSetupCheckoutSession(modeRequired bool) handlerFunc {
	return func(c *call) result {
		var p struct {
			Customer           string            `json:"customer"`
			SuccessURL         string            `json:"success_url"`
			CancelURL          string            `json:"cancel_url"`
			Mode               string            `json:"mode"`
			PaymentMethodTypes []string          `json:"payment_method_types"`
			Metadata           map[string]string `json:"metadata"`
		}
		if res := decodeParams(c.body, &p); res != nil {
			return *res
		}
		switch {
		case modeRequired && p.Mode == "":
			return invalidParam("mode", "parameter_missing", "Missing required param: mode.")
		case p.Mode != "" && p.Mode != "setup":
			return invalidParam("mode", "parameter_unsupported", "The simulator only supports checkout sessions in mode setup, got %q.", p.Mode)
		case p.Customer == "":
			return invalidParam("customer", "parameter_missing", "Missing required param: customer.")
		}
		for _, res := range []*result{
			checkMetadata(p.Metadata), checkPaymentMethodTypes(p.PaymentMethodTypes),
			checkRedirectURL("success_url", p.SuccessURL), checkRedirectURL("cancel_url", p.CancelURL),
		} {
			if res != nil {
				return *res
			}
		}

		s.mu.Lock()
		defer s.mu.Unlock()
		now := s.now()
		cu := s.customers[p.Customer]
		if cu == nil {
			return notFound("customer", "customer", p.Customer)
		}
		cs := &checkoutSession{
			id: s.newIDLocked("cs_test"), created: now, expiresAt: now.Add(checkoutSessionTTL),
			customer: cu.id, successURL: p.SuccessURL, cancelURL: p.CancelURL, metadata: p.Metadata,
		}
		cs.url = s.publicBase(c.r) + "/checkout/setup/" + cs.id
		// The session's SetupIntent carries the metadata, so that the
		// setup_intent.succeeded event alone tells the merchant what the card is
		// for; its return_url is the hosted page, as in WooshPay's sample event.
		si := &setupIntent{
			id: s.newIDLocked("seti"), created: now, customer: cu.id, usage: "off_session",
			returnURL: cs.url, metadata: p.Metadata, secret: s.newSecretLocked(),
			status: statusRequiresPaymentMethod,
		}
		cs.setupIntent = si.id
		s.setups[si.id] = si
		s.sessions[cs.id] = cs
		return ok(cs.wire(now))
	}
}

func (s *Server) getCheckoutSession(c *call) result {
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.sessions[id]
	if cs == nil {
		return notFound("checkout.session", "id", id)
	}
	return ok(cs.wire(s.now()))
}

// ---- the hosted page ----

// maxFormBytes bounds a hosted page's form; four short fields need far less.
const maxFormBytes = 16 << 10

// hostedTestCards is the short list the hosted page shows, so a person trying the
// flow by hand knows what to type.
var hostedTestCards = []testCardRow{
	{"4242 4242 4242 4242", "saved; payments succeed"},
	{"4462 0300 0000 0000", "saved; payments ask for 3-D Secure"},
	{"4000 0000 0000 9995", "saved; payments decline: insufficient funds"},
	{"4000 0000 0000 0069", "saved; payments decline: expired card"},
	{"4242 4242 4242 4241", "rejected: fails the Luhn check"},
}

type testCardRow struct{ Number, Outcome string }

// sessionPageState is what the hosted page needs, copied under the lock.
type sessionPageState struct {
	found      bool
	status     string
	successURL string
	cancelURL  string
	brand      string
}

func (s *Server) sessionPageState(id string) sessionPageState {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.sessions[id]
	if cs == nil {
		return sessionPageState{}
	}
	return sessionPageState{found: true, status: cs.statusAt(s.now()), successURL: cs.successURL, cancelURL: cs.cancelURL,
		brand: s.brand()}
}

// setupPage serves GET /checkout/setup/{id}: the "Save a card" form.
func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) {
	st := s.sessionPageState(r.PathValue("id"))
	if s.sessionUnusable(w, st) {
		return
	}
	renderPage(w, http.StatusOK, "setup", setupFormView(st, "", "", ""))
}

// setupSubmit serves POST /checkout/setup/{id}: it validates the card as the
// gateway's page would, saves it for the session's customer, succeeds the
// session's SetupIntent (emitting setup_intent.succeeded with the session's
// metadata) and sends the browser to success_url with session_id appended.
// Invalid input re-shows the form with the reason; the card number and CVC are
// never written back into the page.
func (s *Server) setupSubmit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st := s.sessionPageState(id)
	if s.sessionUnusable(w, st) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		renderMessage(w, http.StatusBadRequest, "Something went wrong", "The form could not be read. Go back and try again.", "", "")
		return
	}
	f := r.PostForm
	month, year := strings.TrimSpace(f.Get("exp_month")), strings.TrimSpace(f.Get("exp_year"))
	card, problem := cardFromForm(f.Get("card_number"), month, year, f.Get("cvc"), s.now())
	if problem != "" {
		renderPage(w, http.StatusOK, "setup", setupFormView(st, problem, month, year))
		return
	}

	s.mu.Lock()
	cs := s.sessions[id]
	now := s.now()
	status := cs.statusAt(now)
	next := appendQuery(st.successURL, "session_id", id)
	if status == sessionOpen {
		prefix := "pm"
		if cs.verify != nil {
			prefix = "src"
		}
		pm := &paymentMethod{
			id: s.newIDLocked(prefix), created: now, brand: card.brand, last4: card.last4,
			expMonth: card.expMonth, expYear: card.expYear, rule: card.rule,
		}
		s.methods[pm.id] = pm
		cs.completed = true
		if cs.verify != nil {
			next = s.verifyHostedCardLocked(cs, pm, now)
		} else {
			s.succeedSetupLocked(s.setups[cs.setupIntent], pm, s.customers[cs.customer])
		}
	}
	s.mu.Unlock()
	if status != sessionOpen {
		// Another submission won the race, or the page sat open past expiry.
		st.status = status
		s.sessionUnusable(w, st)
		return
	}
	s.logf("sim: POST %s -> 303 (card saved)", r.URL.Path)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// sessionUnusable answers for a session that cannot take a card and reports
// whether it did: 404 unknown, 409 already completed, 410 expired.
func (s *Server) sessionUnusable(w http.ResponseWriter, st sessionPageState) bool {
	switch {
	case !st.found:
		renderMessage(w, http.StatusNotFound, "Page not found", "This card page does not exist. Use the link you were sent again, or ask for a new one.", "", "")
	case st.status == sessionComplete:
		renderMessage(w, http.StatusConflict, "Card already saved", "A card has already been saved on this page; nothing more to do here.", st.successURL, "Continue")
	case st.status == sessionExpired:
		renderMessage(w, http.StatusGone, "This page has expired", "This card page has expired. Ask for a new link to save a card.", st.cancelURL, "Return")
	default:
		return false
	}
	return true
}

func setupFormView(st sessionPageState, problem, month, year string) pageView {
	return pageView{
		Title: "Save a card", Error: problem, ExpMonth: month, ExpYear: year,
		CancelURL: st.cancelURL, TestCards: hostedTestCards, Brand: st.brand,
	}
}

// cardFromForm applies the setup-intent card rules (checkPaymentMethodData) to
// the form's fields, plus what a checkout page checks before anything is sent:
// every field present, expiry not in the past. It returns a message for the
// customer when the card cannot be saved; the message never quotes the number.
func cardFromForm(number, month, year, cvc string, now time.Time) (savedCard, string) {
	number, cvc = strings.TrimSpace(number), strings.TrimSpace(cvc)
	switch {
	case number == "":
		return savedCard{}, "Enter the card number."
	case month == "" || year == "":
		return savedCard{}, "Enter the card's expiry month and year."
	case cvc == "":
		return savedCard{}, "Enter the card's security code (CVC)."
	}
	m, err := strconv.Atoi(month)
	if err != nil {
		return savedCard{}, errInvalidMonth.Message
	}
	y, err := strconv.Atoi(year)
	if err != nil {
		return savedCard{}, errInvalidYear.Message
	}
	card, bad, ce, _ := checkPaymentMethodData(&paymentMethodData{Type: "card", Card: &cardParams{
		Number: number, ExpMonth: flexInt{set: true, v: m}, ExpYear: flexInt{set: true, v: y}, CVC: cvc,
	}})
	switch {
	case bad != nil:
		return savedCard{}, "The card details are incomplete."
	case ce != nil:
		return savedCard{}, ce.Message
	}
	if ny, nm := now.Year(), int(now.Month()); card.expYear < ny || (card.expYear == ny && card.expMonth < nm) {
		return savedCard{}, "Your card's expiration date is in the past."
	}
	return card, ""
}

// appendQuery adds key=value to the query of raw, leaving the merchant's own
// parameters exactly as they were.
func appendQuery(raw, key, value string, more ...string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	kv := append([]string{key, value}, more...)
	var b strings.Builder
	b.WriteString(u.RawQuery)
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[i+1]))
	}
	u.RawQuery = b.String()
	u.ForceQuery = false
	return u.String()
}
