package budget

import (
	"context"
	"sync"
)

// Slots caps the requests this instance has open at the gateway at once
// (its concurrency share). Unlike a buffered channel its cap changes under
// waiting and running requests: a lowered cap admits no new request until
// the open ones are below it, and InFlight tells the heartbeat how many are
// still open, so that it publishes no less than what is in use.
type Slots struct {
	mu      sync.Mutex
	cap     int
	open    int
	changed chan struct{}
}

// NewSlots returns a cap of n requests in flight (0 admits none).
func NewSlots(n int) *Slots { return &Slots{cap: max(0, n), changed: make(chan struct{})} }

// SetCap changes the cap at once for requests not yet admitted.
func (s *Slots) SetCap(n int) {
	s.mu.Lock()
	s.cap = max(0, n)
	s.wake()
	s.mu.Unlock()
}

// Cap is the cap in force.
func (s *Slots) Cap() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cap
}

// InFlight is the number of requests holding a slot now.
func (s *Slots) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// wake tells every waiter to look again; s.mu is held.
func (s *Slots) wake() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Acquire takes a slot, waiting while all are taken, until ctx ends. The
// caller releases it with Release once the request has its answer.
func (s *Slots) Acquire(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.open < s.cap {
			s.open++
			s.mu.Unlock()
			return nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Release gives back a slot taken by Acquire.
func (s *Slots) Release() {
	s.mu.Lock()
	s.open--
	s.wake()
	s.mu.Unlock()
}
