package budget

import (
	"context"
	"sync/atomic"
)

// Budget is this instance's part of the gateway's limits: the rate share
// (Limiter) and the concurrency share (Slots). One Budget serves every
// gateway call of the process, through Client.
type Budget struct {
	Limiter *Limiter
	Slots   *Slots
}

// New returns a budget of rate requests per second (payShare of it reserved
// for pay pages) and concurrency requests in flight.
func New(rate, payShare float64, concurrency int) *Budget {
	return &Budget{Limiter: NewLimiter(rate, payShare), Slots: NewSlots(concurrency)}
}

// Set changes both shares at once.
func (b *Budget) Set(rate, payShare float64, concurrency int) {
	b.Limiter.Set(rate, payShare)
	b.Slots.SetCap(concurrency)
}

// ticketKey carries the ticket of one call on the client through its
// requests.
type ticketKey struct{}

// ticket is one call's hold on the budget: a slot for its whole duration
// and a token already taken for its first HTTP request. A call that sends
// more than one request (a look-up before a resend, a search that pages)
// takes a token for each further one in Request.
type ticket struct {
	b       *Budget
	prepaid atomic.Bool
}

// begin takes a slot and a token for one call and returns the call's
// context and the function that gives the slot back.
func (b *Budget) begin(ctx context.Context) (context.Context, func(), error) {
	if err := ctx.Err(); err != nil {
		return ctx, nil, err
	}
	// A share of no slots at all (a joining instance) is renewed the way a
	// rate of nothing is: only a heartbeat can give it some.
	if err := b.Slots.acquire(ctx, b.Limiter.askRenewal); err != nil {
		return ctx, nil, err
	}
	if err := b.Limiter.Wait(ctx); err != nil {
		b.Slots.Release()
		return ctx, nil, err
	}
	t := &ticket{b: b}
	t.prepaid.Store(true)
	return context.WithValue(ctx, ticketKey{}, t), b.Slots.Release, nil
}

// Request is called by a provider's client right before each HTTP request it
// sends (apicall.Do): the first request of a call made through Client uses
// the token the call took, each further one waits for a token of its own. A
// context that did not come through Client (a command-line tool's own
// client) passes at once.
func Request(ctx context.Context) error {
	if t, _ := ctx.Value(ticketKey{}).(*ticket); t != nil && !t.prepaid.Swap(false) {
		if err := t.b.Limiter.Wait(ctx); err != nil {
			return err
		}
	}
	if check := SendCheck(ctx); check != nil {
		// The wait for a slot and a token can be long (a share of nothing
		// until the next heartbeat): whether the request may still leave is
		// decided after it, right before the bytes go out.
		return check()
	}
	return nil
}

// SendCheck returns the check WithSendCheck put on ctx, or nil. The HTTP
// client runs it once more right before a request's first byte is written
// (apicall.DefaultHTTPClient), which leaves a pause after Request's check
// nothing to resume into.
func SendCheck(ctx context.Context) func() error {
	check, _ := ctx.Value(sendCheckKey{}).(func() error)
	return check
}

// sendCheckKey carries a caller's last check before each request.
type sendCheckKey struct{}

// WithSendCheck returns ctx with check run right before each HTTP request a
// call on it sends, after the call waited for its turn in the budget: a
// request whose check fails is not sent, and the call answers with the
// check's error. The charge engine passes its lease check (docs/protocol.md, "No send on a lost lease"), so
// a worker whose lease ran out while it waited for the rate never sends.
func WithSendCheck(ctx context.Context, check func() error) context.Context {
	return context.WithValue(ctx, sendCheckKey{}, check)
}
