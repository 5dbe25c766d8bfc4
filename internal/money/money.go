// Package money knows ISO 4217 currencies and their minor-unit exponents, so that
// amounts can be stored as integers in minor units and shown correctly
// (USD 2 decimals, JPY 0, KWD 3).
package money

import (
	"fmt"
	"github.com/billingd/billingd/internal/gateway/units"
	"strconv"
	"strings"
)

// Exponent returns the number of minor-unit digits of an upper-case ISO 4217 code.
func Exponent(code string) (int, bool) { return units.ISOExponent(code) }

// Valid reports whether code is an upper-case ISO 4217 currency billingd accepts.
func Valid(code string) bool {
	_, ok := units.ISOExponent(code)
	return ok
}

// Format renders minor units in the currency's own exponent: Format(123456, "JPY")
// is "123456 JPY", Format(1050, "USD") is "10.50 USD", Format(1500, "KWD") is
// "1.500 KWD".
func Format(amount int64, code string) string {
	exp, ok := units.ISOExponent(code)
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
