package web

import (
	"errors"
	"testing"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

func TestDeclineMessageUsesTheCatalogue(t *testing.T) {
	declined := func(code string) gateway.Result {
		return gateway.Result{Kind: gateway.Declined, Decline: gateway.NewDecline("card_error", "card_declined", code, "", "")}
	}
	for _, tc := range []struct {
		name   string
		status models.AttemptStatus
		res    gateway.Result
		want   string
	}{
		{"soft decline in the catalogue's words", models.AttemptDeclined, declined("insufficient_funds"),
			"This payment did not go through: " + gateway.DeclineWords("insufficient_funds") + ". You can try another card."},
		{"hard decline in the catalogue's words", models.AttemptDeclined, declined("expired_card"),
			"This payment did not go through: the card has expired. You can try another card."},
		{"unknown code shows no raw code", models.AttemptDeclined, declined("weird_code_42"),
			"Your bank declined this payment. You can try another card."},
		{"billingd's own refusal does not blame the bank", models.AttemptFailed, gateway.Result{Kind: gateway.Invalid, Err: errors.New("401")},
			"We could not take this payment because of a problem on our side. Nothing was charged; please try again later."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, declineMessage(tc.status, tc.res))
		})
	}
}
