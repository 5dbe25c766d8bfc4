package web

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/gateway"
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
	Log           zerolog.Logger
}

// Register mounts the pay routes on s.
func (p *PayPages) Register(s *Server) {
	s.Handle("GET /pay/{token}", http.HandlerFunc(p.show))
	s.Handle("POST /pay/{token}", http.HandlerFunc(p.act))
	s.Handle("GET /pay/{token}/return", http.HandlerFunc(p.returned))
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
	Token       string
	State       string // paid, pending, failed, action, open
	Refresh     bool
	Status      int
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

// linkError renders the page for an unusable link. It says what is wrong with
// the link and nothing about any invoice.
func (p *PayPages) linkError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, dunning.ErrLinkUnknown):
		p.render(w, "message.html", pageData{Title: "Link not valid", Message: "This payment link is not valid. Please use the link from your most recent email.", Status: http.StatusNotFound})
	case errors.Is(err, dunning.ErrLinkExpired):
		p.render(w, "message.html", pageData{Title: "Link expired", Message: "This payment link has expired. We will email you a new one, or contact us.", Status: http.StatusGone})
	case errors.Is(err, dunning.ErrLinkSettled):
		p.render(w, "message.html", pageData{Title: "Nothing to pay", Message: "This invoice is already settled. Thank you — there is nothing more to do.", Status: http.StatusGone})
	default:
		p.Log.Error().Err(err).Msg("pay link lookup failed")
		p.render(w, "message.html", pageData{Title: "Something went wrong", Message: "We could not load this page. Please try again in a minute.", Status: http.StatusServiceUnavailable})
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
	return pageData{Amount: l.Invoice.Amount, Currency: l.Invoice.Currency, Invoice: l.Invoice.PublicID,
		Description: l.Invoice.Description, Purpose: l.Purpose, Token: token}
}

func (p *PayPages) act(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	now := p.now()
	l, err := p.Dunning.Lookup(r.Context(), token, now)
	if err != nil {
		p.linkError(w, err)
		return
	}
	log := p.Log.With().Int64("invoice_id", l.InvoiceID).Str("invoice", l.Invoice.PublicID).Int64("pay_link_id", l.ID).Logger()
	if err := p.Store.InTx(r.Context(), func(tx *store.Tx) error { return tx.TouchPayLink(now, l.ID) }); err != nil {
		log.Error().Err(err).Msg("recording pay link use")
	}
	base := p.PublicBaseURL + "/pay/" + token
	if r.FormValue("action") == "update_card" || (l.Purpose == models.LinkUpdateCard && r.FormValue("action") != "pay") {
		p.updateCard(w, r, l, base, log)
		return
	}
	p.pay(w, r, l, base, log)
}

// pay charges the saved card on-session, following the charge protocol: the
// attempt is committed before the request is sent.
func (p *PayPages) pay(w http.ResponseWriter, r *http.Request, l *dunning.Link, base string, log zerolog.Logger) {
	now := p.now()
	var a *models.ChargeAttempt
	err := p.Store.InTx(r.Context(), func(tx *store.Tx) error {
		var err error
		a, err = tx.NewOnSessionAttempt(now, l.Invoice, p.Owner, now.Add(2*time.Minute))
		return err
	})
	if err != nil {
		log.Error().Err(err).Msg("could not start an on-session attempt")
		p.render(w, "message.html", pageData{Title: "Something went wrong", Message: "We could not start the payment. Please try again in a minute.", Status: http.StatusServiceUnavailable})
		return
	}
	if a == nil {
		// Settled meanwhile, or a payment for it is still being processed.
		http.Redirect(w, r, base+"/return", http.StatusSeeOther)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	status, res, err := p.Engine.ExecuteOnSession(ctx, a, base+"/return")
	if err != nil && !errors.Is(err, store.ErrLeaseLost) {
		log.Warn().Err(err).Msg("on-session attempt not recorded; the reconciler will settle it")
	}
	switch {
	case status == models.AttemptRequiresAction && res.Intent != nil && res.Intent.ActionURL != "":
		http.Redirect(w, r, res.Intent.ActionURL, http.StatusSeeOther)
	case status == models.AttemptDeclined || status == models.AttemptFailed || status == models.AttemptCanceled:
		d := p.dataFor(l, r.PathValue("token"))
		d.State = "failed"
		d.Message = declineMessage(status, res)
		p.render(w, "pay.html", d)
	default:
		http.Redirect(w, r, base+"/return", http.StatusSeeOther)
	}
}

// updateCard sends the customer to the gateway's hosted page to save a card; the
// setup_intent.succeeded webhook (with this invoice in its metadata) makes it the
// subscription's card and retries at once.
func (p *PayPages) updateCard(w http.ResponseWriter, r *http.Request, l *dunning.Link, base string, log zerolog.Logger) {
	if p.Sessions == nil {
		p.render(w, "message.html", pageData{Title: "Not available", Message: "Updating your card is not available right now. Please contact us.", Status: http.StatusServiceUnavailable})
		return
	}
	key, err := dunning.NewToken()
	if err != nil {
		p.linkError(w, err)
		return
	}
	sess, err := p.Sessions.CreateSetupCheckoutSession(r.Context(), gateway.SetupSessionRequest{
		Customer:       l.Invoice.GatewayCustomer,
		SuccessURL:     base + "/return?card=saved",
		CancelURL:      base,
		Metadata:       map[string]string{"invoice": l.Invoice.PublicID, "subscription": l.Invoice.Reference},
		IdempotencyKey: "setup-" + l.Invoice.PublicID + "-" + key[:16],
	})
	if err != nil {
		log.Error().Err(err).Msg("could not create the card-update session")
		p.render(w, "message.html", pageData{Title: "Something went wrong", Message: "We could not open the card form. Please try again in a minute.", Status: http.StatusBadGateway})
		return
	}
	log.Info().Str("checkout_session", sess.ID).Msg("customer sent to the hosted card form")
	http.Redirect(w, r, sess.URL, http.StatusSeeOther)
}

// returned shows what the database says. If the last attempt is still open it
// reads the PaymentIntent once (the webhook may be slower than the customer).
func (p *PayPages) returned(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	l, err := p.Dunning.Lookup(r.Context(), token, p.now())
	if err != nil && !errors.Is(err, dunning.ErrLinkSettled) && !errors.Is(err, dunning.ErrLinkExpired) {
		p.linkError(w, err)
		return
	}
	if l.Invoice.Status == models.InvoiceOpen {
		if a, err := p.Store.LatestAttempt(r.Context(), l.InvoiceID); err == nil && a != nil && (a.Status.Unresolved() || a.Status == models.AttemptRequiresAction) && a.PaymentIntentID != "" {
			if _, err := p.Engine.Resolve(r.Context(), a); err != nil {
				p.Log.Warn().Err(err).Int64("attempt_id", a.ID).Msg("reading the payment intent for the return page")
			}
			if fresh, err := p.Dunning.Lookup(r.Context(), token, p.now()); fresh != nil {
				l, _ = fresh, err
			}
		}
	}
	d := p.dataFor(l, token)
	switch {
	case l.Invoice.Status == models.InvoicePaid:
		d.State, d.Title = "paid", "Payment received"
		d.Message = "Thank you — your payment of " + money.Format(l.Invoice.Amount, l.Invoice.Currency) + " was received."
	case l.Invoice.Status != models.InvoiceOpen:
		d.State, d.Title, d.Message = "closed", "Nothing to pay", "This invoice is closed. Please contact us if you have questions."
	default:
		a, _ := p.Store.LatestAttempt(r.Context(), l.InvoiceID)
		switch {
		case r.URL.Query().Get("card") == "saved":
			d.State, d.Title, d.Refresh = "pending", "Card saved", true
			d.Message = "Thank you. We are charging your new card now; this page updates by itself."
		case a != nil && (a.Status.Unresolved()):
			d.State, d.Title, d.Refresh = "pending", "Payment processing", true
			d.Message = "Your payment is being processed. This page updates by itself; we will also email you a receipt."
		case a != nil && a.Status == models.AttemptRequiresAction && !a.OffSession:
			d.State, d.Title, d.Refresh = "pending", "Waiting for your bank", true
			d.Message = "We have not heard from your bank yet. If you completed the check, this page updates by itself."
		default:
			d.State, d.Title = "failed", "Payment not completed"
			d.Message = "The payment was not completed. You can try again or use another card."
		}
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
