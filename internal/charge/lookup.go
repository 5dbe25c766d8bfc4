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
// the invoice needs, and taken is false. Nor do payments this database
// records under another attempt (a dunning retry's earlier tries, settled by
// their own answers, webhooks or the reconciler), unless the gateway calls one
// succeeded that the database does not: that disagreement is needs_review.
func (e *Engine) lookBeforeCharging(ctx context.Context, a *models.ChargeAttempt, log zerolog.Logger) (models.AttemptStatus, gateway.Result, bool, error) {
	pi, reason, err := e.earlierPayment(ctx, a)
	now := e.opts.Clock.Now()
	if err != nil {
		if notSent(err) {
			log.Warn().Err(err).Msg("look for an earlier payment not sent on a lost lease; the attempt is left to be replayed or taken over")
			return a.Status, gateway.Result{Kind: gateway.Transient, Err: err}, true, err
		}
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
	if pi == nil {
		return a.Status, gateway.Result{}, false, nil
	}
	res := OnSessionOutcome(a, gateway.ResultFromIntent(pi, 200))
	log = log.With().Str("payment_intent", pi.ID).Str("found_status", string(pi.Status)).Logger()
	if reason != "" {
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

// earlierPayment looks for the payment of a's order that a must take instead
// of charging: a succeeded one first, else one that may still succeed
// (processing, authorized, waiting for authentication); nil when every one
// failed or was canceled, or there is none. Payments this database already
// records under another attempt are its own business — a webhook or the
// reconciler settled them — except a success it does not record as one:
// then the database and the gateway disagree about money, and reason says so
// (a human looks; nothing is sent). reason is also set for a payment of
// another customer: the order id is another subscription's, whose merchant
// reference was reused after a restore. err is a look that gave no answer.
func (e *Engine) earlierPayment(ctx context.Context, a *models.ChargeAttempt) (pi *gateway.PaymentIntent, reason string, err error) {
	if e.opts.Limiter != nil {
		if err := e.opts.Limiter.Wait(ctx); err != nil {
			return nil, "", err
		}
	}
	if err := e.mayStillSend(a); err != nil {
		return nil, "", err
	}
	pis, err := e.opts.Gateway.SearchPaymentIntentsByOrder(ctx, a.MerchantOrderID)
	if err != nil {
		return nil, "", err
	}
	var open *gateway.PaymentIntent
	for i := range pis {
		p := &pis[i]
		kind := gateway.ResultFromIntent(p, 200).Kind
		if kind != gateway.Succeeded && kind != gateway.Processing && kind != gateway.RequiresAction {
			continue
		}
		owner, err := e.opts.Store.AttemptOfIntent(context.WithoutCancel(ctx), p.ID)
		if err != nil {
			return nil, "", fmt.Errorf("is payment %s recorded: %w", p.ID, err)
		}
		if owner != nil && owner.ID != a.ID {
			capturedNot := owner.DeclineCode == store.DeclineCaptureDeclined
			if kind != gateway.Succeeded || owner.Status == models.AttemptSucceeded || capturedNot {
				continue
			}
			return p, fmt.Sprintf("the gateway reports payment %s of order %s as %s, but attempt %s records it as %s; nothing was sent",
				truncateText(p.ID, 64), a.MerchantOrderID, truncateText(string(p.Status), 32), owner.IdempotencyKey, owner.Status), nil
		}
		if kind == gateway.Succeeded {
			return p, otherCustomer(a, p), nil
		}
		if open == nil {
			open = p
		}
	}
	if open != nil {
		return open, otherCustomer(a, open), nil
	}
	return nil, "", nil
}

// otherCustomer says why a payment found under a's order id is not a's when
// it was made for another customer ("" otherwise).
func otherCustomer(a *models.ChargeAttempt, pi *gateway.PaymentIntent) string {
	if pi.Customer == "" || a.GatewayCustomer == "" || pi.Customer == a.GatewayCustomer {
		return ""
	}
	return fmt.Sprintf("the gateway holds payment %s (%s) for order %s, but of customer %s, not %s: the order id may be another subscription's; nothing was sent",
		truncateText(pi.ID, 64), truncateText(string(pi.Status), 32), a.MerchantOrderID, truncateText(pi.Customer, 64), a.GatewayCustomer)
}
