package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/web"
	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newHandler builds what http.listen serves: liveness, readiness (database,
// migrations, scheduler), metrics, and the current parts' customer routes —
// looked up per request, so a reload's new webhook secret or pay settings
// apply to the next request.
func (d *Daemon) newHandler() http.Handler {
	srv := web.New(
		web.Check{Name: "database", Fn: d.store.Ping},
		// A ping does not prove writes land (a full disk, a read-only
		// database): at most every store.WriteProbeEvery a tiny committed
		// write does, and a real write that failed for the storage counts.
		web.Check{Name: "database_writes", Fn: d.store.CheckWritable},
		web.Check{Name: "migrations", Fn: func(ctx context.Context) error {
			ok, err := d.store.MigrationsCurrent(ctx)
			if err == nil && !ok {
				err = errors.New("pending migrations")
			}
			return err
		}},
		web.Check{Name: "scheduler", Fn: func(context.Context) error { return d.sched.alive(time.Minute) }},
		web.Check{Name: checkSchemaName, Fn: d.schemaReady},
	)
	srv.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.Registry, promhttp.HandlerOpts{}))
	srv.Handle("/", d.refuseWhileNotClaiming(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.cur.Load().routes.ServeHTTP(w, r)
	}), false))
	return srv
}

// Run serves http.listen and runs the jobs on their schedules until stop is
// canceled: billing passes on schedule.billing, dunning steps every
// dunning.wake_every, the reconciler every reconcile.every, and the outbox. It
// tells systemd READY=1 once the listener is up and WATCHDOG=1 while the
// scheduler and the database show life. When stop ends it claims nothing new,
// lets in-flight charges finish (abort cuts them), and returns.
func (d *Daemon) Run(stop, abort context.Context) error {
	cfg := d.Config()
	// A long-running daemon's writes wait out another process's long SQLite
	// transaction (a subscription import) instead of failing.
	d.store.SetLockWait(store.DaemonLockWait)
	ln := d.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
		}
	}
	// The admin API (admin.listen, off by default) listens before READY=1
	// too: a port that cannot be bound is a start failure, not a log line.
	admin, err := d.StartAdmin()
	if err != nil {
		if d.opts.Listener == nil {
			_ = ln.Close()
		}
		return err
	}
	hs := &http.Server{Handler: d.handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error().Err(err).Msg("http server stopped")
		}
	}()
	d.log.Info().Str("listen", ln.Addr().String()).Str("database", cfg.Database.Driver).
		Str("schedule", cfg.Schedule.Billing).Str("timezone", cfg.Schedule.Timezone).
		Str("gateway", cfg.Gateway.BaseURL).Dur("dunning_wake_every", cfg.Dunning.WakeEvery.D()).Msg("billingd started")
	_, _ = sd.SdNotify(false, sd.SdNotifyReady)
	go d.watchdog(stop)

	d.sched.loop(stop, abort)
	_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
	d.sched.wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	if admin != nil {
		_ = admin.Shutdown(sctx)
	}
	<-served
	d.log.Info().Msg("billingd stopped")
	return nil
}

// Tick runs, one after another, every job due at the clock's now: the
// reconciler, due dunning steps, a billing pass, the outbox. Tests and
// `billingd demo --months` advance a simulated clock and call it, driving the
// same jobs Run schedules on the wall clock.
func (d *Daemon) Tick(ctx context.Context) { d.sched.tick(ctx) }

// watchdog pings systemd only while the scheduler shows life and the database
// answers, so a wedged process is restarted by systemd.
func (d *Daemon) watchdog(ctx context.Context) {
	interval, err := sd.SdWatchdogEnabled(false)
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
			dbErr := d.store.Ping(pctx)
			cancel()
			if aliveErr := d.sched.alive(interval); aliveErr != nil || dbErr != nil {
				d.log.Error().AnErr("scheduler", aliveErr).AnErr("database", dbErr).Msg("unhealthy: withholding the systemd watchdog ping")
				continue
			}
			_, _ = sd.SdNotify(false, sd.SdNotifyWatchdog)
		}
	}
}
