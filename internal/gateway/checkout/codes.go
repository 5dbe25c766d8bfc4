package checkout

import (
	"strings"

	"github.com/billingd/billingd/internal/gateway"
)

// Checkout.com answers every processed payment with a five-digit
// response_code (checkout.com/docs/resources/codes/response-codes): 10xxx
// approved, 20xxx soft decline ("subsequent attempts may be successful"),
// 30xxx hard decline ("most hard declines require the issuer or cardholder to
// rectify the outstanding issue(s)"), 40xxx risk responses. The family says
// too little for dunning: several 20xxx codes mean the card itself is
// unusable (expired, invalid number, closed account, suspected fraud), and
// card-network rules forbid retrying some of them (Visa's category-1 codes
// 12, 14, 15, 41, 43, 46, 57). So each code billingd knows is mapped to a word
// of the decline catalogue (gateway/declines.go), whose hard/soft class and
// customer-facing words then apply, and the family decides only for codes the
// table does not list.

// codeInfo is what billingd knows about one response code.
type codeInfo struct {
	// word is the neutral decline code of gateway's catalogue.
	word string
	// summary is Checkout.com's documented response_summary, used when the
	// answer carried none.
	summary string
	// action marks the code that asks for the cardholder to authenticate:
	// not a decline of the card, but a payment that must be made on-session.
	action bool
}

// CodeAuthenticationRequired is the response code of an off-session payment
// the issuer wants authenticated with 3-D Secure (soft decline; Checkout.com
// may upgrade such a payment itself). billingd treats it as RequiresAction.
const CodeAuthenticationRequired = "20154"

// responseCodes is the per-code table. Keep it in step with the table in
// docs/gateway-checkout.md.
var responseCodes = map[string]codeInfo{
	"20001": {word: "generic_decline", summary: "Refer to card issuer"},
	"20002": {word: "generic_decline", summary: "Refer to card issuer - Special conditions"},
	"20005": {word: "generic_decline", summary: "Declined - Do not honour"},
	"20006": {word: "processing_error", summary: "Error / Unspecified error"},
	"20012": {word: "card_not_supported", summary: "Invalid transaction"},
	"20014": {word: "invalid_number", summary: "Invalid card number"},
	"20015": {word: "invalid_account", summary: "No such issuer"},
	"20046": {word: "invalid_account", summary: "Closed account"},
	"20051": {word: "insufficient_funds", summary: "Insufficient funds"},
	"20054": {word: "expired_card", summary: "Expired card"},
	"20057": {word: "card_not_supported", summary: "Transaction not permitted to cardholder"},
	"20059": {word: "fraudulent", summary: "Suspected fraud"},
	"20061": {word: "insufficient_funds", summary: "Exceeds withdrawal value/amount limits"},
	"20062": {word: "restricted_card", summary: "Restricted card"},
	"20065": {word: "try_again_later", summary: "Exceeds withdrawal frequency limit"},
	"20068": {word: "processing_error", summary: "Response received too late / timeout"},
	"20091": {word: "processing_error", summary: "Issuer unavailable or switch is inoperative"},
	"20096": {word: "processing_error", summary: "System malfunction"},
	"20151": {word: gateway.DeclineAuthenticationFailed, summary: "Cardholder failed 3DS authentication"},
	"20154": {word: "authentication_required", summary: "3DS authentication required", action: true},
	"30004": {word: "pickup_card", summary: "Pick up card (no fraud)"},
	"30007": {word: "pickup_card", summary: "Pick up card - special conditions"},
	"30041": {word: "lost_card", summary: "Lost card - pick up"},
	"30043": {word: "stolen_card", summary: "Stolen card - pick up"},
}

// Family defaults for codes the table does not list.
const (
	softDefault = "generic_decline"
	// hardDefault is what an unlisted 30xxx code becomes: Checkout.com calls
	// the family hard, so no retry on the same card.
	hardDefault = "do_not_try_again"
	// riskDefault is what a 40xxx risk response becomes: the risk engine
	// will refuse the same card again, so it is not retried either.
	riskDefault = "fraudulent"
)

// approvedCode reports whether code is in the approved family (10xxx).
func approvedCode(code string) bool {
	return len(code) == 5 && code[0] == '1' && allDigits(code)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// declineFor classifies a response code of a payment that was not approved.
// Code is Checkout.com's code, DeclineCode the catalogue's word; Hard comes
// from the catalogue, except that the 30xxx and 40xxx families are hard
// whatever the word. action reports the 3-D Secure case (20154).
func declineFor(code, summary string) (d *gateway.Decline, action bool) {
	code = strings.TrimSpace(code)
	info, known := responseCodes[code]
	if !known {
		info = codeInfo{word: familyDefault(code)}
	}
	if summary == "" {
		summary = info.summary
	}
	d = gateway.NewDecline("card_error", code, info.word, "", summary)
	if len(code) == 5 && (code[0] == '3' || code[0] == '4') && allDigits(code) {
		d.Hard = true
	}
	return d, info.action
}

func familyDefault(code string) string {
	if len(code) == 5 && allDigits(code) {
		switch code[0] {
		case '3':
			return hardDefault
		case '4':
			return riskDefault
		}
	}
	return softDefault
}
