package charge

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// DefaultKeyWindow is the key window assumed for a gateway whose KeyPolicy
// names none: the providers billingd knows keep keys for about a day.
const DefaultKeyWindow = 23 * time.Hour

// keyWindow is how long the gateway is trusted to replay a key.
func (e *Engine) keyWindow() time.Duration {
	if w := e.opts.Gateway.KeyPolicy().Window; w > 0 {
		return w
	}
	return DefaultKeyWindow
}

// keysMayBeForgotten reports whether attempt a must look for an earlier
// payment of its order before its request goes out: nothing of a has been
// answered yet (a lookup that failed sent nothing and leaves Tries at 0, so
// the next try looks again), and its invoice's order id is older than the
// gateway's key window. The time is the one in the order id's prefix — the
// period start of a derived id, the creation of an older random one — before
// which no request with that order id can have been sent; an id of another
// shape is looked up, to be safe. A current period's first attempt costs
// nothing here: no query, no request.
func (e *Engine) keysMayBeForgotten(a *models.ChargeAttempt, now time.Time) bool {
	if a.Tries > 0 {
		return false
	}
	at, ok := store.OrderIDTime(a.MerchantOrderID)
	return !ok || now.Sub(at) > e.keyWindow()
}

// lookBeforeCharging asks the gateway for the payments of a's order before a
// is sent, because an invoice whose period began longer ago than the key
// window may have been charged under a key the gateway no longer remembers —
// by this database before it was restored from an older backup, say — and the
// same key would then charge again. taken is true when the attempt must not
// be sent now, with the status it was left in:
//
//   - a succeeded payment of the order: the attempt is settled from it, as the
//     reconciler settles an attempt from the intent it reads (amount and
//     currency checked; a mismatch, or a payment of another customer, is
//     needs_review);
//   - a payment still processing, or waiting for the customer to authenticate:
//     the attempt takes it over in that state, as the reconciler would — the
//     webhook or the reconciler's next look settles it, dunning sends the
//     customer to its challenge — and nothing new is sent while it may still
//     succeed;
//   - the look failed: nothing is sent; the attempt is unknown with Tries
//     still 0, replayed like a transient answer, and looks again first.
//
// Payments that failed or were canceled take nothing: a new charge is what
// the invoice needs, and taken is false.
func (e *Engine) lookBeforeCharging(ctx context.Context, a *models.ChargeAttempt, log zerolog.Logger) (models.AttemptStatus, gateway.Result, bool, error) {
	pis, err := e.searchOrder(ctx, a.MerchantOrderID)
	now := e.opts.Clock.Now()
	if err != nil {
		if ctx.Err() != nil {
			log.Warn().Err(err).Msg("looking for an earlier payment of the order was interrupted by shutdown; nothing was sent")
			return a.Status, gateway.Result{Kind: gateway.Transient, Err: err}, true, ctx.Err()
		}
		next := now.Add(e.tune.Load().UnknownRetryDelay)
		r := store.AttemptResult{Status: models.AttemptUnknown, NextTryAt: &next,
			ErrorMessage: fmt.Sprintf("looking for an earlier payment of order %s failed, so nothing was sent: %v", a.MerchantOrderID, err)}
		if _, rerr := e.record(ctx, a, r, now); rerr != nil {
			log.Error().Err(rerr).Msg("could not record that the look for an earlier payment failed; the attempt is retried")
			return a.Status, gateway.Result{Kind: gateway.Transient, Err: err}, true, rerr
		}
		log.Warn().Err(err).Msg("looking for an earlier payment of an old period failed; nothing sent, the attempt is retried later")
		return models.AttemptUnknown, gateway.Result{Kind: gateway.Transient, Err: err}, true, nil
	}
	pi := earlierPayment(pis)
	if pi == nil {
		return a.Status, gateway.Result{}, false, nil
	}
	res := OnSessionOutcome(a, gateway.ResultFromIntent(pi, 200))
	log = log.With().Str("payment_intent", pi.ID).Str("found_status", string(pi.Status)).Logger()
	if reason := e.notThisAttempts(ctx, a, pi); reason != "" {
		err := e.opts.Store.InTx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
			_, err := e.flagMismatch(tx, now, a, pi, reason)
			return err
		})
		if err != nil {
			return a.Status, res, true, err
		}
		log.Error().Msg(reason)
		return models.AttemptNeedsReview, res, true, nil
	}
	out, err := e.settleFromIntent(context.WithoutCancel(ctx), a, res, log)
	if err != nil {
		return a.Status, res, true, err
	}
	log.Info().Str("status", string(out.Status)).Msg("an old period's payment was found at the gateway and taken; nothing was sent")
	return out.Status, res, true, nil
}

// searchOrder lists the gateway's payments of an order, within the rate limit
// the charges keep.
func (e *Engine) searchOrder(ctx context.Context, orderID string) ([]gateway.PaymentIntent, error) {
	if e.opts.Limiter != nil {
		if err := e.opts.Limiter.Wait(ctx); err != nil {
			return nil, err
		}
	}
	return e.opts.Gateway.SearchPaymentIntentsByOrder(ctx, orderID)
}

// earlierPayment picks the payment of an order an attempt must take instead
// of charging: a succeeded one first, else one that may still succeed
// (processing, authorized, waiting for authentication). Nil when every one
// failed or was canceled, or there is none.
func earlierPayment(pis []gateway.PaymentIntent) *gateway.PaymentIntent {
	var open *gateway.PaymentIntent
	for i := range pis {
		switch gateway.ResultFromIntent(&pis[i], 200).Kind {
		case gateway.Succeeded:
			return &pis[i]
		case gateway.Processing, gateway.RequiresAction:
			if open == nil {
				open = &pis[i]
			}
		}
	}
	return open
}

// notThisAttempts says why a payment found under a's order id cannot be taken
// as a's ("" when it can): it was made for another customer — the order id is
// another subscription's, whose merchant reference was reused after a restore
// — or this database already records it under another attempt, which then
// disagrees with the gateway about it. Either way a human looks; nothing is
// sent.
func (e *Engine) notThisAttempts(ctx context.Context, a *models.ChargeAttempt, pi *gateway.PaymentIntent) string {
	if pi.Customer != "" && a.GatewayCustomer != "" && pi.Customer != a.GatewayCustomer {
		return fmt.Sprintf("the gateway holds payment %s (%s) for order %s, but of customer %s, not %s: the order id may be another subscription's; nothing was sent",
			truncateText(pi.ID, 64), truncateText(string(pi.Status), 32), a.MerchantOrderID, truncateText(pi.Customer, 64), a.GatewayCustomer)
	}
	var owner *models.ChargeAttempt
	err := e.opts.Store.InTx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		var err error
		owner, err = tx.AttemptForIntent(pi.ID, "")
		return err
	})
	if err != nil {
		return fmt.Sprintf("could not tell whether payment %s of order %s is already recorded (%v); nothing was sent", truncateText(pi.ID, 64), a.MerchantOrderID, err)
	}
	if owner != nil && owner.ID != a.ID {
		return fmt.Sprintf("the gateway reports payment %s of order %s as %s, but attempt %s records it as %s; nothing was sent",
			truncateText(pi.ID, 64), a.MerchantOrderID, truncateText(string(pi.Status), 32), owner.IdempotencyKey, owner.Status)
	}
	return ""
}
