package dunning

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// tokenBytes is the entropy of a pay-link token: 256 bits, far beyond the 128
// that make guessing hopeless.
const tokenBytes = 32

// Errors of a pay-link lookup. Each gets its own clear page; none reveals
// anything about an invoice.
var (
	ErrLinkUnknown = errors.New("this link is not valid")
	ErrLinkExpired = errors.New("this link has expired")
	ErrLinkSettled = errors.New("this invoice is already settled")
)

// HashToken is what is stored for a token: its SHA-256, hex. A database leak then
// yields no usable link.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ReturnID is the link's return id: the value the return, success and cancel
// URLs handed to the gateway carry instead of the token. It is derived from
// the token (so nothing but its hash needs storing) and cannot be turned back
// into it; it opens only a page showing the payment's state, never the pay
// page.
func ReturnID(token string) string {
	sum := sha256.Sum256([]byte("billingd pay-link return id\x00" + token))
	return base64.RawURLEncoding.EncodeToString(sum[:24])
}

// NewToken returns a fresh URL-safe random token.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("dunning: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Mint creates the pay link an outbox email carries, in its own transaction, and
// returns its URL. Called by the mail worker right before sending, so the raw
// token only ever exists in the email itself.
func (s *Service) Mint(ctx context.Context, e *models.Email, now time.Time) (string, error) {
	if e.LinkPurpose == "" {
		return "", nil
	}
	token, err := NewToken()
	if err != nil {
		return "", err
	}
	emailID := e.ID
	link := &models.PayLink{TokenHash: HashToken(token), ReturnHash: HashToken(ReturnID(token)), InvoiceID: e.InvoiceID, SubscriptionID: e.SubscriptionID, CaseID: e.CaseID, EmailID: &emailID,
		Purpose: e.LinkPurpose, ExpiresAt: now.Add(s.LinkTTL), CreatedAt: now, UpdatedAt: now}
	if err := s.Store.InTx(ctx, func(tx *store.Tx) error { return tx.InsertPayLink(link) }); err != nil {
		return "", err
	}
	return s.PublicBaseURL + "/pay/" + token, nil
}

// Link is a valid pay link with the invoice it is for. A link scoped to a
// subscription (SubscriptionOnly) has no invoice: Invoice then carries the
// subscription, its customer and card, with the invoice fields empty.
type Link struct {
	models.PayLink
	Invoice *store.InvoiceContact
}

// SubscriptionOnly reports whether the link belongs to a subscription and no
// invoice: it can only replace the subscription's card, never charge.
func (l *Link) SubscriptionOnly() bool { return l.InvoiceID == nil }

// Lookup resolves a token. A link works until it expires or its invoice is
// settled; anything else is ErrLinkUnknown.
func (s *Service) Lookup(ctx context.Context, token string, now time.Time) (*Link, error) {
	if len(token) < 40 || len(token) > 64 {
		return nil, ErrLinkUnknown
	}
	out, err := s.withInvoice(ctx, s.Store.PayLinkByHash, HashToken(token))
	if err != nil {
		return nil, err
	}
	if out.SubscriptionOnly() {
		// A card-update link of a subscription works until it expires, is
		// revoked or the subscription ends.
		if !now.Before(out.ExpiresAt) || out.RevokedAt != nil || out.Invoice.SubscriptionStatus == models.SubscriptionCanceled {
			return out, ErrLinkExpired
		}
		return out, nil
	}
	if out.Invoice.Status != models.InvoiceOpen {
		return out, ErrLinkSettled
	}
	// A link an operator's cancel or void killed answers like an expired one.
	if !now.Before(out.ExpiresAt) || out.RevokedAt != nil {
		return out, ErrLinkExpired
	}
	return out, nil
}

// LookupReturn resolves a return id (the page the gateway sends the customer
// back to) to its link and invoice. It never opens the pay page: it shows a
// state. Unknown ids are ErrLinkUnknown; an expired link whose invoice is
// still open is ErrLinkExpired.
func (s *Service) LookupReturn(ctx context.Context, returnID string, now time.Time) (*Link, error) {
	if len(returnID) != 32 {
		return nil, ErrLinkUnknown
	}
	out, err := s.withInvoice(ctx, s.Store.PayLinkByReturnHash, HashToken(returnID))
	if err != nil {
		return nil, err
	}
	if (out.SubscriptionOnly() || out.Invoice.Status == models.InvoiceOpen) && !now.Before(out.ExpiresAt) {
		return out, ErrLinkExpired
	}
	return out, nil
}

// withInvoice finds a link by one of its stored hashes and loads its invoice
// (or, for a subscription-scoped link, its subscription).
// A link without either is ErrLinkUnknown, so a token and a return id fail the
// same way whatever is missing.
func (s *Service) withInvoice(ctx context.Context, find func(context.Context, string) (*models.PayLink, error), hash string) (*Link, error) {
	l, err := find(ctx, hash)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, ErrLinkUnknown
	}
	var ic *store.InvoiceContact
	switch {
	case l.InvoiceID != nil:
		ic, err = s.Store.InvoiceContact(ctx, *l.InvoiceID)
	case l.SubscriptionID != nil:
		ic, err = s.Store.SubscriptionContact(ctx, *l.SubscriptionID)
	}
	if err != nil {
		return nil, err
	}
	if ic == nil {
		return nil, ErrLinkUnknown
	}
	return &Link{PayLink: *l, Invoice: ic}, nil
}
