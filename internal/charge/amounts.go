package charge

import (
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/store"
)

// AmountMismatch checks what the gateway reports about an attempt's
// PaymentIntent against the attempt's frozen request (docs/protocol.md: amounts are
// checked at every door — the answer to the request, a webhook, a read by the
// reconciler). It returns "" when the amount and the currency are the ones
// billingd asked for, and otherwise the reason, for the attempt's error message
// and the webhook's detail. A report with no amount or no currency is a
// mismatch: it cannot be checked, so it is not applied.
func AmountMismatch(a *models.ChargeAttempt, pi *gateway.PaymentIntent) string {
	if pi == nil {
		return ""
	}
	currency := strings.ToUpper(strings.TrimSpace(pi.Currency))
	received := pi.Status != gateway.IntentSucceeded || pi.AmountReceived == nil || *pi.AmountReceived == a.Amount
	if pi.Amount == a.Amount && currency == strings.ToUpper(a.Currency) && received {
		return ""
	}
	reported := "no amount"
	switch {
	case !received && money.Valid(currency):
		reported = money.Format(pi.Amount, currency) + ", of which it received " + money.Format(*pi.AmountReceived, currency)
	case !received:
		reported = fmt.Sprintf("%d minor units, of which it received %d", pi.Amount, *pi.AmountReceived)
	case currency == "":
		reported = fmt.Sprintf("%d minor units with no currency", pi.Amount)
	case money.Valid(currency):
		reported = money.Format(pi.Amount, currency)
	default:
		reported = fmt.Sprintf("%d %q (minor units)", pi.Amount, truncateText(currency, 16))
	}
	status := string(pi.Status)
	if status == "" {
		status = "no status"
	}
	return fmt.Sprintf("amount mismatch: the gateway reports %s (%s) for payment intent %s, but attempt %s asked for %s; not applied — check the payment at the gateway",
		reported, truncateText(status, 32), truncateText(pi.ID, 64), a.IdempotencyKey, money.Format(a.Amount, a.Currency))
}

// flagMismatch records, inside the caller's transaction, that the gateway
// reported another amount or currency for attempt a than it asked for: the
// attempt becomes needs_review with reason as its message and its invoice is
// held, so nothing charges it again until a human looked (what does it mean
// that money of another amount may have moved?). A reported success flags the
// attempt whatever its state (but succeeded); other reports only move an
// unresolved attempt, as they would if they matched. moved is false when the
// attempt kept its state.
func (e *Engine) flagMismatch(tx *store.Tx, now time.Time, a *models.ChargeAttempt, pi *gateway.PaymentIntent, reason string) (moved bool, err error) {
	moved, err = tx.FlagAttemptForReview(now, a, pi.ID, reason, pi.Status == gateway.IntentSucceeded)
	if err != nil || !moved {
		return moved, err
	}
	r := store.AttemptResult{Status: models.AttemptNeedsReview, PaymentIntentID: pi.ID, ErrorMessage: reason}
	if _, err := e.applyOutcome(tx, now, a, r); err != nil {
		return false, err
	}
	return true, nil
}

// truncateText cuts gateway-supplied text that goes into a message.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
