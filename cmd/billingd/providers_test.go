package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/stretchr/testify/require"
)

// saveTestCards saves one card per number through the provider's signup flow
// (internal/gateway/signup), for a new customer each (Checkout.com finds a
// customer by email, so each has its own address, prefix0@…, prefix1@…), and
// returns what each save gave, in numbers order.
func saveTestCards(t testing.TB, provider, baseURL, secretKey, prefix string, numbers []string) []signup.Saved {
	t.Helper()
	saver, err := signup.New(signup.Gateway{Provider: provider, BaseURL: baseURL, SecretKey: secretKey, Timeout: 10 * time.Second})
	require.NoError(t, err)
	saved := make([]signup.Saved, 0, len(numbers))
	for i, n := range numbers {
		s, err := saver.Save(context.Background(), signup.Card{Number: n, ExpMonth: 1, ExpYear: 2034, CVC: "999",
			Email: fmt.Sprintf("%s%d@example.com", prefix, i)})
		require.NoError(t, err, "save card %s on %s", n, provider)
		saved = append(saved, s)
	}
	return saved
}
