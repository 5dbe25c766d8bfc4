package main

import (
	"context"
	"syscall"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/store"
	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// shutdownContexts turns signals into the two stop levels: the first SIGTERM or
// SIGINT cancels stop (finish what is in flight, claim nothing new) and starts
// the drain timer; a second signal, or the drain timeout, cancels abort (in-flight
// requests are cut; their attempts stay pending/unknown and are replayed with the
// same key after the restart). SIGHUP calls onHUP.
func (m *Main) shutdownContexts(ctx context.Context, log zerolog.Logger, drain func() time.Duration, onHUP func()) (stop, abort context.Context) {
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
					log.Warn().Str("signal", sig.String()).Msg("second stop signal: aborting in-flight charges (they will be replayed with the same keys)")
					abortCancel()
					return
				}
				stopping = true
				d := drain()
				log.Info().Str("signal", sig.String()).Dur("drain_timeout", d).Msg("stopping: draining in-flight charges; send the signal again to abort")
				stopCancel()
				time.AfterFunc(d, func() {
					if abort.Err() == nil {
						log.Warn().Msg("drain timeout reached: aborting in-flight charges")
					}
					abortCancel()
				})
			}
		}
	}()
	return stop, abort
}

func (m *Main) cmdRun(ctx context.Context, args []string) error {
	cfg, cfgPath, err := m.parseConfigOnly("run", args, nil)
	if err != nil {
		return err
	}
	d, err := m.startDaemon(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	log := d.Log()
	stop, abort := m.shutdownContexts(ctx, log,
		func() time.Duration { return d.Config().Schedule.DrainTimeout.D() },
		func() { m.reload(cfgPath, d) })
	return d.Run(stop, abort)
}

// startRetries is how many times `run` starts again after the database
// connection went away during its start (a failover, a terminated backend),
// waiting 1 s, 2 s, 4 s… between tries, before it gives up and leaves the
// restart to systemd.
const startRetries = 5

// startDaemon builds the daemon, trying again when the database connection
// was lost during the start's steps (opening, the migration lock, the first
// heartbeat): each step is a transaction that either committed or did not,
// so starting over repeats nothing. Any other error ends the start at once.
func (m *Main) startDaemon(ctx context.Context, cfg *config.Config) (*daemon.Daemon, error) {
	l := newLogger(cfg.Log, m.Stdout)
	wait := time.Second
	for try := 0; ; try++ {
		d, err := daemon.New(ctx, cfg, daemon.Options{Log: m.Stdout})
		if err == nil {
			return d, nil
		}
		if try >= startRetries || !store.ConnectionLost(err) || ctx.Err() != nil {
			l.Error().Err(err).Msg("cannot start")
			return nil, err
		}
		l.Warn().Err(err).Dur("retry_in", wait).Msg("the database connection was lost while starting; starting again")
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// reload re-reads the config on SIGHUP. A bad config is logged and ignored
// (the running config stays); otherwise the daemon applies what it can at once
// and logs, key by key, what needs a restart.
func (m *Main) reload(path string, d *daemon.Daemon) {
	_, _ = sd.SdNotify(false, sd.SdNotifyReloading)
	defer func() { _, _ = sd.SdNotify(false, sd.SdNotifyReady) }()
	log := d.Log()
	cfg, err := config.LoadAndValidate(path)
	if err != nil {
		log.Error().Err(err).Str("config", path).Msg("reload failed; keeping the running config")
		return
	}
	if _, err := d.Reload(cfg); err != nil {
		log.Error().Err(err).Str("config", path).Msg("reload failed; keeping the running config")
	}
}
