package units

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestToWireAndBack(t *testing.T) {
	cases := []struct {
		table *Table
		minor int64
		code  string
		wire  int64
		err   string
	}{
		// The docs' own examples: 100 JPY is 100; 100 BHD is 100000 on Checkout.com.
		{Checkout, 100, "JPY", 100, ""},
		{Checkout, 100000, "BHD", 100000, ""},
		{Checkout, 1001, "BHD", 0, "multiples of 10"},
		{Checkout, 12345, "ISK", 12345, ""},
		{Checkout, 1200, "USD", 1200, ""},
		{Checkout, 1500, "CLP", 150000, ""},
		{Checkout, 1230, "KWD", 1230, ""},
		{Checkout, 1234, "KWD", 0, "multiples of 10"},
		{Checkout, 5000, "MGA", 5000, ""},
		{Checkout, 5000, "HUF", 5000, ""},
		{Checkout, 5, "UYW", 0, "cannot charge UYW"},
		{WooshPay, 12345, "ISK", 1234500, ""},
		{WooshPay, 5000, "MGA", 50, ""},
		{WooshPay, 5050, "MGA", 0, "not a whole number"},
		{WooshPay, 5000, "HUF", 5000, ""},
		{WooshPay, 100, "JPY", 100, ""},
		{WooshPay, 1230, "KWD", 1230, ""},
		{WooshPay, 1231, "KWD", 0, "multiples of 10"},
		{WooshPay, 1000, "IQD", 0, "cannot charge IQD"},
		{WooshPay, 1000, "LYD", 0, "cannot charge LYD"},
		{WooshPay, 1000, "XYZ", 0, "not an ISO 4217"},
	}
	for _, c := range cases {
		t.Run(c.table.Provider+"/"+c.code, func(t *testing.T) {
			wire, err := c.table.ToWire(c.minor, c.code)
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.wire, wire)
			back, err := c.table.FromWire(wire, c.code)
			require.NoError(t, err)
			require.Equal(t, c.minor, back)
		})
	}
}

func TestFromWireRefusesFractionsOfAMinorUnit(t *testing.T) {
	_, err := WooshPay.FromWire(1234501, "ISK")
	require.ErrorContains(t, err, "not a whole number of ISO minor units")
}

func TestEveryISOCodeHasAnAnswer(t *testing.T) {
	for code := range iso {
		for _, tb := range []*Table{WooshPay, Checkout} {
			r, err := tb.Rule(code)
			if err != nil {
				require.Contains(t, tb.Unsupported, code)
				continue
			}
			require.GreaterOrEqual(t, r.Exp, 0)
		}
	}
}
