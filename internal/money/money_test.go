package money

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		amount int64
		code   string
		want   string
	}{
		{1050, "USD", "10.50 USD"},
		{5, "USD", "0.05 USD"},
		{0, "EUR", "0.00 EUR"},
		{123456, "JPY", "123456 JPY"},
		{1500, "KWD", "1.500 KWD"},
		{7, "KWD", "0.007 KWD"},
		{-250, "GBP", "-2.50 GBP"},
		{12345, "CLF", "1.2345 CLF"},
		{99, "XXX", "99 XXX (minor units)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			require.Equal(t, tc.want, Format(tc.amount, tc.code))
		})
	}
}

func TestExponent(t *testing.T) {
	for code, want := range map[string]int{"USD": 2, "JPY": 0, "KWD": 3, "EUR": 2, "CLF": 4} {
		got, ok := Exponent(code)
		require.True(t, ok, code)
		require.Equal(t, want, got, code)
	}
	for _, bad := range []string{"usd", "US", "XXX", "", "USDD"} {
		require.False(t, Valid(bad), bad)
	}
}

func TestCheckAmount(t *testing.T) {
	for _, tc := range []struct {
		amount int64
		code   string
		ok     bool
	}{
		{1, "USD", true},
		{99_999_999, "USD", true},
		{100_000_000, "USD", false},
		{99_999_999_999, "USD", false},
		{9223372036854775807, "USD", false},
		{99_999_999, "JPY", true},
		{99_999_999, "KWD", true},
		{0, "USD", false},
		{-5, "USD", false},
		{100, "XXX", false},
	} {
		t.Run(Format(tc.amount, tc.code), func(t *testing.T) {
			err := CheckAmount(tc.amount, tc.code)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
	for _, code := range []string{"USD", "JPY", "KWD", "CLF"} {
		require.LessOrEqual(t, Max(code), Ceiling(), code)
	}
	// No sum of in-bound amounts a database could hold overflows.
	require.Less(t, Ceiling(), int64(9223372036854775807)/90_000_000_000)
}
