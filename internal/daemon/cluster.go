package daemon

import (
	"context"
	"errors"
	"os"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// jobInstances renews this process's row in the instances table every
// cluster.heartbeat (README, "Running several instances").
const jobInstances = "instances"

// cluster is this process's membership of the instances on its database:
// its own row as last written and every row as last read.
type cluster struct {
	self    models.Instance
	members atomic.Pointer[[]models.Instance]
}

// buildVersion names the binary in the instances table: the module version
// and, for a build from a checkout, the commit.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// newCluster describes this process for its instances row.
func (d *Daemon) newCluster() *cluster {
	host, _ := os.Hostname()
	cfg := d.Config()
	return &cluster{self: models.Instance{
		Name:          d.owner,
		Host:          host,
		PID:           os.Getpid(),
		Version:       buildVersion(),
		SchemaVersion: d.store.KnownSchemaVersion(),
		StartedAt:     processStarted,
		RateLimit:     cfg.Gateway.RateLimit,
		Concurrency:   cfg.Gateway.Concurrency,
		Claiming:      true,
	}}
}

// heartbeat renews this process's instances row and reads the others'.
func (d *Daemon) heartbeat(ctx context.Context) error {
	cfg := d.Config()
	d.checkSchema(ctx)
	c := d.cluster
	d.sampleDBClock(ctx)
	c.self.RateLimit, c.self.Concurrency = cfg.Gateway.RateLimit, cfg.Gateway.Concurrency
	all, err := d.beatShares(ctx, cfg, c.self)
	if err != nil {
		return err
	}
	c.members.Store(&all)
	return nil
}

// expireGonePredecessors marks as dead, before this process's first
// heartbeat, the rows of instances that ran on this host and whose process is
// gone — a crash and a restart by systemd, a SIGKILL, a container that came
// back with the same hostname — so this process gets its share of the
// gateway's limits at once instead of after their rows expire (3
// heartbeats). A row of this host whose pid is this process's own (a
// container's pid 1 after a restart) is gone too. A pid that runs may be
// another program, so such a row is left to expire. Instance names assume
// every host has a hostname of its own.
func (d *Daemon) expireGonePredecessors(ctx context.Context) {
	rows, err := d.store.Instances(ctx)
	if err != nil {
		return
	}
	now := d.clock.Now()
	for _, r := range rows {
		if r.Name == d.owner || r.Host != d.cluster.self.Host || !r.ExpiresAt.After(now) {
			continue
		}
		if r.PID == os.Getpid() {
			// Our own pid: a predecessor of this pid (a container's pid 1
			// before a restart) started before this process; a row of this
			// very process (instances named apart in one test binary) did not.
			if !r.StartedAt.Before(processStarted.Add(-time.Second)) {
				continue
			}
		} else if processRuns(r.PID) {
			continue
		}
		if err := d.store.ExpireInstance(ctx, r.Name); err != nil {
			d.log.Warn().Err(err).Str("instance", r.Name).Msg("could not mark a gone instance of this host as dead; its row expires on its own")
			continue
		}
		d.log.Info().Str("instance", r.Name).Int("pid", r.PID).Msg("an earlier instance on this host is gone (its process no longer runs): its share of the gateway's limits is free at once")
	}
}

// processRuns reports whether a process with pid exists on this host.
func processRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Instances is every instance on the database as of this process's last
// heartbeat, live and recently dead (ExpiresAt passed), by name.
func (d *Daemon) Instances() []models.Instance {
	if d.cluster == nil {
		return nil
	}
	if p := d.cluster.members.Load(); p != nil {
		return *p
	}
	return nil
}

// beatInstances is the instances job.
func (s *scheduler) beatInstances(stop, _ context.Context, _ string) {
	if s.d.cluster == nil {
		return
	}
	if err := s.d.heartbeat(stop); err != nil && stop.Err() == nil {
		s.d.log.Error().Err(err).Msg("could not renew this instance's row in the instances table; the others count it dead once it expires")
	}
}

// leaveCluster deletes this process's row on a clean stop, so the others
// take its share at their next heartbeat instead of waiting for it to expire.
func (d *Daemon) leaveCluster() {
	if d.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.store.LeaveCluster(ctx, d.owner); err != nil {
		d.log.Warn().Err(err).Msg("could not remove this instance's row; it expires on its own")
	}
}
