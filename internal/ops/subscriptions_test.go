package ops

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

func strp(s string) *string { return &s }
func i64p(n int64) *int64   { return &n }

// An update's input is checked before anything is read or written, each
// problem naming its field.
func TestCheckUpdateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provider string
		u        SubscriptionUpdate
		field    string // "" when valid
	}{
		{"nothing", "wooshpay", SubscriptionUpdate{}, "update"},
		{"amount only", "wooshpay", SubscriptionUpdate{Amount: i64p(2900)}, ""},
		{"bad email", "wooshpay", SubscriptionUpdate{Email: strp("not an address")}, "email"},
		{"named email", "wooshpay", SubscriptionUpdate{Email: strp("Ada <ada@example.com>")}, "email"},
		{"good email", "wooshpay", SubscriptionUpdate{Email: strp("ada@example.com")}, ""},
		{"empty card", "wooshpay", SubscriptionUpdate{PaymentMethod: strp(" ")}, "payment_method"},
		{"series without card", "checkout", SubscriptionUpdate{PreviousPaymentID: strp("pay_1")}, "previous_payment_id"},
		{"checkout card needs series", "checkout", SubscriptionUpdate{PaymentMethod: strp("src_1")}, "previous_payment_id"},
		{"checkout card with series", "checkout", SubscriptionUpdate{PaymentMethod: strp("src_1"), PreviousPaymentID: strp("pay_1")}, ""},
		{"wooshpay card with series", "wooshpay", SubscriptionUpdate{PaymentMethod: strp("pm_1"), PreviousPaymentID: strp("pay_1")}, "previous_payment_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Provider: tc.provider})
			err := s.checkUpdate(&tc.u)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.field, fe.Field)
		})
	}
}

// A new amount passes the CSV import's checks: positive, within billingd's
// bounds, chargeable in the provider's wire units.
func TestCheckAmountAsTheImportDoes(t *testing.T) {
	s := New(Options{Provider: "wooshpay"})
	for _, tc := range []struct {
		amount   int64
		currency string
		ok       bool
	}{
		{2900, "USD", true},
		{0, "USD", false},
		{-5, "USD", false},
		{1 << 62, "USD", false},
		{500, "JPY", true},
	} {
		err := s.checkAmount(tc.amount, tc.currency)
		if tc.ok {
			require.NoError(t, err, "%d %s", tc.amount, tc.currency)
			continue
		}
		var fe *FieldError
		require.ErrorAs(t, err, &fe, "%d %s", tc.amount, tc.currency)
		require.Equal(t, "amount", fe.Field)
	}
}

// A link's state, as ops read it; never its token.
func TestLinkState(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Hour), now.Add(-time.Hour)
	for _, tc := range []struct {
		link store.StoryLink
		want string
	}{
		{store.StoryLink{ExpiresAt: later, InvoiceStatus: "open"}, "live"},
		{store.StoryLink{ExpiresAt: later}, "live"}, // a card-update link of the subscription
		{store.StoryLink{ExpiresAt: earlier, InvoiceStatus: "open"}, "expired"},
		{store.StoryLink{ExpiresAt: later, InvoiceStatus: "paid"}, "settled"},
		{store.StoryLink{ExpiresAt: later, InvoiceStatus: "void", RevokedAt: &earlier}, "revoked"},
	} {
		require.Equal(t, tc.want, linkState(tc.link.RevokedAt, tc.link.ExpiresAt, tc.link.InvoiceStatus, now))
	}
}

// The view names the card's death and keeps every time in UTC.
func TestSubscriptionView(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, berlin)
	d := &store.SubscriptionDetail{Subscription: models.Subscription{ID: 7, Reference: "acme-7", Amount: 1250, Currency: "USD",
		Interval: "month", IntervalCount: 1, AnchorAt: at, NextBillingAt: at, CancelAt: &at, Status: models.SubscriptionActive},
		GatewayCustomer: "cus_1", GatewayPM: "pm_1", Brand: "visa", Last4: "4242", DeadAt: &at, DeadReason: "expired_card"}
	v := subscriptionViewOf(d)
	require.Equal(t, "12.50 USD", v.Price.Display)
	require.Equal(t, "expired_card", v.Card.Dead)
	require.Equal(t, time.UTC, v.NextBillingAt.Location())
	require.Equal(t, time.UTC, v.CancelAt.Location())
}
