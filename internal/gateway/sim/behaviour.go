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
