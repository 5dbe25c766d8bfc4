package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// apiRoutes is the provider's API, every route wrapped in route (idempotency,
// after-faults).
func (s *Server) apiRoutes() *http.ServeMux {
	m := http.NewServeMux()
	s.wire.routes(m)
	return m
}

// wooshpayRoutes registers the WooshPay API.
func (s *Server) wooshpayRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /v1/customers", s.route(s.createCustomer))
	m.HandleFunc("GET /v1/customers/{id}", s.route(s.getCustomer))
	m.HandleFunc("GET /v1/customers/{id}/payment_methods", s.route(s.listCustomerPaymentMethods))
	m.HandleFunc("POST /v1/setup_intents", s.route(s.createSetupIntent))
	m.HandleFunc("GET /v1/setup_intents/{id}", s.route(s.getSetupIntent))
	m.HandleFunc("POST /v1/setup_intents/{id}/confirm", s.route(s.confirmSetupIntent))
	m.HandleFunc("GET /v1/payment_methods/{id}", s.route(s.getPaymentMethod))
	m.HandleFunc("POST /v1/payment_methods/{id}/detach", s.route(s.detachPaymentMethod))
	m.HandleFunc("POST /v1/payment_intents", s.route(s.createPaymentIntent))
	m.HandleFunc("GET /v1/payment_intents", s.route(s.listPaymentIntents))
	m.HandleFunc("GET /v1/payment_intents/search", s.route(s.searchPaymentIntents))
	m.HandleFunc("GET /v1/payment_intents/{id}", s.route(s.getPaymentIntent))
	m.HandleFunc("POST /v1/payment_intents/{id}/confirm", s.route(s.confirmPaymentIntent))
	m.HandleFunc("POST /v1/payment_intents/{id}/cancel", s.route(s.cancelPaymentIntent))
	m.HandleFunc("POST /v1/refunds", s.route(s.createRefund))
	m.HandleFunc("GET /v1/refunds/{id}", s.route(s.getRefund))
	m.HandleFunc("POST /v1/checkout/sessions/setup", s.route(s.createSetupCheckoutSession(false)))
	m.HandleFunc("POST /v1/checkout/sessions", s.route(s.createSetupCheckoutSession(true)))
	m.HandleFunc("GET /v1/checkout/sessions/{id}", s.route(s.getCheckoutSession))
	// Anything else, including a known path with the wrong method, is an
	// unrecognized URL, as Stripe answers it.
	m.HandleFunc("/", s.route(unrecognized))
}

func unrecognized(c *call) result {
	return result{status: http.StatusNotFound, body: errorBody(apiError{
		Type:    "invalid_request_error",
		Message: "Unrecognized request URL (" + c.r.Method + ": " + c.r.URL.Path + ").",
	})}
}

// publicBase is where links handed to customers point: Options.PublicURL, or the
// host the client reached the simulator on.
func (s *Server) publicBase(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return strings.TrimRight(s.opts.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

type listWire struct {
	Object  string `json:"object"`
	Data    any    `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

type searchWire struct {
	Object   string              `json:"object"`
	Data     []paymentIntentWire `json:"data"`
	HasMore  bool                `json:"has_more"`
	NextPage *string             `json:"next_page"`
	URL      string              `json:"url"`
}

// onlyQueryParams rejects query parameters other than the allowed ones.
func onlyQueryParams(q url.Values, allowed ...string) *result {
	for k := range q {
		found := false
		for _, a := range allowed {
			found = found || k == a
		}
		if !found {
			res := invalidParam(k, "parameter_unknown", "Received unknown parameter: %s", k)
			return &res
		}
	}
	return nil
}

func parseLimit(q url.Values) (int, *result) {
	v := q.Get("limit")
	if v == "" {
		return 10, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		res := invalidParam("limit", "parameter_invalid", "limit must be an integer between 1 and 100, got %q.", v)
		return 0, &res
	}
	return n, nil
}

func checkReturnURL(u string) *result {
	if u == "" {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		res := invalidParam("return_url", "url_invalid", "return_url must be an absolute http(s) URL.")
		return &res
	}
	return nil
}

// ---- customers ----

func (s *Server) createCustomer(c *call) result {
	var p struct {
		Email       string            `json:"email"`
		Name        string            `json:"name"`
		Description string            `json:"description"`
		Phone       string            `json:"phone"`
		Metadata    map[string]string `json:"metadata"`
	}
	if res := decodeParams(c.body, &p); res != nil {
		return *res
	}
	if res := checkMetadata(p.Metadata); res != nil {
		return *res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cu := &customer{
		id: s.newIDLocked("cus"), created: s.now(), email: p.Email, name: p.Name,
		description: p.Description, metadata: p.Metadata,
	}
	s.customers[cu.id] = cu
	return ok(cu.wire())
}

func (s *Server) getCustomer(c *call) result {
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	cu := s.customers[id]
	if cu == nil {
		return notFound("customer", "id", id)
	}
	return ok(cu.wire())
}

func (s *Server) listCustomerPaymentMethods(c *call) result {
	id := c.r.PathValue("id")
	q := c.r.URL.Query()
	if res := onlyQueryParams(q, "type", "limit"); res != nil {
		return *res
	}
	if t := q.Get("type"); t != "" && t != "card" {
		return invalidParam("type", "parameter_invalid", "The simulator only has payment methods of type card.")
	}
	limit, res := parseLimit(q)
	if res != nil {
		return *res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cu := s.customers[id]
	if cu == nil {
		return notFound("customer", "id", id)
	}
	data := make([]paymentMethodWire, 0, min(limit, len(cu.methods)))
	for i := len(cu.methods) - 1; i >= 0 && len(data) < limit; i-- {
		data = append(data, s.methods[cu.methods[i]].wire())
	}
	return ok(listWire{
		Object: "list", Data: data, HasMore: len(cu.methods) > len(data),
		URL: "/v1/customers/" + id + "/payment_methods",
	})
}

// ---- payment methods ----

func (s *Server) getPaymentMethod(c *call) result {
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	pm := s.methods[id]
	if pm == nil {
		return notFound("payment_method", "id", id)
	}
	return ok(pm.wire())
}

// detachPaymentMethod removes a saved card from its customer, as a customer
// deleting a card in the merchant's app does. The method still reads by id
// (customer null), but charging it for the customer is refused: 400
// invalid_request_error on payment_method.
func (s *Server) detachPaymentMethod(c *call) result {
	var p struct{}
	if res := decodeParams(c.body, &p); res != nil {
		return *res
	}
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	pm := s.methods[id]
	if pm == nil {
		return notFound("payment_method", "id", id)
	}
	if pm.customer == "" {
		return invalidState(apiError{Code: "payment_method_unexpected_state", Param: "payment_method",
			Message: "The payment method " + id + " is not attached to a customer."})
	}
	s.detachLocked(pm)
	return ok(pm.wire())
}

// detachLocked takes a payment method off its customer's list.
func (s *Server) detachLocked(pm *paymentMethod) {
	if cu := s.customers[pm.customer]; cu != nil {
		kept := cu.methods[:0]
		for _, m := range cu.methods {
			if m != pm.id {
				kept = append(kept, m)
			}
		}
		cu.methods = kept
	}
	pm.customer = ""
}

// DetachPaymentMethod is the detach call for tests that drive the simulator
// in-process: the customer removed the card at the gateway.
func (s *Server) DetachPaymentMethod(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pm := s.methods[id]
	if pm == nil || pm.customer == "" {
		return fmt.Errorf("sim: no attached payment method %q", id)
	}
	s.detachLocked(pm)
	return nil
}

// cardParams is payment_method_data.card. The number lives here only for the
// duration of the request that saves the card.
type cardParams struct {
	Number   string  `json:"number"`
	ExpMonth flexInt `json:"exp_month"`
	ExpYear  flexInt `json:"exp_year"`
	CVC      string  `json:"cvc"`
	Name     string  `json:"name"`
}

type paymentMethodData struct {
	Type           string          `json:"type"`
	Card           *cardParams     `json:"card"`
	BillingDetails json.RawMessage `json:"billing_details"`
	Metadata       json.RawMessage `json:"metadata"`
}

// savedCard is what survives of a card: no number, no CVC, no name.
type savedCard struct {
	brand    string
	last4    string
	expMonth int
	expYear  int
	rule     cardRule
}

var (
	errInvalidNumber   = &cardError{Type: "card_error", Code: "invalid_number", Message: "The card number is not a valid credit card number."}
	errIncorrectNumber = &cardError{Type: "card_error", Code: "incorrect_number", DeclineCode: "incorrect_number", Message: "Your card number is incorrect."}
	errInvalidMonth    = &cardError{Type: "card_error", Code: "invalid_expiry_month", Message: "Your card's expiration month is invalid."}
	errInvalidYear     = &cardError{Type: "card_error", Code: "invalid_expiry_year", Message: "Your card's expiration year is invalid."}
	errInvalidCVC      = &cardError{Type: "card_error", Code: "invalid_cvc", Message: "Your card's security code is invalid."}
)

// checkPaymentMethodData validates the shape of payment_method_data (a 400 before
// execution) and then the card itself (a 402 card_error, as an issuer would).
func checkPaymentMethodData(d *paymentMethodData) (card savedCard, bad *result, ce *cardError, param string) {
	if d.Type != "card" {
		res := invalidParam("payment_method_data[type]", "parameter_invalid", "payment_method_data[type] must be card.")
		return card, &res, nil, ""
	}
	if d.Card == nil || d.Card.Number == "" {
		res := invalidParam("payment_method_data[card][number]", "parameter_missing", "Missing required param: payment_method_data[card][number].")
		return card, &res, nil, ""
	}
	if !d.Card.ExpMonth.set {
		res := invalidParam("payment_method_data[card][exp_month]", "parameter_missing", "Missing required param: payment_method_data[card][exp_month].")
		return card, &res, nil, ""
	}
	if !d.Card.ExpYear.set {
		res := invalidParam("payment_method_data[card][exp_year]", "parameter_missing", "Missing required param: payment_method_data[card][exp_year].")
		return card, &res, nil, ""
	}
	number := normalizeCardNumber(d.Card.Number)
	switch {
	case !allDigits(number) || len(number) < 12 || len(number) > 19:
		return card, nil, errInvalidNumber, "number"
	case !luhnValid(number):
		return card, nil, errIncorrectNumber, "number"
	}
	month, year := d.Card.ExpMonth.v, d.Card.ExpYear.v
	if year >= 0 && year < 100 {
		year += 2000
	}
	if month < 1 || month > 12 {
		return card, nil, errInvalidMonth, "exp_month"
	}
	if year < 2000 || year > 2100 {
		return card, nil, errInvalidYear, "exp_year"
	}
	if cvc := d.Card.CVC; cvc != "" && (!allDigits(cvc) || len(cvc) < 3 || len(cvc) > 4) {
		return card, nil, errInvalidCVC, "cvc"
	}
	return savedCard{
		brand: cardBrand(number), last4: number[len(number)-4:],
		expMonth: month, expYear: year, rule: ruleFor(number),
	}, nil, nil, ""
}

// attachLocked attaches a payment method to a customer (a no-op when attached).
func (s *Server) attachLocked(pm *paymentMethod, cu *customer) {
	if pm.customer != "" {
		return
	}
	pm.customer = cu.id
	cu.methods = append(cu.methods, pm.id)
}

// ---- setup intents ----

func (s *Server) createSetupIntent(c *call) result {
	var p struct {
		Confirm              bool               `json:"confirm"`
		Customer             string             `json:"customer"`
		PaymentMethodTypes   []string           `json:"payment_method_types"`
		PaymentMethodData    *paymentMethodData `json:"payment_method_data"`
		PaymentMethod        string             `json:"payment_method"`
		PaymentMethodOptions json.RawMessage    `json:"payment_method_options"`
		Usage                string             `json:"usage"`
		ReturnURL            string             `json:"return_url"`
		Description          string             `json:"description"`
		Metadata             map[string]string  `json:"metadata"`
	}
	if res := decodeParams(c.body, &p); res != nil {
		return *res
	}
	for _, res := range []*result{checkMetadata(p.Metadata), checkPaymentMethodTypes(p.PaymentMethodTypes), checkReturnURL(p.ReturnURL)} {
		if res != nil {
			return *res
		}
	}
	if p.Customer == "" {
		return invalidParam("customer", "parameter_missing", "Missing required param: customer.")
	}
	switch p.Usage {
	case "":
		p.Usage = "off_session"
	case "on_session", "off_session":
	default:
		return invalidParam("usage", "parameter_invalid", "usage must be on_session or off_session.")
	}
	if p.PaymentMethodData != nil && p.PaymentMethod != "" {
		return invalidParam("payment_method_data", "parameter_invalid", "Pass either payment_method or payment_method_data, not both.")
	}
	if p.Confirm && p.PaymentMethodData == nil && p.PaymentMethod == "" {
		return invalidParam("payment_method", "parameter_missing", "You cannot confirm this SetupIntent because it's missing a payment method.")
	}
	var card savedCard
	var cardErr *cardError
	var cardParam string
	if p.PaymentMethodData != nil {
		var bad *result
		card, bad, cardErr, cardParam = checkPaymentMethodData(p.PaymentMethodData)
		if bad != nil {
			return *bad
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	cu := s.customers[p.Customer]
	if cu == nil {
		return notFound("customer", "customer", p.Customer)
	}
	var pm *paymentMethod
	if p.PaymentMethod != "" {
		if pm = s.methods[p.PaymentMethod]; pm == nil {
			return notFound("payment_method", "payment_method", p.PaymentMethod)
		}
		if pm.customer != "" && pm.customer != cu.id {
			return invalidState(apiError{Code: "parameter_invalid", Param: "payment_method",
				Message: "The payment method " + pm.id + " belongs to another customer."})
		}
	}
	si := &setupIntent{
		id: s.newIDLocked("seti"), created: now, customer: cu.id, usage: p.Usage,
		description: p.Description, returnURL: p.ReturnURL, metadata: p.Metadata,
		secret: s.newSecretLocked(), status: statusRequiresPaymentMethod,
	}
	s.setups[si.id] = si
	if cardErr != nil {
		si.lastError = cardErr
		w := si.wire()
		return cardDeclined(cardErr, nil, &w, cardParam)
	}
	if p.PaymentMethodData != nil {
		pm = &paymentMethod{
			id: s.newIDLocked("pm"), created: now, brand: card.brand, last4: card.last4,
			expMonth: card.expMonth, expYear: card.expYear, rule: card.rule,
		}
		s.methods[pm.id] = pm
	}
	if pm != nil {
		si.paymentMethod = pm.id
		si.status = statusRequiresConfirmation
	}
	if p.Confirm {
		s.succeedSetupLocked(si, pm, cu)
	}
	return ok(si.wire())
}

func (s *Server) succeedSetupLocked(si *setupIntent, pm *paymentMethod, cu *customer) {
	s.attachLocked(pm, cu)
	si.paymentMethod = pm.id
	si.status = statusSucceeded
	si.lastError = nil
	s.emitLocked(evtSISucceeded, si.id, si.wire())
}

func (s *Server) getSetupIntent(c *call) result {
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	si := s.setups[id]
	if si == nil {
		return notFound("setup_intent", "id", id)
	}
	return ok(si.wire())
}

func (s *Server) confirmSetupIntent(c *call) result {
	var p struct {
		PaymentMethod        string          `json:"payment_method"`
		PaymentMethodOptions json.RawMessage `json:"payment_method_options"`
		ReturnURL            *string         `json:"return_url"`
	}
	if res := decodeParams(c.body, &p); res != nil {
		return *res
	}
	if p.ReturnURL != nil {
		if res := checkReturnURL(*p.ReturnURL); res != nil {
			return *res
		}
	}
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	si := s.setups[id]
	if si == nil {
		return notFound("setup_intent", "id", id)
	}
	if si.status != statusRequiresPaymentMethod && si.status != statusRequiresConfirmation {
		w := si.wire()
		return invalidState(apiError{Code: "setup_intent_unexpected_state", SetupIntent: &w,
			Message: "You cannot confirm this SetupIntent because it has a status of " + si.status + "."})
	}
	pmID := si.paymentMethod
	if p.PaymentMethod != "" {
		pmID = p.PaymentMethod
	}
	if pmID == "" {
		return invalidState(apiError{Code: "parameter_missing", Param: "payment_method",
			Message: "You cannot confirm this SetupIntent because it's missing a payment method."})
	}
	pm := s.methods[pmID]
	if pm == nil {
		return notFound("payment_method", "payment_method", pmID)
	}
	if pm.customer != "" && pm.customer != si.customer {
		return invalidState(apiError{Code: "parameter_invalid", Param: "payment_method",
			Message: "The payment method " + pm.id + " belongs to another customer."})
	}
	if p.ReturnURL != nil {
		si.returnURL = *p.ReturnURL
	}
	s.succeedSetupLocked(si, pm, s.customers[si.customer])
	return ok(si.wire())
}

// ---- payment intents ----

func (s *Server) createPaymentIntent(c *call) result {
	var p struct {
		Amount               *int64            `json:"amount"`
		Currency             string            `json:"currency"`
		Confirm              bool              `json:"confirm"`
		OffSession           bool              `json:"off_session"`
		Customer             string            `json:"customer"`
		PaymentMethod        string            `json:"payment_method"`
		MerchantOrderID      string            `json:"merchant_order_id"`
		MerchantUserID       string            `json:"merchant_user_id"`
		Description          string            `json:"description"`
		Metadata             map[string]string `json:"metadata"`
		ReturnURL            string            `json:"return_url"`
		PaymentMethodTypes   []string          `json:"payment_method_types"`
		PaymentMethodOptions json.RawMessage   `json:"payment_method_options"`
		PaymentMethodData    json.RawMessage   `json:"payment_method_data"`
		CaptureMethod        string            `json:"capture_method"`
		ConfirmationMethod   string            `json:"confirmation_method"`
		SetupFutureUsage     string            `json:"setup_future_usage"`
		Quantity             *int64            `json:"quantity"`
		Shipping             json.RawMessage   `json:"shipping"`
	}
	if res := decodeParams(c.body, &p); res != nil {
		return *res
	}
	for _, res := range []*result{checkMetadata(p.Metadata), checkPaymentMethodTypes(p.PaymentMethodTypes), checkReturnURL(p.ReturnURL)} {
		if res != nil {
			return *res
		}
	}
	switch {
	case p.Amount == nil:
		return invalidParam("amount", "parameter_missing", "Missing required param: amount.")
	case *p.Amount < 1:
		return invalidParam("amount", "parameter_invalid_integer", "Amount must be at least 1 (in the currency's minor unit).")
	case !validCurrency(p.Currency):
		return invalidParam("currency", "parameter_invalid", "currency must be a three-letter ISO 4217 code, got %q.", p.Currency)
	}
	amount, res := wooshpayAmount(*p.Amount, p.Currency)
	if res != nil {
		return *res
	}
	switch {
	case len(p.MerchantOrderID) > 255:
		return invalidParam("merchant_order_id", "parameter_invalid", "merchant_order_id must be at most 255 characters.")
	case len(p.PaymentMethodData) > 0 && string(p.PaymentMethodData) != "null":
		return invalidParam("payment_method_data", "parameter_unsupported",
			"The simulator does not take card data on payment intents; save the card with a SetupIntent and pass payment_method.")
	case p.CaptureMethod != "" && p.CaptureMethod != "automatic":
		return invalidParam("capture_method", "parameter_unsupported", "The simulator only supports capture_method automatic.")
	case p.ConfirmationMethod != "" && p.ConfirmationMethod != "automatic":
		return invalidParam("confirmation_method", "parameter_unsupported", "The simulator only supports confirmation_method automatic.")
	case p.SetupFutureUsage != "" && p.SetupFutureUsage != "on_session" && p.SetupFutureUsage != "off_session":
		return invalidParam("setup_future_usage", "parameter_invalid", "setup_future_usage must be on_session or off_session.")
	case p.Confirm && p.PaymentMethod == "":
		return invalidParam("payment_method", "parameter_missing", "You cannot confirm this PaymentIntent because it's missing a payment method.")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if p.Customer != "" && s.customers[p.Customer] == nil {
		return notFound("customer", "customer", p.Customer)
	}
	if p.PaymentMethod != "" {
		pm := s.methods[p.PaymentMethod]
		if pm == nil {
			return notFound("payment_method", "payment_method", p.PaymentMethod)
		}
		if res := ownership(pm, p.Customer); res != nil {
			return *res
		}
	}
	pi := &paymentIntent{
		id: s.newIDLocked("pi"), created: now, amount: amount, currency: strings.ToUpper(p.Currency),
		status: statusRequiresPaymentMethod, customer: p.Customer, paymentMethod: p.PaymentMethod,
		merchantOrderID: p.MerchantOrderID, description: p.Description, returnURL: p.ReturnURL,
		metadata: p.Metadata, offSession: p.OffSession, secret: s.newSecretLocked(),
	}
	if pi.paymentMethod != "" {
		pi.status = statusRequiresConfirmation
	}
	s.newPaymentLocked(pi)
	s.wire.onPayment(payCreated, pi)
	if !p.Confirm {
		return ok(pi.wire())
	}
	return s.confirmLocked(pi, s.methods[pi.paymentMethod], s.publicBase(c.r), now)
}

// ownership is the rule that a saved card is only charged for its own customer:
// charging another customer's card is a 400, never a payment.
func ownership(pm *paymentMethod, customerID string) *result {
	if pm.customer == customerID {
		return nil
	}
	msg := "The payment method " + pm.id + " does not belong to customer " + customerID + "."
	if customerID == "" {
		msg = "The payment method " + pm.id + " is attached to a customer; pass that customer to use it."
	}
	res := invalidState(apiError{Code: "parameter_invalid", Param: "payment_method", Message: msg})
	return &res
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		ch := c[i] | 0x20 // ASCII lower case
		if ch < 'a' || ch > 'z' {
			return false
		}
	}
	return true
}

// confirmLocked charges the intent's saved card (chargeLocked) and answers as
// WooshPay does: 402 card_error for a decline, the intent otherwise.
func (s *Server) confirmLocked(pi *paymentIntent, pm *paymentMethod, base string, now time.Time) result {
	s.chargeLocked(pi, pm.rule, base, true, now)
	if pi.lastError != nil {
		w := pi.wire()
		return cardDeclined(pi.lastError, &w, nil, "")
	}
	return ok(pi.wire())
}

func (s *Server) getPaymentIntent(c *call) result {
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[id]
	if pi == nil {
		return notFound("payment_intent", "id", id)
	}
	return ok(pi.wire())
}

func unexpectedState(pi *paymentIntent, action string) result {
	w := pi.wire()
	return invalidState(apiError{Code: "payment_intent_unexpected_state", PaymentIntent: &w,
		Message: "You cannot " + action + " this PaymentIntent because it has a status of " + pi.status + "."})
}

func (s *Server) confirmPaymentIntent(c *call) result {
	var p struct {
		PaymentMethod        string          `json:"payment_method"`
		OffSession           *bool           `json:"off_session"`
		ReturnURL            *string         `json:"return_url"`
		PaymentMethodOptions json.RawMessage `json:"payment_method_options"`
		SetupFutureUsage     string          `json:"setup_future_usage"`
	}
	if res := decodeParams(c.body, &p); res != nil {
		return *res
	}
	if p.ReturnURL != nil {
		if res := checkReturnURL(*p.ReturnURL); res != nil {
			return *res
		}
	}
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[id]
	if pi == nil {
		return notFound("payment_intent", "id", id)
	}
	if pi.status != statusRequiresPaymentMethod && pi.status != statusRequiresConfirmation {
		return unexpectedState(pi, "confirm")
	}
	pmID := pi.paymentMethod
	if p.PaymentMethod != "" {
		pmID = p.PaymentMethod
	}
	if pmID == "" {
		return invalidState(apiError{Code: "parameter_missing", Param: "payment_method",
			Message: "You cannot confirm this PaymentIntent because it's missing a payment method."})
	}
	pm := s.methods[pmID]
	if pm == nil {
		return notFound("payment_method", "payment_method", pmID)
	}
	if res := ownership(pm, pi.customer); res != nil {
		return *res
	}
	pi.paymentMethod = pm.id
	if p.OffSession != nil {
		pi.offSession = *p.OffSession
	}
	if p.ReturnURL != nil {
		pi.returnURL = *p.ReturnURL
	}
	return s.confirmLocked(pi, pm, s.publicBase(c.r), s.now())
}

var cancellationReasons = map[string]bool{
	"": true, "duplicate": true, "fraudulent": true, "requested_by_customer": true, "abandoned": true,
}

func (s *Server) cancelPaymentIntent(c *call) result {
	var p struct {
		CancellationReason string `json:"cancellation_reason"`
	}
	if res := decodeParams(c.body, &p); res != nil {
		return *res
	}
	if !cancellationReasons[p.CancellationReason] {
		return invalidParam("cancellation_reason", "parameter_invalid",
			"cancellation_reason must be one of duplicate, fraudulent, requested_by_customer, abandoned.")
	}
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[id]
	if pi == nil {
		return notFound("payment_intent", "id", id)
	}
	switch pi.status {
	case statusSucceeded, statusCanceled, statusProcessing:
		return unexpectedState(pi, "cancel")
	}
	pi.status = statusCanceled
	pi.canceledAt = s.now()
	pi.cancellationReason = p.CancellationReason
	pi.challengeURL = ""
	s.wire.onPayment(payCanceled, pi)
	return ok(pi.wire())
}

// parseOrderQuery accepts exactly merchant_order_id:'<id>' (double quotes and
// backslash-escaped quotes allowed, as in Stripe's search language).
func parseOrderQuery(q string) (string, bool) {
	rest, found := strings.CutPrefix(q, "merchant_order_id:")
	if !found || len(rest) < 2 {
		return "", false
	}
	quote := rest[0]
	if (quote != '\'' && quote != '"') || rest[len(rest)-1] != quote {
		return "", false
	}
	inner := rest[1 : len(rest)-1]
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		ch := inner[i]
		if ch == '\\' && i+1 < len(inner) && (inner[i+1] == quote || inner[i+1] == '\\') {
			b.WriteByte(inner[i+1])
			i++
			continue
		}
		if ch == quote || ch == '\\' {
			return "", false
		}
		b.WriteByte(ch)
	}
	return b.String(), b.Len() > 0
}

func (s *Server) searchPaymentIntents(c *call) result {
	q := c.r.URL.Query()
	if res := onlyQueryParams(q, "query", "limit"); res != nil {
		return *res
	}
	orderID, valid := parseOrderQuery(q.Get("query"))
	if !valid {
		return invalidParam("query", "parameter_invalid",
			"The simulator only supports search queries of the form merchant_order_id:'<id>', got %q.", q.Get("query"))
	}
	limit, res := parseLimit(q)
	if res != nil {
		return *res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.byOrder[orderID]
	data := make([]paymentIntentWire, 0, min(limit, len(list)))
	for i := len(list) - 1; i >= 0 && len(data) < limit; i-- {
		data = append(data, list[i].wire())
	}
	return ok(searchWire{
		Object: "search_result", Data: data, HasMore: len(list) > len(data),
		URL: "/v1/payment_intents/search",
	})
}

// createdFilters are the created[…] bounds of a list, in Unix seconds as
// Stripe's list endpoints take them, compared with each intent's creation
// second.
var createdFilters = []struct {
	param string
	keep  func(created, bound int64) bool
}{
	{"created[gte]", func(c, b int64) bool { return c >= b }},
	{"created[gt]", func(c, b int64) bool { return c > b }},
	{"created[lte]", func(c, b int64) bool { return c <= b }},
	{"created[lt]", func(c, b int64) bool { return c < b }},
}

// listPaymentIntents is GET /v1/payment_intents: every intent, newest first,
// filtered by created[gte|gt|lte|lt] (Unix seconds), paged by limit (1..100,
// default 10) and starting_after (the last id of the page before).
func (s *Server) listPaymentIntents(c *call) result {
	q := c.r.URL.Query()
	if res := onlyQueryParams(q, "created[gte]", "created[gt]", "created[lte]", "created[lt]", "limit", "starting_after"); res != nil {
		return *res
	}
	type bound struct {
		keep func(created, bound int64) bool
		sec  int64
	}
	var bounds []bound
	for _, f := range createdFilters {
		v := q.Get(f.param)
		if v == "" {
			continue
		}
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil || sec < 0 {
			return invalidParam(f.param, "parameter_invalid", "%s must be a Unix timestamp in seconds, got %q.", f.param, v)
		}
		bounds = append(bounds, bound{keep: f.keep, sec: sec})
	}
	limit, res := parseLimit(q)
	if res != nil {
		return *res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := len(s.intentList) - 1
	if after := q.Get("starting_after"); after != "" {
		i = slices.IndexFunc(s.intentList, func(pi *paymentIntent) bool { return pi.id == after }) - 1
		if i == -2 {
			return invalidParam("starting_after", "resource_missing", "No such payment_intent: '%s'", after)
		}
	}
	data := make([]paymentIntentWire, 0, limit)
	more := false
	for ; i >= 0; i-- {
		pi := s.intentList[i]
		kept := !pi.verification
		for _, b := range bounds {
			kept = kept && b.keep(pi.created.Unix(), b.sec)
		}
		if !kept {
			continue
		}
		if len(data) == limit {
			more = true
			break
		}
		data = append(data, pi.wire())
	}
	return ok(listWire{Object: "list", Data: data, HasMore: more, URL: "/v1/payment_intents"})
}
