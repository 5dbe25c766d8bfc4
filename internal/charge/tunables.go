package charge

import "time"

// Tunables are the engine settings a config reload (SIGHUP) changes under a
// running daemon: the transient retry policy (retry.*), the cap on requests in
// flight (gateway.concurrency), and the waits before an unknown attempt is
// replayed and before the reconciler looks again at a processing one.
type Tunables struct {
	Retry             RetryPolicy
	MaxInFlight       int
	UnknownRetryDelay time.Duration
	RecheckAfter      time.Duration
}

// Reconfigure applies t to attempts sent from now on. An exchange already under
// way keeps the policy it started with; requests already holding a slot of the
// old cap finish under it (for at most one request timeout the two caps add up).
func (e *Engine) Reconfigure(t Tunables) {
	if t.UnknownRetryDelay <= 0 {
		t.UnknownRetryDelay = time.Minute
	}
	if t.RecheckAfter <= 0 {
		t.RecheckAfter = 5 * time.Minute
	}
	if old := e.tune.Load(); old == nil || old.MaxInFlight != t.MaxInFlight {
		if t.MaxInFlight > 0 {
			slots := make(chan struct{}, t.MaxInFlight)
			e.slots.Store(&slots)
		} else {
			e.slots.Store(nil)
		}
	}
	e.tune.Store(&t)
}

// Settings returns the tunables in force.
func (e *Engine) Settings() Tunables { return *e.tune.Load() }
