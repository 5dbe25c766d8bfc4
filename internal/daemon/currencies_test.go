package daemon_test

import (
	"testing"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/units"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// Currencies whose wire units differ between the providers are charged the
// invoice's amount on both: the gateway's ledger has the invoice's ISO 4217
// minor units for each order, and its wire amount is what the provider's
// unit table (units.WooshPay, units.Checkout; docs/amounts.md) makes of them.
// The wire amounts are also spelled out: ISK (ISO exponent 0) goes to
// WooshPay with two zero decimals and to Checkout.com whole; MGA (ISO
// exponent 2) goes to WooshPay whole and to Checkout.com in hundredths; HUF
// is hundredths, JPY whole and KWD thousandths on both. The amounts are
// valid on both wires (ISK a multiple of 100 on WooshPay's, MGA of 100 for
// WooshPay's whole units, KWD of 10).
func TestCurrenciesChargedInEachProvidersUnits(t *testing.T) {
	charges := []struct {
		currency string
		amount   int64
		wire     map[string]int64 // by provider
	}{
		{"ISK", 12300, map[string]int64{"wooshpay": 1230000, "checkout": 12300}},
		{"MGA", 5000, map[string]int64{"wooshpay": 50, "checkout": 5000}},
		{"HUF", 5000, map[string]int64{"wooshpay": 5000, "checkout": 5000}},
		{"JPY", 1200, map[string]int64{"wooshpay": 1200, "checkout": 1200}},
		{"KWD", 1230, map[string]int64{"wooshpay": 1230, "checkout": 1230}},
	}
	daemontest.EachProvider(t, daemontest.Options{}, func(t *testing.T, o daemontest.Options) {
		b := daemontest.New(t, o)
		table := units.ForProvider(o.Provider)
		require.NotNil(t, table)
		var subs []storetest.Subscription
		for _, c := range charges {
			cus, pm := b.SaveCard(t, "4242424242424242")
			subs = append(subs, storetest.Subscription{Reference: c.currency, Customer: cus, PaymentMethod: pm,
				Amount: c.amount, Currency: c.currency, Interval: "month", Anchor: b.Clock.Now()})
		}
		b.Seed(t, subs...)
		b.Run(t, 0, 0)

		for _, c := range charges {
			t.Run(c.currency, func(t *testing.T) {
				sub := subscriptionByRef(t, b, c.currency)
				invs := invoicesOf(t, b, sub.ID)
				require.Len(t, invs, 1)
				inv := invs[0]
				require.Equal(t, models.InvoicePaid, inv.Status)
				require.Equal(t, c.amount, inv.Amount)
				require.Equal(t, c.currency, inv.Currency)
				entries := ledgerFor(b, inv.PublicID)
				require.Len(t, entries, 1)
				e := entries[0]
				require.Equal(t, "succeeded", e.Status)
				require.Equal(t, inv.Amount, e.Amount, "the ledger's ISO minor units are the invoice's")
				require.Equal(t, inv.Currency, e.Currency)
				wire, err := table.ToWire(inv.Amount, inv.Currency)
				require.NoError(t, err)
				require.Equal(t, wire, e.WireAmount, "the provider's wire units")
				require.Equal(t, c.wire[o.Provider], e.WireAmount)
			})
		}
	})
}
