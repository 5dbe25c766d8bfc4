package signup

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/stretchr/testify/require"
)

// A card saved through either provider's signup flow gives the ids a
// subscription row names: the customer, the saved card (pm_… or src_…) and,
// on Checkout.com, the payment that stored it; the same key saves the same
// card again instead of a second one.
func TestSaveOnEachProvider(t *testing.T) {
	for _, provider := range []string{WooshPay, Checkout} {
		t.Run(provider, func(t *testing.T) {
			key := "sk_test_signup"
			if provider == Checkout {
				key = "sk_sbox_signup_key"
			}
			srv := sim.New(sim.Options{Provider: provider, SecretKey: key, Seed: 1})
			ts := httptest.NewServer(srv)
			t.Cleanup(ts.Close)
			s, err := New(Gateway{Provider: provider, BaseURL: ts.URL, SecretKey: key, Timeout: 5 * time.Second})
			require.NoError(t, err)
			card := Card{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2035, CVC: "123", Email: "a@example.com", Key: "k1"}
			saved, err := s.Save(context.Background(), card)
			require.NoError(t, err)
			require.Regexp(t, `^cus_`, saved.Customer)
			if provider == Checkout {
				require.Regexp(t, `^src_`, saved.PaymentMethod)
				require.Regexp(t, `^pay_`, saved.PreviousPaymentID)
			} else {
				require.Regexp(t, `^pm_`, saved.PaymentMethod)
				require.Empty(t, saved.PreviousPaymentID)
			}
			again, err := s.Save(context.Background(), card)
			require.NoError(t, err)
			require.Equal(t, saved, again, "the same key saves the same card")
		})
	}
}
