package store

import "time"

// localDeadline is the end of a lease written as leaseUntil at now (both on
// the cluster's clock), on this process's monotonic clock: start — read
// with time.Now() before the claim's transaction began, so it carries a
// monotonic reading — plus the lease's length. It can only be early: start
// precedes the commit that made the lease hold for others. The charge
// engine compares time.Now() against it before each request (docs/protocol.md, "No send on a lost lease"),
// which neither a wall clock that steps nor a simulated clock can move; a
// test's fake clock never reaches it, as real time hardly passes.
func localDeadline(start, now, leaseUntil time.Time) time.Time {
	return start.Add(leaseUntil.Sub(now))
}
