package daemon

import (
	"reflect"
	"sort"
	"strings"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/config"
)

// restartKeys are the config keys a running daemon cannot change: the
// database it holds open, the gateway client's identity and transport, and the
// socket it listens on. A prefix ending in "." covers a section. Every other
// key applies at once on reload.
var restartKeys = []string{
	"database.",
	"gateway.provider",
	"gateway.base_url",
	"gateway.secret_key",
	"gateway.secret_key_file",
	"gateway.timeout",
	"http.listen",
}

// NeedsRestart reports whether a change of key applies only after a restart.
func NeedsRestart(key string) bool {
	for _, k := range restartKeys {
		if key == k || (strings.HasSuffix(k, ".") && strings.HasPrefix(key, k)) {
			return true
		}
	}
	return false
}

// ReloadResult says what a reload did, key by key.
type ReloadResult struct {
	// Applied lists the changed keys now in force.
	Applied []string
	// NeedRestart lists the changed keys that keep their old value until the
	// process restarts.
	NeedRestart []string
}

// Reload applies cfg to the running daemon (SIGHUP). Keys that can change
// under a running process apply at once — dunning.* (an open case's next step
// follows the new schedule), mail.*, reconcile.*, retry.*, schedule.*, log.*,
// gateway.rate_limit, gateway.concurrency, the webhook secret and tolerance,
// http.public_base_url; the others (NeedsRestart) keep their running values
// and are named. A cfg whose parts cannot be built (say, a templates
// directory that does not exist) changes nothing and returns the error.
func (d *Daemon) Reload(cfg *config.Config) (ReloadResult, error) {
	old := d.Config()
	var res ReloadResult
	for _, key := range ChangedKeys(old, cfg) {
		if NeedsRestart(key) {
			res.NeedRestart = append(res.NeedRestart, key)
		} else {
			res.Applied = append(res.Applied, key)
		}
	}
	// What cannot change keeps its running value, so that Config() tells
	// the truth about the process.
	eff := cfg.Clone()
	for _, key := range res.NeedRestart {
		copyKey(eff, old, key)
	}

	p, err := d.build(eff)
	if err != nil {
		return ReloadResult{}, err
	}
	setLogLevel(eff.Log.Level)
	d.sink.setFormat(eff.Log.Format)
	d.reloadShares(old, eff)
	d.engine.Reconfigure(charge.Tunables{
		Retry:             retryPolicy(eff),
		MaxInFlight:       eff.Gateway.Concurrency,
		UnknownRetryDelay: eff.Retry.MaxInterval.D(),
		RecheckAfter:      eff.Reconcile.Backoff[0].D(),
	})
	d.cur.Store(p)
	d.sched.reschedule(old, eff)
	d.log.Info().Strs("applied", res.Applied).Strs("need_restart", res.NeedRestart).Msg("config reloaded")
	return res, nil
}

// ChangedKeys lists the dotted keys (as written in the YAML file) whose values
// differ between a and b, in order.
func ChangedKeys(a, b *config.Config) []string {
	var out []string
	diffValues("", reflect.ValueOf(*a), reflect.ValueOf(*b), &out)
	sort.Strings(out)
	return out
}

func diffValues(prefix string, a, b reflect.Value, out *[]string) {
	if a.Kind() != reflect.Struct || a.Type().Name() == "" || isLeafStruct(a.Type()) {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, prefix)
		}
		return
	}
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		diffValues(key, a.Field(i), b.Field(i), out)
	}
}

// copyKey sets the value of the dotted key (as ChangedKeys names it) in dst
// to its value in src.
func copyKey(dst, src *config.Config, key string) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for _, name := range strings.Split(key, ".") {
		i := fieldByYAMLName(d.Type(), name)
		if i < 0 {
			return
		}
		d, s = d.Field(i), s.Field(i)
	}
	d.Set(s)
}

func fieldByYAMLName(t reflect.Type, name string) int {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && strings.Split(f.Tag.Get("yaml"), ",")[0] == name {
			return i
		}
	}
	return -1
}

// isLeafStruct tells structs that are one value (none today besides times) from
// config sections.
func isLeafStruct(t reflect.Type) bool {
	return t.PkgPath() == "time"
}
