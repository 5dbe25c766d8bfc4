package daemon

import (
	"context"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// jobInstances renews this process's row in the instances table every
// cluster.heartbeat (DESIGN §2, "Several instances").
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
