package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway/units"
)

// checkoutRoutes registers the Checkout.com API subset billingd uses
// (docs/gateway-checkout.md).
func (s *Server) checkoutRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /payments", s.route(s.ckoCreatePayment))
	m.HandleFunc("GET /payments", s.route(s.ckoListPayments))
	m.HandleFunc("GET /payments/{id}", s.route(s.ckoGetPayment))
	m.HandleFunc("POST /payments/{id}/refunds", s.route(s.ckoRefund))
	m.HandleFunc("GET /payments/{id}/actions", s.route(s.ckoActions))
	m.HandleFunc("GET /customers/{id}", s.route(s.ckoGetCustomer))
	m.HandleFunc("GET /instruments/{id}", s.route(s.ckoGetInstrument))
	m.HandleFunc("POST /hosted-payments", s.route(s.ckoCreateHostedPayment))
	m.HandleFunc("/", s.route(func(*call) result { return ckoNotFound() }))
}

// ckoDecode decodes a body leniently, as Checkout.com does (unknown fields
// are ignored), but a field of the wrong type is 422 <field>_invalid.
func ckoDecode(body []byte, v any) *result {
	err := json.NewDecoder(bytes.NewReader(body)).Decode(v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	code := "request_body_malformed"
	if errors.As(err, &te) && te.Field != "" {
		code = strings.ReplaceAll(te.Field, ".", "_") + "_invalid"
	}
	res := ckoInvalid(code)
	return &res
}

// ckoAmount converts a request's amount and currency, refusing what
// Checkout.com refuses: an unknown or unsupported currency (currency_invalid),
// an amount its unit cannot carry, such as KWD whose last digit is not 0
// (amount_invalid).
func ckoAmount(wire int64, currency string) (int64, *result) {
	if wire < 0 {
		res := ckoInvalid("amount_invalid")
		return 0, &res
	}
	if _, err := units.Checkout.Rule(currency); err != nil || currency != strings.ToUpper(currency) {
		res := ckoInvalid("currency_invalid")
		return 0, &res
	}
	iso, err := wireToISO(units.Checkout, wire, currency)
	if err != nil {
		res := ckoInvalid("amount_invalid")
		return 0, &res
	}
	return iso, nil
}

type ckoCustomerRef struct {
	ID    string `json:"id,omitempty"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
}

type ckoThreeDS struct {
	Enabled            *bool  `json:"enabled,omitempty"`
	ChallengeIndicator string `json:"challenge_indicator,omitempty"`
	Downgraded         bool   `json:"downgraded"`
	Enrolled           string `json:"enrolled,omitempty"`
}

type ckoSourceReq struct {
	Type              string  `json:"type"`
	ID                string  `json:"id"`
	Number            string  `json:"number"`
	ExpiryMonth       flexInt `json:"expiry_month"`
	ExpiryYear        flexInt `json:"expiry_year"`
	CVV               string  `json:"cvv"`
	Name              string  `json:"name"`
	StoreForFutureUse *bool   `json:"store_for_future_use"`
}

type ckoPaymentReq struct {
	Source            *ckoSourceReq     `json:"source"`
	Amount            *int64            `json:"amount"`
	Currency          string            `json:"currency"`
	PaymentType       string            `json:"payment_type"`
	MerchantInitiated bool              `json:"merchant_initiated"`
	PreviousPaymentID string            `json:"previous_payment_id"`
	Reference         string            `json:"reference"`
	Description       string            `json:"description"`
	Capture           *bool             `json:"capture"`
	Customer          *ckoCustomerRef   `json:"customer"`
	ThreeDS           *ckoThreeDS       `json:"3ds"`
	SuccessURL        string            `json:"success_url"`
	FailureURL        string            `json:"failure_url"`
	Metadata          map[string]string `json:"metadata"`
}

var ckoPaymentTypes = map[string]bool{"": true, "Regular": true, "Recurring": true, "Unscheduled": true, "MOTO": true, "Installment": true}

// ckoCreatePayment serves POST /payments: a card source (saved as an
// instrument for the payment's customer when store_for_future_use is not
// false) or an id source (a stored instrument); amount 0 verifies the card.
// The test-card table decides the outcome, answered with Checkout.com's
// response codes: 201 approved (Authorized for a merchant-initiated payment,
// captured shortly after; Captured for a customer-initiated one) or declined,
// 202 Pending with _links.redirect for 3-D Secure (a customer-initiated
// payment with 3ds.enabled of a card that asks for it; merchant-initiated,
// that card declines 20154), 202 Pending without redirect for the processing
// card. A merchant-initiated payment must be Recurring and name in
// previous_payment_id an earlier payment of the same source.
func (s *Server) ckoCreatePayment(c *call) result {
	var p ckoPaymentReq
	if res := ckoDecode(c.body, &p); res != nil {
		return *res
	}
	switch {
	case p.Source == nil:
		return ckoInvalid("source_required")
	case p.Source.Type != "card" && p.Source.Type != "id":
		return ckoInvalid("source_type_invalid")
	case p.Amount == nil:
		return ckoInvalid("amount_required")
	case p.Currency == "":
		return ckoInvalid("currency_required")
	case len(p.Reference) > 50:
		return ckoInvalid("reference_invalid")
	case !ckoPaymentTypes[p.PaymentType]:
		return ckoInvalid("payment_type_invalid")
	case p.MerchantInitiated && p.PaymentType != "Recurring":
		return ckoInvalid("payment_type_invalid")
	case p.MerchantInitiated && p.PreviousPaymentID == "":
		return ckoInvalid("previous_payment_id_invalid")
	case p.SuccessURL != "" && !absoluteHTTPURL(p.SuccessURL):
		return ckoInvalid("success_url_invalid")
	case p.FailureURL != "" && !absoluteHTTPURL(p.FailureURL):
		return ckoInvalid("failure_url_invalid")
	}
	amount, res := ckoAmount(*p.Amount, p.Currency)
	if res != nil {
		return *res
	}
	var card savedCard
	if p.Source.Type == "card" {
		var problem string
		if card, problem = ckoCard(p.Source, s.now()); problem != "" {
			return ckoInvalid(problem)
		}
	} else if p.Source.ID == "" {
		return ckoInvalid("source_id_required")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var cu *customer
	if p.Customer != nil && p.Customer.ID != "" {
		if cu = s.customers[p.Customer.ID]; cu == nil {
			return ckoInvalid("customer_not_found")
		}
	}
	var pm *paymentMethod
	if p.Source.Type == "id" {
		if pm = s.methods[p.Source.ID]; pm == nil {
			return ckoInvalid("source_id_invalid")
		}
		switch {
		case cu == nil:
			cu = s.customers[pm.customer]
		case pm.customer != cu.id:
			return ckoInvalid("source_id_invalid")
		}
	}
	if p.MerchantInitiated {
		prev := s.intents[p.PreviousPaymentID]
		if prev == nil || pm == nil || prev.paymentMethod != pm.id || prev.status != statusSucceeded && !prev.verification {
			return ckoInvalid("previous_payment_id_invalid")
		}
	}
	if cu == nil && p.Customer != nil && p.Customer.Email != "" {
		cu = s.customerByEmailLocked(p.Customer.Email, p.Customer.Name, now)
	}
	if pm == nil {
		pm = &paymentMethod{
			id: s.newIDLocked("src"), created: now, brand: card.brand, last4: card.last4,
			expMonth: card.expMonth, expYear: card.expYear, rule: card.rule,
		}
		s.methods[pm.id] = pm
		if cu != nil && (p.Source.StoreForFutureUse == nil || *p.Source.StoreForFutureUse) {
			s.attachLocked(pm, cu)
		}
	}
	pi := &paymentIntent{
		id: s.newIDLocked("pay"), created: now, amount: amount, currency: p.Currency,
		status: statusRequiresConfirmation, paymentMethod: pm.id, merchantOrderID: p.Reference,
		description: p.Description, metadata: p.Metadata, offSession: p.MerchantInitiated,
		paymentType: p.PaymentType, merchantInitiated: p.MerchantInitiated,
		previousPaymentID: p.PreviousPaymentID, successURL: p.SuccessURL, failureURL: p.FailureURL,
		sourceType: p.Source.Type, verification: amount == 0, deferCapture: p.MerchantInitiated,
		actionID: s.newIDLocked("act"),
	}
	if cu != nil {
		pi.customer = cu.id
	}
	s.newPaymentLocked(pi)
	rule := pm.rule
	if pi.verification {
		rule = cardRule{outcome: outcomeSucceed} // a verification is frictionless
	}
	threeDS := p.ThreeDS != nil && p.ThreeDS.Enabled != nil && *p.ThreeDS.Enabled
	s.chargeLocked(pi, rule, s.publicBase(c.r), threeDS && !p.MerchantInitiated, now)
	return s.ckoPaymentAnswerLocked(pi)
}

// ckoCard applies the card rules of the save-card paths to a card source.
func ckoCard(src *ckoSourceReq, now time.Time) (savedCard, string) {
	switch {
	case src.Number == "":
		return savedCard{}, "card_number_required"
	case !src.ExpiryMonth.set:
		return savedCard{}, "card_expiry_month_required"
	case !src.ExpiryYear.set:
		return savedCard{}, "card_expiry_year_required"
	}
	card, bad, ce, _ := checkPaymentMethodData(&paymentMethodData{Type: "card", Card: &cardParams{
		Number: src.Number, ExpMonth: src.ExpiryMonth, ExpYear: src.ExpiryYear, CVC: src.CVV,
	}})
	switch {
	case bad != nil:
		return savedCard{}, "card_number_invalid"
	case ce == errInvalidMonth:
		return savedCard{}, "card_expiry_month_invalid"
	case ce == errInvalidYear:
		return savedCard{}, "card_expiry_year_invalid"
	case ce == errInvalidCVC:
		return savedCard{}, "cvv_invalid"
	case ce != nil:
		return savedCard{}, "card_number_invalid"
	}
	if ny, nm := now.Year(), int(now.Month()); card.expYear < ny || (card.expYear == ny && card.expMonth < nm) {
		return savedCard{}, "card_expired"
	}
	return card, ""
}

// customerByEmailLocked is the customer with that email, created if none has
// it: Checkout.com links a payment's customer by email.
func (s *Server) customerByEmailLocked(email, name string, now time.Time) *customer {
	for _, cu := range s.customers {
		if strings.EqualFold(cu.email, email) {
			return cu
		}
	}
	cu := &customer{id: s.newIDLocked("cus"), created: now, email: email, name: name}
	s.customers[cu.id] = cu
	return cu
}

// ckoPaymentAnswerLocked is the answer to a payment request: 202 while
// Pending, 201 otherwise.
func (s *Server) ckoPaymentAnswerLocked(pi *paymentIntent) result {
	w := s.ckoPaymentLocked(pi)
	if pi.status == statusRequiresAction || pi.status == statusProcessing {
		return result{status: http.StatusAccepted, value: ckoPending{
			ID: w.ID, Status: w.Status, Reference: w.Reference, Customer: w.Customer, ThreeDS: w.ThreeDS, Links: w.Links,
		}, store: true}
	}
	w.RequestedOn = ""
	return result{status: http.StatusCreated, value: w, store: true}
}

// ckoPending is the 202 body.
type ckoPending struct {
	ID        string             `json:"id"`
	Status    string             `json:"status"`
	Reference string             `json:"reference,omitempty"`
	Customer  *ckoCustomerRef    `json:"customer,omitempty"`
	ThreeDS   *ckoThreeDS        `json:"3ds,omitempty"`
	Links     map[string]ckoLink `json:"_links"`
}

// ckoPayment is a payment as the API answers it (201 and GET).
type ckoPayment struct {
	ID              string             `json:"id"`
	ActionID        string             `json:"action_id,omitempty"`
	RequestedOn     string             `json:"requested_on,omitempty"`
	Amount          int64              `json:"amount"`
	Currency        string             `json:"currency"`
	Approved        bool               `json:"approved"`
	Status          string             `json:"status"`
	AuthCode        string             `json:"auth_code,omitempty"`
	ResponseCode    string             `json:"response_code,omitempty"`
	ResponseSummary string             `json:"response_summary,omitempty"`
	Source          *ckoSource         `json:"source,omitempty"`
	Customer        *ckoCustomerRef    `json:"customer,omitempty"`
	PaymentType     string             `json:"payment_type,omitempty"`
	Reference       string             `json:"reference,omitempty"`
	Description     string             `json:"description,omitempty"`
	Metadata        map[string]string  `json:"metadata"`
	ProcessedOn     string             `json:"processed_on,omitempty"`
	SchemeID        string             `json:"scheme_id,omitempty"`
	ThreeDS         *ckoThreeDS        `json:"3ds,omitempty"`
	Links           map[string]ckoLink `json:"_links"`
}

type ckoSource struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	Scheme      string `json:"scheme"`
	Last4       string `json:"last4"`
	ExpiryMonth int    `json:"expiry_month"`
	ExpiryYear  int    `json:"expiry_year"`
	CardType    string `json:"card_type"`
}

func (s *Server) ckoPaymentLocked(pi *paymentIntent) ckoPayment {
	code := codeOf(pi)
	status := s.wire.paymentStatus(pi)
	w := ckoPayment{
		ID: pi.id, ActionID: pi.actionID, RequestedOn: ckoTime(pi.created),
		Amount: isoToWire(units.Checkout, pi.amount, pi.currency), Currency: pi.currency,
		Approved: pi.status == statusSucceeded, Status: status, ResponseCode: code.code, ResponseSummary: code.summary,
		PaymentType: pi.paymentType, Reference: pi.merchantOrderID, Description: pi.description,
		Metadata: metaOrEmpty(pi.metadata),
		Links:    map[string]ckoLink{"self": {Href: "/payments/" + pi.id}, "actions": {Href: "/payments/" + pi.id + "/actions"}},
	}
	if pi.status == statusRequiresPaymentMethod || pi.status == statusSucceeded || pi.status == statusCaptureDeclined {
		w.ProcessedOn = ckoTime(pi.created)
	}
	if pi.status == statusSucceeded {
		w.AuthCode = "000000"
		w.SchemeID = schemeID(pi.id)
	}
	if pm := s.methods[pi.paymentMethod]; pm != nil {
		w.Source = &ckoSource{ID: pm.id, Type: "card", Scheme: ckoScheme(pm.brand), Last4: pm.last4,
			ExpiryMonth: pm.expMonth, ExpiryYear: pm.expYear, CardType: "CREDIT"}
	}
	if cu := s.customers[pi.customer]; cu != nil {
		w.Customer = &ckoCustomerRef{ID: cu.id, Email: cu.email, Name: cu.name}
	}
	if pi.status == statusRequiresAction {
		w.ThreeDS = &ckoThreeDS{Enrolled: "Y"}
		w.Links["redirect"] = ckoLink{Href: pi.challengeURL}
	}
	return w
}

// ckoScheme spells a brand as Checkout.com does ("Visa", "Mastercard").
func ckoScheme(brand string) string {
	switch brand {
	case "amex":
		return "Amex"
	case "jcb":
		return "JCB"
	case "":
		return ""
	}
	return strings.ToUpper(brand[:1]) + brand[1:]
}

func (s *Server) ckoGetPayment(c *call) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[c.r.PathValue("id")]
	if pi == nil || !strings.HasPrefix(pi.id, "pay_") {
		return ckoNotFound()
	}
	return result{status: http.StatusOK, value: s.ckoPaymentLocked(pi), store: true}
}

// ckoPage is GET /payments?reference=…: newest first.
type ckoPage struct {
	Limit      int          `json:"limit"`
	Skip       int          `json:"skip"`
	TotalCount int          `json:"total_count"`
	Data       []ckoPayment `json:"data"`
}

func (s *Server) ckoListPayments(c *call) result {
	q := c.r.URL.Query()
	ref := q.Get("reference")
	if ref == "" {
		return ckoInvalid("reference_required")
	}
	limit, skip := 10, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return ckoInvalid("paging_limit_invalid")
		}
		limit = n
	}
	if v := q.Get("skip"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return ckoInvalid("paging_skip_invalid")
		}
		skip = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.byOrder[ref]
	page := ckoPage{Limit: limit, Skip: skip, TotalCount: len(list), Data: []ckoPayment{}}
	for i := len(list) - 1 - skip; i >= 0 && len(page.Data) < limit; i-- {
		page.Data = append(page.Data, s.ckoPaymentLocked(list[i]))
	}
	return result{status: http.StatusOK, value: page, store: true}
}

// ckoRefund serves POST /payments/{id}/refunds: amount (wire units; default
// what is left), reference, metadata. The refund succeeds at once
// (payment_refunded); the answer is 202 with its action id.
func (s *Server) ckoRefund(c *call) result {
	var p struct {
		Amount    *int64            `json:"amount"`
		Reference string            `json:"reference"`
		Metadata  map[string]string `json:"metadata"`
	}
	if res := ckoDecode(c.body, &p); res != nil {
		return *res
	}
	if len(p.Reference) > 80 {
		return ckoInvalid("reference_invalid")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[c.r.PathValue("id")]
	if pi == nil || !strings.HasPrefix(pi.id, "pay_") {
		return ckoNotFound()
	}
	if pi.status != statusSucceeded || pi.verification {
		return result{status: http.StatusForbidden, body: ckoErrorBody("action_not_allowed", "refund_not_allowed")}
	}
	left := pi.amount - s.refundedLocked(pi.id)
	amount := left
	if p.Amount != nil {
		iso, res := ckoAmount(*p.Amount, pi.currency)
		if res != nil {
			return *res
		}
		amount = iso
	}
	if amount <= 0 || amount > left {
		return ckoInvalid("refund_amount_exceeds_balance")
	}
	rf := s.refundLocked(pi, "act", amount, "", p.Reference, p.Metadata)
	return result{status: http.StatusAccepted, store: true, value: struct {
		ActionID  string             `json:"action_id"`
		Reference string             `json:"reference,omitempty"`
		Links     map[string]ckoLink `json:"_links"`
	}{rf.id, rf.reference, map[string]ckoLink{"payment": {Href: "/payments/" + pi.id}}}}
}

// ckoAction is one entry of GET /payments/{id}/actions.
type ckoAction struct {
	ID              string            `json:"id"`
	Type            string            `json:"type"`
	ProcessedOn     string            `json:"processed_on"`
	Amount          int64             `json:"amount"`
	Approved        bool              `json:"approved"`
	ResponseCode    string            `json:"response_code,omitempty"`
	ResponseSummary string            `json:"response_summary,omitempty"`
	Reference       string            `json:"reference,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
}

// ckoActions serves GET /payments/{id}/actions, newest first: the
// authorization (or card verification), the capture, the refunds.
func (s *Server) ckoActions(c *call) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[c.r.PathValue("id")]
	if pi == nil || !strings.HasPrefix(pi.id, "pay_") {
		return ckoNotFound()
	}
	if pi.status == statusRequiresAction || pi.status == statusProcessing {
		return result{status: http.StatusOK, value: []ckoAction{}, store: true}
	}
	wire := func(iso int64) int64 { return isoToWire(units.Checkout, iso, pi.currency) }
	code := codeOf(pi)
	auth := ckoAction{
		ID: pi.actionID, Type: "Authorization", ProcessedOn: ckoTime(pi.created), Amount: wire(pi.amount),
		Approved: code.code == ckoApproved.code || pi.captureDeclined, ResponseCode: code.code, ResponseSummary: code.summary,
		Reference: pi.merchantOrderID, Metadata: pi.metadata,
	}
	if pi.captureDeclined {
		auth.ResponseCode, auth.ResponseSummary = ckoApproved.code, ckoApproved.summary
	}
	if pi.verification {
		auth.Type = "Card Verification"
	}
	actions := []ckoAction{auth}
	if pi.captured {
		actions = append(actions, ckoAction{ID: pi.captureActionID, Type: "Capture", ProcessedOn: ckoTime(pi.capturedAt),
			Amount: wire(pi.amount), Approved: true, ResponseCode: ckoApproved.code, ResponseSummary: ckoApproved.summary,
			Reference: pi.merchantOrderID})
	}
	for _, rf := range s.refundsByIntent[pi.id] {
		actions = append(actions, ckoAction{ID: rf.id, Type: "Refund", ProcessedOn: ckoTime(rf.created),
			Amount: wire(rf.amount), Approved: true, ResponseCode: ckoApproved.code, ResponseSummary: ckoApproved.summary,
			Reference: rf.reference, Metadata: rf.metadata})
	}
	for i, j := 0, len(actions)-1; i < j; i, j = i+1, j-1 {
		actions[i], actions[j] = actions[j], actions[i]
	}
	return result{status: http.StatusOK, value: actions, store: true}
}

type ckoInstrument struct {
	ID          string               `json:"id"`
	Type        string               `json:"type"`
	Customer    *ckoInstrumentHolder `json:"customer,omitempty"`
	ExpiryMonth int                  `json:"expiry_month"`
	ExpiryYear  int                  `json:"expiry_year"`
	Scheme      string               `json:"scheme"`
	Last4       string               `json:"last4"`
	CardType    string               `json:"card_type"`
}

type ckoInstrumentHolder struct {
	ID      string `json:"id"`
	Email   string `json:"email,omitempty"`
	Name    string `json:"name,omitempty"`
	Default bool   `json:"default"`
}

func (s *Server) ckoInstrumentLocked(pm *paymentMethod) ckoInstrument {
	in := ckoInstrument{ID: pm.id, Type: "card", ExpiryMonth: pm.expMonth, ExpiryYear: pm.expYear,
		Scheme: strings.ToUpper(pm.brand), Last4: pm.last4, CardType: "CREDIT"}
	if cu := s.customers[pm.customer]; cu != nil {
		in.Customer = &ckoInstrumentHolder{ID: cu.id, Email: cu.email, Name: cu.name,
			Default: len(cu.methods) > 0 && cu.methods[0] == pm.id}
	}
	return in
}

func (s *Server) ckoGetInstrument(c *call) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	pm := s.methods[c.r.PathValue("id")]
	if pm == nil {
		return ckoNotFound()
	}
	return result{status: http.StatusOK, value: s.ckoInstrumentLocked(pm), store: true}
}

func (s *Server) ckoGetCustomer(c *call) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	cu := s.customers[c.r.PathValue("id")]
	if cu == nil {
		return ckoNotFound()
	}
	out := struct {
		ID          string            `json:"id"`
		Email       string            `json:"email,omitempty"`
		Name        string            `json:"name,omitempty"`
		Default     string            `json:"default,omitempty"`
		Metadata    map[string]string `json:"metadata,omitempty"`
		Instruments []ckoInstrument   `json:"instruments"`
	}{ID: cu.id, Email: cu.email, Name: cu.name, Metadata: cu.metadata, Instruments: []ckoInstrument{}}
	for _, id := range cu.methods {
		out.Instruments = append(out.Instruments, s.ckoInstrumentLocked(s.methods[id]))
	}
	if len(cu.methods) > 0 {
		out.Default = cu.methods[0]
	}
	return result{status: http.StatusOK, value: out, store: true}
}

// ckoCreateHostedPayment serves POST /hosted-payments for a card update: a
// hosted page (the same form as WooshPay's setup page) on which the customer
// enters a card; the card is stored for the customer and verified (amount
// 0), card_verified is sent with the page's metadata, and the browser goes
// to success_url. The simulator's page only verifies cards: amount must be 0.
func (s *Server) ckoCreateHostedPayment(c *call) result {
	var p struct {
		Amount      *int64            `json:"amount"`
		Currency    string            `json:"currency"`
		Reference   string            `json:"reference"`
		Description string            `json:"description"`
		Customer    *ckoCustomerRef   `json:"customer"`
		PaymentType string            `json:"payment_type"`
		SuccessURL  string            `json:"success_url"`
		FailureURL  string            `json:"failure_url"`
		CancelURL   string            `json:"cancel_url"`
		Metadata    map[string]string `json:"metadata"`
		ThreeDS     *ckoThreeDS       `json:"3ds"`
		Billing     json.RawMessage   `json:"billing"`
	}
	if res := ckoDecode(c.body, &p); res != nil {
		return *res
	}
	switch {
	case p.Amount == nil:
		return ckoInvalid("amount_required")
	case *p.Amount != 0:
		return ckoInvalid("amount_invalid")
	case p.Currency == "":
		return ckoInvalid("currency_required")
	case !ckoPaymentTypes[p.PaymentType]:
		return ckoInvalid("payment_type_invalid")
	case !absoluteHTTPURL(p.SuccessURL):
		return ckoInvalid("success_url_invalid")
	case !absoluteHTTPURL(p.FailureURL):
		return ckoInvalid("failure_url_invalid")
	case p.CancelURL != "" && !absoluteHTTPURL(p.CancelURL):
		return ckoInvalid("cancel_url_invalid")
	case len(p.Reference) > 50:
		return ckoInvalid("reference_invalid")
	}
	if _, res := ckoAmount(0, p.Currency); res != nil {
		return *res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var cu *customer
	switch {
	case p.Customer != nil && p.Customer.ID != "":
		if cu = s.customers[p.Customer.ID]; cu == nil {
			return ckoInvalid("customer_not_found")
		}
	case p.Customer != nil && p.Customer.Email != "":
		cu = s.customerByEmailLocked(p.Customer.Email, p.Customer.Name, now)
	default:
		return ckoInvalid("customer_required")
	}
	cancel := p.CancelURL
	if cancel == "" {
		cancel = p.FailureURL
	}
	cs := &checkoutSession{
		id: s.newIDLocked("hpp"), created: now, expiresAt: now.Add(checkoutSessionTTL),
		customer: cu.id, successURL: p.SuccessURL, cancelURL: cancel, metadata: p.Metadata,
		verify: &hostedVerification{currency: p.Currency, reference: p.Reference, description: p.Description,
			paymentType: p.PaymentType, failureURL: p.FailureURL},
	}
	cs.url = s.publicBase(c.r) + "/hpp/" + cs.id
	s.sessions[cs.id] = cs
	return result{status: http.StatusCreated, store: true, value: struct {
		ID        string             `json:"id"`
		Reference string             `json:"reference,omitempty"`
		Links     map[string]ckoLink `json:"_links"`
	}{cs.id, p.Reference, map[string]ckoLink{"self": {Href: "/hosted-payments/" + cs.id}, "redirect": {Href: cs.url}}}}
}

// hostedVerification is what a Checkout.com hosted page does once the card
// is entered: a zero-amount verification payment.
type hostedVerification struct {
	currency, reference, description, paymentType, failureURL string
}

// verifyHostedCardLocked stores the page's card for its customer and
// verifies it: a payment of amount 0, "Card Verified", whose card_verified
// event carries the source, the customer and the page's metadata. It returns
// where the browser goes next.
func (s *Server) verifyHostedCardLocked(cs *checkoutSession, pm *paymentMethod, now time.Time) string {
	v := cs.verify
	s.attachLocked(pm, s.customers[cs.customer])
	pi := &paymentIntent{
		id: s.newIDLocked("pay"), created: now, currency: v.currency, status: statusRequiresConfirmation,
		customer: cs.customer, paymentMethod: pm.id, merchantOrderID: v.reference, description: v.description,
		metadata: cs.metadata, paymentType: v.paymentType, successURL: cs.successURL, failureURL: v.failureURL,
		sourceType: "card", verification: true, actionID: s.newIDLocked("act"),
	}
	s.newPaymentLocked(pi)
	s.chargeLocked(pi, cardRule{outcome: outcomeSucceed}, "", false, now)
	return appendQuery(cs.successURL, "cko-session-id", "sid_"+strings.TrimPrefix(cs.id, "hpp_"))
}
