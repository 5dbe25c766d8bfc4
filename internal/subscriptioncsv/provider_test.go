package subscriptioncsv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The configured provider decides the card ids a file may name, whether a
// card's series payment is needed, and which currencies and amounts can be
// charged: a row the provider could not charge is refused by line and column
// before anything is written.
func TestParseChecksRowsForTheProvider(t *testing.T) {
	head := "reference,email,customer,payment_method,amount,currency,interval,interval_count,anchor,previous_payment_id\n"
	row := func(pm, amount, currency, prev string) string {
		return "r1,a@example.com,cus_1," + pm + "," + amount + "," + currency + ",month,1,2026-11-30T09:00:00Z," + prev + "\n"
	}
	cases := []struct {
		name, provider, body string
		column, message      string
	}{
		{"checkout takes src ids with a series", "checkout", row("src_abc", "1200", "USD", "pay_first"), "", ""},
		{"checkout refuses pm ids", "checkout", row("pm_abc", "1200", "USD", "pay_first"), "payment_method", "src_"},
		{"checkout needs the series payment", "checkout", row("src_abc", "1200", "USD", ""), "previous_payment_id", "is required on Checkout.com"},
		{"checkout series ids are payments", "checkout", row("src_abc", "1200", "USD", "act_x"), "previous_payment_id", "pay_"},
		{"checkout KWD in whole hundredths", "checkout", row("src_abc", "1230", "KWD", "pay_first"), "", ""},
		{"checkout refuses KWD thousandths", "checkout", row("src_abc", "1234", "KWD", "pay_first"), "amount", "multiples of 10"},
		{"checkout takes IQD", "checkout", row("src_abc", "1230", "IQD", "pay_first"), "", ""},
		{"fund codes are refused", "checkout", row("src_abc", "1200", "UYW", "pay_first"), "currency", "cannot charge UYW"},
		{"wooshpay takes pm ids", "wooshpay", row("pm_abc", "1200", "USD", ""), "", ""},
		{"wooshpay refuses a series id", "wooshpay", row("pm_abc", "1200", "USD", "pay_first"), "previous_payment_id", "only with gateway.provider checkout"},
		{"wooshpay refuses IQD", "wooshpay", row("pm_abc", "1230", "IQD", ""), "currency", "cannot charge IQD"},
		{"wooshpay charges MGA in whole ariary", "wooshpay", row("pm_abc", "5050", "MGA", ""), "amount", "not a whole number"},
		{"wooshpay ISK", "wooshpay", row("pm_abc", "12345", "ISK", ""), "", ""},
		{"ids cannot change a request path", "checkout", row("src_x/../y", "1200", "USD", "pay_first"), "payment_method", "letters, digits"},
		{"series ids too", "checkout", row("src_abc", "1200", "USD", "pay_a?b"), "previous_payment_id", "letters, digits"},
		{"an unknown code names what is wrong", "wooshpay", row("pm_abc", "1200", "XXX", ""), "currency", "billingd knows"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows, errs := parse(t, head+c.body, func(o *Options) { o.Provider = c.provider })
			if c.column == "" {
				require.Nil(t, errs)
				require.Len(t, rows, 1)
				if c.provider == "checkout" {
					require.Equal(t, "pay_first", rows[0].PreviousPaymentID)
				}
				return
			}
			require.Len(t, errs, 1, "%v", errs)
			require.Equal(t, 2, errs[0].Line)
			require.Equal(t, c.column, errs[0].Column)
			require.Contains(t, errs[0].Message, c.message)
		})
	}
}

func TestCheckoutFilesWithoutTheSeriesColumnNameIt(t *testing.T) {
	_, errs := parse(t, header+"r1,a@example.com,cus_1,src_abc,1200,USD,month,1,2026-11-30T09:00:00Z\n",
		func(o *Options) { o.Provider = "checkout" })
	require.Len(t, errs, 1)
	require.Equal(t, "previous_payment_id", errs[0].Column)
}
