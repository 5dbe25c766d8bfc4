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
