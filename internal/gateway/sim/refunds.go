package sim

import (
	"time"
)

// evtRefundUpdated is WooshPay's refund webhook: every change of a refund.
const evtRefundUpdated = "charge.refund.updated"

// Refund statuses, as WooshPay spells them. The simulator's refunds succeed
// at once; failed and canceled exist for the wire form.
const (
	refundSucceeded = "succeeded"
)

type refund struct {
	id            string
	created       time.Time
	amount        int64
	currency      string
	status        string
	paymentIntent string
	reason        string
	reference     string // Checkout.com's refund reference
	metadata      map[string]string
}

type refundWire struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Created       int64             `json:"created"`
	Amount        int64             `json:"amount"`
	Currency      string            `json:"currency"`
	Status        string            `json:"status"`
	PaymentIntent string            `json:"payment_intent"`
	Reason        *string           `json:"reason"`
	FailureReason *string           `json:"failure_reason"`
	Metadata      map[string]string `json:"metadata"`
}

func (rf *refund) wire() refundWire {
	return refundWire{
		ID: rf.id, Object: "refund", Created: rf.created.UnixMilli(), Amount: wpAmount(rf.amount, rf.currency), Currency: rf.currency,
		Status: rf.status, PaymentIntent: rf.paymentIntent, Reason: strOrNil(rf.reason), Metadata: metaOrEmpty(rf.metadata),
	}
}

// RefundEntry is the simulator's record of one refund, in ISO 4217 minor
// units like LedgerEntry, so tests compare it with billingd's refunds table.
type RefundEntry struct {
	ID              string    `json:"id"`
	PaymentIntent   string    `json:"payment_intent"`
	MerchantOrderID string    `json:"merchant_order_id"`
	Amount          int64     `json:"amount"`
	Currency        string    `json:"currency"`
	Status          string    `json:"status"`
	Reason          string    `json:"reason,omitempty"`
	Created         time.Time `json:"created"`
}

var refundReasons = map[string]bool{"": true, "duplicate": true, "fraudulent": true, "requested_by_customer": true}

// refundedLocked is how much of an intent's amount refunds already took back.
func (s *Server) refundedLocked(piID string) int64 {
	var n int64
	for _, rf := range s.refundsByIntent[piID] {
		if rf.status == refundSucceeded || rf.status == "pending" {
			n += rf.amount
		}
	}
	return n
}

// createRefund serves POST /v1/refunds: payment_intent (succeeded), amount
// (default: what is left), reason, metadata. A refund never takes back more
// than the intent took: the rest is refused with 400 amount_too_large, a
// fully refunded intent with charge_already_refunded.
func (s *Server) createRefund(c *call) result {
	var p struct {
		PaymentIntent string            `json:"payment_intent"`
		Charge        string            `json:"charge"`
		Amount        *int64            `json:"amount"`
		Reason        string            `json:"reason"`
		Metadata      map[string]string `json:"metadata"`
	}
	if res := decodeParams(c.body, &p); res != nil {
		return *res
	}
	if res := checkMetadata(p.Metadata); res != nil {
		return *res
	}
	switch {
	case p.PaymentIntent == "":
		return invalidParam("payment_intent", "parameter_missing", "Missing required param: payment_intent.")
	case p.Charge != "":
		return invalidParam("charge", "parameter_unsupported", "The simulator refunds by payment_intent only.")
	case p.Amount != nil && *p.Amount < 1:
		return invalidParam("amount", "parameter_invalid_integer", "Amount must be at least 1 (in the currency's minor unit).")
	case !refundReasons[p.Reason]:
		return invalidParam("reason", "parameter_invalid", "reason must be one of duplicate, fraudulent, requested_by_customer.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[p.PaymentIntent]
	if pi == nil {
		return notFound("payment_intent", "payment_intent", p.PaymentIntent)
	}
	if pi.status != statusSucceeded {
		return invalidState(apiError{Code: "charge_not_succeeded", Param: "payment_intent",
			Message: "This PaymentIntent has a status of " + pi.status + "; only a succeeded payment can be refunded."})
	}
	left := pi.amount - s.refundedLocked(pi.id)
	if left <= 0 {
		return invalidState(apiError{Code: "charge_already_refunded", Param: "payment_intent",
			Message: "Charge for PaymentIntent " + pi.id + " has already been refunded."})
	}
	amount := left
	if p.Amount != nil {
		iso, res := wooshpayAmount(*p.Amount, pi.currency)
		if res != nil {
			res.store = true // it executed against the payment's currency
			return *res
		}
		amount = iso
	}
	if amount > left {
		return invalidState(apiError{Code: "amount_too_large", Param: "amount",
			Message: "Refund amount is greater than the unrefunded amount of the charge."})
	}
	rf := s.refundLocked(pi, "re", amount, p.Reason, "", p.Metadata)
	return ok(rf.wire())
}

func (s *Server) getRefund(c *call) result {
	id := c.r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	rf := s.refunds[id]
	if rf == nil {
		return notFound("refund", "id", id)
	}
	return ok(rf.wire())
}

// Refunds returns every refund in creation order: the gateway-side truth that
// tests compare billingd's refunds table against.
func (s *Server) Refunds() []RefundEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RefundEntry, len(s.refundList))
	for i, rf := range s.refundList {
		out[i] = RefundEntry{
			ID: rf.id, PaymentIntent: rf.paymentIntent, Amount: rf.amount, Currency: rf.currency,
			Status: rf.status, Reason: rf.reason, Created: rf.created,
		}
		if pi := s.intents[rf.paymentIntent]; pi != nil {
			out[i].MerchantOrderID = pi.merchantOrderID
		}
	}
	return out
}

// DuplicateSuccess makes the gateway take a second payment for the order of
// the succeeded intent piID, as a gateway that lets two payments through for
// one invoice would: a new PaymentIntent with the same order, customer, card,
// amount, currency, description and metadata succeeds at once, and
// payment_intent.created and payment_intent.succeeded are emitted for it. It
// returns the new intent's id. This is how tests force the second success that
// billingd must refund.
func (s *Server) DuplicateSuccess(piID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	orig := s.intents[piID]
	if orig == nil {
		return "", ErrNotFound
	}
	if orig.status != statusSucceeded {
		return "", ErrNotSucceeded
	}
	now := s.now()
	meta := make(map[string]string, len(orig.metadata))
	for k, v := range orig.metadata {
		meta[k] = v
	}
	prefix := "pi"
	if s.wire.name() == ProviderCheckout {
		prefix = "pay"
	}
	pi := &paymentIntent{
		id: s.newIDLocked(prefix), created: now, amount: orig.amount, currency: orig.currency,
		status: statusRequiresConfirmation, customer: orig.customer, paymentMethod: orig.paymentMethod,
		merchantOrderID: orig.merchantOrderID, description: orig.description, returnURL: orig.returnURL,
		metadata: meta, offSession: orig.offSession, secret: s.newSecretLocked(),
		paymentType: orig.paymentType, merchantInitiated: orig.merchantInitiated,
		previousPaymentID: orig.previousPaymentID, sourceType: orig.sourceType,
	}
	if s.wire.name() == ProviderCheckout {
		pi.actionID = s.newIDLocked("act")
	}
	s.newPaymentLocked(pi)
	s.wire.onPayment(payCreated, pi)
	s.succeedLocked(pi, now)
	return pi.id, nil
}
