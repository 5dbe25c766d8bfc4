package daemon

import (
	"context"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/store"
)

// Periodic jobs on several instances (README, "Running several instances"). Each
// instance runs every job on its own schedule; what keeps them from doing
// one piece of work twice is, per job, one of two things:
//
//   - fenced claims, safe on every instance at once: billing (attempts are
//     claimed with FOR UPDATE SKIP LOCKED and leased, results fenced by
//     lease_version), mail and events (outbox rows claimed and leased the
//     same way), refunds (claimed and leased; nothing sent on a lost lease)
//     and instances (each its own row). Running them everywhere spreads the
//     work over the cluster.
//   - a job lease, one instance at a time: the jobs in jobsOnOneInstance
//     below hold the job_leases row of their name while they run. The
//     reconciler sweep and the dunning wake are fenced as well (leased
//     claims; case rows locked and stepped in one transaction) — the lease
//     makes that doubly sure and keeps three instances from contending for
//     the same rows every minute; the intents job's cancels and the cards
//     job's reads are not claimed at all, so the lease is what keeps them
//     from being sent twice.
//
// On SQLite one process runs and no job takes a lease.
var jobsOnOneInstance = map[string]bool{jobReconcile: true, jobDunning: true, jobIntents: true, jobCards: true}

// jobLeaseFor is how long a job lease lasts between renewals: the margin no
// gateway request leaves within plus two request timeouts, like the
// reconciler's lease on an attempt. The holder renews it every quarter of
// that while the job runs and stops the job before it runs out.
func jobLeaseFor(timeout time.Duration) time.Duration {
	return 2*timeout + charge.LeaseMargin(timeout)
}

// oneAtATime wraps the run of job name so that, on PostgreSQL, it runs only
// while this instance holds the job's lease (jobsOnOneInstance); the other
// jobs, and every job on SQLite or in an operator process, run as they are.
func (d *Daemon) oneAtATime(name string, run func(stop, abort context.Context, trigger string)) func(stop, abort context.Context, trigger string) {
	if !jobsOnOneInstance[name] || d.cluster == nil || d.store.Dialect() != store.Postgres {
		return run
	}
	return func(stop, abort context.Context, trigger string) {
		if stop.Err() != nil {
			return
		}
		timeout := d.Config().Gateway.Timeout.D()
		leaseFor, margin := jobLeaseFor(timeout), charge.LeaseMargin(timeout)
		now := d.clock.Now()
		hold, ok, err := d.store.AcquireJobLease(stop, name, d.owner, now, now.Add(leaseFor))
		if err != nil {
			if stop.Err() == nil {
				d.log.Error().Err(err).Str("job", name).Msg("could not take the job's lease; it runs at its next time")
			}
			return
		}
		if !ok {
			d.log.Debug().Str("job", name).Msg("another instance runs this job now; skipped")
			return
		}
		ctx, cancel := context.WithCancel(stop)
		done := make(chan struct{})
		go func() {
			defer cancel()
			d.keepJobLease(ctx, done, hold, leaseFor, margin)
		}()
		run(ctx, abort, trigger)
		close(done)
		if err := d.store.ReleaseJobLease(context.WithoutCancel(stop), hold, d.clock.Now()); err != nil {
			d.log.Warn().Err(err).Str("job", name).Msg("could not release the job's lease; another instance takes it once it runs out")
		}
	}
}

// keepJobLease renews hold every quarter lease until done closes, and
// returns — canceling the job — when the lease was lost or its monotonic
// deadline comes within margin (renewals failing: the database is out of
// reach), so that the job never works past its lease.
func (d *Daemon) keepJobLease(ctx context.Context, done <-chan struct{}, hold *store.JobLeaseHold, leaseFor, margin time.Duration) {
	every := leaseFor / 4
	for {
		wait := every
		if left := time.Until(hold.Deadline) - margin; left < wait {
			wait = left
		}
		if wait <= 0 {
			d.log.Warn().Str("job", hold.Name).Msg("the job's lease is running out and could not be renewed; the job stops")
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-done:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		now := d.clock.Now()
		ok, err := d.store.RenewJobLease(ctx, hold, now, now.Add(leaseFor))
		if err != nil {
			continue // tried again until the deadline is near
		}
		if !ok {
			d.log.Warn().Str("job", hold.Name).Msg("the job's lease was lost to another instance; the job stops")
			return
		}
	}
}
