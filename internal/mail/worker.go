// Package mail sends billingd's dunning emails: templates (embedded defaults,
// overridable from mail.templates_dir), an SMTP sender that classifies every
// failure as temporary or permanent where it happens, and the outbox worker that
// drains the emails table.
//
// Delivery guarantees. An outbox row is written in the same transaction as the
// state change that calls for it, so no email is lost to a crash. The worker
// claims rows with a fenced lease, renders them at send time (so a pay link's
// token never rests in the database), and records "sent" only after the SMTP
// server accepted the message. A broken or unreachable server delays emails,
// never drops them: temporary failures are retried with RetryDelay for as long as
// it takes; only a permanent refusal of the recipient or message marks a row
// failed. Once the server accepted a message, a failed "sent" write (a dropped
// database connection, a full disk) is retried — never the send — until it
// lands or the process dies, with the row's lease kept alive meanwhile. What
// can still send an email twice: the process dying (a crash, SIGKILL, a power
// cut) between the server's acceptance and the commit of "sent" — the next run
// sends it again — or, on PostgreSQL, the lease running out while this
// process cannot reach the database but another instance can; both resends
// carry the same Message-ID, which lets receiving systems deduplicate them. A
// row recorded as sent is never sent again.
package mail

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// LinkMinter creates the pay or card-update link of an email (e.LinkPurpose) at
// send time: a pay_links row holding only the token's hash, in its own
// transaction, and the URL with the raw token. Minting at send time keeps tokens
// out of the outbox; a retried email gets a fresh link on each attempt.
type LinkMinter interface {
	Mint(ctx context.Context, e *models.Email, now time.Time) (url string, err error)
}

// Defaults for zero Worker fields.
const (
	DefaultLeaseFor = 5 * time.Minute
	DefaultBatch    = 20
)

// Worker drains the email outbox. Several workers (in several instances on
// PostgreSQL) may run at once; leases keep them off each other's rows.
//
// LeaseFor must comfortably exceed the time one send can take (the SMTP
// timeout): a row whose lease has less than half of LeaseFor left is not sent in
// this run, so that another worker that reclaims it after expiry cannot send it
// at the same time.
type Worker struct {
	Store     *store.Store
	Sender    Sender
	Templates *Templates
	Links     LinkMinter // may be nil when no email carries a link
	Clock     clock.Clock
	From      string // mail.from, e.g. "Billing <billing@example.com>"
	Owner     string // lease owner, unique per process (host:pid)
	LeaseFor  time.Duration
	Batch     int
	Log       zerolog.Logger
	Metrics   *metrics.Metrics // may be nil
	// SentWriteWait, when set, replaces the real-time sleep between tries of
	// the "sent" write after the SMTP server accepted an email (tests).
	SentWriteWait func(time.Duration) error
}

// Summary counts what one RunOnce did.
type Summary struct {
	Sent     int
	Retried  int
	Failed   int
	Canceled int
	// LeaseLost counts rows whose result could not be recorded because another
	// worker had taken them over; they are that worker's now.
	LeaseLost int
}

// RetryDelay is how long a temporarily failed email waits before its next
// attempt, given how many attempts were made (1 after the first failure): 30s,
// 1m, 2m, 4m, … capped at 30m. It is deterministic (no jitter) so that tests on an
// injected clock can assert the exact schedule; one worker sends sequentially,
// so there is no thundering herd to spread.
func RetryDelay(attempt int) time.Duration {
	const base, ceiling = 30 * time.Second, 30 * time.Minute
	if attempt <= 1 {
		return base
	}
	if attempt > 12 {
		return ceiling
	}
	d := base << (attempt - 1)
	if d > ceiling {
		return ceiling
	}
	return d
}

// writeTimeout bounds recording an outcome once a send is over. Recording runs
// without the caller's cancellation: an email the server accepted must be marked
// sent even when shutdown began meanwhile, or it would be sent again.
const writeTimeout = 15 * time.Second

// RunOnce claims due emails batch after batch until none is left and handles
// each: emails that ask the customer to pay an invoice that is no longer open
// are canceled (never ask a customer to pay a paid invoice); the others get
// their link, are rendered and sent. It returns an error only when the database
// fails; a row it could not finish keeps its lease and is picked up again after
// the lease expires.
func (w *Worker) RunOnce(ctx context.Context) (Summary, error) {
	return w.RunOnceUntil(ctx, context.Background())
}

// RunOnceUntil is RunOnce under a shutdown with two steps: ctx (the first
// signal) stops claiming and sending, abort (the second) also ends the retries
// of a "sent" write for an email the SMTP server already accepted, which
// otherwise go on through shutdown. An email left that way may be sent again
// by the next run, with the same Message-ID; that is logged at error level.
func (w *Worker) RunOnceUntil(ctx, abort context.Context) (Summary, error) {
	var sum Summary
	if w.Store == nil || w.Sender == nil || w.Templates == nil || w.Clock == nil {
		return sum, errors.New("mail: worker needs Store, Sender, Templates and Clock")
	}
	leaseFor, batch := w.LeaseFor, w.Batch
	if leaseFor <= 0 {
		leaseFor = DefaultLeaseFor
	}
	if batch <= 0 {
		batch = DefaultBatch
	}
	for {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		now := w.Clock.Now()
		claimed, err := w.Store.ClaimDueEmails(ctx, w.Owner, now, now.Add(leaseFor), batch)
		if err != nil {
			return sum, err
		}
		for i := range claimed {
			if err := ctx.Err(); err != nil {
				return sum, err
			}
			if err := w.handle(ctx, abort, &claimed[i], leaseFor, &sum); err != nil {
				return sum, err
			}
		}
		if len(claimed) < batch {
			return sum, nil
		}
	}
}

// handle processes one claimed row. It returns an error only for database
// failures.
func (w *Worker) handle(ctx, abort context.Context, e *models.Email, leaseFor time.Duration, sum *Summary) error {
	// Never log bodies or links: they carry pay tokens. The Message-ID is safe and
	// lets ops match a bounce to its row.
	log := w.Log.With().Int64("email_id", e.ID).Str("kind", string(e.Kind)).
		Str("message_id", e.MessageID).Logger()
	if e.InvoiceID != nil {
		log = log.With().Int64("invoice_id", *e.InvoiceID).Logger()
	}
	if e.SubscriptionID != nil {
		log = log.With().Int64("subscription_id", *e.SubscriptionID).Logger()
	}
	if e.CaseID != nil {
		log = log.With().Int64("case_id", *e.CaseID).Logger()
	}
	now := w.Clock.Now()
	if e.LeaseUntil != nil && e.LeaseUntil.Sub(now) < leaseFor/2 {
		log.Warn().Time("lease_until", *e.LeaseUntil).Msg("email lease nearly expired before its turn; leaving it for the next run")
		return nil
	}
	ec, err := w.Store.EmailContext(ctx, e.ID)
	if errors.Is(err, store.ErrEmailNotFound) {
		// Cannot happen with the schema's foreign keys; if it does, skip the row
		// (its lease keeps other runs off it for a while) rather than let one bad
		// row stop the whole queue.
		log.Error().Err(err).Msg("email has no invoice to render; skipped")
		return nil
	}
	if err != nil {
		return fmt.Errorf("mail: email %d: %w", e.ID, err)
	}

	if asksToPay(e.Kind) && ec.InvoiceStatus != models.InvoiceOpen {
		reason := fmt.Sprintf("invoice is %s; the email is no longer relevant", ec.InvoiceStatus)
		_, err := w.record(ctx, log, sum, "canceled", func(wctx context.Context) error {
			return w.Store.MarkEmailCanceled(wctx, w.Clock.Now(), e, reason)
		})
		return err
	}

	if e.Kind == models.EmailCardExpiring {
		if reason := cardNoticeMoot(ec); reason != "" {
			_, err := w.record(ctx, log, sum, "canceled", func(wctx context.Context) error {
				return w.Store.MarkEmailCanceled(wctx, w.Clock.Now(), e, reason)
			})
			return err
		}
	}

	link := ""
	if e.LinkPurpose != "" {
		if w.Links == nil {
			return w.retry(ctx, log, sum, e, errors.New("no link minter configured for emails with links"), true)
		}
		link, err = w.Links.Mint(ctx, e, now)
		if err != nil {
			return w.retry(ctx, log, sum, e, fmt.Errorf("minting the %s link: %w", e.LinkPurpose, err), true)
		}
	}
	r, err := w.Templates.Render(e.Kind, w.templateData(ec, link, now))
	if err != nil {
		// Templates are checked at startup; what fails here depends on the row's
		// data. Retrying lets a fixed template (after a restart) still send it.
		return w.retry(ctx, log, sum, e, fmt.Errorf("rendering: %w", err), true)
	}
	to := e.ToAddress
	if to == "" {
		to = ec.CustomerEmail
	}
	err = w.Sender.Send(ctx, &Outgoing{From: w.From, To: to, Subject: r.Subject, Text: r.Text, HTML: r.HTML,
		MessageID: e.MessageID, Date: now})
	switch {
	case err == nil:
		failpoint.Hit(failpoint.MailAfterSend)
		e.Subject = r.Subject
		w.recordSent(ctx, abort, log, sum, e, leaseFor)
		return nil
	case Permanent(err):
		msg := err.Error()
		recorded, rerr := w.record(ctx, log, sum, "failed", func(wctx context.Context) error {
			return w.Store.MarkEmailFailed(wctx, w.Clock.Now(), e, msg)
		})
		if recorded {
			log.Error().Err(err).Int("attempts", e.Attempts).Msg("mail server permanently refused the email; it will not be retried")
		}
		return rerr
	default:
		var se *SendError
		loud := errors.As(err, &se) && se.Config
		return w.retry(ctx, log, sum, e, err, loud)
	}
}

// Bounds of the backoff between tries of the "sent" write (recordSent).
const (
	sentRetryFirst = 100 * time.Millisecond
	sentRetryMax   = 5 * time.Second
)

// recordSent records that the SMTP server accepted e. The server has the
// message now, so sending it again is never the answer to a failed write: the
// write is retried, with backoff from sentRetryFirst doubling to sentRetryMax,
// until it lands, the process dies or shutdown is aborted (a second signal or
// the drain timeout) — through the first stop signal too, since a row left
// pending would be sent again by the next run. Meanwhile the worker keeps the
// row's lease alive (ExtendEmailLease, whenever less than half of it is left),
// so that no other worker reclaims the row and sends it a second time; only if
// the lease could not be kept and another worker took the row over is a second
// send possible, and that is logged at error level (same Message-ID).
func (w *Worker) recordSent(ctx, abort context.Context, log zerolog.Logger, sum *Summary, e *models.Email, leaseFor time.Duration) {
	wait := sentRetryFirst
	for try := 1; ; try++ {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		err := w.Store.MarkEmailSent(wctx, w.Clock.Now(), e)
		cancel()
		switch {
		case err == nil:
			sum.Sent++
			w.count("sent")
			if try > 1 {
				log.Info().Int("tries", try).Msg("email sent; marking it sent took several tries, it was not sent again")
			} else {
				log.Info().Msg("email sent")
			}
			return
		case errors.Is(err, store.ErrLeaseLost):
			w.lostAfterSend(ctx, log, sum, e, try)
			return
		}
		log.Error().Err(err).Int("try", try).Dur("next_try_in", wait).
			Msg("the SMTP server accepted the email but marking it sent failed; retrying the write (the email is not sent again)")
		if w.keepLease(ctx, log, e, leaseFor) {
			w.lostAfterSend(ctx, log, sum, e, try+1)
			return
		}
		if w.wait(abort, wait) != nil {
			sum.LeaseLost++
			w.count("lease_lost")
			log.Error().Int("tries", try).Msg("shutdown aborted while marking an accepted email sent; the next run may send it again (same Message-ID)")
			return
		}
		wait = min(2*wait, sentRetryMax)
	}
}

// lostAfterSend handles a "sent" write (or lease extension) that found the row
// no longer under this worker's lease. After a failed try that may be this
// worker's own earlier write, which committed although its answer was lost:
// then the row is sent and all is well. Otherwise another worker took the row
// over and may send it again.
func (w *Worker) lostAfterSend(ctx context.Context, log zerolog.Logger, sum *Summary, e *models.Email, try int) {
	if try > 1 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		row, err := w.Store.EmailByID(rctx, e.ID)
		cancel()
		if err == nil && row.Status == models.EmailSent && row.LeaseOwner == "" {
			sum.Sent++
			w.count("sent")
			log.Info().Int("tries", try).Msg("email sent; an earlier try of marking it sent had landed although its answer was lost")
			return
		}
	}
	sum.LeaseLost++
	w.count("lease_lost")
	ev := log.Warn()
	if try > 1 {
		ev = log.Error()
	}
	ev.Msg("email lease was taken over by another worker after the SMTP server accepted it; outcome not recorded (the other worker may send it again, same Message-ID)")
}

// keepLease extends the lease of an accepted email whose "sent" write keeps
// failing once less than half of leaseFor is left. It reports lost when the
// row is no longer under this worker's lease.
func (w *Worker) keepLease(ctx context.Context, log zerolog.Logger, e *models.Email, leaseFor time.Duration) (lost bool) {
	now := w.Clock.Now()
	if e.LeaseUntil != nil && e.LeaseUntil.Sub(now) >= leaseFor/2 {
		return false
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	err := w.Store.ExtendEmailLease(wctx, now, now.Add(leaseFor), e)
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		return true
	case err != nil && e.LeaseUntil != nil && !now.Before(*e.LeaseUntil):
		log.Error().Err(err).Time("lease_until", *e.LeaseUntil).Msg("the email's lease ran out while marking it sent kept failing; another instance may take it over and send it again (same Message-ID)")
	}
	return false
}

// wait sleeps between tries of the "sent" write: on the real clock, because
// the database it waits for lives on it, and without the caller's
// cancellation (see recordSent) — only an abort (a second shutdown signal)
// ends it, with the abort's error.
func (w *Worker) wait(abort context.Context, d time.Duration) error {
	if err := abort.Err(); err != nil {
		return err
	}
	if w.SentWriteWait != nil {
		if err := w.SentWriteWait(d); err != nil {
			return err
		}
		return abort.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-abort.Done():
		return abort.Err()
	}
}

// asksToPay reports whether an email asks the customer to act on an unpaid
// invoice, which only makes sense while the invoice is open.
func asksToPay(k models.EmailKind) bool {
	return k == models.EmailActionRequired || k == models.EmailPaymentFailed || k == models.EmailCardUpdate
}

// cardNoticeMoot says why an expiring-card email waiting in the outbox no
// longer applies when its turn comes ("" while it does): the subscription
// stopped being billed, or its card (replaced, or renewed by an account
// updater) no longer expires before the next charge.
func cardNoticeMoot(ec *store.EmailContext) string {
	switch {
	case !ec.SubscriptionStatus.Billable():
		return fmt.Sprintf("subscription is %s; the card notice is no longer relevant", ec.SubscriptionStatus)
	case !ec.Card.ExpiresBy(ec.NextBillingAt):
		return "the subscription's card no longer expires before its next charge; the card notice is no longer relevant"
	}
	return ""
}

// retry schedules the next attempt after a temporary failure. loud failures
// (billingd's own configuration) are logged at error level: they repeat until
// someone acts, while emails wait.
func (w *Worker) retry(ctx context.Context, log zerolog.Logger, sum *Summary, e *models.Email, cause error, loud bool) error {
	now := w.Clock.Now()
	next := now.Add(RetryDelay(e.Attempts + 1))
	recorded, err := w.record(ctx, log, sum, "retried", func(wctx context.Context) error {
		return w.Store.MarkEmailRetry(wctx, now, e, next, cause.Error())
	})
	if !recorded {
		return err
	}
	ev := log.Warn()
	msg := "email not sent; will retry"
	if loud {
		ev = log.Error()
		msg = "email not sent because of a mail configuration problem; will retry, fix mail settings"
	}
	ev.Err(cause).Int("attempts", e.Attempts).Time("next_attempt_at", next).Msg(msg)
	return nil
}

// record writes an outcome and counts it. A lost lease is a warning, not an
// error: the row belongs to another worker now, which records its own outcome;
// recorded is false then.
func (w *Worker) record(ctx context.Context, log zerolog.Logger, sum *Summary, outcome string, write func(context.Context) error) (recorded bool, err error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	err = write(wctx)
	if errors.Is(err, store.ErrLeaseLost) {
		sum.LeaseLost++
		w.count("lease_lost")
		log.Warn().Str("outcome", outcome).Msg("email lease was taken over by another worker; outcome not recorded")
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mail: recording %s: %w", outcome, err)
	}
	switch outcome {
	case "sent":
		sum.Sent++
		log.Info().Msg("email sent")
	case "retried":
		sum.Retried++
	case "failed":
		sum.Failed++
	case "canceled":
		sum.Canceled++
		log.Info().Msg("email canceled: no longer relevant")
	}
	w.count(outcome)
	return true, nil
}

// count feeds billingd_emails_total{outcome}.
func (w *Worker) count(outcome string) { w.Metrics.Email(outcome) }

// templateData maps a row's context to what templates see. A retry date already
// past (the email was delayed) is not shown: it would promise something that
// did not happen.
func (w *Worker) templateData(ec *store.EmailContext, link string, now time.Time) TemplateData {
	next := ec.NextRetryAt
	if next != nil && !next.After(now) {
		next = nil
	}
	return TemplateData{
		Merchant:      MerchantName(w.From),
		CustomerEmail: ec.CustomerEmail,
		Reference:     ec.Reference,
		Description:   strings.TrimSpace(ec.Description),
		Invoice:       ec.InvoicePublicID,
		Amount:        ec.Amount,
		Currency:      ec.Currency,
		PeriodStart:   ec.PeriodStart,
		PeriodEnd:     ec.PeriodEnd,
		NextRetryAt:   next,
		DeclineCode:   ec.DeclineCode,
		FinalAction:   ec.FinalAction,
		PaidAt:        ec.PaidAt,
		Link:          link,
		Card: Card{Brand: ec.Card.Brand, Last4: ec.Card.Last4,
			ExpMonth: ec.Card.ExpMonth, ExpYear: ec.Card.ExpYear},
		NextChargeAt: ec.NextBillingAt,
	}
}
