package units

// funds are ISO 4217 fund and unit-of-account codes (and the Uruguayan wage
// index unit): no card network prices a subscription in them, and neither
// provider documents them, so both refuse them instead of guessing.
var funds = map[string]string{
	"BOV": "a fund code, not a card currency", "CHE": "a fund code, not a card currency",
	"CHW": "a fund code, not a card currency", "CLF": "a unit of account, not a card currency",
	"COU": "a unit of account, not a card currency", "MXV": "a unit of account, not a card currency",
	"USN": "a fund code, not a card currency", "UYI": "an indexed unit, not a card currency",
	"UYW": "a wage index unit, not a card currency",
}

func with(m map[string]string, more map[string]string) map[string]string {
	out := make(map[string]string, len(m)+len(more))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

func rules(exp int, multiple int64, codes ...string) map[string]Rule {
	m := make(map[string]Rule, len(codes))
	for _, c := range codes {
		m[c] = Rule{Exp: exp, Multiple: multiple}
	}
	return m
}

func merge(ms ...map[string]Rule) map[string]Rule {
	out := map[string]Rule{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// WooshPay is WooshPay's wire table. WooshPay's docs say only that amounts
// are in the smallest currency unit; its API is Stripe-shaped, so the table
// follows Stripe's documented currency rules (docs.stripe.com/currencies):
// the zero-decimal list (BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV
// XAF XOF XPF) is sent in whole units; ISK is sent with two decimals that are
// always 00; HUF and TWD are sent with two decimals; the three-decimal
// currencies (BHD JOD KWD OMR TND) are sent in thousandths whose last digit is
// 0. IQD and LYD, which Stripe does not list, are refused, as are the fund
// codes.
var WooshPay = &Table{
	Provider: "wooshpay",
	Rules: merge(
		rules(0, 0, "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"),
		rules(2, 100, "ISK"),
		rules(3, 10, "BHD", "JOD", "KWD", "OMR", "TND"),
	),
	Unsupported: with(funds, map[string]string{
		"IQD": "not among the currencies Stripe-shaped APIs document",
		"LYD": "not among the currencies Stripe-shaped APIs document",
	}),
}

// Checkout is Checkout.com's wire table, from "Format the amount value"
// (checkout.com/docs/resources/calculating-the-amount): BIF DJF GNF ISK JPY
// KMF KRW PYG RWF UGX VUV VND XAF XOF XPF are the full amount; BHD IQD JOD
// KWD LYD OMR TND are thousandths whose last digit must be 0; every other
// currency is hundredths (so CLP, which ISO gives no decimals, is sent times
// 100). The fund codes are refused.
var Checkout = &Table{
	Provider: "checkout",
	Rules: merge(
		rules(2, 0, "CLP"),
		rules(0, 0, "BIF", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VUV", "VND", "XAF", "XOF", "XPF"),
		rules(3, 10, "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"),
	),
	Unsupported: funds,
}

// ForProvider returns the table of a gateway.provider value, nil for an
// unknown one.
func ForProvider(provider string) *Table {
	switch provider {
	case "wooshpay":
		return WooshPay
	case "checkout":
		return Checkout
	}
	return nil
}
