// Package money knows ISO 4217 currencies and their minor-unit exponents, so that
// amounts can be stored as integers in minor units and shown correctly
// (USD 2 decimals, JPY 0, KWD 3).
package money

import (
	"fmt"
	"strconv"
	"strings"
)

// exponents lists the active ISO 4217 codes with a minor-unit exponent other than 2;
// twoDecimal lists the rest. A code in neither is not a currency billingd accepts.
var exponents = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
	"PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

var twoDecimal = strings.Fields(`AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD
BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR
FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD
KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN
NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS
SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD
XCG YER ZAR ZMW ZWG`)

func init() {
	for _, c := range twoDecimal {
		exponents[c] = 2
	}
}

// Exponent returns the number of minor-unit digits of an upper-case ISO 4217 code.
func Exponent(code string) (int, bool) {
	e, ok := exponents[code]
	return e, ok
}

// Valid reports whether code is an upper-case ISO 4217 currency billingd accepts.
func Valid(code string) bool {
	_, ok := exponents[code]
	return ok
}

// Format renders minor units in the currency's own exponent: Format(123456, "JPY")
// is "123456 JPY", Format(1050, "USD") is "10.50 USD", Format(1500, "KWD") is
// "1.500 KWD".
func Format(amount int64, code string) string {
	exp, ok := exponents[code]
	if !ok {
		return fmt.Sprintf("%d %s (minor units)", amount, code)
	}
	neg := amount < 0
	if neg {
		amount = -amount
	}
	s := strconv.FormatInt(amount, 10)
	if exp > 0 {
		if len(s) <= exp {
			s = strings.Repeat("0", exp-len(s)+1) + s
		}
		s = s[:len(s)-exp] + "." + s[len(s)-exp:]
	}
	if neg {
		s = "-" + s
	}
	return s + " " + code
}

// DefaultMax is the largest amount, in minor units, billingd accepts in a
// currency without an entry in maxima: eight digits, the bound Stripe uses
// (999,999.99 USD, 99,999,999 JPY, 99,999.999 KWD). docs/amounts.md shows the
// table.
const DefaultMax int64 = 99_999_999

// maxima lists the currencies whose bound differs from DefaultMax. It is empty
// today: every currency has the eight-digit bound. A larger bound must stay
// small enough that Ceiling times any plausible number of invoices fits an
// int64 (docs/amounts.md).
var maxima = map[string]int64{}

// Max returns the largest amount, in minor units, billingd accepts in code.
// An unknown code has no bound worth trusting and returns 0.
func Max(code string) int64 {
	if !Valid(code) {
		return 0
	}
	if m, ok := maxima[code]; ok {
		return m
	}
	return DefaultMax
}

// Ceiling is the largest Max of any currency: a sum of n in-bound amounts is
// at most n*Ceiling, which fits an int64 for n below 92 billion.
func Ceiling() int64 {
	c := DefaultMax
	for _, m := range maxima {
		c = max(c, m)
	}
	return c
}

// CheckAmount returns nil when amount is a positive number of minor units
// within code's bound, and an error saying which bound it breaks otherwise.
// Every door through which an amount enters billingd calls it.
func CheckAmount(amount int64, code string) error {
	if !Valid(code) {
		return fmt.Errorf("currency %q is not an upper-case ISO 4217 code billingd accepts", code)
	}
	if amount <= 0 {
		return fmt.Errorf("must be a positive whole number of minor units, got %d", amount)
	}
	if m := Max(code); amount > m {
		return fmt.Errorf("must be at most %d minor units (%s) in %s, got %d", m, Format(m, code), code, amount)
	}
	return nil
}
