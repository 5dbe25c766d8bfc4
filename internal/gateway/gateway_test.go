package gateway

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIsHardDecline(t *testing.T) {
	for _, tc := range []struct {
		code, decline, advice string
		hard                  bool
	}{
		{"card_declined", "insufficient_funds", "", false},
		{"card_declined", "generic_decline", "", false},
		{"card_declined", "do_not_honor", "", false},
		{"processing_error", "processing_error", "", false},
		{"card_declined", "try_again_later", "", false},
		{"expired_card", "expired_card", "", true},
		{"card_declined", "lost_card", "", true},
		{"card_declined", "stolen_card", "", true},
		{"incorrect_number", "", "", true},
		{"card_declined", "do_not_try_again", "", true},
		{"card_declined", "revocation_of_authorization", "", true},
		{"card_declined", "insufficient_funds", "do_not_try_again", true},
		{"card_declined", "something_new", "", false},
	} {
		t.Run(tc.code+"/"+tc.decline+"/"+tc.advice, func(t *testing.T) {
			require.Equal(t, tc.hard, IsHardDecline(tc.code, tc.decline, tc.advice))
			require.Equal(t, tc.hard, NewDecline("card_error", tc.code, tc.decline, tc.advice, "").Hard)
		})
	}
}

func TestResultFromIntent(t *testing.T) {
	for status, kind := range map[IntentStatus]Kind{
		IntentSucceeded:             Succeeded,
		IntentProcessing:            Processing,
		IntentRequiresAction:        RequiresAction,
		IntentCanceled:              Canceled,
		IntentRequiresPaymentMethod: Declined,
		IntentRequiresConfirmation:  Transient,
		"weird":                     Transient,
	} {
		r := ResultFromIntent(&PaymentIntent{ID: "pi_1", Status: status}, 200)
		require.Equal(t, kind, r.Kind, status)
		if kind == Declined {
			require.NotNil(t, r.Decline, "a decline without last_payment_error still says why")
			require.False(t, r.Decline.Hard)
		}
	}
	require.True(t, Succeeded.Definite())
	require.True(t, Declined.Definite())
	require.False(t, Transient.Definite())
	require.False(t, Processing.Definite(), "processing settles later")
}

func TestDeclineCatalogue(t *testing.T) {
	soft := []string{"insufficient_funds", "generic_decline", "do_not_honor", "processing_error", "try_again_later"}
	hard := []string{"expired_card", "lost_card", "stolen_card", "incorrect_number", "do_not_try_again", "revocation_of_authorization", CodePaymentMethodGone}
	for _, code := range soft {
		t.Run("soft/"+code, func(t *testing.T) {
			d, ok := LookupDecline(code)
			require.True(t, ok)
			require.False(t, d.Hard)
			require.NotEmpty(t, d.Words, "a customer reads something for every known code")
			require.False(t, IsHardDecline("card_declined", code, ""))
		})
	}
	for _, code := range hard {
		t.Run("hard/"+code, func(t *testing.T) {
			d, ok := LookupDecline(code)
			require.True(t, ok)
			require.True(t, d.Hard)
			require.NotEmpty(t, d.Words)
			require.True(t, IsHardDecline("card_declined", code, ""))
		})
	}
	t.Run("lookups ignore case and space", func(t *testing.T) {
		require.Equal(t, DeclineWords("expired_card"), DeclineWords(" Expired_Card "))
	})
	t.Run("unknown codes have no words and are soft", func(t *testing.T) {
		_, ok := LookupDecline("weird_code_42")
		require.False(t, ok)
		require.Empty(t, DeclineWords("weird_code_42"))
		require.False(t, IsHardDecline("weird_code_42", "", ""))
	})
	t.Run("do-not-retry advice makes any code hard", func(t *testing.T) {
		for _, advice := range []string{"do_not_try_again", "do_not_retry", "stop_recurring"} {
			require.True(t, IsHardDecline("card_declined", "insufficient_funds", advice), advice)
		}
		require.False(t, IsHardDecline("card_declined", "insufficient_funds", "try_again_later"))
	})
	t.Run("the words never accuse the customer", func(t *testing.T) {
		for _, code := range []string{"lost_card", "stolen_card", "fraudulent"} {
			require.NotContains(t, DeclineWords(code), "stolen", code)
			require.NotContains(t, DeclineWords(code), "lost", code)
			require.NotContains(t, DeclineWords(code), "fraud", code)
		}
	})
}

func TestOurDataErrorIsDefinite(t *testing.T) {
	require.True(t, OurDataError.Definite(), "no money moved: a new attempt may follow once a human fixed the data")
	require.True(t, Invalid.Definite())
}
