package sim

import (
	"errors"
	"slices"
	"strings"
	"time"
)

// The provider-neutral payment state machine. A payment (paymentIntent) moves
// through WooshPay's status words, which are also billingd's neutral ones;
// each wire layer spells them its own way (wireLayer.paymentStatus) and
// decides which webhook events each step sends (wireLayer.onPayment).

// statusCaptureDeclined is a payment whose authorization was approved but
// whose capture the issuer declined: no money moved. Only Checkout.com
// captures apart from the authorization, so only it gets there.
const statusCaptureDeclined = "capture_declined"

// ErrNoCapture means the payment cannot have its capture declined: it is not
// an approved payment of a provider that captures apart (CaptureDecline).
var ErrNoCapture = errors.New("sim: payment is not an approved payment whose capture can be declined")

// chargeLocked charges pi with the saved card's rule: the test-card table
// decides. challenge says whether a card that asks for 3-D Secure may be
// challenged; when it may not (a merchant-initiated payment without a
// customer present), the charge is declined as authentication required.
func (s *Server) chargeLocked(pi *paymentIntent, rule cardRule, base string, challenge bool, now time.Time) {
	pi.lastError = nil
	switch rule.outcome {
	case outcomeChallenge:
		if !challenge {
			pi.status = statusRequiresPaymentMethod
			pi.lastError = declineAuthenticationRequired
			s.wire.onPayment(payFailed, pi)
			return
		}
		pi.status = statusRequiresAction
		pi.challengeURL = base + "/3ds/" + pi.id
		pi.actionSince = now
		if s.wire.expiresChallenges() {
			s.awaiting[pi.id] = pi
		}
		s.wire.onPayment(payRequiresAction, pi)
	case outcomeProcessing:
		pi.status = statusProcessing
		pi.processingSince = now
		s.processing[pi.id] = pi
		s.wire.onPayment(payProcessing, pi)
	case outcomeDecline:
		pi.status = statusRequiresPaymentMethod
		pi.lastError = rule.decline
		s.wire.onPayment(payFailed, pi)
	default:
		s.succeedLocked(pi, now)
	}
}

// succeedLocked records that money moved. A provider that captures apart
// (Checkout.com) captures at once unless pi.deferCapture, in which case the
// capture follows after Options.CaptureDelay (SettleDue).
func (s *Server) succeedLocked(pi *paymentIntent, now time.Time) {
	pi.status = statusSucceeded
	pi.succeededAt = now
	pi.lastError = nil
	pi.challengeURL = ""
	pi.processingSince = time.Time{}
	delete(s.awaiting, pi.id)
	s.wire.onPayment(paySucceeded, pi)
}

// captureLocked captures an approved payment of a provider that captures
// apart from the authorization.
func (s *Server) captureLocked(pi *paymentIntent, now time.Time) {
	delete(s.capturing, pi.id)
	if pi.status != statusSucceeded || pi.captured {
		return
	}
	pi.captured = true
	pi.capturedAt = now
	pi.captureActionID = s.newIDLocked("act")
	s.wire.onPayment(payCaptured, pi)
}

// deferCaptureLocked queues an approved payment's capture for SettleDue.
func (s *Server) deferCaptureLocked(pi *paymentIntent) {
	s.capturing[pi.id] = pi
}

// expireLocked ends a challenge nobody completed.
func (s *Server) expireLocked(pi *paymentIntent, now time.Time) {
	delete(s.awaiting, pi.id)
	pi.status = statusCanceled
	pi.canceledAt = now
	pi.cancellationReason = "expired"
	pi.challengeURL = ""
	pi.expired = true
	s.wire.onPayment(payExpired, pi)
}

// CaptureDecline turns an approved payment (authorized or captured) into one
// whose capture the issuer declined: it no longer counts as money in the
// ledger, and the provider's capture-declined event is sent
// (payment_capture_declined on Checkout.com). Tests use it for the one
// recorded exception to billingd's forward-only invoices. WooshPay has no
// separate capture: ErrNoCapture.
func (s *Server) CaptureDecline(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[id]
	switch {
	case pi == nil:
		return ErrNotFound
	case s.wire.name() != ProviderCheckout || pi.status != statusSucceeded || pi.verification:
		return ErrNoCapture
	}
	delete(s.capturing, pi.id)
	pi.status = statusCaptureDeclined
	pi.succeededAt = time.Time{}
	pi.captured = false
	pi.captureDeclined = true
	pi.responseCode = ckoCaptureDeclinedCode
	s.wire.onPayment(payCaptureDeclined, pi)
	return nil
}

// settleCapturesLocked captures the deferred payments whose CaptureDelay has
// passed, and expires the challenges older than ChallengeExpiry.
func (s *Server) settleCapturesLocked(now time.Time) {
	var due []*paymentIntent
	for _, pi := range s.capturing {
		if now.Sub(pi.succeededAt) >= s.opts.CaptureDelay {
			due = append(due, pi)
		}
	}
	slices.SortFunc(due, func(a, b *paymentIntent) int { return strings.Compare(a.id, b.id) })
	for _, pi := range due {
		s.captureLocked(pi, now)
	}
	due = due[:0]
	for _, pi := range s.awaiting {
		if now.Sub(pi.actionSince) >= s.opts.ChallengeExpiry {
			due = append(due, pi)
		}
	}
	slices.SortFunc(due, func(a, b *paymentIntent) int { return strings.Compare(a.id, b.id) })
	for _, pi := range due {
		s.expireLocked(pi, now)
	}
}

// newPaymentLocked records a payment object and indexes it by order.
func (s *Server) newPaymentLocked(pi *paymentIntent) {
	s.intents[pi.id] = pi
	s.intentList = append(s.intentList, pi)
	if pi.merchantOrderID != "" {
		s.byOrder[pi.merchantOrderID] = append(s.byOrder[pi.merchantOrderID], pi)
	}
}

// refundLocked records a refund of amount (ISO minor units, at most what is
// left) of a succeeded payment; it succeeds at once.
func (s *Server) refundLocked(pi *paymentIntent, prefix string, amount int64, reason, reference string, metadata map[string]string) *refund {
	rf := &refund{
		id: s.newIDLocked(prefix), created: s.now(), amount: amount, currency: pi.currency,
		status: refundSucceeded, paymentIntent: pi.id, reason: reason, reference: reference, metadata: metadata,
	}
	s.refunds[rf.id] = rf
	s.refundList = append(s.refundList, rf)
	s.refundsByIntent[pi.id] = append(s.refundsByIntent[pi.id], rf)
	s.wire.onRefund(rf, pi)
	return rf
}
