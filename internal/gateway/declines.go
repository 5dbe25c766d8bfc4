package gateway

import "strings"

// DeclineInfo is what billingd knows about one decline code: whether another
// try on the same card may succeed, and the words a customer reads about it.
type DeclineInfo struct {
	// Code is the gateway's code (decline_code, or code when there is none).
	Code string
	// Hard means the card cannot be charged again: dunning stops retrying it
	// and asks the customer for another card.
	Hard bool
	// Words explain the refusal to the customer, in a phrase that reads after
	// "because" and inside parentheses alike. Codes that could sound like an
	// accusation (lost_card, stolen_card) are worded neutrally.
	Words string
}

// CodePaymentMethodGone is billingd's own code for a card the gateway no longer
// knows (or no longer attaches to the customer) although it was verified with the
// gateway or charged before: the customer removed it, so it is the customer's
// hard decline, not an error in billingd's data.
const CodePaymentMethodGone = "payment_method_gone"

// DeclineAuthenticationFailed is the decline of a customer-present payment
// whose 3-D Secure challenge failed or was abandoned: soft, the customer may
// try again.
const DeclineAuthenticationFailed = "authentication_failed"

// declineCatalogue is the one table of decline codes. Soft codes are retried
// on the dunning schedule; hard codes wait for a new payment method. Email
// templates and the pay pages take their words from here, so a code is
// classified and explained in one place only.
var declineCatalogue = map[string]DeclineInfo{}

func init() {
	for _, d := range []DeclineInfo{
		// Soft: the same card may well succeed later.
		{Code: "insufficient_funds", Words: "your bank reported insufficient funds"},
		{Code: "generic_decline", Words: "your bank declined the payment"},
		{Code: "do_not_honor", Words: "your bank declined the payment"},
		{Code: "card_declined", Words: "your bank declined the payment"},
		{Code: "processing_error", Words: "your bank had a temporary processing problem"},
		{Code: "try_again_later", Words: "your bank asked us to try again later"},
		{Code: "authentication_required", Words: "your bank asked you to confirm the payment"},
		{Code: DeclineAuthenticationFailed, Words: "the confirmation with your bank did not succeed"},
		// Hard: another try on this card cannot succeed, or card-network rules
		// forbid it.
		{Code: "expired_card", Hard: true, Words: "the card has expired"},
		{Code: "lost_card", Hard: true, Words: "the card is no longer active"},
		{Code: "stolen_card", Hard: true, Words: "the card is no longer active"},
		{Code: "pickup_card", Hard: true, Words: "the card is no longer active"},
		{Code: "restricted_card", Hard: true, Words: "the card is no longer active"},
		{Code: "fraudulent", Hard: true, Words: "your bank declined the payment"},
		{Code: "incorrect_number", Hard: true, Words: "the card number is no longer valid"},
		{Code: "invalid_number", Hard: true, Words: "the card number is no longer valid"},
		{Code: "invalid_account", Hard: true, Words: "the card's account is no longer valid"},
		{Code: "card_not_supported", Hard: true, Words: "the card does not support this kind of payment"},
		{Code: "currency_not_supported", Hard: true, Words: "the card does not support this currency"},
		{Code: "do_not_try_again", Hard: true, Words: "your bank asked us not to charge this card again"},
		{Code: "revocation_of_authorization", Hard: true, Words: "your bank asked us not to charge this card again"},
		{Code: "revocation_of_all_authorizations", Hard: true, Words: "your bank asked us not to charge this card again"},
		{Code: "stop_payment_order", Hard: true, Words: "your bank asked us not to charge this card again"},
		{Code: CodePaymentMethodGone, Hard: true, Words: "the card is no longer on file"},
	} {
		declineCatalogue[d.Code] = d
	}
}

// doNotRetryAdvice are advice codes that forbid a retry whatever the decline code.
var doNotRetryAdvice = map[string]bool{
	"do_not_try_again": true,
	"do_not_retry":     true,
	"stop_recurring":   true,
}

// LookupDecline returns the catalogue entry of a code (case and surrounding
// space ignored); ok is false for a code billingd does not know.
func LookupDecline(code string) (DeclineInfo, bool) {
	d, ok := declineCatalogue[strings.ToLower(strings.TrimSpace(code))]
	return d, ok
}

// DeclineWords explains a decline code in plain words for a customer, or
// returns "" for codes the catalogue does not know: a raw code would only
// confuse the customer.
func DeclineWords(code string) string {
	d, _ := LookupDecline(code)
	return d.Words
}

// IsHardDecline classifies a decline: hard when the advice code forbids a
// retry, or when the decline code or the code is a hard one. Unknown codes are
// soft: a soft decline is retried on the dunning schedule (bounded by the
// per-card cap), while a wrong "hard" would stop collecting money the customer
// may well have.
func IsHardDecline(code, declineCode, adviceCode string) bool {
	if doNotRetryAdvice[strings.ToLower(strings.TrimSpace(adviceCode))] {
		return true
	}
	d, _ := LookupDecline(declineCode)
	c, _ := LookupDecline(code)
	return d.Hard || c.Hard
}
