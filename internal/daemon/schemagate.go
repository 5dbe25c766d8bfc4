package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/billingd/billingd/internal/config"
)

// checkSchemaName is the /readyz check that fails while this binary is older
// than the database's schema.
const checkSchemaName = "schema"

// schemaGate keeps a binary from working on a schema newer than it knows.
// During a rolling upgrade the first new binary migrates the database while
// old ones still run beside it; an old binary cannot know what the new
// migration changed (a column it must fill, a state it must not write), so
// from the moment the database's schema version (goose's, read at start and at
// every heartbeat) is above the newest migration it embeds it claims no new
// work of any kind: no billing pass, replay, reconcile, dunning step, refund,
// intent cancel, card read, email or event; its pay pages and webhook
// endpoints answer 503 to anything but a GET (no new charge, and the gateway
// retries its webhooks on another instance); its running jobs stop at their
// next safe point, with in-flight requests finishing and recording their
// outcomes under their leases. It says so in the log (ERROR), /readyz (the
// "schema" check), its instances row (claiming false, a note) and so
// `billingd status`. It takes work again if the schema comes back to one it
// knows.
type schemaGate struct {
	// known is the newest migration this binary embeds.
	known int64
	// claiming is false while the database's schema is newer than known.
	claiming atomic.Bool

	mu sync.Mutex
	// seen is the database's schema version as last read (0: never read).
	seen int64
	// running cancels the stop contexts of the claim jobs running now.
	running map[*context.CancelFunc]struct{}
}

// newSchemaGate starts claiming: New checks the schema before it builds
// anything that claims.
func newSchemaGate(known int64) *schemaGate {
	g := &schemaGate{known: known, running: map[*context.CancelFunc]struct{}{}}
	g.claiming.Store(true)
	return g
}

// note is why the instance claims nothing, for its instances row, /readyz
// and the log; "" while it claims.
func (g *schemaGate) note() string {
	if g.claiming.Load() {
		return ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return fmt.Sprintf("database schema version %d is newer than this billingd knows (%d): a newer billingd migrated it; this instance claims no new work until it is replaced by that version",
		g.seen, g.known)
}

// set records the schema version read from the database and reports whether
// claiming changed. Turning claiming off cancels the running claim jobs' stop
// contexts, so they stop at their next safe point.
func (g *schemaGate) set(version int64) (changed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen = version
	claiming := version <= g.known
	if g.claiming.Swap(claiming) == claiming {
		return false
	}
	if !claiming {
		for cancel := range g.running {
			(*cancel)()
		}
	}
	return true
}

// jobContext derives the stop context of one run of a claim job: canceled
// when stop is, or when claiming turns off during the run. ok is false (and
// the job must not run) while claiming is off. done releases the context.
func (g *schemaGate) jobContext(stop context.Context) (ctx context.Context, done func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.claiming.Load() {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(stop)
	key := &cancel
	g.running[key] = struct{}{}
	return ctx, func() {
		g.mu.Lock()
		delete(g.running, key)
		g.mu.Unlock()
		cancel()
	}, true
}

// checkSchema reads the database's schema version and, when it moved across
// what this binary knows, starts or stops claiming and says so. A read that
// fails changes nothing (the database checks of /readyz report it). It also
// writes the verdict into this instance's row-to-be (the heartbeat writes it).
func (d *Daemon) checkSchema(ctx context.Context) {
	v, err := d.store.SchemaVersion(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("could not read the database's schema version; claiming stays as it was")
		}
		return
	}
	if d.schema.set(v) {
		if d.claimingWork() {
			d.log.Info().Int64("schema_version", v).Int64("known_schema_version", d.schema.known).
				Msg("the database's schema is one this billingd knows again: claiming work again")
			if d.sched != nil {
				d.sched.poke(jobBilling)
			}
		} else {
			d.log.Error().Int64("schema_version", v).Int64("known_schema_version", d.schema.known).
				Msg(d.schema.note() + "; running jobs stop at their next safe point, /readyz fails its schema check")
		}
	}
	if d.cluster != nil {
		d.cluster.self.Claiming, d.cluster.self.Note = d.claimingWork(), d.schema.note()
	}
}

// checkSchemaAtStart is the start's schema check, before any migration: on a
// newer schema the process neither migrates (goose would find nothing to do
// and must never go down) nor takes back a predecessor's leases; it starts
// and serves, claiming nothing. An operator's command refuses to run.
func (d *Daemon) checkSchemaAtStart(ctx context.Context, cfg *config.Config) (newer bool, err error) {
	d.schema = newSchemaGate(d.store.KnownSchemaVersion())
	v, err := d.store.SchemaVersion(ctx)
	if err != nil {
		return false, NamedDBError(cfg, err)
	}
	d.schema.set(v)
	if d.claimingWork() {
		return false, nil
	}
	if d.opts.Operator {
		return true, fmt.Errorf("%s; run the command with the newer billingd", d.schema.note())
	}
	d.log.Error().Int64("schema_version", v).Int64("known_schema_version", d.schema.known).
		Msg(d.schema.note() + "; not migrating, /readyz fails its schema check")
	return true, nil
}

// claimingWork reports whether this process may claim new work: the
// database's schema, as last read, is one its binary knows.
func (d *Daemon) claimingWork() bool { return d.schema == nil || d.schema.claiming.Load() }

// gateJob is the scheduler's check before a run of job: every job but the
// heartbeat claims work, so it runs only while claiming, with a stop context
// that ends when claiming does.
func (d *Daemon) gateJob(job string, stop context.Context) (context.Context, func(), bool) {
	if job == jobInstances || d.schema == nil {
		return stop, func() {}, true
	}
	return d.schema.jobContext(stop)
}

// ErrNotClaiming means the database's schema is newer than this binary
// knows: it claims no work (a `billingd once` pass bills nothing).
var ErrNotClaiming = errors.New("not claiming work")

// notClaiming is nil while this process claims work, and otherwise an
// ErrNotClaiming that says why.
func (d *Daemon) notClaiming() error {
	if d.claimingWork() {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotClaiming, d.schema.note())
}

// schemaReady is the /readyz schema check.
func (d *Daemon) schemaReady(context.Context) error { return d.notClaiming() }

// refuseWhileNotClaiming answers 503 to every request but a GET or HEAD while
// this process claims no work: a customer's payment or new card on a pay
// page, a gateway's webhook (which the gateway retries, reaching an instance
// that knows the schema), an admin API action. Reads still work.
func (d *Daemon) refuseWhileNotClaiming(h http.Handler, admin bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.claimingWork() || r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "60")
		if admin {
			body, _ := json.Marshal(map[string]map[string]string{"error": {"code": "schema_newer",
				"message": d.schema.note() + "; send the request to an instance of the newer version"}})
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(append(body, '\n'))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(w, "This service is being upgraded and cannot take payments or changes on this server right now. Nothing was charged or changed. Please try again in a minute.")
	})
}
