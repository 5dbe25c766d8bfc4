package sim

import (
	"time"
)

// LedgerEntry is the simulator's record of one payment: what a finance team
// would see in the gateway's dashboard. Tests compare it with billingd's database
// to prove that every invoice was charged exactly once, so its amounts are ISO
// 4217 minor units, like billingd's, whichever provider the simulator plays;
// WireAmount is the same amount in the provider's wire units, as its API
// reported it.
type LedgerEntry struct {
	ID string `json:"id"`
	// MerchantOrderID is the order the payment was for: WooshPay's
	// merchant_order_id, Checkout.com's reference. Tests key the ledger by it
	// on both providers.
	MerchantOrderID string `json:"merchant_order_id"`
	// Reference is Checkout.com's reference (equal to MerchantOrderID); empty
	// on WooshPay.
	Reference string `json:"reference,omitempty"`
	// Amount is in the currency's ISO 4217 minor units (12345 ISK is 12345).
	Amount int64 `json:"amount"`
	// WireAmount is Amount in the provider's wire units (12345 ISK is 1234500
	// on WooshPay, 12345 on Checkout.com).
	WireAmount int64  `json:"wire_amount"`
	Currency   string `json:"currency"`
	// Status is the payment's state in WooshPay's (and billingd's neutral)
	// words: succeeded means money moved. A Checkout.com payment reads
	// succeeded while Authorized or Captured, capture_declined after a capture
	// decline (no money), requires_payment_method when declined, canceled when
	// expired.
	Status string `json:"status"`
	// WireStatus is the status as the provider's API spells it
	// ("succeeded", "Captured", "Declined", …).
	WireStatus    string `json:"wire_status"`
	Customer      string `json:"customer"`
	PaymentMethod string `json:"payment_method"`
	OffSession    bool   `json:"off_session"`
	// DeclineCode is the decline_code of the intent's last_payment_error, if any.
	DeclineCode string `json:"decline_code,omitempty"`
	// ResponseCode is the Checkout.com response code of the payment's last
	// answer; empty on WooshPay.
	ResponseCode string    `json:"response_code,omitempty"`
	Created      time.Time `json:"created"`
	// SucceededAt is when money moved; zero unless Status is succeeded.
	SucceededAt time.Time `json:"succeeded_at,omitzero"`
	// AmountRefunded is how much of Amount refunds gave back (ISO minor units).
	AmountRefunded int64 `json:"amount_refunded,omitempty"`
	// WireAmountRefunded is AmountRefunded in the provider's wire units.
	WireAmountRefunded int64 `json:"wire_amount_refunded,omitempty"`
}

// ledgerLocked is pi's ledger entry as the configured provider reports it.
func (s *Server) ledgerLocked(pi *paymentIntent) LedgerEntry {
	t := s.wire.table()
	e := LedgerEntry{
		ID: pi.id, MerchantOrderID: pi.merchantOrderID, Amount: pi.amount,
		WireAmount: isoToWire(t, pi.amount, pi.currency), Currency: pi.currency,
		Status: pi.status, WireStatus: s.wire.paymentStatus(pi), Customer: pi.customer,
		PaymentMethod: pi.paymentMethod, OffSession: pi.offSession, Created: pi.created,
		SucceededAt: pi.succeededAt, ResponseCode: pi.responseCode,
	}
	if s.wire.name() == ProviderCheckout {
		e.Reference = pi.merchantOrderID
	}
	if pi.lastError != nil {
		e.DeclineCode = pi.lastError.DeclineCode
	}
	e.AmountRefunded = s.refundedLocked(pi.id)
	e.WireAmountRefunded = isoToWire(t, e.AmountRefunded, pi.currency)
	return e
}
