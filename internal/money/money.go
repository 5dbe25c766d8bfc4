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
