// Package budget holds this process's part of the gateway's limits and makes
// every gateway call take from it: a rate limiter of two token buckets (one
// reserved for customer-facing pay pages, lent to the rest while no pay page
// waits), a resizable cap on requests in flight, and Client, a decorator
// around the provider's client through which every call goes.
//
// The shares themselves (how much of gateway.rate_limit and
// gateway.concurrency this instance may use) come from the cluster's
// heartbeat (internal/cluster); this package only enforces them, and changes
// them at runtime.
//
// It imports no other internal package but gateway.
package budget

import (
	"context"
	"math"
	"sync"
	"time"
)

// customerKey marks a context as a customer-facing request (a pay page).
type customerKey struct{}

// CustomerFacing marks ctx as serving a customer on a pay page: its gateway
// calls take from the pay pages' reserved part of the rate first.
func CustomerFacing(ctx context.Context) context.Context {
	return context.WithValue(ctx, customerKey{}, true)
}

// IsCustomerFacing reports whether ctx was marked by CustomerFacing.
func IsCustomerFacing(ctx context.Context) bool {
	v, _ := ctx.Value(customerKey{}).(bool)
	return v
}

// bucket is a token bucket: rate tokens per second, at most burst held.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
}

// wait is how long until the bucket holds a whole token (refilled at now);
// -1 when it never will at its rate.
func (b *bucket) wait(now time.Time) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	if b.rate <= 0 {
		return -1
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// BurstWindow is how much of its rate a bucket may save up: a quarter of a
// second's worth, at least one request. An instance's two buckets then hold
// at most share/4 + 2 tokens, so the live instances' bursts add up to a
// quarter of the cluster's rate plus two per instance — within the gateway's
// own burst (one second's worth) with room to spare for the network bunching
// requests on the way, and enough that a waiter woken a little late loses
// nothing.
const BurstWindow = 250 * time.Millisecond

// renewRetry is how often a waiter whose share expired or is nothing asks
// for a renewal while none gives it a share (the database down, the other
// instances not yet lowered).
const renewRetry = time.Second

// Limiter paces this instance's gateway requests at its rate share. The
// share is split into two token buckets, each of burst BurstWindow's worth
// (at least one request): the pay pages' (rate × payShare) and the rest's. A pay page takes from its own
// bucket or, when that is empty, from the rest's; the background work takes
// from its own and borrows the pay pages' tokens while no pay page waits for
// one. The two buckets together admit at most rate per second after a burst
// of their two bursts, so a stream paced by them conforms to a gateway bucket
// of that rate and that burst (docs/cluster.md).
//
// The zero share admits nothing: a waiting request waits until the share is
// raised or its context ends.
type Limiter struct {
	now func() time.Time

	mu         sync.Mutex
	rate       float64
	payShare   float64
	pay, rest  bucket
	payWaiting int
	// changed is closed and replaced whenever the rate changes, so that
	// sleepers recompute their wait.
	changed chan struct{}
	// turn lets one waiter of each class sleep on the buckets at a time;
	// the others queue behind it (in arrival order, roughly), which keeps a
	// hundred waiting workers from waking at every token.
	payTurn, restTurn chan struct{}
	// valid, when set, says whether the share is still this process's to
	// use; while it says no, nothing is admitted and renew is asked for a
	// new one.
	valid func() bool
	renew func(context.Context)
	// renewing lets one waiter at a time run renew.
	renewing sync.Mutex
}

// NewLimiter returns a limiter at rate requests per second of which the part
// payShare (0 to 1) is reserved for pay pages.
func NewLimiter(rate, payShare float64) *Limiter {
	l := &Limiter{now: time.Now, changed: make(chan struct{}), payTurn: make(chan struct{}, 1), restTurn: make(chan struct{}, 1)}
	l.Set(rate, payShare)
	return l
}

// Set changes the rate share and the pay pages' part of it, at once for
// every request that has not been admitted yet, so a lowered share is in
// force when Set returns: tokens beyond the new bursts are dropped, and the
// zero rate admits none.
func (l *Limiter) Set(rate, payShare float64) {
	if rate < 0 || math.IsNaN(rate) {
		rate = 0
	}
	payShare = math.Min(1, math.Max(0, payShare))
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.pay.refill(now)
	l.rest.refill(now)
	l.rate, l.payShare = rate, payShare
	l.pay.rate, l.rest.rate = rate*payShare, rate*(1-payShare)
	for _, b := range []*bucket{&l.pay, &l.rest} {
		b.burst = math.Max(1, b.rate*BurstWindow.Seconds())
		b.tokens = math.Min(b.tokens, b.burst)
	}
	if rate == 0 {
		// A share of nothing (a joining instance, one whose heartbeat is
		// too old) sends nothing, not even what it had saved up.
		l.pay.tokens, l.rest.tokens = 0, 0
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// Guard makes every admission ask valid first: while it returns false the
// limiter admits nothing, whatever its buckets hold, until the next Set, and
// one of the waiters calls renew (which is expected to Set a new share, or
// fail and leave the limiter waiting for the next try) — as it does,
// every renewRetry, while the share is nothing. The cluster's
// heartbeat uses it so that a process whose share ran out (no heartbeat for a
// whole expiry: paused, cut off) sends nothing until it has beaten again —
// and beats at once rather than at its next scheduled heartbeat. valid must
// not block; renew must not wait for the limiter.
func (l *Limiter) Guard(valid func() bool, renew func(context.Context)) {
	l.mu.Lock()
	l.valid, l.renew = valid, renew
	l.mu.Unlock()
}

// Rate is the rate share in force.
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate
}

// Wait blocks until the request may be sent (a token taken) or ctx ends.
// A context marked CustomerFacing is a pay page's.
func (l *Limiter) Wait(ctx context.Context) error {
	customer := IsCustomerFacing(ctx)
	turn := l.restTurn
	if customer {
		turn = l.payTurn
		l.mu.Lock()
		l.payWaiting++
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.payWaiting--
			l.mu.Unlock()
		}()
	}
	select {
	case turn <- struct{}{}:
		defer func() { <-turn }()
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		wait, changed, starved := l.take(customer)
		if wait == 0 {
			return nil
		}
		if starved {
			// A renewal that succeeds Sets, which closes changed; until
			// one does, try again every renewRetry.
			l.askRenewal(ctx)
			wait = renewRetry
		}
		var timer *time.Timer
		var fired <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fired = timer.C
		}
		select {
		case <-fired:
		case <-changed:
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

// askRenewal runs renew (Guard) unless another waiter is running it.
func (l *Limiter) askRenewal(ctx context.Context) {
	l.mu.Lock()
	renew := l.renew
	l.mu.Unlock()
	if renew != nil && l.renewing.TryLock() {
		renew(ctx)
		l.renewing.Unlock()
	}
}

// take takes a token for a request of the class if one is there (wait 0),
// or says how long until one might be (-1: not at the current rate; wait
// for changed), and whether the limiter is starved: its share expired
// (Guard) or is nothing, so that only a renewal can let the request through.
func (l *Limiter) take(customer bool) (time.Duration, <-chan struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.pay.refill(now)
	l.rest.refill(now)
	if l.valid != nil && !l.valid() {
		l.pay.tokens, l.rest.tokens = 0, 0
		return -1, l.changed, true
	}
	first, second := &l.rest, &l.pay
	lend := l.payWaiting == 0
	if customer {
		first, second, lend = &l.pay, &l.rest, true
	}
	if first.tokens >= 1 {
		first.tokens--
		return 0, nil, false
	}
	if lend && second.tokens >= 1 {
		second.tokens--
		return 0, nil, false
	}
	if l.rate == 0 {
		return -1, l.changed, true
	}
	wait := first.wait(now)
	if lend {
		if w := second.wait(now); w >= 0 && (wait < 0 || w < wait) {
			wait = w
		}
	}
	if wait == 0 {
		// A token is due within the clock's resolution; look again soon.
		wait = time.Millisecond
	}
	return wait, l.changed, false
}
