package sim

import (
	"strconv"
	"strings"

	"github.com/billingd/billingd/internal/gateway/units"
)

// Amounts inside the simulator (objects, ledger, refunds, pages) are ISO 4217
// minor units, whichever provider it plays. Each wire layer converts at its
// edge: a request's amount with the provider's table's FromWire (refusing an
// amount or a currency the provider cannot take, as the provider would), a
// response's with ToWire. So one ledger compares with billingd's books on both
// providers, and a wire amount the client sent unconverted shows up as a wrong
// ledger amount or a refusal instead of passing silently.

// wireToISO converts a request's wire amount. It fails when the provider
// cannot take the currency, or when the amount has digits the provider's unit
// or ISO's cannot carry (an ISK amount on WooshPay that is not whole krónur, a
// KWD amount on Checkout.com whose last digit is not 0).
func wireToISO(t *units.Table, wire int64, currency string) (int64, error) {
	iso, err := t.FromWire(wire, currency)
	if err != nil {
		return 0, err
	}
	back, err := t.ToWire(iso, currency)
	if err != nil {
		return 0, err
	}
	if back != wire {
		return 0, errNotWhole
	}
	return iso, nil
}

type amountError string

func (e amountError) Error() string { return string(e) }

const errNotWhole = amountError("the amount is not a whole number of the currency's minor units")

// isoToWire converts an amount the simulator holds for a response. Every amount
// held came through wireToISO (or is a copy of one), so it converts back; if it
// ever did not, the ISO amount is answered rather than a made-up one.
func isoToWire(t *units.Table, iso int64, currency string) int64 {
	w, err := t.ToWire(iso, currency)
	if err != nil {
		return iso
	}
	return w
}

// wpAmount is isoToWire for the WooshPay wire forms.
func wpAmount(iso int64, currency string) int64 { return isoToWire(units.WooshPay, iso, currency) }

// formatAmount renders an amount in ISO minor units as "25.00 USD" for the
// hosted pages, with the currency's ISO 4217 exponent: 12345 ISK is "12345
// ISK", 12345 KWD "12.345 KWD".
func formatAmount(amount int64, currency string) string {
	currency = strings.ToUpper(currency)
	exp, found := units.ISOExponent(currency)
	if !found {
		exp = 2
	}
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	if exp == 0 {
		return sign + strconv.FormatInt(amount, 10) + " " + currency
	}
	unit := int64(1)
	for range exp {
		unit *= 10
	}
	frac := strconv.FormatInt(amount%unit, 10)
	frac = strings.Repeat("0", exp-len(frac)) + frac
	return sign + strconv.FormatInt(amount/unit, 10) + "." + frac + " " + currency
}
