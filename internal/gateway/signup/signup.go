// Package signup saves a customer's card with a provider the way a
// merchant's own signup page does before billingd bills anyone: on WooshPay a
// customer and a SetupIntent with the card, on Checkout.com a zero-amount
// customer-initiated payment that stores the card (the stored-card flow of
// its guide). It returns the ids a subscription CSV row names.
//
// billingd itself never handles card numbers: this is for its demo, its
// benchmark and its tests, against the bundled simulator, so that each of
// them saves cards through one piece of code whatever the provider.
package signup

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/billingd/billingd/internal/gateway/checkout"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
)

// Provider names, as gateway.provider spells them.
const (
	WooshPay = "wooshpay"
	Checkout = "checkout"
)

// Gateway is a provider's API as a signup page reaches it.
type Gateway struct {
	Provider  string // "" is WooshPay
	BaseURL   string
	SecretKey string
	Timeout   time.Duration // default 10s
}

// Card is what the customer types in.
type Card struct {
	Number            string
	ExpMonth, ExpYear int
	CVC               string
	Email, Name       string
	// Currency is what the card will be charged in (Checkout.com verifies
	// the card in it); default USD.
	Currency string
	// Key makes the saving idempotent: the same key saves the same customer
	// and card again instead of new ones. Empty: no key.
	Key string
}

// Saved is what a subscription row needs: the gateway's customer, the saved
// card, and on Checkout.com the payment that stored it (the CSV's
// previous_payment_id).
type Saved struct {
	Customer, PaymentMethod, PreviousPaymentID string
}

// Saver saves cards with one provider.
type Saver struct {
	provider string
	woosh    *wooshpay.Client
	cko      *checkout.Client
}

// New builds a Saver for g.
func New(g Gateway) (*Saver, error) {
	if g.Timeout == 0 {
		g.Timeout = 10 * time.Second
	}
	s := &Saver{provider: g.Provider}
	var err error
	switch g.Provider {
	case "", WooshPay:
		s.provider = WooshPay
		s.woosh, err = wooshpay.New(wooshpay.Options{BaseURL: g.BaseURL, SecretKey: g.SecretKey, Timeout: g.Timeout})
	case Checkout:
		s.cko, err = checkout.New(checkout.Options{BaseURL: g.BaseURL, SecretKey: g.SecretKey, Timeout: g.Timeout})
	default:
		err = fmt.Errorf("signup: unknown provider %q", g.Provider)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Save saves card for a new customer.
func (s *Saver) Save(ctx context.Context, card Card) (Saved, error) {
	if card.Email == "" {
		card.Email = "customer@example.com"
	}
	key := func(suffix string) string {
		if card.Key == "" {
			return ""
		}
		return card.Key + "-" + suffix
	}
	if s.cko != nil {
		stored, err := s.cko.StoreCard(ctx, checkout.CardToStore{Number: card.Number, CVV: card.CVC, ExpMonth: card.ExpMonth, ExpYear: card.ExpYear,
			Email: card.Email, Name: card.Name, Currency: card.Currency, Reference: reference(card.Key), IdempotencyKey: key("store")})
		if err != nil {
			return Saved{}, err
		}
		return Saved{Customer: stored.Customer, PaymentMethod: stored.Source, PreviousPaymentID: stored.SeriesPaymentID}, nil
	}
	cus, err := s.woosh.CreateCustomer(ctx, wooshpay.CustomerParams{Email: card.Email, Name: card.Name}, key("cus"))
	if err != nil {
		return Saved{}, err
	}
	seti, err := s.woosh.CreateSetupIntent(ctx, wooshpay.SetupIntentParams{Customer: cus.ID, Usage: "off_session",
		Card: wooshpay.CardData{Number: card.Number, ExpMonth: strconv.Itoa(card.ExpMonth), ExpYear: strconv.Itoa(card.ExpYear), CVC: card.CVC, Name: card.Name}}, key("seti"))
	if err != nil {
		return Saved{}, err
	}
	return Saved{Customer: cus.ID, PaymentMethod: seti.PaymentMethod}, nil
}

// reference is the verification payment's reference: Checkout.com allows 50
// characters.
func reference(key string) string {
	r := "signup"
	if key != "" {
		r += "-" + key
	}
	if len(r) > 50 {
		r = r[:50]
	}
	return r
}
