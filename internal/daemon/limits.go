package daemon

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/billingd/billingd/internal/clock"
	shareplan "github.com/billingd/billingd/internal/cluster"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/gateway/budget"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// shares is this process's part of the cluster's gateway limits
// (docs/cluster.md): the budget every gateway call takes from, the share it
// uses now, and until when that share is its own.
type shares struct {
	budget *budget.Budget
	// mono reads the process's monotonic clock (the daemon's clock in
	// tests that simulate time).
	mono func() time.Time

	mu sync.Mutex
	// use is the share the budget enforces now.
	use shareplan.Share
	// published is the share written in the row at the last heartbeat.
	published shareplan.Share
	// beatStarted is when the last successful heartbeat began: the share is
	// this process's until beatStarted + cluster expiry.
	beatStarted time.Time
	// deadline is beatStarted + expiry, read by the budget's guard before
	// every request without taking mu.
	deadline atomic.Pointer[time.Time]
	// plan is the last heartbeat's decision (status, metrics, logs).
	plan shareplan.Plan
	// note is the disagreement last logged, so it is logged once.
	note string
}

// newShares builds the budget of a process. An instance on PostgreSQL starts
// at nothing and takes its share at its first heartbeat; one on SQLite (the
// only instance) or an operator's one-off process uses the whole limits.
func (d *Daemon) newShares(cfg *config.Config) *shares {
	s := &shares{mono: d.clock.Now}
	if _, ok := d.clock.(clock.Real); ok {
		s.mono = time.Now
	}
	if d.clustered() {
		s.budget = budget.New(0, cfg.Cluster.PayPageShare, 0)
		s.budget.Limiter.Guard(func() bool {
			dl := s.deadline.Load()
			return dl != nil && s.mono().Before(*dl)
		}, func(ctx context.Context) {
			// A request that finds the share expired beats now instead of
			// waiting for the scheduled heartbeat (a resumed process, or a
			// simulated clock that jumped); one that finds it nothing beats
			// once a heartbeat has passed since the last (a process that
			// runs no scheduler, as `billingd once`, beats only so).
			if !s.renewDue(d.Config().Cluster) {
				return
			}
			if err := d.Heartbeat(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn().Err(err).Msg("this instance's share of the gateway limits expired and could not be renewed; no gateway request is sent until a heartbeat succeeds")
			}
		})
		return s
	}
	whole := shareplan.Share{Rate: cfg.Gateway.RateLimit, Concurrency: cfg.Gateway.Concurrency}
	s.budget = budget.New(whole.Rate, cfg.Cluster.PayPageShare, whole.Concurrency)
	s.use, s.published = whole, whole
	return s
}

// clustered reports whether this process shares the gateway's limits with
// other instances by heartbeat: a daemon on PostgreSQL. On SQLite exactly
// one instance runs; an operator's action is not a member (docs/cluster.md).
func (d *Daemon) clustered() bool {
	return d.store.Dialect() == store.Postgres && !d.opts.Operator
}

// renewDue reports whether a starved request should beat now: the share
// expired, or a whole heartbeat has passed since the last one started.
func (s *shares) renewDue(c config.ClusterConfig) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beatStarted.IsZero() || s.mono().Sub(s.beatStarted) >= c.Heartbeat.D()
}

// apply makes share the one the budget enforces; s.mu is held.
func (s *shares) apply(share shareplan.Share, payShare float64) {
	s.use = share
	s.budget.Set(share.Rate, payShare, share.Concurrency)
}

// inUse is the share this process may use at now: nothing once its last
// heartbeat is older than the expiry (the others may have taken it).
func (s *shares) inUse(now time.Time, expiry time.Duration) shareplan.Share {
	if s.beatStarted.IsZero() || shareplan.Expired(s.beatStarted, now, expiry) {
		return shareplan.Share{}
	}
	return s.use
}

// beatShares renews this instance's row with the share it decides from the
// others' rows, in the order that keeps the published shares at or above
// what each instance uses: a smaller share is in force before the row that
// says so commits, a larger one only after.
func (d *Daemon) beatShares(ctx context.Context, cfg *config.Config, self models.Instance) ([]models.Instance, error) {
	s := d.shares
	if !d.clustered() {
		s.mu.Lock()
		whole := shareplan.Share{Rate: cfg.Gateway.RateLimit, Concurrency: cfg.Gateway.Concurrency}
		s.apply(whole, cfg.Cluster.PayPageShare)
		s.published = whole
		s.plan = shareplan.Plan{Limits: shareplan.Limits{Rate: whole.Rate, Concurrency: whole.Concurrency}, Live: 1, Target: whole, Headroom: whole, Next: whole}
		s.mu.Unlock()
		self.RateShare, self.ConcurrencyShare = whole.Rate, whole.Concurrency
		now := d.clock.Now()
		return d.store.Beat(ctx, self, now, now.Add(cfg.Cluster.Expiry()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	expiry := cfg.Cluster.Expiry()
	started := s.mono()
	cur := s.inUse(started, expiry)
	if cur != s.use {
		// The last share ran out (no heartbeat for a whole expiry): what
		// the budget still holds is not this process's any more.
		s.apply(cur, cfg.Cluster.PayPageShare)
	}
	own := shareplan.Limits{Rate: cfg.Gateway.RateLimit, Concurrency: cfg.Gateway.Concurrency}
	var plan shareplan.Plan
	var step shareplan.Step
	var published shareplan.Share
	all, _, err := d.store.BeatShares(ctx, self, d.clock.Now(), expiry, func(rows []models.Instance, now time.Time) (float64, int, string, error) {
		plan = shareplan.Compute(rows, self.Name, own, now)
		step = shareplan.StepFrom(s.use, plan.Next)
		s.apply(step.Lower, cfg.Cluster.PayPageShare)
		published = shareplan.Published(plan.Next, s.budget.Slots.InFlight())
		return published.Rate, published.Concurrency, joinNotes(self.Note, plan.Note(own)), nil
	})
	if err != nil {
		// Whatever was lowered stays lowered; the published row, if it
		// committed after all, is at least what is used.
		return nil, err
	}
	s.beatStarted = started
	deadline := started.Add(expiry)
	s.deadline.Store(&deadline)
	s.published = published
	s.plan = plan
	s.apply(step.Raise, cfg.Cluster.PayPageShare)
	if note := plan.Note(own); note != s.note {
		s.note = note
		if note != "" {
			d.log.Warn().Float64("rate_limit", own.Rate).Int("concurrency", own.Concurrency).
				Float64("rate_limit_used", plan.Limits.Rate).Int("concurrency_used", plan.Limits.Concurrency).Msg(note)
		} else {
			d.log.Info().Msg("gateway limits agree between instances again")
		}
	}
	return all, nil
}

// reloadShares applies a reload's gateway limits: a smaller limit is taken
// into use at once (the share scaled down with it) and published at the
// next heartbeat; a larger one waits for that heartbeat, which raises into
// the headroom the others leave.
func (d *Daemon) reloadShares(old, cfg *config.Config) {
	s := d.shares
	s.mu.Lock()
	defer s.mu.Unlock()
	share := s.use
	if !d.clustered() {
		share = shareplan.Share{Rate: cfg.Gateway.RateLimit, Concurrency: cfg.Gateway.Concurrency}
	} else {
		if r := cfg.Gateway.RateLimit; r < old.Gateway.RateLimit {
			share.Rate = share.Rate * r / old.Gateway.RateLimit
		}
		if c := cfg.Gateway.Concurrency; c < old.Gateway.Concurrency {
			share.Concurrency = share.Concurrency * c / old.Gateway.Concurrency
		}
	}
	s.apply(share, cfg.Cluster.PayPageShare)
}

// Shares is this instance's part of the cluster's gateway limits as of its
// last heartbeat: what it uses now, what it published, and the plan it
// followed.
type Shares struct {
	Use       shareplan.Share
	Published shareplan.Share
	Plan      shareplan.Plan
}

// Shares reports this instance's share of the gateway limits.
func (d *Daemon) Shares() Shares {
	s := d.shares
	s.mu.Lock()
	defer s.mu.Unlock()
	use := s.use
	if d.clustered() && shareplan.Expired(s.beatStarted, s.mono(), d.Config().Cluster.Expiry()) {
		use = shareplan.Share{}
	}
	return Shares{Use: use, Published: s.published, Plan: s.plan}
}

// Heartbeat renews this instance's row and re-decides its share now, as the
// instances job does every cluster.heartbeat.
func (d *Daemon) Heartbeat(ctx context.Context) error {
	if d.cluster == nil {
		return nil
	}
	return d.heartbeat(ctx)
}

// joinNotes joins the non-empty notes of an instance's row.
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

// registerClusterGauges exposes the cluster on /metrics: how many instances
// are live and how many dead (a row expired without a clean stop: killed,
// frozen, cut off — the missing-instance alert fires on it), and this
// instance's share of the gateway's limits.
func (d *Daemon) registerClusterGauges() {
	d.metrics.GaugeVecFunc("billingd_instances", "billingd instances registered on the database, by state: live (heartbeat within cluster.heartbeat x3) or dead (expired without a clean stop; kept a day, its share free).", "state",
		func() (map[string]float64, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			out := map[string]float64{"live": 0, "dead": 0}
			rows, err := d.store.Instances(ctx)
			if err != nil {
				return out, err
			}
			now := d.clock.Now()
			if d.store.Dialect() == store.Postgres {
				if now, err = d.store.DBNow(ctx); err != nil {
					return out, err
				}
			}
			for _, r := range rows {
				if shareplan.Live(r, now) {
					out["live"]++
				} else {
					out["dead"]++
				}
			}
			return out, nil
		})
	d.metrics.GaugeFunc("billingd_gateway_rate_share", "This instance's share of gateway.rate_limit now, in requests per second (the whole limit on SQLite; 0 while its heartbeat is too old).",
		func() float64 { return d.Shares().Use.Rate })
	d.metrics.GaugeFunc("billingd_gateway_concurrency_share", "This instance's share of gateway.concurrency now, in requests in flight.",
		func() float64 { return float64(d.Shares().Use.Concurrency) })
}
