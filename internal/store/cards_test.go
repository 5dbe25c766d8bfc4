package store_test

import (
	"testing"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// A card valid through its expiry month works until the first instant (UTC)
// of the next month; unknown expiries never count as expired.
func TestCardOnFileExpiry(t *testing.T) {
	march := store.CardOnFile{Brand: "visa", Last4: "4242", ExpMonth: 3, ExpYear: 2026}
	december := store.CardOnFile{Brand: "Mastercard", Last4: "4444", ExpMonth: 12, ExpYear: 2026}
	tests := []struct {
		name    string
		card    store.CardOnFile
		at      time.Time
		expired bool
	}{
		{"last instant of the expiry month", march, time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC), false},
		{"first instant of the next month", march, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), true},
		{"a charge the month after", march, time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC), true},
		{"december rolls into january", december, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"december still valid", december, time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC), false},
		{"unknown expiry", store.CardOnFile{Last4: "1111"}, time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"bad month", store.CardOnFile{ExpMonth: 13, ExpYear: 2026}, time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.expired, tt.card.ExpiresBy(tt.at))
		})
	}
}

func TestCardOnFileNames(t *testing.T) {
	tests := []struct {
		card         store.CardOnFile
		name, expiry string
	}{
		{store.CardOnFile{Brand: "visa", Last4: "4242", ExpMonth: 3, ExpYear: 2026}, "Visa ending in 4242", "03/2026"},
		{store.CardOnFile{Brand: "amex", Last4: "0005"}, "American Express ending in 0005", ""},
		{store.CardOnFile{Last4: "4444", ExpMonth: 11, ExpYear: 2031}, "card ending in 4444", "11/2031"},
		{store.CardOnFile{Brand: "newbrand"}, "Newbrand", ""},
		{store.CardOnFile{}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.name, tt.card.Name())
			require.Equal(t, tt.expiry, tt.card.Expiry())
			require.Equal(t, tt.name != "" || tt.expiry != "", tt.card.Known())
		})
	}
}
