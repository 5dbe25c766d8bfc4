// Package units converts billingd's amounts — integers in the currency's ISO
// 4217 minor unit — to and from the units a payment provider's API takes on
// the wire, and says which currencies and amounts a provider can charge.
//
// Providers disagree with ISO 4217 and with each other: Stripe-shaped APIs
// (WooshPay) take ISK and HUF with two decimals although ISO gives ISK none,
// and MGA with none although ISO gives it two; Checkout.com takes ISK with none
// and the three-decimal currencies only in whole hundredths (the last digit 0).
// An amount sent unconverted is charged wrong by a factor of ten or a hundred,
// so every provider client converts through a Table, and an import refuses a
// currency or an amount the configured provider cannot charge before anything
// is written.
//
// This package imports nothing else of billingd's; money, the provider clients
// and the simulator all read the ISO exponents here.
package units

import (
	"fmt"
	"strings"
)

// isoOther lists the active ISO 4217 codes whose minor-unit exponent is not
// 2; isoTwo lists the rest. A code in neither is not a currency billingd
// accepts.
var isoOther = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
	"PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

var isoTwo = strings.Fields(`AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD
BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR
FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD
KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN
NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS
SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD
XCG YER ZAR ZMW ZWG`)

var iso = func() map[string]int {
	m := make(map[string]int, len(isoOther)+len(isoTwo))
	for c, e := range isoOther {
		m[c] = e
	}
	for _, c := range isoTwo {
		m[c] = 2
	}
	return m
}()

// ISOExponent returns the ISO 4217 minor-unit exponent of an upper-case
// currency code, and whether billingd knows the code at all.
func ISOExponent(code string) (int, bool) {
	e, ok := iso[code]
	return e, ok
}

// Rule is how one provider takes one currency on the wire.
type Rule struct {
	// Exp is the number of decimals the provider's integer amount carries
	// (JPY 0, USD 2, KWD 3 on Checkout.com).
	Exp int
	// Multiple, when above 1, is what every wire amount must be a multiple
	// of (Checkout.com's three-decimal currencies end in 0; Stripe's ISK
	// and HUF amounts are whole units).
	Multiple int64
}

// Table is one provider's wire rules. Currencies listed in Unsupported
// cannot be charged at all; a currency with no entry in Rules is taken with
// its ISO exponent.
type Table struct {
	// Provider names the provider in errors ("wooshpay", "checkout").
	Provider    string
	Rules       map[string]Rule
	Unsupported map[string]string // code → why
}

// Rule returns the wire rule of code, or an error naming why the provider
// cannot take it.
func (t *Table) Rule(code string) (Rule, error) {
	isoExp, ok := iso[code]
	if !ok {
		return Rule{}, fmt.Errorf("%q is not an ISO 4217 currency code billingd knows", code)
	}
	if why, ok := t.Unsupported[code]; ok {
		return Rule{}, fmt.Errorf("%s cannot charge %s: %s", t.Provider, code, why)
	}
	if r, ok := t.Rules[code]; ok {
		return r, nil
	}
	return Rule{Exp: isoExp}, nil
}

// ToWire converts minor ISO units of code to the provider's wire units. It
// fails, naming the currency and the amount, when the provider cannot take
// the currency or when the amount has digits the provider's unit cannot
// carry (1.005 KWD on Checkout.com, 50 cents of MGA on WooshPay).
func (t *Table) ToWire(minor int64, code string) (int64, error) {
	r, err := t.Rule(code)
	if err != nil {
		return 0, err
	}
	isoExp := iso[code]
	wire := minor
	switch {
	case r.Exp > isoExp:
		f := pow10(r.Exp - isoExp)
		if minor > maxInt64/f || minor < -maxInt64/f {
			return 0, fmt.Errorf("%d %s in minor units is too large for %s", minor, code, t.Provider)
		}
		wire = minor * f
	case r.Exp < isoExp:
		f := pow10(isoExp - r.Exp)
		if minor%f != 0 {
			return 0, fmt.Errorf("%s charges %s in units of %s; %d minor units is not a whole number of them",
				t.Provider, code, unitName(isoExp-r.Exp, isoExp), minor)
		}
		wire = minor / f
	}
	if r.Multiple > 1 && wire%r.Multiple != 0 {
		step := r.Multiple
		if r.Exp > isoExp {
			step /= pow10(r.Exp - isoExp)
		} else if r.Exp < isoExp {
			step *= pow10(isoExp - r.Exp)
		}
		return 0, fmt.Errorf("%s charges %s only in multiples of %d minor units; %d is not one", t.Provider, code, step, minor)
	}
	return wire, nil
}

// FromWire converts a provider's wire amount of code back to ISO minor units.
// A wire amount with digits ISO's unit cannot carry is an error: the provider
// reported money billingd cannot book exactly.
func (t *Table) FromWire(wire int64, code string) (int64, error) {
	r, err := t.Rule(code)
	if err != nil {
		return 0, err
	}
	isoExp := iso[code]
	switch {
	case r.Exp > isoExp:
		f := pow10(r.Exp - isoExp)
		if wire%f != 0 {
			return 0, fmt.Errorf("%s reported %d %s wire units, not a whole number of ISO minor units", t.Provider, wire, code)
		}
		return wire / f, nil
	case r.Exp < isoExp:
		f := pow10(isoExp - r.Exp)
		if wire > maxInt64/f || wire < -maxInt64/f {
			return 0, fmt.Errorf("%s reported %d %s wire units, too large to book", t.Provider, wire, code)
		}
		return wire * f, nil
	}
	return wire, nil
}

// Check reports whether the provider can charge minor ISO units of code (the
// import's question, asked of every row before anything is written).
func (t *Table) Check(minor int64, code string) error {
	_, err := t.ToWire(minor, code)
	return err
}

const maxInt64 = int64(^uint64(0) >> 1)

func pow10(n int) int64 {
	f := int64(1)
	for ; n > 0; n-- {
		f *= 10
	}
	return f
}

func unitName(shift, isoExp int) string {
	if shift == isoExp {
		return "whole units"
	}
	return fmt.Sprintf("%d minor units", pow10(shift))
}
