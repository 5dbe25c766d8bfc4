package sim

import "fmt"

// SetCardBehaviour makes a saved payment method charge from now on like the
// test card number would (a customer topping up an account: insufficient
// funds, then accepted). Tests and demos use it to show a soft decline that
// recovers at its next retry; the card's id, brand and last 4 stay.
func (s *Server) SetCardBehaviour(paymentMethod, number string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pm, ok := s.methods[paymentMethod]
	if !ok {
		return fmt.Errorf("sim: no payment method %s", paymentMethod)
	}
	pm.rule = ruleFor(normalizeCardNumber(number))
	return nil
}
