package sim

import "strings"

// outcome is what charging a saved card does. It is decided once, when the card is
// saved, from the test-card table; afterwards only this value is kept, never the
// number.
type outcome uint8

const (
	outcomeSucceed outcome = iota
	outcomeChallenge
	outcomeProcessing
	outcomeDecline
)

// cardError is an immutable issuer answer: the error of a 402 and the
// last_payment_error of the intent it left behind. Intents point at the shared
// table entries, which keeps a million declined intents cheap.
type cardError struct {
	Type        string `json:"type"`
	Code        string `json:"code"`
	DeclineCode string `json:"decline_code"`
	AdviceCode  string `json:"advice_code"`
	Message     string `json:"message"`
}

// cardRule is one row of the test-card table.
type cardRule struct {
	outcome outcome
	decline *cardError
}

// Declines follow Stripe's test cards: lost and stolen cards come back as
// card_declined with the reason in decline_code, while expired_card and
// processing_error are their own codes. decline_code is always set so the
// client can classify hard and soft declines from one field.
var (
	declineInsufficientFunds = &cardError{Type: "card_error", Code: "card_declined", DeclineCode: "insufficient_funds", Message: "Your card has insufficient funds."}
	declineGeneric           = &cardError{Type: "card_error", Code: "card_declined", DeclineCode: "generic_decline", Message: "Your card was declined."}
	declineProcessingError   = &cardError{Type: "card_error", Code: "processing_error", DeclineCode: "processing_error", Message: "An error occurred while processing your card. Try again in a little bit."}
	declineExpiredCard       = &cardError{Type: "card_error", Code: "expired_card", DeclineCode: "expired_card", Message: "Your card has expired."}
	declineLostCard          = &cardError{Type: "card_error", Code: "card_declined", DeclineCode: "lost_card", Message: "Your card was declined."}
	declineStolenCard        = &cardError{Type: "card_error", Code: "card_declined", DeclineCode: "stolen_card", Message: "Your card was declined."}
	// declineAuthenticationRequired answers a charge of a card that asks for
	// 3-D Secure when no customer is there to take the challenge (a
	// merchant-initiated payment on Checkout.com).
	declineAuthenticationRequired = &cardError{Type: "card_error", Code: "authentication_required", DeclineCode: "authentication_required", Message: "This payment requires authentication by the customer."}
	// authenticationFailure is left on an intent whose 3-D Secure challenge failed
	// (Stripe's payment_intent_authentication_failure).
	authenticationFailure = &cardError{Type: "card_error", Code: "payment_intent_authentication_failure", DeclineCode: "authentication_failure", Message: "The provided payment method has failed authentication. Provide a new payment method to attempt to fulfill this payment intent again."}
)

// The test-card table itself is TestCards (testcards.go).

func ruleFor(number string) cardRule {
	if r, ok := testCards[number]; ok {
		return r
	}
	return cardRule{outcome: outcomeSucceed}
}

// normalizeCardNumber strips the spaces and dashes people type ("4111 1111 …").
func normalizeCardNumber(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s)
}

// allDigits reports whether s is non-empty and only ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// luhnValid reports whether a digit string passes the Luhn check.
func luhnValid(number string) bool {
	sum := 0
	double := false
	for i := len(number) - 1; i >= 0; i-- {
		d := int(number[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// cardBrand guesses the network from the number's prefix, as Stripe reports it.
func cardBrand(number string) string {
	prefix := func(n int) int {
		if len(number) < n {
			return -1
		}
		v := 0
		for i := 0; i < n; i++ {
			v = v*10 + int(number[i]-'0')
		}
		return v
	}
	switch p2, p3, p4, p6 := prefix(2), prefix(3), prefix(4), prefix(6); {
	case number[0] == '4':
		return "visa"
	case p2 >= 51 && p2 <= 55, p6 >= 222100 && p6 <= 272099:
		return "mastercard"
	case p2 == 34 || p2 == 37:
		return "amex"
	case p4 == 6011, p2 == 65, p3 >= 644 && p3 <= 649:
		return "discover"
	case p2 == 35:
		return "jcb"
	case p2 == 36 || p2 == 38 || p2 == 39 || (p3 >= 300 && p3 <= 305):
		return "diners"
	case p2 == 62:
		return "unionpay"
	}
	return "unknown"
}
