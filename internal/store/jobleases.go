package store

import (
	"context"
	"fmt"
	"time"
)

// JobLeaseHold is a job lease this process holds: the job_leases row of
// Name, written with Owner until Until at LeaseVersion Version. Deadline is
// Until on this process's monotonic clock (localDeadline), which the holder
// stops its job before.
type JobLeaseHold struct {
	Name     string
	Owner    string
	Version  int64
	Until    time.Time
	Deadline time.Time
}

// AcquireJobLease takes the lease of the periodic job name for owner until
// until, when no instance holds it (it was released, or its holder's lease
// ran out by now: a killed or frozen instance). ok is false while another
// holds it. Each acquisition bumps the row's lease_version, so a holder
// that lost it can renew or release nothing (docs/protocol.md,
// "Periodic jobs on several instances").
func (s *Store) AcquireJobLease(ctx context.Context, name, owner string, now, until time.Time) (hold *JobLeaseHold, ok bool, err error) {
	start := time.Now()
	now, until = now.UTC(), until.UTC()
	err = s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(`INSERT INTO job_leases (name, owner, lease_until, lease_version, updated_at)
		                      VALUES (?, '', NULL, 0, ?) ON CONFLICT (name) DO NOTHING`, name, now); err != nil {
			return err
		}
		version, found, err := tx.queryID(`UPDATE job_leases SET owner = ?, lease_until = ?, lease_version = lease_version + 1, updated_at = ?
		                                   WHERE name = ? AND (lease_until IS NULL OR lease_until <= ?)
		                                   RETURNING lease_version`, owner, until, now, name, now)
		if err != nil || !found {
			return err
		}
		hold = &JobLeaseHold{Name: name, Owner: owner, Version: version, Until: until, Deadline: localDeadline(start, now, until)}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: acquire job lease %s: %w", name, err)
	}
	return hold, hold != nil, nil
}

// RenewJobLease extends a held job lease to until, fenced by its version:
// false when the lease was lost (it ran out and another instance took it).
func (s *Store) RenewJobLease(ctx context.Context, hold *JobLeaseHold, now, until time.Time) (bool, error) {
	start := time.Now()
	now, until = now.UTC(), until.UTC()
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		n, err = tx.exec(`UPDATE job_leases SET lease_until = ?, updated_at = ?
		                  WHERE name = ? AND owner = ? AND lease_version = ? AND lease_until > ?`,
			until, now, hold.Name, hold.Owner, hold.Version, now)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: renew job lease %s: %w", hold.Name, err)
	}
	if n == 1 {
		hold.Until, hold.Deadline = until, localDeadline(start, now, until)
	}
	return n == 1, nil
}

// ReleaseJobLease frees a held job lease at once, so that the next instance
// whose job comes due runs it without waiting for the lease to run out; a
// lease lost meanwhile is left to its new holder.
func (s *Store) ReleaseJobLease(ctx context.Context, hold *JobLeaseHold, now time.Time) error {
	err := s.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE job_leases SET owner = '', lease_until = NULL, updated_at = ?
		                   WHERE name = ? AND owner = ? AND lease_version = ?`, now.UTC(), hold.Name, hold.Owner, hold.Version)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: release job lease %s: %w", hold.Name, err)
	}
	return nil
}
