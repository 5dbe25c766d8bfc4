// Package charge carries one charge attempt end to end: it sends the attempt's frozen
// request with its idempotency key, retries transient failures with backoff using
// the same key, and turns the gateway's answer into one transaction over the
// attempt, its invoice and its subscription.
//
// The protocol (docs/protocol.md): the attempt row is committed before this package sees
// it; no transaction is open during an HTTP call; an indefinite outcome leaves the
// attempt unknown, to be replayed with the same key; result writes are fenced by
// the lease version the attempt was claimed with.
package charge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/budget"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// RetryPolicy bounds the transient retries inside one attempt (seconds to minutes).
// The dunning schedule (days, across attempts) is a different clock.
type RetryPolicy struct {
	InitialInterval time.Duration
	MaxInterval     time.Duration
	MaxElapsedTime  time.Duration
}

// Options wire an Engine.
type Options struct {
	Store   *store.Store
	Gateway gateway.Gateway
	Clock   clock.Clock
	// Limiter caps requests per second to the gateway across all workers, so
	// billingd never causes the gateway's own 429s. Nil means unlimited.
	Limiter *rate.Limiter
	// MaxInFlight caps charge requests open at the gateway at once
	// (gateway.concurrency); 0 means no cap. The cap is held only for the HTTP
	// exchange itself, so callers may run more workers than this: while some
	// record their outcome, others keep the gateway busy.
	MaxInFlight int
	Retry       RetryPolicy
	// UnknownRetryDelay is how long an attempt whose outcome stayed unknown
	// after the backoff window waits before it is replayed (with its own key).
	UnknownRetryDelay time.Duration
	Log               zerolog.Logger
	// Metrics receives each finished exchange; nil records nothing.
	Metrics *metrics.Metrics
	// RecheckAfter is when the reconciler next looks at an attempt that reading
	// the gateway left processing (default 5m).
	RecheckAfter time.Duration
	// Hook runs inside every transaction that settles an attempt (dunning).
	Hook Hook
	// Refunds sends refunds (the gateway client); nil leaves refund rows
	// waiting.
	Refunds gateway.Refunds
	// RefundOwner is the lease owner the refund job writes (the instance).
	RefundOwner string
	// LeaseMargin is how much of its lease a claimed attempt must have left
	// for a request to leave under it (LeaseMargin(gateway.timeout); 0
	// checks only that the lease has not run out). Leases are made longer
	// than their work by at least this much.
	LeaseMargin time.Duration
	// Observe, when set, receives the time from a worker taking an attempt to
	// its outcome committed, rate-limiter waits and retries included: the load
	// tool's attempt latency.
	Observe func(time.Duration)
}

// Hook lets dunning act on outcomes in the same transaction that records them,
// without the charge path knowing what dunning does.
type Hook interface {
	// AfterOutcome runs after an attempt reached a new state and its invoice
	// followed.
	AfterOutcome(tx *store.Tx, now time.Time, a *models.ChargeAttempt, r store.AttemptResult) error
	// AfterPaymentMethodSaved runs for setup_intent.succeeded; retryNow asks for
	// a billing pass as soon as the transaction commits.
	AfterPaymentMethodSaved(tx *store.Tx, now time.Time, si *gateway.SetupIntent) (applied bool, detail string, retryNow bool, err error)
}

// SuccessesHook is a Hook that can also take the succeeded outcomes of one
// group commit at once (AfterSuccesses must do exactly what AfterOutcome
// would do for each of them in turn): dunning then reads the invoices' cases
// in one statement instead of one per charge. A Hook without it is called
// once per outcome.
type SuccessesHook interface {
	AfterSuccesses(tx *store.Tx, outs []store.Outcome) error
}

// Engine executes claimed attempts.
type Engine struct {
	opts Options
	rec  recorder
	// slots holds one token per request in flight (nil: no cap); tune holds
	// what a reload may change. Both are swapped whole by Reconfigure.
	slots atomic.Pointer[chan struct{}]
	tune  atomic.Pointer[Tunables]
}

// New returns an Engine.
func New(opts Options) *Engine {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	// The tunables live in e.tune from here on (Reconfigure gives them their
	// defaults); the copies in opts are not read again.
	e := &Engine{opts: opts}
	e.Reconfigure(Tunables{Retry: opts.Retry, MaxInFlight: opts.MaxInFlight, UnknownRetryDelay: opts.UnknownRetryDelay, RecheckAfter: opts.RecheckAfter})
	return e
}

// MaxInFlight is the cap on requests at the gateway (Options.MaxInFlight), 0 if
// none: a caller sizing its worker pool reads it here, so that the pool and the
// cap cannot disagree.
func (e *Engine) MaxInFlight() int { return e.tune.Load().MaxInFlight }

// Request is the frozen gateway request of an attempt. It is derived only from the
// attempt row, so every replay sends identical parameters.
func Request(a *models.ChargeAttempt) gateway.PaymentIntentRequest {
	return gateway.PaymentIntentRequest{
		Amount:          a.Amount,
		Currency:        a.Currency,
		Customer:        a.GatewayCustomer,
		PaymentMethod:   a.GatewayPM,
		OffSession:      a.OffSession,
		MerchantOrderID: a.MerchantOrderID,
		Description:     "Invoice " + a.MerchantOrderID,
		Metadata: map[string]string{
			"invoice":         a.MerchantOrderID,
			"attempt":         fmt.Sprint(a.AttemptNo),
			"idempotency_key": a.IdempotencyKey,
		},
		IdempotencyKey:    a.IdempotencyKey,
		PreviousPaymentID: a.PreviousPaymentID,
		Replay:            MaySentBefore(a),
	}
}

// MaySentBefore reports whether an attempt's request may already have reached
// the gateway: it was answered indefinitely, tried, or taken over from a
// worker that held it (a crash between send and record). Such a request is
// resent with Replay set, so a provider that keeps no result for a request it
// answered with an error looks for the payment first.
func MaySentBefore(a *models.ChargeAttempt) bool {
	return a.Status != models.AttemptPending || a.Tries > 0 || a.LeaseVersion > 1
}

// Logger returns a logger whose every line names the attempt, its invoice and its
// subscription.
func Logger(base zerolog.Logger, a *models.ChargeAttempt) zerolog.Logger {
	return base.With().
		Int64("subscription_id", a.SubscriptionID).
		Int64("invoice_id", a.InvoiceID).
		Str("invoice", a.MerchantOrderID).
		Int64("attempt_id", a.ID).
		Int("attempt_no", a.AttemptNo).
		Logger()
}

// Execute sends a claimed attempt (new or replayed) and records its outcome. ctx
// aborts the exchange (a second SIGTERM); an aborted attempt stays pending or
// unknown and is replayed later with the same key. It returns the attempt's new
// status.
func (e *Engine) Execute(ctx context.Context, a *models.ChargeAttempt) (models.AttemptStatus, error) {
	status, _, err := e.exchange(ctx, a, Request(a), e.tune.Load().Retry)
	return status, err
}

// ExecuteOnSession sends a customer-present attempt (a pay link): the request
// carries the return URL the gateway sends the customer back to, and transient
// failures are retried only briefly, because someone is waiting. It returns the
// gateway's result too, so the page can redirect to a 3-D Secure challenge.
// On-session attempts are never replayed by passes (their return URL is not
// stored); an indefinite one is settled by webhook or the reconciler.
func (e *Engine) ExecuteOnSession(ctx context.Context, a *models.ChargeAttempt, returnURL string) (models.AttemptStatus, gateway.Result, error) {
	req := Request(a)
	req.ReturnURL = returnURL
	return e.exchange(ctx, a, req, RetryPolicy{InitialInterval: 200 * time.Millisecond, MaxInterval: 2 * time.Second, MaxElapsedTime: 10 * time.Second})
}

func (e *Engine) exchange(ctx context.Context, a *models.ChargeAttempt, req gateway.PaymentIntentRequest, policy RetryPolicy) (models.AttemptStatus, gateway.Result, error) {
	log := Logger(e.opts.Log, a)
	start := e.opts.Clock.Now()
	if e.keysMayBeForgotten(a, start) {
		if status, res, taken, err := e.lookBeforeCharging(ctx, a, log); taken {
			return status, res, err
		}
	}
	res, tries := e.send(ctx, a, req, policy, log)
	if tries == 0 && notSent(res.Err) {
		// Nothing left this process: the row stays as it is, leased to a
		// lease that has run out, for the replay (or the peer that took it
		// over) to send under the same key (docs/protocol.md, "No send on a lost lease").
		log.Warn().Err(res.Err).Msg("request not sent on a lost lease; the attempt is left to be replayed or taken over")
		return a.Status, res, res.Err
	}
	res = OnSessionOutcome(a, res)
	failpoint.Hit(failpoint.ChargeAfterSend)
	if ctx.Err() != nil && res.Kind == gateway.Transient {
		// Shutting down mid-exchange: leave the row as it is (pending/unknown) for
		// the replay; only release nothing — the lease expires or is rescued.
		log.Warn().Int("tries", tries).Msg("attempt interrupted by shutdown; it will be replayed with the same key")
		return a.Status, res, ctx.Err()
	}
	now := e.opts.Clock.Now()
	result := ResultOf(res)
	if res.Intent != nil && (res.Kind == gateway.Succeeded || res.Kind == gateway.Processing || res.Kind == gateway.RequiresAction) {
		if reason := AmountMismatch(a, res.Intent); reason != "" {
			// The answer to billingd's own request names another amount or
			// currency: recorded as needs_review, not as its outcome.
			result = store.AttemptResult{Status: models.AttemptNeedsReview, PaymentIntentID: res.Intent.ID,
				ErrorMessage: reason, LastHTTPStatus: res.HTTPStatus}
		}
	}
	if res.Kind == gateway.OurDataError {
		result = e.ourData(ctx, a, res, result, log)
	}
	if res.Kind == gateway.Invalid && res.HTTPStatus == http.StatusUnauthorized {
		// The gateway refused billingd's own key (a wrong or revoked
		// gateway.secret_key): nothing was processed, and it is neither the
		// customer's failure nor final. The attempt waits, unknown, and is
		// replayed with its own key once the key is fixed.
		result = store.AttemptResult{Status: models.AttemptUnknown, ErrorMessage: result.ErrorMessage, LastHTTPStatus: res.HTTPStatus}
		log.Error().Err(res.Err).Msg("the gateway refused billingd's API key (401): check gateway.secret_key; the attempt is replayed with its own key once the key is accepted")
	}
	result.Tries = tries
	if result.Status == models.AttemptUnknown {
		next := now.Add(e.tune.Load().UnknownRetryDelay)
		result.NextTryAt = &next
	}
	warning, err := e.record(ctx, a, result, now)
	if errors.Is(err, store.ErrLeaseLost) {
		// A webhook (or the reconciler) recorded the outcome first: report what
		// was recorded, so the pass still counts it. If another worker took the
		// attempt over instead, that worker reports it.
		current, rerr := e.opts.Store.AttemptByID(context.WithoutCancel(ctx), a.ID)
		if rerr == nil && current.Status == models.AttemptRequiresAction && current.ActionURL == "" && result.ActionURL != "" &&
			current.PaymentIntentID == result.PaymentIntentID {
			// A webhook said "waiting for 3-D Secure" first, without the
			// challenge's address (Checkout.com's payment_pending carries
			// none): keep the one this answer brought, so the customer's next
			// press goes back to the live challenge.
			if serr := e.opts.Store.InTx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
				return tx.FillActionURL(now, a.ID, result.PaymentIntentID, result.ActionURL)
			}); serr != nil {
				log.Error().Err(serr).Msg("could not keep the challenge address of a waiting payment")
			}
		}
		if rerr == nil && current.LeaseOwner == "" && current.Status != models.AttemptPending && current.Status != models.AttemptUnknown {
			log.Info().Str("status", string(current.Status)).Str("our_answer", string(result.Status)).Msg("the attempt's outcome was already recorded by a webhook; this answer is dropped")
			return current.Status, res, nil
		}
		log.Info().Str("status", string(result.Status)).Msg("lease lost to another worker; this answer is dropped")
		return a.Status, res, err
	}
	if err != nil {
		log.Error().Err(err).Str("status", string(result.Status)).Msg("could not record attempt outcome; it stays unresolved and will be replayed with the same key")
		return a.Status, res, err
	}
	if warning != "" {
		log.Error().Str("payment_intent", result.PaymentIntentID).Msg(warning)
	}
	e.opts.Metrics.AttemptLatency(now.Sub(start))
	if e.opts.Observe != nil {
		e.opts.Observe(e.opts.Clock.Now().Sub(start))
	}
	ev := log.Info()
	switch result.Status {
	case models.AttemptUnknown, models.AttemptFailed, models.AttemptNeedsReview:
		ev = log.Warn()
	}
	ev.Str("status", string(result.Status)).Str("payment_intent", result.PaymentIntentID).
		Str("decline_code", result.DeclineCode).Bool("hard_decline", result.HardDecline).
		Int("tries", tries).Int("http_status", result.LastHTTPStatus).Str("error", result.ErrorMessage).
		Bool("off_session", a.OffSession).Msg("charge attempt recorded")
	return result.Status, res, nil
}

// send makes the request, retrying transient failures with exponential backoff and
// jitter, honoring Retry-After, always with the attempt's own key. A try that
// finds a's lease run out (or its key window closed) sends nothing and ends
// the retries (mayStillSend).
func (e *Engine) send(ctx context.Context, a *models.ChargeAttempt, req gateway.PaymentIntentRequest, policy RetryPolicy, log zerolog.Logger) (gateway.Result, int) {
	return e.retrySameKey(ctx, policy, log, "transient gateway failure; retrying with the same idempotency key",
		func() (gateway.Result, bool) {
			res, sent := e.request(ctx, a, req)
			// Whatever came back, the next try may find the first one's
			// payment at the gateway.
			req.Replay = true
			return res, sent
		})
}

// retrySameKey runs try until it gives a definite answer, the backoff window of
// policy closes or ctx ends: exponential backoff with jitter on the engine's
// clock, never shorter than the gateway's Retry-After. try sends one request
// under the caller's own idempotency key and reports whether it sent anything;
// a try that sent nothing (no slot, a lease that ran out) ends the loop with
// its result. It returns the last result and how many requests were sent.
func (e *Engine) retrySameKey(ctx context.Context, policy RetryPolicy, log zerolog.Logger, retrying string, try func() (gateway.Result, bool)) (gateway.Result, int) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = policy.InitialInterval
	b.MaxInterval = policy.MaxInterval
	b.MaxElapsedTime = policy.MaxElapsedTime
	b.Clock = e.opts.Clock
	b.Reset()
	tries := 0
	for {
		res, sent := try()
		if !sent {
			return res, tries
		}
		tries++
		if res.Kind != gateway.Transient {
			return res, tries
		}
		wait := b.NextBackOff()
		if wait == backoff.Stop || ctx.Err() != nil {
			return res, tries
		}
		if res.RetryAfter > wait {
			wait = res.RetryAfter
		}
		log.Debug().Err(res.Err).Int("http_status", res.HTTPStatus).Dur("wait", wait).Int("try", tries).Msg(retrying)
		if err := e.opts.Clock.Sleep(ctx, wait); err != nil {
			return res, tries
		}
	}
}

// request sends one CreatePaymentIntent within the in-flight cap and the rate
// limit: the slot is taken first, so a request leaves as soon as the limiter
// lets it and the limiter's spacing reaches the gateway intact. The lease
// check comes last, after every wait, right before the request leaves. sent
// is false when ctx ended before the request could be sent, or a's lease ran
// out.
func (e *Engine) request(ctx context.Context, a *models.ChargeAttempt, req gateway.PaymentIntentRequest) (res gateway.Result, sent bool) {
	if slots := e.slots.Load(); slots != nil {
		select {
		case *slots <- struct{}{}:
			defer func() { <-*slots }()
		case <-ctx.Done():
			return gateway.Result{Kind: gateway.Transient, Err: ctx.Err()}, false
		}
	}
	if e.opts.Limiter != nil {
		if err := e.opts.Limiter.Wait(ctx); err != nil {
			return gateway.Result{Kind: gateway.Transient, Err: err}, false
		}
	}
	failpoint.Hit(failpoint.ChargeBeforeSend)
	if err := e.mayStillSend(a); err != nil {
		return gateway.Result{Kind: gateway.Transient, Err: err}, false
	}
	// The gateway client's budget may make the request wait for its turn;
	// the lease is checked again after that wait, right before it leaves.
	res = e.opts.Gateway.CreatePaymentIntent(budget.WithSendCheck(ctx, func() error { return e.mayStillSend(a) }), req)
	if notSent(res.Err) {
		return res, false
	}
	return res, true
}

// ResultOf maps a gateway result onto the attempt state it establishes.
func ResultOf(res gateway.Result) store.AttemptResult {
	r := store.AttemptResult{LastHTTPStatus: res.HTTPStatus}
	if res.Intent != nil {
		r.PaymentIntentID = res.Intent.ID
	}
	if res.Err != nil {
		r.ErrorMessage = res.Err.Error()
	}
	switch res.Kind {
	case gateway.Succeeded:
		r.Status = models.AttemptSucceeded
	case gateway.Processing:
		r.Status = models.AttemptProcessing
	case gateway.RequiresAction:
		r.Status = models.AttemptRequiresAction
		if res.Intent != nil {
			r.ActionURL = res.Intent.ActionURL
		}
	case gateway.Declined:
		r.Status = models.AttemptDeclined
		if d := res.Decline; d != nil {
			r.DeclineCode = d.Reason()
			r.AdviceCode = d.AdviceCode
			r.HardDecline = d.Hard
			if r.ErrorMessage == "" {
				r.ErrorMessage = d.Message
			}
		}
	case gateway.Canceled:
		r.Status = models.AttemptCanceled
	case gateway.Invalid:
		r.Status = models.AttemptFailed
		if res.IdempotencyConflict {
			// The key was used before with other parameters: the first use may
			// have charged. Only a human can tell.
			r.Status = models.AttemptNeedsReview
		}
		if d := res.Decline; d != nil {
			r.DeclineCode = d.Reason()
		}
	case gateway.OurDataError:
		// The gateway refused what billingd sent (an id it does not know, a
		// request it calls invalid): not the customer's decline. A human fixes
		// the data; no dunning case opens and no email goes out. The charge
		// path turns it into a hard decline instead when its database shows
		// the card was verified or charged before (see ourData).
		r.Status = models.AttemptNeedsReview
		if d := res.Decline; d != nil {
			r.DeclineCode = d.Reason()
		}
	default:
		r.Status = models.AttemptUnknown
	}
	return r
}

// ourData decides whose problem an OurDataError is. The gateway saying that a
// card (or its customer) does not exist, or is not the customer's, means
// billingd's data is wrong when billingd never verified that id — the
// attempt stays needs_review with the gateway's message. When the id was
// verified with the gateway, or the card charged successfully before, the
// customer removed it since: that is the customer's hard decline, and dunning
// asks for a new card. A database error leaves the conservative answer
// (needs_review: a human looks, the customer is not emailed).
func (e *Engine) ourData(ctx context.Context, a *models.ChargeAttempt, res gateway.Result, r store.AttemptResult, log zerolog.Logger) store.AttemptResult {
	var (
		known bool
		err   error
	)
	switch res.Param {
	case "payment_method":
		known, err = e.opts.Store.PaymentMethodKnown(context.WithoutCancel(ctx), a.GatewayPM)
	case "customer":
		known, err = e.opts.Store.CustomerKnown(context.WithoutCancel(ctx), a.GatewayCustomer)
	default:
		// A parameter other than the card or its customer (amount, currency,
		// a malformed request): billingd's request is wrong, whoever's card.
		return r
	}
	if err != nil {
		log.Error().Err(err).Msg("could not tell whether the refused card was verified before; the attempt needs review")
		return r
	}
	if !known {
		return r
	}
	r.Status = models.AttemptDeclined
	r.HardDecline = true
	r.DeclineCode = gateway.CodePaymentMethodGone
	return r
}

// ApplyToInvoice makes the invoice and subscription follow an attempt's new state,
// inside the caller's transaction. Paid invoices stay paid whatever arrives later.
// A non-empty warning means the gateway reports a second successful charge for an
// invoice already paid by another PaymentIntent, or a success for an invoice an
// operator voided: either is recorded in this transaction as a refund for the
// refund job to send (recordSecondPayment, recordLateSuccessOnVoid), and the
// warning is logged at error level.
func ApplyToInvoice(tx *store.Tx, now time.Time, invoiceID int64, r store.AttemptResult) (warning string, err error) {
	switch r.Status {
	case models.AttemptSucceeded:
		paid, err := tx.MarkInvoicePaid(now, invoiceID, r.PaymentIntentID)
		if err != nil {
			return "", err
		}
		if !paid {
			if warning, err = successNotPaid(tx, now, invoiceID, r); err != nil {
				return "", err
			}
		}
		return warning, tx.ReactivateIfSettled(now, invoiceID)
	case models.AttemptDeclined, models.AttemptRequiresAction, models.AttemptFailed,
		models.AttemptCanceled, models.AttemptNeedsReview:
		return "", tx.MarkSubscriptionPastDue(now, invoiceID)
	}
	return "", nil
}

// successNotPaid records a success whose invoice MarkInvoicePaid did not
// move (it was paid already, or void): a second payment by another intent, or
// a late success on a void invoice, becomes a refund row and a warning.
func successNotPaid(tx *store.Tx, now time.Time, invoiceID int64, r store.AttemptResult) (string, error) {
	status, by, err := tx.InvoicePaymentIntent(invoiceID)
	if err != nil {
		return "", err
	}
	if (status == models.InvoicePaid || status == models.InvoiceVoid) && by != "" && by != r.PaymentIntentID {
		return recordSecondPayment(tx, now, invoiceID, by, r.PaymentIntentID, 0, "")
	} else if status == models.InvoiceVoid {
		return recordLateSuccessOnVoid(tx, now, invoiceID, r.PaymentIntentID)
	}
	return "", nil
}

// applyOutcome makes the invoice and subscription follow an attempt's new state
// and runs the hook, all in the caller's transaction.
func (e *Engine) applyOutcome(tx *store.Tx, now time.Time, a *models.ChargeAttempt, r store.AttemptResult) (string, error) {
	if r.Status != models.AttemptSucceeded && !r.Status.Unresolved() {
		// A late failure of an invoice an operator voided changes nothing
		// else: the subscription is not past due for it, and dunning opens
		// no case and queues no email (a void queues nothing).
		status, _, err := tx.InvoicePaymentIntent(a.InvoiceID)
		if err != nil || status == models.InvoiceVoid {
			return "", err
		}
	}
	warning, err := ApplyToInvoice(tx, now, a.InvoiceID, r)
	if err != nil || e.opts.Hook == nil {
		return warning, err
	}
	return warning, e.opts.Hook.AfterOutcome(tx, now, a, r)
}

// Settle applies an authoritative outcome, learned from a webhook or by reading
// the PaymentIntent, to an attempt and its invoice in the caller's transaction.
// Success is recorded from any state; anything else only moves an unresolved
// attempt. moved is false when the attempt's state was already past it.
func (e *Engine) Settle(tx *store.Tx, now time.Time, a *models.ChargeAttempt, r store.AttemptResult) (moved bool, warning string, err error) {
	if r.Status == models.AttemptSucceeded {
		moved, err = tx.SettleSucceeded(now, a.ID, r)
	} else {
		moved, err = tx.SettleAttempt(now, a.ID, r)
	}
	if err != nil || !moved {
		return moved, "", err
	}
	warning, err = e.applyOutcome(tx, now, a, r)
	return true, warning, err
}

// Resolution is what reading the gateway established about an attempt.
type Resolution struct {
	// Found: the gateway has a PaymentIntent for the attempt.
	Found bool
	// Moved: the attempt's state changed.
	Moved  bool
	Status models.AttemptStatus
}

// Resolve establishes an unresolved attempt's outcome by reading the gateway's
// PaymentIntent (by id, else by merchant_order_id and the attempt's key in its
// metadata) and records it like a webhook would. An attempt the gateway has no
// PaymentIntent for is left as it is (Found false): its request never executed.
func (e *Engine) Resolve(ctx context.Context, a *models.ChargeAttempt) (Resolution, error) {
	log := Logger(e.opts.Log, a)
	out := Resolution{Status: a.Status}
	res, found, err := e.readIntent(ctx, a)
	if err != nil || !found {
		return out, err
	}
	return e.settleFromIntent(ctx, a, res, log)
}

// settleFromIntent records what the gateway's PaymentIntent res says about
// attempt a, as a webhook would: an amount or currency other than the
// attempt's is flagged needs_review and not applied; otherwise the intent's
// state settles the attempt and its invoice (an unresolved one is looked at
// again after RecheckAfter). The reconciler's Resolve and the look before
// charging an old period both end here.
func (e *Engine) settleFromIntent(ctx context.Context, a *models.ChargeAttempt, res gateway.Result, log zerolog.Logger) (Resolution, error) {
	out := Resolution{Found: true, Status: a.Status}
	now := e.opts.Clock.Now()
	if reason := AmountMismatch(a, res.Intent); reason != "" {
		// Read, not applied: the gateway's payment is not the one billingd
		// asked for. A human looks before anything else charges the invoice.
		err := e.opts.Store.InTx(ctx, func(tx *store.Tx) error {
			var err error
			out.Moved, err = e.flagMismatch(tx, now, a, res.Intent, reason)
			return err
		})
		if err != nil {
			return out, err
		}
		log.Error().Str("payment_intent", res.Intent.ID).Bool("moved", out.Moved).Msg(reason)
		if out.Moved {
			out.Status, a.Status = models.AttemptNeedsReview, models.AttemptNeedsReview
		}
		return out, nil
	}
	result := ResultOf(res)
	result.LastHTTPStatus = 0
	if result.Status == a.Status {
		return out, nil
	}
	if result.Status.Unresolved() {
		next := now.Add(e.tune.Load().RecheckAfter)
		result.NextReconcileAt = &next
	}
	failpoint.Hit(failpoint.ReconcileAfterRead)
	var warning string
	err := e.opts.Store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		out.Moved, warning, err = e.Settle(tx, now, a, result)
		return err
	})
	if err != nil {
		return out, err
	}
	if warning != "" {
		log.Error().Str("payment_intent", result.PaymentIntentID).Msg(warning)
	}
	if out.Moved {
		out.Status = result.Status
		a.Status = result.Status
		log.Info().Str("status", string(result.Status)).Str("payment_intent", result.PaymentIntentID).Msg("attempt resolved from the gateway's payment intent")
	}
	return out, nil
}

// readIntent reads the gateway's PaymentIntent of an attempt: by its id when
// the attempt has one, else among the order's intents by the attempt's key
// in their metadata. found is false when the gateway has none (the request
// never executed); err is a read that gave no definite answer.
func (e *Engine) readIntent(ctx context.Context, a *models.ChargeAttempt) (res gateway.Result, found bool, err error) {
	if a.PaymentIntentID != "" {
		res = OnSessionOutcome(a, e.opts.Gateway.RetrievePaymentIntent(ctx, a.PaymentIntentID))
		if res.Kind == gateway.Invalid && errors.Is(res.Err, gateway.ErrNotFound) {
			return res, false, nil
		}
	} else {
		pis, err := e.opts.Gateway.SearchPaymentIntentsByOrder(ctx, a.MerchantOrderID)
		if err != nil {
			return res, false, fmt.Errorf("charge: search %s: %w", a.MerchantOrderID, err)
		}
		var intent *gateway.PaymentIntent
		for i := range pis {
			if pis[i].Metadata["idempotency_key"] == a.IdempotencyKey {
				intent = &pis[i]
				break
			}
		}
		if intent == nil {
			return res, false, nil
		}
		res = OnSessionOutcome(a, gateway.ResultFromIntent(intent, 200))
	}
	if res.Kind == gateway.Transient || res.Kind == gateway.Invalid {
		return res, false, fmt.Errorf("charge: read payment intent of %s: %w", a.IdempotencyKey, res.Err)
	}
	return res, true, nil
}

// OnSessionOutcome reads an answer about a payment the customer started on
// the pay page. An issuer's "authentication required" that comes with no
// challenge to go to, after a decline (Checkout.com answers a failed or
// abandoned 3-D Secure challenge as declined with 20154, or 20151), means the
// challenge is over: for this customer-present payment it is a soft decline,
// so the invoice is free for the customer's next press, not an intent to send
// them back to. Off-session answers, and a challenge still waiting, are left
// as they are.
func OnSessionOutcome(a *models.ChargeAttempt, res gateway.Result) gateway.Result {
	if a.OffSession || res.Kind != gateway.RequiresAction || res.Intent == nil || res.Intent.LastError == nil || res.Intent.ActionURL != "" {
		return res
	}
	d := *res.Intent.LastError
	d.DeclineCode, d.Hard = gateway.DeclineAuthenticationFailed, false
	res.Kind, res.Decline = gateway.Declined, &d
	return res
}
