package checkout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/billingd/billingd/internal/gateway"
)

// CardToStore is a card a customer enters while signing up, and who they
// are. billingd never handles card numbers in production: a merchant's
// signup page does this step (the stored-card flow of Checkout.com's guide);
// billingd's demo, benchmark and tests do it against the simulator.
type CardToStore struct {
	Number, CVV        string
	ExpMonth, ExpYear  int
	Email, Name        string
	Customer           string // an existing cus_… instead of Email/Name
	Currency           string // the currency the card will be charged in
	Reference          string // the verification payment's reference
	IdempotencyKey     string
	DisableThreeDSAuth bool
}

// StoredCard is what the customer-initiated verification established: the
// customer, the stored card, and the payment that stored it, which later
// merchant-initiated charges name as their previous_payment_id.
type StoredCard struct {
	Customer, Source, SeriesPaymentID string
	Last4, Scheme                     string
}

type storeCardBody struct {
	Source struct {
		Type              string `json:"type"`
		Number            string `json:"number"`
		ExpiryMonth       int    `json:"expiry_month"`
		ExpiryYear        int    `json:"expiry_year"`
		CVV               string `json:"cvv,omitempty"`
		StoreForFutureUse bool   `json:"store_for_future_use"`
	} `json:"source"`
	Amount            int64         `json:"amount"`
	Currency          string        `json:"currency"`
	PaymentType       string        `json:"payment_type"`
	MerchantInitiated bool          `json:"merchant_initiated"`
	Reference         string        `json:"reference"`
	Customer          *customerBody `json:"customer"`
	ThreeDS           *threeDSBody  `json:"3ds"`
}

// StoreCard stores a card with a zero-amount customer-initiated payment of
// the recurring type (a card verification): Checkout.com answers "Card
// Verified" with the stored card's source id and the customer's id.
func (c *Client) StoreCard(ctx context.Context, card CardToStore) (*StoredCard, error) {
	cl := call{method: http.MethodPost, path: "/payments", idempotencyKey: card.IdempotencyKey}
	if card.Currency == "" {
		card.Currency = "USD"
	}
	var body storeCardBody
	body.Source.Type, body.Source.Number, body.Source.CVV = "card", strings.ReplaceAll(card.Number, " ", ""), card.CVV
	body.Source.ExpiryMonth, body.Source.ExpiryYear, body.Source.StoreForFutureUse = card.ExpMonth, card.ExpYear, true
	body.Currency, body.PaymentType, body.Reference = card.Currency, paymentTypeRecurring, card.Reference
	body.Customer = &customerBody{ID: card.Customer, Email: card.Email, Name: card.Name}
	body.ThreeDS = &threeDSBody{Enabled: !card.DisableThreeDSAuth}
	if card.Reference == "" {
		body.Reference = "store-card"
	}
	cl.body = body
	var w wirePayment
	r := c.decide(ctx, cl, c.do(ctx, cl), &w)
	if r.Kind != gateway.Succeeded {
		if r.Err == nil {
			r.Err = fmt.Errorf("card not stored: %s", r.Kind)
		}
		return nil, asError(cl, r)
	}
	if w.Source == nil || w.Source.ID == "" || w.Customer == nil || w.Customer.ID == "" || w.ID == "" {
		return nil, asError(cl, gateway.Result{Kind: gateway.Invalid, Err: errors.New("the verification answer names no stored card, customer or payment")})
	}
	out := &StoredCard{Customer: w.Customer.ID, Source: w.Source.ID, SeriesPaymentID: w.ID, Scheme: w.Source.Scheme}
	out.Last4 = w.Source.Last4
	if out.Last4 == "" {
		out.Last4 = w.Source.Last4Webhook
	}
	return out, nil
}
