package daemon

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/robfig/cron/v3"
)

// The daemon's jobs, in the order Tick runs them: settle what is unknown first,
// then move dunning cases, then bill, then send what those steps queued.
const (
	jobReconcile = "reconcile"
	jobDunning   = "dunning"
	jobBilling   = "billing"
	jobRefunds   = "refunds"
	jobIntents   = "intents"
	jobCards     = "cards"
	jobMail      = "mail"
	jobEvents    = "events"
)

// refundsEvery is how often the refund job looks for refunds to confirm, send,
// replay or read (docs/protocol.md, "Refunds").
const refundsEvery = 10 * time.Second

// intentsEvery is how often the intents job looks for waiting intents to
// cancel (challenges abandoned past dunning.challenge_timeout, intents of
// invoices settled otherwise) and retries cancels that got no answer.
const intentsEvery = 30 * time.Second

// mailEvery is how often the outbox is swept between the sweeps that billing
// passes and dunning steps trigger themselves; a failed send waits for its own
// backoff (next_attempt_at), not for this.
const mailEvery = 5 * time.Second

// eventsEvery is how often the events outbox is swept; an event that was not
// delivered waits for its own backoff (next_attempt_at), not for this.
const eventsEvery = 5 * time.Second

// job is one periodic piece of work. next is read and written under the
// scheduler's mutex; busy keeps two runs of one job apart in this process
// (claims fence them across processes).
type job struct {
	name string
	// next is when the job is due; the zero time means now.
	next time.Time
	// every computes the next due time after t from the config in force.
	every func(cfg *config.Config, t time.Time) time.Time
	run   func(stop, abort context.Context, trigger string)
	busy  sync.Mutex
	// again asks a running job to run once more when it ends (a retry-now
	// request arriving during a pass).
	again atomic.Bool
}

// scheduler runs the daemon's jobs on the daemon's clock: on the wall clock
// under Run, one step at a time under Tick (a simulated clock). Only the
// billing job reads a cron spec; robfig/cron parses it and computes its next
// time, and this loop fires it, so both modes share one schedule.
type scheduler struct {
	d    *Daemon
	mu   sync.Mutex
	jobs []*job
	// wake interrupts Run's wait when a job was made due now.
	wake      chan struct{}
	wg        sync.WaitGroup
	heartbeat atomic.Int64 // unix nanos (wall clock) of the loop's last sign of life
}

func newScheduler(d *Daemon) *scheduler {
	s := &scheduler{d: d, wake: make(chan struct{}, 1)}
	s.jobs = []*job{
		{name: jobInstances, every: func(cfg *config.Config, t time.Time) time.Time { return t.Add(cfg.Cluster.Heartbeat.D()) }, run: s.beatInstances},
		{name: jobReconcile, every: func(cfg *config.Config, t time.Time) time.Time { return t.Add(cfg.Reconcile.Every.D()) }, run: s.reconcile},
		{name: jobDunning, every: func(cfg *config.Config, t time.Time) time.Time { return t.Add(cfg.Dunning.WakeEvery.D()) }, run: s.wakeDunning},
		{name: jobBilling, every: nextBilling, run: s.billing},
		{name: jobRefunds, every: func(_ *config.Config, t time.Time) time.Time { return t.Add(refundsEvery) }, run: s.refunds},
		{name: jobIntents, every: func(_ *config.Config, t time.Time) time.Time { return t.Add(intentsEvery) }, run: s.cancelIntents},
		{name: jobCards, every: func(_ *config.Config, t time.Time) time.Time { return t.Add(cardsEvery) }, run: s.noticeCards},
		{name: jobMail, every: func(_ *config.Config, t time.Time) time.Time { return t.Add(mailEvery) }, run: s.sendMail},
		{name: jobEvents, every: func(_ *config.Config, t time.Time) time.Time { return t.Add(eventsEvery) }, run: s.deliverEvents},
	}
	now := d.clock.Now()
	cfg := d.Config()
	for _, j := range s.jobs {
		j.next = j.every(cfg, now)
		j.run = d.oneAtATime(j.name, j.run) // joblease.go
	}
	// Catch up at once after downtime (and replay attempts a crash left
	// behind) rather than waiting for the first tick; wake dunning cases that
	// came due while the daemon was down.
	s.job(jobBilling).next = time.Time{}
	s.job(jobDunning).next = time.Time{}
	// Read the cards whose details are unknown, and notice expiring ones,
	// from the start rather than an hour in.
	s.job(jobCards).next = time.Time{}
	s.beat()
	return s
}

// cronSchedule parses schedule.billing in schedule.timezone, as the daemon
// fires it.
func cronSchedule(cfg config.ScheduleConfig) (cron.Schedule, error) {
	return cron.ParseStandard("CRON_TZ=" + cfg.Timezone + " " + cfg.Billing)
}

func nextBilling(cfg *config.Config, t time.Time) time.Time {
	sched, err := cronSchedule(cfg.Schedule)
	if err != nil {
		// Validate rejected bad specs; never stop billing over it.
		return t.Add(5 * time.Minute)
	}
	return sched.Next(t)
}

func (s *scheduler) job(name string) *job {
	for _, j := range s.jobs {
		if j.name == name {
			return j
		}
	}
	panic("daemon: no job " + name)
}

// poke makes a job due now and wakes Run's loop; a job already running runs
// once more after it ends.
func (s *scheduler) poke(name string) {
	j := s.job(name)
	j.again.Store(true)
	s.dueNow(j)
}

// dueNow makes j due now and wakes Run's loop.
func (s *scheduler) dueNow(j *job) {
	s.mu.Lock()
	j.next = time.Time{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// reschedule recomputes every job's next time after a reload changed its
// schedule (cron spec, time zone, wake_every, reconcile.every).
func (s *scheduler) reschedule(old, cfg *config.Config) {
	now := s.d.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.next.IsZero() {
			continue
		}
		if j.every(old, now) != j.every(cfg, now) {
			j.next = j.every(cfg, now)
		}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) beat() { s.heartbeat.Store(time.Now().UnixNano()) }

// alive reports whether the scheduler's loop showed life within d (wall clock).
func (s *scheduler) alive(d time.Duration) error {
	last := time.Unix(0, s.heartbeat.Load())
	if age := time.Since(last); age > d {
		return fmt.Errorf("no scheduler heartbeat for %s", age.Round(time.Second))
	}
	return nil
}

// due takes the jobs due at now and moves their next time on.
func (s *scheduler) due(now time.Time) []*job {
	cfg := s.d.Config()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*job
	for _, j := range s.jobs {
		if !j.next.After(now) {
			j.next = j.every(cfg, now)
			out = append(out, j)
		}
	}
	return out
}

// nextDue is the earliest time a job is due.
func (s *scheduler) nextDue() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var min time.Time
	for i, j := range s.jobs {
		if i == 0 || j.next.Before(min) {
			min = j.next
		}
	}
	return min
}

// loop fires due jobs, each in its own goroutine so that a long billing pass
// never holds back dunning or mail, until stop ends. It waits on the wall
// clock (at most a second at a time, which is also the heartbeat).
func (s *scheduler) loop(stop, abort context.Context) {
	for {
		s.beat()
		for _, j := range s.due(s.d.clock.Now()) {
			s.start(stop, abort, j, "schedule")
		}
		wait := s.nextDue().Sub(s.d.clock.Now())
		if wait > time.Second {
			wait = time.Second
		}
		if wait < 10*time.Millisecond {
			wait = 10 * time.Millisecond
		}
		t := time.NewTimer(wait)
		select {
		case <-stop.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// start runs j in the background unless it is running already.
func (s *scheduler) start(stop, abort context.Context, j *job, trigger string) {
	if !j.busy.TryLock() {
		return // the running one will run again if it was poked
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer j.busy.Unlock()
		s.runJob(stop, abort, j, trigger)
	}()
}

// runJob runs j, and again while it was poked during its run.
func (s *scheduler) runJob(stop, abort context.Context, j *job, trigger string) {
	stop, done, ok := s.d.gateJob(j.name, stop)
	if !ok {
		return
	}
	defer done()
	for {
		j.again.Store(false)
		j.run(stop, abort, trigger)
		s.beat()
		if !j.again.Load() || stop.Err() != nil {
			return
		}
		trigger = "follow-up"
	}
}

// tick runs every job due at the clock's now, one after another, in order.
// A job that another made due now (a dunning retry pokes billing, billing pokes
// mail) runs in the same tick, so one tick leaves nothing due behind it.
func (s *scheduler) tick(ctx context.Context) {
	s.beat()
	for round := 0; round < 8 && ctx.Err() == nil; round++ {
		due := s.due(s.d.clock.Now())
		if len(due) == 0 {
			return
		}
		for _, j := range due {
			j.busy.Lock()
			s.runJob(ctx, ctx, j, "tick")
			j.busy.Unlock()
		}
	}
}

func (s *scheduler) billing(stop, abort context.Context, trigger string) {
	if stop.Err() != nil {
		return
	}
	if run, err := s.d.Pass(stop, abort, trigger); err != nil && run == nil && stop.Err() == nil {
		// A pass that could not even record its start (a full disk, a
		// read-only database) logs nothing else; /readyz reports it too.
		s.d.log.Error().Err(err).Str("trigger", trigger).Msg("billing pass could not start; the next one runs on schedule")
	}
	s.mailSoon()
}

func (s *scheduler) wakeDunning(stop, _ context.Context, _ string) {
	if stop.Err() != nil {
		return
	}
	n, err := s.d.WakeDunning(stop)
	if err != nil && stop.Err() == nil {
		s.d.log.Error().Err(err).Msg("waking dunning cases failed")
		return
	}
	if n > 0 {
		// A soft-decline case whose retry came due is charged now, not at the
		// next billing tick.
		s.poke(jobBilling)
		s.mailSoon()
	}
}

func (s *scheduler) reconcile(stop, _ context.Context, _ string) {
	if stop.Err() != nil {
		return
	}
	if err := s.d.Reconcile(stop); err != nil && stop.Err() == nil {
		s.d.log.Error().Err(err).Msg("reconciler run failed")
	}
}

// refunds runs the refund job.
func (s *scheduler) refunds(stop, _ context.Context, _ string) {
	if stop.Err() != nil {
		return
	}
	if _, err := s.d.RunRefunds(stop); err != nil && stop.Err() == nil {
		s.d.log.Error().Err(err).Msg("refund job run failed")
	}
}

// cancelIntents runs the intents job; a gateway that does not answer only
// delays the cancels (and keeps their invoices waiting).
func (s *scheduler) cancelIntents(stop, _ context.Context, _ string) {
	if stop.Err() != nil {
		return
	}
	if _, err := s.d.CancelWaitingIntents(stop); err != nil && stop.Err() == nil {
		s.d.log.Error().Err(err).Msg("canceling waiting payment intents failed")
	}
}

// noticeCards runs the expiring-card notice (dunning.card_expiry_notice);
// the emails it queued go out at once.
func (s *scheduler) noticeCards(stop, _ context.Context, _ string) {
	if stop.Err() != nil {
		return
	}
	sum, err := s.d.NoticeExpiringCards(stop)
	if err != nil && stop.Err() == nil {
		s.d.log.Error().Err(err).Msg("expiring-card notice run failed")
	}
	if sum.Queued > 0 {
		s.mailSoon()
	}
}

// sendMail runs the outbox worker; a broken SMTP server only delays emails.
func (s *scheduler) sendMail(stop, abort context.Context, _ string) {
	if stop.Err() != nil {
		return
	}
	if _, err := s.d.sendMail(stop, abort); err != nil && stop.Err() == nil {
		s.d.log.Error().Err(err).Msg("mail worker run failed")
	}
}

// deliverEvents runs the events worker; a receiver that is down only delays
// its events.
func (s *scheduler) deliverEvents(stop, _ context.Context, _ string) {
	if stop.Err() != nil {
		return
	}
	if _, err := s.d.DeliverEvents(stop); err != nil && stop.Err() == nil {
		s.d.log.Error().Err(err).Msg("events worker run failed")
	}
}

// mailSoon makes the mail job due now (emails a pass or dunning step queued
// go out at once), without asking a running mail job to run again.
func (s *scheduler) mailSoon() { s.dueNow(s.job(jobMail)) }

// nextRuns is when each job is due next (the zero time: now).
func (s *scheduler) nextRuns() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.jobs))
	for _, j := range s.jobs {
		out[j.name] = j.next
	}
	return out
}
