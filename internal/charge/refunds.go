package charge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/budget"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// Refunds: the machinery operator commands build on, and the automatic refund
// of a second successful payment for one invoice (docs/protocol.md, "Refunds").
//
// A refund row is committed (its amount reserved under the invoice's lock)
// before anything is sent; its request is frozen from the row and always
// carries the row's idempotency key, so an indefinite answer is replayed with
// the same key — first by transient backoff, then by the refund job — and the
// gateway replays the first refund instead of refunding twice. A definite
// failure releases the reservation. A duplicate payment is recorded in the
// transaction that learns of it, read back from the gateway, and refunded in
// full once both payments are confirmed distinct and succeeded.

// refundReplayWindow is how long after its row was committed a refund's key is
// replayed; past it the gateway may have forgotten the key, so an answer still
// unknown needs a human, as for charges (docs/protocol.md).
const refundReplayWindow = 23 * time.Hour

// duplicateReadPatience is how long a recorded second payment may wait for the
// gateway to answer the reads that confirm it before it is handed to a human
// (needs_review): money may be owed back, so it must not wait unseen.
const duplicateReadPatience = 24 * time.Hour

// DuplicateRefundKey is the idempotency key of the automatic refund of the
// second payment paymentIntentID: one per payment, so the same report arriving
// twice (a duplicate webhook, a webhook and a read) records one refund.
func DuplicateRefundKey(paymentIntentID string) string { return "refund-dup-" + paymentIntentID }

// RefundRequest is the frozen gateway request of a refund row.
func RefundRequest(rf *models.Refund) gateway.RefundRequest {
	return gateway.RefundRequest{
		PaymentIntent: rf.PaymentIntentID,
		Amount:        rf.Amount,
		Currency:      rf.Currency,
		Reason:        gateway.RefundReason(rf.Reason),
		Metadata: map[string]string{
			"refund_key": rf.IdempotencyKey,
			"refund_id":  strconv.FormatInt(rf.ID, 10),
		},
		IdempotencyKey: rf.IdempotencyKey,
		// Tried before, answered indefinitely, or taken over from another
		// worker: it may have reached the gateway.
		Replay: rf.Status == models.RefundUnknown || rf.Tries > 0 || rf.LeaseVersion > 1,
	}
}

// recordSecondPayment records, in the caller's transaction, that the gateway
// took a second payment (second) for an invoice another payment (kept)
// already paid: a refund row in status confirming, keyed by the payment, that
// the refund job reads back and then refunds in full. amount and currency are
// the payment's as the gateway reported them, for a payment billingd has no
// attempt of (0 and "" otherwise). The warning is for the log, at error level.
func recordSecondPayment(tx *store.Tx, now time.Time, invoiceID int64, kept, second string, amount int64, currency string) (string, error) {
	key := DuplicateRefundKey(second)
	rf, created, err := tx.ReserveRefund(now, store.NewRefund{
		InvoiceID: invoiceID, PaymentIntentID: second, OriginalPaymentIntentID: kept,
		Reason: models.RefundReasonDuplicate, IdempotencyKey: key, Status: models.RefundConfirming,
		PaidAmount: amount, PaidCurrency: currency,
	})
	switch {
	case errors.Is(err, store.ErrRefundExceedsPayment), errors.Is(err, store.ErrNoPayment):
		return fmt.Sprintf("SECOND SUCCESSFUL CHARGE: invoice %d was already paid by %s; %s cannot be refunded automatically (%v): refund it at the gateway",
			invoiceID, kept, second, err), nil
	case err != nil:
		return "", err
	case !created:
		return "", nil // already recorded: the same report again
	}
	return fmt.Sprintf("SECOND SUCCESSFUL CHARGE: invoice %d was already paid by %s; %s (%d %s) is refunded automatically once both payments are read back from the gateway (refund %s)",
		invoiceID, kept, second, rf.Amount, rf.Currency, key), nil
}

// Refund is the store/charge-level refund operators' commands sit on: refund
// amount minor units (0: what is left) of the payment that paid invoiceID, for
// reason, under key. The row is committed first; the request is then sent with
// transient backoff, and whatever stays indefinite is left to the refund job.
// Calling it again with the same key returns the same refund and sends its
// request again only while it is open.
func (e *Engine) Refund(ctx context.Context, invoiceID, amount int64, reason models.RefundReason, key string) (*models.Refund, error) {
	now := e.opts.Clock.Now()
	rf, _, err := e.opts.Store.ReserveRefund(ctx, now, store.NewRefund{
		InvoiceID: invoiceID, Amount: amount, Reason: reason, IdempotencyKey: key, Status: models.RefundPending,
	})
	if err != nil {
		return nil, err
	}
	if rf.Status != models.RefundPending && rf.Status != models.RefundUnknown {
		return rf, nil
	}
	// Lease it like the job does, so the job and this call never send at once.
	claimed, err := e.opts.Store.ClaimRefund(ctx, e.refundOwner(), now, now.Add(e.refundLease()), rf.ID)
	if err != nil || claimed == nil {
		return rf, err
	}
	e.workRefund(ctx, claimed)
	// A webhook may have recorded the outcome first: report the row as stored.
	if cur, err := e.opts.Store.RefundByKey(context.WithoutCancel(ctx), key); err == nil && cur != nil {
		return cur, nil
	}
	return claimed, nil
}

func (e *Engine) refundOwner() string {
	if e.opts.RefundOwner != "" {
		return e.opts.RefundOwner
	}
	return "refunds"
}

// refundLease outlasts one refund's whole backoff window plus a margin.
func (e *Engine) refundLease() time.Duration {
	return e.tune.Load().Retry.MaxElapsedTime + 2*time.Minute
}

// RunRefunds is the refund job: it claims open refunds whose time has come and
// moves each on — reads a duplicate's two payments back, sends (or replays
// with the same key) a pending or unknown refund, reads a processing one. It
// returns how many it worked on.
func (e *Engine) RunRefunds(ctx context.Context, limit int) (int, error) {
	if e.opts.Refunds == nil {
		return 0, nil
	}
	now := e.opts.Clock.Now()
	rows, err := e.opts.Store.ClaimRefunds(ctx, e.refundOwner(), now, now.Add(e.refundLease()), limit)
	if err != nil {
		return 0, err
	}
	for i := range rows {
		if ctx.Err() != nil {
			break
		}
		e.workRefund(ctx, &rows[i])
	}
	return len(rows), nil
}

func (e *Engine) refundLogger(rf *models.Refund) zerolog.Logger {
	return e.opts.Log.With().Int64("refund_id", rf.ID).Int64("invoice_id", rf.InvoiceID).
		Str("payment_intent", rf.PaymentIntentID).Str("refund_key", rf.IdempotencyKey).
		Str("reason", string(rf.Reason)).Logger()
}

// workRefund moves one claimed refund on.
func (e *Engine) workRefund(ctx context.Context, rf *models.Refund) {
	log := e.refundLogger(rf)
	if e.opts.Refunds == nil {
		log.Error().Msg("no refund gateway configured; the refund waits")
		return
	}
	if rf.Status == models.RefundConfirming {
		if !e.confirmDuplicate(ctx, rf, log) {
			return
		}
	}
	var res gateway.Result
	tries := 0
	if rf.Status == models.RefundProcessing && rf.GatewayRefundID != "" {
		res = e.opts.Refunds.RetrieveRefund(ctx, rf.PaymentIntentID, rf.GatewayRefundID)
		tries = 0
	} else {
		if e.opts.Clock.Now().Sub(rf.CreatedAt) > refundReplayWindow && rf.GatewayRefundID == "" {
			e.finishRefund(ctx, rf, store.RefundResult{Status: models.RefundNeedsReview,
				ErrorMessage: "no definite answer within the gateway's idempotency window; check the gateway's refunds of " + rf.PaymentIntentID}, log)
			return
		}
		res, tries = e.sendRefund(ctx, RefundRequest(rf), rf, log)
	}
	if ctx.Err() != nil && res.Kind == gateway.Transient {
		log.Warn().Msg("refund interrupted by shutdown; it will be replayed with the same key")
		return
	}
	e.finishRefund(ctx, rf, e.refundResultOf(rf, res, tries), log)
}

// refundResultOf maps a gateway answer onto the refund state it establishes.
func (e *Engine) refundResultOf(rf *models.Refund, res gateway.Result, tries int) store.RefundResult {
	r := store.RefundResult{Tries: tries}
	if res.Refund != nil {
		r.GatewayRefundID = res.Refund.ID
	}
	if res.Err != nil {
		r.ErrorMessage = res.Err.Error()
	}
	switch res.Kind {
	case gateway.Succeeded:
		r.Status = models.RefundSucceeded
	case gateway.Processing:
		r.Status = models.RefundProcessing
		next := e.opts.Clock.Now().Add(e.tune.Load().RecheckAfter)
		r.NextTryAt = &next
	case gateway.Declined, gateway.Canceled:
		r.Status = models.RefundFailed
		if res.Decline != nil && r.ErrorMessage == "" {
			r.ErrorMessage = res.Decline.Message
		}
		if r.ErrorMessage == "" {
			r.ErrorMessage = "the gateway canceled the refund"
		}
	case gateway.Invalid, gateway.OurDataError:
		r.Status = models.RefundFailed
		if res.IdempotencyConflict {
			// The key was used before with other parameters: the first use
			// may have refunded. Only a human can tell.
			r.Status = models.RefundNeedsReview
		}
	default:
		r.Status = models.RefundUnknown
		next := e.opts.Clock.Now().Add(e.tune.Load().UnknownRetryDelay)
		r.NextTryAt = &next
	}
	return r
}

func (e *Engine) finishRefund(ctx context.Context, rf *models.Refund, r store.RefundResult, log zerolog.Logger) {
	now := e.opts.Clock.Now()
	err := e.opts.Store.FinishRefund(context.WithoutCancel(ctx), now, rf, r)
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		log.Info().Str("status", string(r.Status)).Msg("the refund's outcome was recorded elsewhere first (a webhook); this answer is dropped")
		return
	case err != nil:
		log.Error().Err(err).Str("status", string(r.Status)).Msg("could not record the refund's outcome; it is replayed with the same key")
		return
	}
	ev := log.Info()
	switch r.Status {
	case models.RefundSucceeded:
		if rf.Reason == models.RefundReasonDuplicate {
			ev = log.Error() // a duplicate charge happened: an operator must hear of it
		}
	case models.RefundUnknown, models.RefundFailed, models.RefundNeedsReview, models.RefundCanceled:
		ev = log.Warn()
		if rf.Reason == models.RefundReasonDuplicate {
			ev = log.Error()
		}
	}
	ev.Str("status", string(r.Status)).Int64("amount", rf.Amount).Str("currency", rf.Currency).
		Str("gateway_refund_id", rf.GatewayRefundID).Str("error", r.ErrorMessage).Msg("refund recorded")
}

// sendRefund creates the refund, retrying transient failures with backoff
// and always with the row's own key. Nothing is sent once the claim's lease
// has run out on the engine's clock — or, when this process claimed rf, once
// less than the lease margin is left on it or on the monotonic clock
// (LeaseDeadline): another worker may hold the refund by then.
func (e *Engine) sendRefund(ctx context.Context, req gateway.RefundRequest, rf *models.Refund, log zerolog.Logger) (gateway.Result, int) {
	return e.retrySameKey(ctx, e.tune.Load().Retry, log, "transient gateway failure on a refund; retrying with the same idempotency key",
		func() (gateway.Result, bool) {
			if e.opts.Limiter != nil {
				if err := e.opts.Limiter.Wait(ctx); err != nil {
					return gateway.Result{Kind: gateway.Transient, Err: err}, false
				}
			}
			if err := e.refundMaySend(rf); err != nil {
				return gateway.Result{Kind: gateway.Transient, Err: err}, false
			}
			// Checked again after the budget's wait, right before the request leaves.
			res := e.opts.Refunds.CreateRefund(budget.WithSendCheck(ctx, func() error { return e.refundMaySend(rf) }), req)
			if errors.Is(res.Err, errRefundLeaseRanOut) {
				return res, false
			}
			req.Replay = true // the next try may find this one's refund
			return res, true
		})
}

// errRefundLeaseRanOut is a refund request kept from leaving because its
// claim's lease is (nearly) over: another worker may hold the refund by then.
var errRefundLeaseRanOut = errors.New("the refund's lease ran out; nothing more is sent under it")

// refundMaySend is the refund's lease check (docs/protocol.md, "No send on a lost lease"): more than the
// margin left on the cluster's clock and, for a refund this process claimed,
// on the monotonic clock.
func (e *Engine) refundMaySend(rf *models.Refund) error {
	margin := time.Duration(0)
	if !rf.LeaseDeadline.IsZero() {
		margin = e.opts.LeaseMargin
	}
	if rf.LeaseUntil != nil && rf.LeaseUntil.Sub(e.opts.Clock.Now()) <= margin ||
		!rf.LeaseDeadline.IsZero() && time.Until(rf.LeaseDeadline) < margin {
		return errRefundLeaseRanOut
	}
	return nil
}

// confirmDuplicate reads both payments of a recorded duplicate back from the
// gateway. Only when both succeeded, are distinct and belong to the invoice's
// order is the refund moved to pending (true: send it now, under the same
// lease). A read that fails transiently leaves it confirming for the next run;
// a second payment that did not succeed cancels the refund (nothing to give
// back); anything else that does not match needs a human.
func (e *Engine) confirmDuplicate(ctx context.Context, rf *models.Refund, log zerolog.Logger) bool {
	inv, err := e.opts.Store.InvoiceForRefund(ctx, rf.InvoiceID)
	if err != nil {
		log.Error().Err(err).Msg("could not read the duplicate's invoice; it is looked at again")
		e.deferRefund(ctx, rf, "reading the invoice: "+err.Error(), log)
		return false
	}
	kept := rf.OriginalPaymentIntentID
	if kept == "" {
		kept = inv.PaymentIntentID
	}
	review := func(msg string) bool {
		e.finishRefund(ctx, rf, store.RefundResult{Status: models.RefundNeedsReview, ErrorMessage: msg}, log)
		return false
	}
	if kept == "" || kept == rf.PaymentIntentID {
		return review(fmt.Sprintf("the invoice's payment %q and the second payment %q are not two payments", kept, rf.PaymentIntentID))
	}
	first := e.opts.Gateway.RetrievePaymentIntent(ctx, kept)
	second := e.opts.Gateway.RetrievePaymentIntent(ctx, rf.PaymentIntentID)
	for _, r := range []gateway.Result{first, second} {
		if r.Kind == gateway.Transient || (r.Intent == nil && r.Kind != gateway.Invalid) {
			msg := "reading the payments back"
			if r.Err != nil {
				msg += ": " + r.Err.Error()
			}
			if e.opts.Clock.Now().Sub(rf.CreatedAt) > duplicateReadPatience {
				return review(fmt.Sprintf("the gateway did not answer reads of both payments for %s (%s); nothing was refunded — check %s and %s at the gateway",
					duplicateReadPatience, msg, kept, rf.PaymentIntentID))
			}
			e.deferRefund(ctx, rf, msg, log)
			return false
		}
	}
	switch {
	case second.Intent == nil || second.Kind != gateway.Succeeded:
		status := "not found"
		if second.Intent != nil {
			status = string(second.Intent.Status)
		}
		e.finishRefund(ctx, rf, store.RefundResult{Status: models.RefundCanceled,
			ErrorMessage: "the second payment " + rf.PaymentIntentID + " is " + status + " at the gateway: nothing to refund"}, log)
		return false
	case first.Intent == nil || first.Kind != gateway.Succeeded:
		return review("the invoice's payment " + kept + " did not read back as succeeded; the second payment " + rf.PaymentIntentID + " is kept for a human to decide")
	case first.Intent.ID == second.Intent.ID:
		return review("both reads returned payment " + first.Intent.ID)
	case first.Intent.MerchantOrderID != inv.PublicID || second.Intent.MerchantOrderID != inv.PublicID:
		return review(fmt.Sprintf("the payments belong to orders %q and %q, not to invoice %s", first.Intent.MerchantOrderID, second.Intent.MerchantOrderID, inv.PublicID))
	case second.Intent.Currency != rf.Currency || second.Intent.Amount < rf.Amount:
		return review(fmt.Sprintf("the second payment took %d %s, the refund is %d %s", second.Intent.Amount, second.Intent.Currency, rf.Amount, rf.Currency))
	}
	now := e.opts.Clock.Now()
	err = e.opts.Store.FinishRefund(context.WithoutCancel(ctx), now, rf, store.RefundResult{Status: models.RefundPending, NextTryAt: &now, KeepLease: true})
	if err != nil {
		log.Info().Err(err).Msg("could not move the confirmed duplicate on; it is looked at again")
		return false
	}
	log.Error().Str("kept_payment", kept).Int64("amount", rf.Amount).Str("currency", rf.Currency).
		Msg("SECOND SUCCESSFUL CHARGE confirmed at the gateway: both payments succeeded; refunding the second in full")
	return true
}

// deferRefund leaves a refund in its state for the next run of the job.
func (e *Engine) deferRefund(ctx context.Context, rf *models.Refund, msg string, log zerolog.Logger) {
	next := e.opts.Clock.Now().Add(e.tune.Load().UnknownRetryDelay)
	err := e.opts.Store.FinishRefund(context.WithoutCancel(ctx), e.opts.Clock.Now(), rf, store.RefundResult{Status: rf.Status, ErrorMessage: msg, NextTryAt: &next})
	if err != nil && !errors.Is(err, store.ErrLeaseLost) {
		log.Error().Err(err).Msg("could not defer the refund")
	}
}
