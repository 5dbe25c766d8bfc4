package apicall

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
)

func TestErrorStyle(t *testing.T) {
	cause := errors.New("wooshpay: GET /v1/customers/cus_1: 404 not found")
	decline := &gateway.Decline{Code: "card_declined", DeclineCode: "insufficient_funds", Message: "Not enough money."}
	tests := []struct {
		name      string
		style     ErrorStyle
		result    gateway.Result
		wantText  string
		wantKind  gateway.Kind
		retryable bool
		wantCause error
	}{
		{name: "cause wins", style: ErrorStyle{Prefix: "wooshpay", DeclineDetail: true},
			result: gateway.Result{Kind: gateway.Invalid, Err: cause}, wantText: cause.Error(), wantKind: gateway.Invalid, wantCause: cause},
		{name: "decline detail", style: ErrorStyle{Prefix: "wooshpay", DeclineDetail: true},
			result:   gateway.Result{Kind: gateway.Declined, HTTPStatus: 402, Decline: decline},
			wantText: "wooshpay: POST /x: 402 declined: " + decline.Reason() + ": Not enough money.", wantKind: gateway.Declined},
		{name: "decline without detail", style: ErrorStyle{Prefix: "checkout"},
			result:   gateway.Result{Kind: gateway.Declined, HTTPStatus: 201, Decline: decline},
			wantText: "checkout: POST /x: " + string(gateway.Declined), wantKind: gateway.Declined},
		{name: "transient is retryable", style: ErrorStyle{Prefix: "checkout"},
			result:   gateway.Result{Kind: gateway.Transient},
			wantText: "checkout: POST /x: " + string(gateway.Transient), wantKind: gateway.Transient, retryable: true},
		{name: "succeeded kept", style: ErrorStyle{Prefix: "wooshpay"},
			result:   gateway.Result{Kind: gateway.Succeeded},
			wantText: "wooshpay: POST /x: " + string(gateway.Succeeded), wantKind: gateway.Succeeded},
		{name: "succeeded becomes transient", style: ErrorStyle{Prefix: "checkout", SucceededIsTransient: true},
			result:   gateway.Result{Kind: gateway.Succeeded},
			wantText: "checkout: POST /x: unexpected answer", wantKind: gateway.Transient, retryable: true},
		{name: "not found unwraps", style: ErrorStyle{Prefix: "checkout"},
			result:   gateway.Result{Kind: gateway.Invalid, Err: gateway.ErrNotFound},
			wantText: gateway.ErrNotFound.Error(), wantKind: gateway.Invalid, wantCause: gateway.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.style.Wrap("POST /x", tt.result)
			var e *Error
			require.True(t, errors.As(err, &e))
			require.Equal(t, "POST /x", e.Op)
			require.Equal(t, tt.wantText, err.Error())
			require.Equal(t, tt.wantKind, e.Result.Kind)
			require.Equal(t, tt.retryable, e.Retryable())
			if tt.wantCause != nil {
				require.ErrorIs(t, err, tt.wantCause)
			}
		})
	}
}
