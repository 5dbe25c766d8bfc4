package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/store"
)

// dbClockWarnOffset is how far this host's clock may be from the database
// server's before the daemon says so: leases are on the database's clock
// whatever the host's says, but a host that far off has a broken time
// service an operator should hear about.
const dbClockWarnOffset = time.Second

// alignTries and alignPause bound how long a start reads the database's clock
// again when each answer was too slow to measure by.
const (
	alignTries = 10
	alignPause = 100 * time.Millisecond
)

// alignClock puts a daemon that runs on the wall clock against PostgreSQL on
// the database server's clock (docs/protocol.md, "No send on a lost lease"): every lease, heartbeat and
// expiry any instance writes is then measured on one clock, so a host whose
// clock runs ahead cannot take a peer's lease early nor one whose clock
// runs behind hold its own late. A simulated clock (tests, the demo) and
// SQLite, where one process runs, are left alone. The offset is measured
// here once and again at every heartbeat (sampleDBClock).
func (d *Daemon) alignClock(ctx context.Context) error {
	if _, wall := d.clock.(clock.Real); !wall || d.store.Dialect() != store.Postgres {
		return nil
	}
	a := &clock.Aligned{}
	// A loaded host or database can answer one read slowly; the start takes
	// the first quick reading of a few. If none is quick, the daemon starts on
	// the host's clock (offset 0, what one host's instances share anyway) and
	// the heartbeats' samples align it once a reading is quick.
	var err error
	for try := 0; try < alignTries; try++ {
		if _, _, err = a.Measure(ctx, d.store.DBNow); !errors.Is(err, clock.ErrRoundTripTooLong) {
			break
		}
		if serr := (clock.Real{}).Sleep(ctx, alignPause); serr != nil {
			return serr
		}
	}
	if errors.Is(err, clock.ErrRoundTripTooLong) {
		d.log.Warn().Err(err).Msg("the database's clock could not be measured quickly at start; this instance starts on its host's clock and aligns at a later heartbeat")
	} else if err != nil {
		return err
	}
	d.clock = a
	d.reportOffset(a.Offset())
	return nil
}

// sampleDBClock measures the offset to the database's clock again (the
// host's clock drifts, NTP steps it); a failed read keeps the last offset.
func (d *Daemon) sampleDBClock(ctx context.Context) {
	a, ok := d.clock.(*clock.Aligned)
	if !ok {
		return
	}
	before := a.Offset()
	offset, _, err := a.Measure(ctx, d.store.DBNow)
	if err != nil {
		return // the heartbeat's own write reports a database that is down
	}
	if (before-offset).Abs() > dbClockWarnOffset || (offset.Abs() > dbClockWarnOffset) != (before.Abs() > dbClockWarnOffset) {
		d.reportOffset(offset)
	}
}

func (d *Daemon) reportOffset(offset time.Duration) {
	if offset.Abs() > dbClockWarnOffset {
		d.log.Warn().Dur("offset", offset).Msg("this host's clock differs from the database server's; leases and schedules follow the database's clock (check the host's time service)")
	}
}
