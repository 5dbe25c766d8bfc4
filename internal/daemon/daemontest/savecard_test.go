package daemontest_test

import (
	"testing"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/stretchr/testify/require"
)

// The same key saves the same card for the same customer, on both providers
// (the keyed requests repeat their parameters exactly); another key saves
// another customer.
func TestSaveCardKeyedRepeatsUnderItsKey(t *testing.T) {
	daemontest.EachProvider(t, daemontest.Options{}, func(t *testing.T, o daemontest.Options) {
		b := daemontest.New(t, o)
		cus, pm := b.SaveCardKeyed(t, "4242424242424242", "card-a")
		again, pmAgain := b.SaveCardKeyed(t, "4242424242424242", "card-a")
		require.Equal(t, cus, again)
		require.Equal(t, pm, pmAgain)
		other, pmOther := b.SaveCardKeyed(t, "4242424242424242", "card-b")
		require.NotEqual(t, cus, other)
		require.NotEqual(t, pm, pmOther)
	})
}
