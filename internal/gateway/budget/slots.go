package budget

import (
	"context"
	"sync"
	"time"
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
func (s *Slots) Acquire(ctx context.Context) error { return s.acquire(ctx, nil) }

// acquire is Acquire; while the cap is nothing it calls starved every
// renewRetry (nil: it only waits).
func (s *Slots) acquire(ctx context.Context, starved func(context.Context)) error {
	for {
		s.mu.Lock()
		if s.open < s.cap {
			s.open++
			s.mu.Unlock()
			return nil
		}
		changed, none := s.changed, s.cap == 0
		s.mu.Unlock()
		var timer *time.Timer
		var retry <-chan time.Time
		if none && starved != nil {
			starved(ctx)
			timer = time.NewTimer(renewRetry)
			retry = timer.C
		}
		select {
		case <-changed:
		case <-retry:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if err := ctx.Err(); err != nil {
			return err
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
