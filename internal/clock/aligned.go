package clock

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// MaxMeasureRoundTrip is the longest round trip a measurement of the offset
// is taken from: its error is at most half of it.
const MaxMeasureRoundTrip = 200 * time.Millisecond

// Aligned is the wall clock moved onto another clock's time — the database
// server's, which every instance of a cluster writes its leases and
// heartbeats on (docs/protocol.md, "No send on a lost lease") — by an offset measured now and then. Each
// host's own clock may be off by seconds; measured against one server, the
// instances' leases disagree only by the measurement's error (half a round
// trip) plus what the host's clock drifts between two measurements.
//
// Sleep waits on the real timer: durations need no alignment.
type Aligned struct {
	offset atomic.Int64 // nanoseconds to add to the local clock
}

// Now returns the local time plus the last measured offset, in UTC.
func (a *Aligned) Now() time.Time {
	return time.Now().Add(time.Duration(a.offset.Load())).UTC()
}

// Sleep waits on a timer, as Real does.
func (a *Aligned) Sleep(ctx context.Context, d time.Duration) error { return Real{}.Sleep(ctx, d) }

// Offset is what Now adds to the local clock.
func (a *Aligned) Offset() time.Duration { return time.Duration(a.offset.Load()) }

// ErrRoundTripTooLong is what Measure reports for a reading whose round trip
// exceeded MaxMeasureRoundTrip: the database answered, but too slowly to tell
// when. A caller may simply read again.
var ErrRoundTripTooLong = errors.New("round trip too long")

// Measure reads the other clock once with read and takes, as the offset, its
// answer minus the local time at the round trip's midpoint. It returns the
// offset and the round trip; on an error the offset in force is kept.
func (a *Aligned) Measure(ctx context.Context, read func(context.Context) (time.Time, error)) (offset, roundTrip time.Duration, err error) {
	before := time.Now()
	remote, err := read(ctx)
	after := time.Now()
	if err != nil {
		return a.Offset(), 0, err
	}
	roundTrip = after.Sub(before)
	if roundTrip > MaxMeasureRoundTrip {
		// The reading's moment is known only to within half the round trip:
		// a read that waited for a busy pool or a lock would move the clock
		// by as much (backwards, it would hold every scheduled job back).
		return a.Offset(), roundTrip, fmt.Errorf("clock: a %s round trip is too long to measure the database's clock by; the offset stays %s: %w", roundTrip, a.Offset(), ErrRoundTripTooLong)
	}
	// Wall readings (Round(0) drops the monotonic one, so Sub compares
	// wall times): the offset is between two wall clocks.
	mid := before.Round(0).Add(roundTrip / 2)
	offset = remote.Sub(mid)
	a.offset.Store(int64(offset))
	return offset, roundTrip, nil
}
