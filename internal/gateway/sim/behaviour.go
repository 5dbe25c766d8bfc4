package sim

import "fmt"

// SetCardBehaviour makes a saved card charge from now on as the test card number
// would (see the test-card table): a card that paid for months can start
// declining, as a real one does when its account runs dry. Tests use it to
// follow one payment method through a change of fortune; the number is used to
// pick the rule and is not kept.
func (s *Server) SetCardBehaviour(paymentMethodID, number string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pm, ok := s.methods[paymentMethodID]
	if !ok {
		return fmt.Errorf("sim: no payment method %s", paymentMethodID)
	}
	pm.rule = ruleFor(normalizeCardNumber(number))
	return nil
}

// SetCardExpiry gives a saved card a new expiry under the same id, as a
// card network's account updater does when the bank issues a renewed card:
// reads of the payment method report it from now on, and charges are checked
// against it.
func (s *Server) SetCardExpiry(paymentMethodID string, month, year int) error {
	if month < 1 || month > 12 {
		return fmt.Errorf("sim: exp_month %d is not a month (1-12)", month)
	}
	if year < 2000 || year > 2100 {
		return fmt.Errorf("sim: exp_year %d is not a four-digit year", year)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pm, ok := s.methods[paymentMethodID]
	if !ok {
		return fmt.Errorf("sim: no payment method %s", paymentMethodID)
	}
	pm.expMonth, pm.expYear = month, year
	return nil
}
