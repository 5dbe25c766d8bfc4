package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/budget"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

//go:embed pages/*.html
var pageFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{"money": money.Format}).ParseFS(pageFS, "pages/*.html"))

// PayPages serves the links dunning emails carry: GET shows what is owed with
// one button; POST pays on-session with the saved card (redirecting to the 3-D
// Secure challenge when the bank asks) or opens the gateway's hosted page to save
// a new card; the return page shows the state the database holds — established
// by the webhook or by reading the PaymentIntent — never success from the
// redirect alone.
type PayPages struct {
	Store    *store.Store
	Dunning  *dunning.Service
	Engine   *charge.Engine
	Sessions gateway.SetupSessions
	Clock    clock.Clock
	// Merchant is the name customers see.
	Merchant      string
	PublicBaseURL string
	Owner         string
	// ChargesPerHour is dunning.link_charges_per_hour: the customer charges
	// links may start per invoice and per card in any rolling hour.
	ChargesPerHour int
	Log            zerolog.Logger
}

// Register mounts the pay routes on s: at the root and, when
// http.public_base_url has a path (https://example.com/billing), under that
// path too, so the pages work whether the proxy in front strips the prefix or
// passes it on.
func (p *PayPages) Register(s *Server) {
	for _, pre := range routePrefixes(p.PublicBaseURL) {
		s.Handle("GET "+pre+"/pay/{token}", customerFacing(p.show))
		s.Handle("POST "+pre+"/pay/{token}", customerFacing(p.act))
		s.Handle("GET "+pre+"/pay/{token}/return", customerFacing(p.returnedByToken))
		s.Handle("GET "+pre+"/return/{rid}", customerFacing(p.returned))
	}
}

// customerFacing marks a pay page's requests so that the gateway calls made
// while a customer waits take from the part of the rate reserved for pay
// pages (cluster.pay_page_share) before the rest.
func customerFacing(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(w, r.WithContext(budget.CustomerFacing(r.Context())))
	})
}

// routePrefixes is "" and the path of the public base URL, if it has one that
// can be mounted beside the root routes.
func routePrefixes(base string) []string {
	out := []string{""}
	u, err := url.Parse(base)
	if err != nil {
		return out
	}
	pre := strings.TrimRight(u.Path, "/")
	first, _, _ := strings.Cut(strings.TrimPrefix(pre, "/"), "/")
	if pre == "" || first == "pay" || first == "return" || strings.ContainsAny(pre, "{}* \t") {
		return out
	}
	return append(out, pre)
}

type pageData struct {
	Merchant    string
	Title       string
	Message     string
	Amount      int64
	Currency    string
	Invoice     string
	Description string
	Purpose     models.LinkPurpose
	// PayURL is where the page's forms post: the link itself, under
	// http.public_base_url (its path prefix included).
	PayURL string
	// Limit is dunning.link_charges_per_hour, explained on the pay page.
	Limit int
	// CardDead: the saved card cannot be charged; only a new card helps.
	CardDead bool
	State    string // paid, pending, failed, action, open
	Refresh  bool
	Status   int
	// Card is the saved card the page is about (brand, last 4, expiry).
	Card store.CardOnFile
	// SubscriptionOnly: the link belongs to a subscription and no invoice
	// (the expiring-card notice); the page can only replace the card.
	SubscriptionOnly bool
	// NextChargeAt is the subscription's next charge (SubscriptionOnly).
	NextChargeAt *time.Time
}

func (p *PayPages) render(w http.ResponseWriter, name string, d pageData) {
	h := w.Header()
	// The token is the credential: keep it out of caches, referrers and frames.
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// No form-action: browsers apply it to the redirect after the form post too,
	// and that redirect goes to the bank's 3-D Secure page or the gateway's card
	// page, whose origins billingd cannot know in advance.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	if d.Merchant == "" {
		d.Merchant = p.Merchant
	}
	if d.Status == 0 {
		d.Status = http.StatusOK
	}
	w.WriteHeader(d.Status)
	if err := pages.ExecuteTemplate(w, name, d); err != nil {
		p.Log.Error().Err(err).Str("page", name).Msg("rendering pay page")
	}
}

// message renders a page with a title and a sentence and nothing about any
// invoice.
func (p *PayPages) message(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, "message.html", pageData{Title: title, Message: msg, Status: status})
}

// linkError renders the page for an unusable link. It says what is wrong with
// the link and nothing about any invoice.
func (p *PayPages) linkError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, dunning.ErrLinkUnknown):
		p.message(w, http.StatusNotFound, "Link not valid", "This payment link is not valid. Please use the link from your most recent email.")
	case errors.Is(err, dunning.ErrLinkExpired):
		p.message(w, http.StatusGone, "Link expired", "This payment link has expired. We will email you a new one, or contact us.")
	case errors.Is(err, dunning.ErrLinkSettled):
		p.message(w, http.StatusGone, "Nothing to pay", "This invoice is already settled. Thank you — there is nothing more to do.")
	default:
		p.Log.Error().Err(err).Msg("pay link lookup failed")
		p.message(w, http.StatusServiceUnavailable, "Something went wrong", "We could not load this page. Please try again in a minute.")
	}
}

func (p *PayPages) now() time.Time {
	if p.Clock == nil {
		return time.Now().UTC()
	}
	return p.Clock.Now()
}

func (p *PayPages) show(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	l, err := p.Dunning.Lookup(r.Context(), token, p.now())
	if err != nil {
		p.linkError(w, err)
		return
	}
	p.render(w, "pay.html", p.dataFor(l, token))
}

func (p *PayPages) dataFor(l *dunning.Link, token string) pageData {
	d := pageData{Amount: l.Invoice.Amount, Currency: l.Invoice.Currency, Invoice: l.Invoice.PublicID,
		Description: l.Invoice.Description, Purpose: l.Purpose, PayURL: p.PublicBaseURL + "/pay/" + token, Limit: p.ChargesPerHour,
		Card: l.Invoice.Card(), SubscriptionOnly: l.SubscriptionOnly()}
	if d.SubscriptionOnly {
		// Whatever the stored purpose says, this link only replaces the card.
		d.Purpose, d.NextChargeAt = models.LinkUpdateCard, l.Invoice.NextBillingAt
	}
	return d
}

// linkLog names the link (and its invoice or subscription) in log lines.
func (p *PayPages) linkLog(l *dunning.Link) zerolog.Logger {
	c := p.Log.With().Int64("pay_link_id", l.ID)
	if l.InvoiceID != nil {
		c = c.Int64("invoice_id", *l.InvoiceID).Str("invoice", l.Invoice.PublicID)
	} else {
		c = c.Int64("subscription_id", l.Invoice.SubscriptionID).Str("subscription", l.Invoice.Reference)
	}
	return c.Logger()
}

// returnURL is where the gateway sends the customer back to: it carries the
// link's return id, never the token.
func (p *PayPages) returnURL(token string) string {
	return p.PublicBaseURL + "/return/" + dunning.ReturnID(token)
}

func (p *PayPages) act(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	now := p.now()
	l, err := p.Dunning.Lookup(r.Context(), token, now)
	if err != nil {
		p.linkError(w, err)
		return
	}
	log := p.linkLog(l)
	if err := p.Store.InTx(r.Context(), func(tx *store.Tx) error { return tx.TouchPayLink(now, l.ID) }); err != nil {
		log.Error().Err(err).Msg("recording pay link use")
	}
	// A card-update link (and every link scoped to a subscription) only ever
	// replaces the card, whatever the form says: it never charges the saved
	// one.
	if l.Purpose == models.LinkUpdateCard || l.SubscriptionOnly() || r.FormValue("action") == "update_card" {
		p.updateCard(w, r, l, token, log)
		return
	}
	p.pay(w, r, l, token, log)
}

// pay charges the saved card on-session, following the charge protocol (the
// attempt is committed before the request is sent) and the rule of one open
// customer payment per invoice: while the invoice's intent waits for the
// customer's 3-D Secure check, a press started on a link goes back to that
// same challenge; an off-session intent waiting (it has no way back to this
// page) is canceled at the gateway first, and only once the cancel is
// definite does the on-session one start.
func (p *PayPages) pay(w http.ResponseWriter, r *http.Request, l *dunning.Link, token string, log zerolog.Logger) {
	back := p.returnURL(token)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	for round := 0; ; round++ {
		press, err := p.press(ctx, l)
		if err != nil {
			log.Error().Err(err).Msg("could not start an on-session attempt")
			p.message(w, http.StatusServiceUnavailable, "Something went wrong", "We could not start the payment. Please try again in a minute.")
			return
		}
		switch {
		case press.Attempt != nil:
			p.send(ctx, w, r, l, token, press.Attempt, log)
			return
		case press.Refused == store.PressDeadCard:
			d := p.dataFor(l, token)
			d.CardDead, d.State = true, "failed"
			d.Message = "Your bank told us this card can no longer be charged, so we will not try it again. Please add a new card."
			p.render(w, "pay.html", d)
			return
		case press.Refused == store.PressLimit:
			log.Warn().Int("link_charges_per_hour", p.ChargesPerHour).Msg("pay link press refused: hourly cap of customer charges reached")
			d := p.dataFor(l, token)
			d.Status, d.State, d.Title = http.StatusTooManyRequests, "failed", "Too many attempts"
			d.Message = fmt.Sprintf("To protect your card we start at most %d payments per hour for an invoice and for a card, and that limit is reached. Please try again in an hour, or add a different card.", p.ChargesPerHour)
			p.render(w, "pay.html", d)
			return
		case press.Refused == store.PressReview:
			p.message(w, http.StatusConflict, "We are checking an earlier payment",
				"An earlier payment for this invoice is being checked by our team, so we cannot start a new one now. Nothing more was charged. Please contact us if you have questions.")
			return
		case press.Refused == store.PressBusy:
			p.message(w, http.StatusServiceUnavailable, "One moment", "Another payment for this invoice is starting right now. Please wait a moment and reload this page.")
			return
		case press.Refused != "":
			http.Redirect(w, r, back, http.StatusSeeOther)
			return
		}
		o := press.Open
		switch {
		case o.Status != models.AttemptRequiresAction:
			// Still being processed: the return page shows how it ends.
			http.Redirect(w, r, back, http.StatusSeeOther)
			return
		case !o.OffSession && o.CancelRequestedAt == nil && o.ActionURL != "":
			log.Info().Int64("attempt_id", o.ID).Msg("payment already waiting for the customer's authentication: sent back to its challenge")
			http.Redirect(w, r, o.ActionURL, http.StatusSeeOther)
			return
		}
		// An intent waits that cannot bring the customer back here (begun
		// off-session), or whose cancel is already decided: cancel it at the
		// gateway, recorded first, and start anew only once that is definite.
		if round > 0 || (o.CancelNextTryAt != nil && o.CancelNextTryAt.After(p.now())) {
			p.closingEarlier(w)
			return
		}
		if o.CancelRequestedAt == nil {
			err := p.Store.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.RequestCancel(p.now(), o.ID, models.CancelSuperseded)
				return err
			})
			if err != nil {
				log.Error().Err(err).Msg("could not record the cancel of the waiting intent")
				p.closingEarlier(w)
				return
			}
			o.CancelReason = models.CancelSuperseded
		}
		out, err := p.Engine.CancelWaiting(ctx, o)
		if err != nil {
			log.Warn().Err(err).Msg("canceling the waiting intent")
		}
		switch out {
		case charge.CancelDone, charge.CancelMoved:
			continue // the invoice is free (or settled): look again
		case charge.CancelPaid:
			http.Redirect(w, r, back, http.StatusSeeOther)
			return
		}
		p.closingEarlier(w)
		return
	}
}

func (p *PayPages) closingEarlier(w http.ResponseWriter) {
	p.message(w, http.StatusServiceUnavailable, "Closing an earlier payment",
		"An earlier payment request for this invoice is still open with your bank. We are closing it so that you cannot be charged twice; please try again in a few minutes.")
}

// press takes the invoice for a new on-session attempt; a concurrent press on
// PostgreSQL holds the invoice row for a moment only, so it is asked again a
// few times before the customer is told.
func (p *PayPages) press(ctx context.Context, l *dunning.Link) (store.Press, error) {
	for i := 0; ; i++ {
		now := p.now()
		var press store.Press
		err := p.Store.InTx(ctx, func(tx *store.Tx) error {
			var err error
			press, err = tx.StartOnSessionAttempt(now, l.Invoice, p.Owner, now.Add(2*time.Minute), p.ChargesPerHour)
			return err
		})
		if err != nil || press.Refused != store.PressBusy || i == 20 {
			return press, err
		}
		select {
		case <-ctx.Done():
			return press, nil
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// send sends a committed on-session attempt and shows its outcome.
func (p *PayPages) send(ctx context.Context, w http.ResponseWriter, r *http.Request, l *dunning.Link, token string, a *models.ChargeAttempt, log zerolog.Logger) {
	status, res, err := p.Engine.ExecuteOnSession(ctx, a, p.returnURL(token))
	if err != nil && !errors.Is(err, store.ErrLeaseLost) {
		log.Warn().Err(err).Msg("on-session attempt not recorded; the reconciler will settle it")
	}
	switch {
	case status == models.AttemptRequiresAction && res.Intent != nil && res.Intent.ActionURL != "":
		http.Redirect(w, r, res.Intent.ActionURL, http.StatusSeeOther)
	case status == models.AttemptDeclined || status == models.AttemptFailed || status == models.AttemptCanceled:
		d := p.dataFor(l, token)
		d.State = "failed"
		d.Message = declineMessage(status, res)
		p.render(w, "pay.html", d)
	default:
		http.Redirect(w, r, p.returnURL(token), http.StatusSeeOther)
	}
}

// updateCard sends the customer to the gateway's hosted page to save a card; the
// setup_intent.succeeded webhook (with this invoice in its metadata) makes it the
// subscription's card and retries at once. The success and cancel URLs carry
// the link's return id, not its token.
func (p *PayPages) updateCard(w http.ResponseWriter, r *http.Request, l *dunning.Link, token string, log zerolog.Logger) {
	if p.Sessions == nil {
		p.message(w, http.StatusServiceUnavailable, "Not available", "Updating your card is not available right now. Please contact us.")
		return
	}
	key, err := dunning.NewToken()
	if err != nil {
		p.linkError(w, err)
		return
	}
	back := p.returnURL(token)
	// The card is verified in the currency it will be charged in
	// (Checkout.com verifies a card with a zero-amount payment).
	meta := map[string]string{"invoice": l.Invoice.PublicID, "subscription": l.Invoice.Reference, "currency": l.Invoice.Currency}
	keyScope := l.Invoice.PublicID
	if l.SubscriptionOnly() {
		// No invoice: the saved card becomes the subscription's (and lets
		// an open dunning case of it proceed), charging nothing here.
		delete(meta, "invoice")
		keyScope = "sub-" + l.Invoice.Reference
	}
	sess, err := p.Sessions.CreateSetupCheckoutSession(r.Context(), gateway.SetupSessionRequest{
		Customer:       l.Invoice.GatewayCustomer,
		SuccessURL:     back + "?card=saved",
		CancelURL:      back + "?card=canceled",
		Metadata:       meta,
		IdempotencyKey: "setup-" + keyScope + "-" + key[:16],
	})
	if err != nil {
		log.Error().Err(err).Msg("could not create the card-update session")
		p.message(w, http.StatusBadGateway, "Something went wrong", "We could not open the card form. Please try again in a minute.")
		return
	}
	log.Info().Str("checkout_session", sess.ID).Msg("customer sent to the hosted card form")
	http.Redirect(w, r, sess.URL, http.StatusSeeOther)
}

// returned is the page the gateway sends the customer back to, by the link's
// return id. It shows the state the database holds and nothing about the
// invoice (no id, no amount): the return id travels through the gateway and
// its stored webhooks, so it must not open more than this.
func (p *PayPages) returned(w http.ResponseWriter, r *http.Request) {
	l, err := p.Dunning.LookupReturn(r.Context(), r.PathValue("rid"), p.now())
	if err != nil {
		p.linkError(w, err)
		return
	}
	p.showState(w, r, l)
}

// returnedByToken is the return page of links whose intents began before
// return ids existed; it shows the same as returned.
func (p *PayPages) returnedByToken(w http.ResponseWriter, r *http.Request) {
	l, err := p.Dunning.Lookup(r.Context(), r.PathValue("token"), p.now())
	if err != nil && !errors.Is(err, dunning.ErrLinkSettled) {
		p.linkError(w, err)
		return
	}
	p.showState(w, r, l)
}

// showState renders what the database says. If the last attempt is still open
// it reads the PaymentIntent once (the webhook may be slower than the customer).
func (p *PayPages) showState(w http.ResponseWriter, r *http.Request, l *dunning.Link) {
	if l.SubscriptionOnly() {
		p.showCardState(w, r, l)
		return
	}
	status := l.Invoice.Status
	invoiceID := *l.InvoiceID
	if status == models.InvoiceOpen {
		if a, err := p.Store.LatestAttempt(r.Context(), invoiceID); err == nil && a != nil && (a.Status.Unresolved() || a.Status == models.AttemptRequiresAction) && a.PaymentIntentID != "" {
			if _, err := p.Engine.Resolve(r.Context(), a); err != nil {
				p.Log.Warn().Err(err).Int64("attempt_id", a.ID).Msg("reading the payment intent for the return page")
			}
			if ic, err := p.Store.InvoiceContact(r.Context(), invoiceID); err == nil && ic != nil {
				status = ic.Status
			}
		}
	}
	var d pageData
	switch {
	case status == models.InvoicePaid:
		d.State, d.Title = "paid", "Payment received"
		d.Message = "Thank you — your payment was received. There is nothing more to do."
	case status != models.InvoiceOpen:
		d.State, d.Title, d.Message = "closed", "Nothing to pay", "There is nothing to pay here. Please contact us if you have questions."
	default:
		a, _ := p.Store.LatestAttempt(r.Context(), invoiceID)
		switch {
		case r.URL.Query().Get("card") == "saved":
			d.State, d.Title, d.Refresh = "pending", "Card saved", true
			d.Message = "Thank you. We are charging your new card now; this page updates by itself."
		case r.URL.Query().Get("card") == "canceled":
			d.State, d.Title = "failed", "No card saved"
			d.Message = "No new card was saved. Open the link in your email again to try once more."
		case a != nil && (a.Status.Unresolved()):
			d.State, d.Title, d.Refresh = "pending", "Payment processing", true
			d.Message = "Your payment is being processed. This page updates by itself; we will also email you a receipt."
		case a != nil && a.Status == models.AttemptRequiresAction && !a.OffSession:
			d.State, d.Title, d.Refresh = "pending", "Waiting for your bank", true
			d.Message = "We have not heard from your bank yet. If you completed the check, this page updates by itself."
		default:
			d.State, d.Title = "failed", "Payment not completed"
			d.Message = "The payment was not completed. Open the link in your email again to try once more or to use another card."
		}
	}
	p.render(w, "return.html", d)
}

// showCardState is the return page of a subscription-scoped link: it says a
// card was saved only once the webhook recorded it (the subscription's card is
// newer than the link), and otherwise waits, refreshing itself.
func (p *PayPages) showCardState(w http.ResponseWriter, r *http.Request, l *dunning.Link) {
	saved := l.Invoice.CardCreatedAt != nil && l.Invoice.CardCreatedAt.After(l.CreatedAt)
	d := pageData{Card: l.Invoice.Card(), SubscriptionOnly: true}
	switch {
	case saved:
		d.State, d.Title = "paid", "Card saved"
		d.Message = "Thank you — your new card is saved and will be used for your next payments. There is nothing more to do."
	case r.URL.Query().Get("card") == "saved":
		d.State, d.Title, d.Refresh = "pending", "Saving your card", true
		d.Message = "Thank you. We are waiting for the payment provider to confirm your new card; this page updates by itself."
	case r.URL.Query().Get("card") == "canceled":
		d.State, d.Title = "failed", "No card saved"
		d.Message = "No new card was saved. Open the link in your email again to try once more."
	default:
		d.State, d.Title = "open", "No new card yet"
		d.Message = "No new card has been saved yet. Open the link in your email to replace your card."
	}
	p.render(w, "return.html", d)
}

// declineMessage is what the pay page says about a refused payment. A decline
// is explained with the decline catalogue's words (the same the emails use);
// a refusal of billingd's own request is not blamed on the customer's bank.
func declineMessage(status models.AttemptStatus, res gateway.Result) string {
	if status == models.AttemptFailed {
		return "We could not take this payment because of a problem on our side. Nothing was charged; please try again later."
	}
	msg := "Your bank declined this payment"
	if res.Decline != nil {
		if words := gateway.DeclineWords(res.Decline.Reason()); words != "" {
			msg = "This payment did not go through: " + words
		}
	}
	return msg + ". You can try another card."
}
