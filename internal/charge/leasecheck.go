package charge

import (
	"errors"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// ErrLeaseRanOut is what a request that was not sent reports when the
// attempt's lease ran out (or was about to) before it could leave: the row
// may belong to another worker by now, which sends it itself (docs/protocol.md, "No send on a lost lease").
var ErrLeaseRanOut = errors.New("the attempt's lease ran out before its request left; nothing was sent")

// ErrKeyWindowClosed is what a request that was not sent reports when the
// attempt is older than the gateway's idempotency window: its key may be
// forgotten, so a resend could charge again; only a read of the gateway
// settles it (the reconciler).
var ErrKeyWindowClosed = errors.New("the attempt is older than the gateway's idempotency window; nothing was sent")

// LeaseMargin is how much of a lease must be left for a request to leave
// under it, for a gateway whose requests time out after timeout: ten
// timeouts, at most a minute (a minute with the default 30s timeout). It
// covers what happens between the check and the request's bytes leaving —
// the HTTP client dialing, at most one timeout — and the error of the
// database clock's measurement (half a round trip), with room to spare. A
// lease is its work plus this margin (the biller's is retry.max_elapsed_time
// + 2 × gateway.timeout + LeaseMargin), so a short timeout gives a short
// lease, and the margin stays ten times longer than the longest a healthy
// request takes to leave.
func LeaseMargin(timeout time.Duration) time.Duration {
	if m := 10 * timeout; m > 0 && m < time.Minute {
		return m
	}
	return time.Minute
}

// mayStillSend is checked right before every gateway request of an attempt
// this process claimed (a charge's first send and each retry, and the look
// for an earlier payment of its order): the lease must
// have more than the margin left on the monotonic clock (LeaseDeadline, which
// no wall-clock step moves) and on the cluster's clock (LeaseUntil against
// the engine's clock, which also catches a pause before the claim anchored
// its deadline), and the attempt must be inside the gateway's idempotency
// window, measured from its creation (never later than its first send).
// An attempt not claimed by this process (no LeaseDeadline) is not checked.
func (e *Engine) mayStillSend(a *models.ChargeAttempt) error {
	if a.LeaseDeadline.IsZero() {
		return nil
	}
	margin := e.opts.LeaseMargin
	if left := time.Until(a.LeaseDeadline); left < margin {
		return fmt.Errorf("%w (%s of the lease left on the monotonic clock, %s needed)", ErrLeaseRanOut, left.Round(time.Millisecond), margin)
	}
	now := e.opts.Clock.Now()
	if a.LeaseUntil != nil {
		if left := a.LeaseUntil.Sub(now); left < margin {
			return fmt.Errorf("%w (%s of the lease left on the cluster's clock, %s needed)", ErrLeaseRanOut, left.Round(time.Millisecond), margin)
		}
	}
	if !a.CreatedAt.IsZero() {
		if age, w := now.Sub(a.CreatedAt), e.keyWindow(); age > w-margin {
			return fmt.Errorf("%w (created %s ago, window %s)", ErrKeyWindowClosed, age.Round(time.Second), w)
		}
	}
	return nil
}

// notSent reports whether err is a request the lease check kept from
// leaving.
func notSent(err error) bool {
	return errors.Is(err, ErrLeaseRanOut) || errors.Is(err, ErrKeyWindowClosed)
}
