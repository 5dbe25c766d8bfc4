package sim

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// TestCard is one row of the simulator's test-card table: a card number and
// what an off-session charge on the card saved from it does. The table is
// public so that everything that explains or exercises the simulator (`billingd
// sim -h`, the demo, tests, docs/simulator.md) shows the same cards as the
// simulator applies; no other copy of it should exist.
type TestCard struct {
	// Number is the card number to type (or send as payment_method_data).
	Number string
	// Outcome is the PaymentIntent status a charge ends in: "succeeded",
	// "requires_action", "processing" or "declined" (a 402 card_error, with
	// the intent left in requires_payment_method).
	Outcome string
	// DeclineCode is the error's decline_code for a declined charge.
	DeclineCode string
	// Hard marks a decline after which the card cannot be charged again
	// (expired, lost, stolen); a soft one may succeed on a later retry.
	Hard bool
	// Note says what happens afterwards, when anything does.
	Note string

	rule cardRule
}

// Test-card outcomes, as TestCard.Outcome spells them.
const (
	OutcomeSucceeded      = "succeeded"
	OutcomeRequiresAction = "requires_action"
	OutcomeProcessing     = "processing"
	OutcomeDeclined       = "declined"
)

// TestCards lists the simulator's test cards in the order the docs show them.
// Any other Luhn-valid number saves and succeeds.
var TestCards = []TestCard{
	{Number: "4111111111111111", Outcome: OutcomeSucceeded, rule: cardRule{outcome: outcomeSucceed}},
	{Number: "4761344136141390", Outcome: OutcomeSucceeded, rule: cardRule{outcome: outcomeSucceed}},
	{Number: "4242424242424242", Outcome: OutcomeSucceeded, rule: cardRule{outcome: outcomeSucceed}},
	{Number: "4462030000000000", Outcome: OutcomeRequiresAction,
		Note: "3-D Secure (challenge_redirect); succeeds once the challenge is passed",
		rule: cardRule{outcome: outcomeChallenge}},
	{Number: "4000000000009995", Outcome: OutcomeDeclined, DeclineCode: "insufficient_funds",
		rule: cardRule{outcome: outcomeDecline, decline: declineInsufficientFunds}},
	{Number: "4000000000000002", Outcome: OutcomeDeclined, DeclineCode: "generic_decline",
		rule: cardRule{outcome: outcomeDecline, decline: declineGeneric}},
	{Number: "4000000000000119", Outcome: OutcomeDeclined, DeclineCode: "processing_error",
		rule: cardRule{outcome: outcomeDecline, decline: declineProcessingError}},
	{Number: "4000000000000069", Outcome: OutcomeDeclined, DeclineCode: "expired_card", Hard: true,
		rule: cardRule{outcome: outcomeDecline, decline: declineExpiredCard}},
	{Number: "4000000000009987", Outcome: OutcomeDeclined, DeclineCode: "lost_card", Hard: true,
		rule: cardRule{outcome: outcomeDecline, decline: declineLostCard}},
	{Number: "4000000000009979", Outcome: OutcomeDeclined, DeclineCode: "stolen_card", Hard: true,
		rule: cardRule{outcome: outcomeDecline, decline: declineStolenCard}},
	{Number: "4000000000000259", Outcome: OutcomeProcessing,
		Note: "settles to succeeded later (payment_intent.succeeded webhook)",
		rule: cardRule{outcome: outcomeProcessing}},
}

// testCards indexes TestCards by number for the simulator's own lookups.
var testCards = func() map[string]cardRule {
	m := make(map[string]cardRule, len(TestCards))
	for _, c := range TestCards {
		m[c.Number] = c.rule
	}
	return m
}()

// Describe is the card's outcome in words, e.g. "declined: expired_card
// (hard)" or "processing; settles to succeeded later (…)".
func (c TestCard) Describe() string {
	s := c.Outcome
	if c.DeclineCode != "" {
		class := "soft"
		if c.Hard {
			class = "hard"
		}
		s = fmt.Sprintf("%s: %s (%s)", s, c.DeclineCode, class)
	}
	if c.Note != "" {
		s += "; " + c.Note
	}
	return s
}

// TestCardTable renders TestCards as an aligned two-column text table, as
// `billingd sim -h` prints it.
func TestCardTable() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 2, 2, ' ', 0)
	fmt.Fprintln(w, "  CARD\tOUTCOME OF AN OFF-SESSION CHARGE")
	for _, c := range TestCards {
		fmt.Fprintf(w, "  %s\t%s\n", c.Number, c.Describe())
	}
	fmt.Fprintln(w, "  any other Luhn-valid number\tsucceeded")
	_ = w.Flush()
	return b.String()
}

// CheckoutAnswer is what a Checkout.com merchant-initiated payment
// (source type id) of a card stored from this number answers, with
// Checkout.com's response code: docs/simulator.md's Checkout.com table.
func (c TestCard) CheckoutAnswer() string {
	switch c.rule.outcome {
	case outcomeChallenge:
		cc := ckoDeclineCodes[declineAuthenticationRequired.DeclineCode]
		return "201 Declined " + cc.code + " " + cc.summary + "; with a customer and 3ds.enabled: 202 Pending with _links.redirect to the challenge"
	case outcomeProcessing:
		return "202 Pending without a redirect; Captured later (payment_approved, payment_captured)"
	case outcomeDecline:
		cc := ckoDeclineCodes[c.rule.decline.DeclineCode]
		return "201 Declined " + cc.code + " " + cc.summary
	}
	return "201 Authorized " + ckoApproved.code + " " + ckoApproved.summary + "; captured shortly after (payment_captured)"
}
