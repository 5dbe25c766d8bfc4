package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/web"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/robfig/cron/v3"
	"golang.org/x/time/rate"
)

// shutdownContexts turns signals into the two stop levels: the first SIGTERM or
// SIGINT cancels stop (finish what is in flight, claim nothing new) and starts
// the drain timer; a second signal, or the drain timeout, cancels abort (in-flight
// requests are cut; their attempts stay pending/unknown and are replayed with the
// same key after the restart). SIGHUP calls onHUP.
func (m *Main) shutdownContexts(ctx context.Context, a *app, onHUP func()) (stop, abort context.Context) {
	stop, stopCancel := context.WithCancel(ctx)
	abort, abortCancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		<-ctx.Done()
		stopCancel()
		abortCancel()
	}()
	if m.Signals == nil {
		return stop, abort
	}
	go func() {
		stopping := false
		for {
			select {
			case <-abort.Done():
				return
			case sig := <-m.Signals:
				if sig == syscall.SIGHUP {
					if onHUP != nil {
						onHUP()
					}
					continue
				}
				if stopping {
					a.log.Warn().Str("signal", sig.String()).Msg("second stop signal: aborting in-flight charges (they will be replayed with the same keys)")
					abortCancel()
					return
				}
				stopping = true
				drain := a.cfg.Schedule.DrainTimeout.D()
				a.log.Info().Str("signal", sig.String()).Dur("drain_timeout", drain).Msg("stopping: draining in-flight charges; send the signal again to abort")
				_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
				stopCancel()
				time.AfterFunc(drain, func() {
					if abort.Err() == nil {
						a.log.Warn().Msg("drain timeout reached: aborting in-flight charges")
					}
					abortCancel()
				})
			}
		}
	}()
	return stop, abort
}

// scheduler runs billing passes on the cron schedule, never two at once, and
// keeps the heartbeat the watchdog and /readyz read.
type scheduler struct {
	a       *app
	stop    context.Context
	abort   context.Context
	mu      sync.Mutex
	cron    *cron.Cron
	entry   cron.EntryID
	running sync.Mutex
	// again asks the running pass to be followed by another.
	again atomic.Bool
	// mailing keeps two outbox runs of this process apart.
	mailing sync.Mutex
	// reconciling keeps two reconciler runs of this process apart.
	reconciling sync.Mutex
	wg          sync.WaitGroup
	heartbeat   atomic.Int64 // unix nanos of the last sign of life
}

func (s *scheduler) beat() { s.heartbeat.Store(time.Now().UnixNano()) }

// alive reports whether the scheduler showed life within d.
func (s *scheduler) alive(d time.Duration) error {
	last := time.Unix(0, s.heartbeat.Load())
	if age := time.Since(last); age > d {
		return fmt.Errorf("no scheduler heartbeat for %s", age.Round(time.Second))
	}
	return nil
}

// pass runs one billing pass unless one is already running (a long pass is never
// overlapped by the next tick; the next tick catches up).
func (s *scheduler) pass(trigger string) {
	if s.stop.Err() != nil {
		return
	}
	if !s.running.TryLock() {
		// A pass is running; make sure another follows it, so work scheduled
		// for "now" (a retry after a new card) is not left for the next tick.
		s.again.Store(true)
		s.a.log.Info().Str("trigger", trigger).Msg("billing pass already running; another will follow it")
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	defer s.running.Unlock()
	for {
		s.again.Store(false)
		s.beat()
		_, _ = s.a.biller.Pass(s.stop, s.abort, trigger)
		s.beat()
		if !s.again.Load() || s.stop.Err() != nil {
			return
		}
		trigger = "follow-up"
	}
}

// reconcile runs the reconciler between passes (a pass also runs it first).
func (s *scheduler) reconcile() {
	if s.stop.Err() != nil || !s.reconciling.TryLock() {
		return
	}
	defer s.reconciling.Unlock()
	s.wg.Add(1)
	defer s.wg.Done()
	s.beat()
	if _, err := s.a.recon.Run(s.stop); err != nil && s.stop.Err() == nil {
		s.a.log.Error().Err(err).Msg("reconciler run failed")
	}
}

// sendMail runs the outbox worker; a broken SMTP server only delays emails.
func (s *scheduler) sendMail() {
	if s.stop.Err() != nil || !s.mailing.TryLock() {
		return
	}
	defer s.mailing.Unlock()
	s.wg.Add(1)
	defer s.wg.Done()
	if _, err := s.a.mailer.RunOnce(s.stop); err != nil && s.stop.Err() == nil {
		s.a.log.Error().Err(err).Msg("mail worker run failed")
	}
}

func (s *scheduler) schedule(cfg *config.Config) error {
	loc, err := cfg.Schedule.Location()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := cron.New(cron.WithLocation(loc))
	if _, err := c.AddFunc(cfg.Schedule.Billing, func() { s.pass("cron") }); err != nil {
		return fmt.Errorf("schedule.billing: %w", err)
	}
	if _, err := c.AddFunc("@every "+cfg.Reconcile.Every.D().String(), s.reconcile); err != nil {
		return fmt.Errorf("reconcile.every: %w", err)
	}
	if s.a.mailer != nil {
		if _, err := c.AddFunc("@every 15s", s.sendMail); err != nil {
			return err
		}
	}
	// A cheap tick proves the scheduler's own loop is alive for the watchdog.
	if _, err := c.AddFunc("@every 5s", s.beat); err != nil {
		return err
	}
	if s.cron != nil {
		s.cron.Stop()
	}
	s.cron = c
	c.Start()
	return nil
}

func (m *Main) cmdRun(ctx context.Context, args []string) error {
	cfg, cfgPath, err := m.parseConfigOnly("run", args, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, m.Stdout)
	a, err := openApp(ctx, cfg, log, nil)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return err
	}
	defer a.Close()

	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
	}
	s := &scheduler{a: a}
	s.beat()
	webSrv := web.New(
		web.Check{Name: "database", Fn: a.store.Ping},
		web.Check{Name: "migrations", Fn: func(ctx context.Context) error {
			ok, err := a.store.MigrationsCurrent(ctx)
			if err == nil && !ok {
				err = errors.New("pending migrations")
			}
			return err
		}},
		web.Check{Name: "scheduler", Fn: func(context.Context) error { return s.alive(time.Minute) }},
	)
	if err := a.mountCustomerRoutes(webSrv, func() { go s.pass("retry-now") }); err != nil {
		return usageError{err}
	}
	a.registerGauges()
	webSrv.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: webSrv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("http server stopped")
		}
	}()

	var reload func()
	stop, abort := m.shutdownContexts(ctx, a, func() { reload() })
	s.stop, s.abort = stop, abort
	reload = func() { m.reload(cfgPath, a, s) }
	if err := s.schedule(cfg); err != nil {
		return usageError{err}
	}
	log.Info().Str("listen", ln.Addr().String()).Str("database", cfg.Database.Driver).
		Str("schedule", cfg.Schedule.Billing).Str("timezone", cfg.Schedule.Timezone).
		Str("gateway", cfg.Gateway.BaseURL).Msg("billingd started")
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	go m.watchdog(stop, a, s)
	// Catch up at once after downtime (and replay attempts a crash left behind),
	// rather than waiting for the first tick.
	go s.pass("startup")

	<-stop.Done()
	s.mu.Lock()
	cronDone := s.cron.Stop()
	s.mu.Unlock()
	<-cronDone.Done()
	s.wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	log.Info().Msg("billingd stopped")
	return nil
}

// watchdog pings systemd only while the scheduler shows life and the database
// answers, so a wedged process is restarted by systemd.
func (m *Main) watchdog(ctx context.Context, a *app, s *scheduler) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, interval/3)
			dbErr := a.store.Ping(pctx)
			cancel()
			if aliveErr := s.alive(interval); aliveErr != nil || dbErr != nil {
				a.log.Error().AnErr("scheduler", aliveErr).AnErr("database", dbErr).Msg("unhealthy: withholding the systemd watchdog ping")
				continue
			}
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	}
}

// reload re-reads the config on SIGHUP. A bad config is logged and ignored (the
// running config stays). Log level, billing schedule, timezone and rate limit
// apply at once; other changes need a restart and are reported as such.
func (m *Main) reload(path string, a *app, s *scheduler) {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReloading)
	defer func() { _, _ = daemon.SdNotify(false, daemon.SdNotifyReady) }()
	cfg, err := config.LoadAndValidate(path)
	if err != nil {
		a.log.Error().Err(err).Str("config", path).Msg("reload failed; keeping the running config")
		return
	}
	old := a.cfg
	setLogLevel(cfg.Log.Level)
	a.limiter.SetLimit(rate.Limit(cfg.Gateway.RateLimit))
	if cfg.Schedule.Billing != old.Schedule.Billing || cfg.Schedule.Timezone != old.Schedule.Timezone {
		if err := s.schedule(cfg); err != nil {
			a.log.Error().Err(err).Msg("reload: new schedule rejected; keeping the old one")
			return
		}
	}
	var restart []string
	if !reflect.DeepEqual(cfg.Database, old.Database) {
		restart = append(restart, "database")
	}
	g1, g2 := cfg.Gateway, old.Gateway
	g1.RateLimit, g2.RateLimit = 0, 0
	if !reflect.DeepEqual(g1, g2) {
		restart = append(restart, "gateway")
	}
	if !reflect.DeepEqual(cfg.Retry, old.Retry) {
		restart = append(restart, "retry")
	}
	if !reflect.DeepEqual(cfg.HTTP, old.HTTP) {
		restart = append(restart, "http")
	}
	if cfg.Schedule.PageSize != old.Schedule.PageSize || cfg.Schedule.DrainTimeout != old.Schedule.DrainTimeout {
		restart = append(restart, "schedule.page_size/drain_timeout")
	}
	a.log.Info().Strs("need_restart", restart).Str("config", path).Int("pid", os.Getpid()).Msg("config reloaded")
}
