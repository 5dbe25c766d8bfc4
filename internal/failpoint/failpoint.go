// Package failpoint lets a test kill billingd at a named boundary of its
// exactly-once protocol, to prove that a crash there loses nothing and charges
// nothing twice.
//
// A failpoint is armed only from the environment, never from the config file, so
// a production config cannot enable one by mistake:
//
//	BILLINGD_FAILPOINT=charge.after_send billingd once -c billingd.yaml
//
// (several names may be given, separated by commas). When the process reaches an
// armed point it sends itself SIGKILL: no deferred function, no signal handler,
// no graceful drain and no transaction commit runs, exactly like a power cut or
// the OOM killer. A disarmed point costs one load of a package-level bool.
//
// The points, in the order a charge passes them, and what the database holds
// when the process dies there:
//
//   - invoice.after_commit (schedule, invoiceDue): one page of invoices and the
//     advance of its subscriptions' next_billing_at are committed; no attempt
//     exists for them yet. The restart charges them; the period is not invoiced
//     again.
//   - attempt.after_commit (schedule, chargeDue): a batch of attempts is
//     committed as pending and leased to the dead process; nothing was sent. The
//     restart replays them with their own idempotency keys (at once on SQLite,
//     after the lease expires on PostgreSQL) and the gateway executes them for
//     the first time.
//   - charge.after_send (charge, exchange): the gateway executed the request and
//     answered, but the answer dies with the process; the attempt is still
//     pending. The replay with the same key gets the gateway's stored answer and
//     never charges twice.
//   - charge.before_commit (charge, exchange): the result transaction
//     (FinishAttempt and the invoice/subscription/dunning changes) is open and
//     dies uncommitted; the database is as at charge.after_send.
//   - webhook.before_commit (web, WebhookReceiver): the event is inserted into
//     the inbox and applied inside a transaction that dies uncommitted; the
//     gateway got no 2xx, retries the delivery, and the restarted process stores
//     and applies it once.
//   - mail.after_send (mail, Worker): the SMTP server accepted the email but it is
//     not marked sent; the restart sends it again with the same Message-ID
//     (delivery is at-least-once, deduplicable by Message-ID).
//   - reconcile.after_read (charge, Engine.Resolve): the reconciler read the
//     PaymentIntent of an unresolved attempt but did not record it; the attempt
//     is still unresolved and leased, and is read again after the restart.
//   - events.before_post (events, Worker): an event is committed with the
//     change it reports and claimed, and nothing was POSTed; the restart
//     delivers it once.
//   - events.after_post (events, Worker): the receiver answered 2xx but the
//     try is not recorded; the restart POSTs the event again with the same id
//     and body (delivery is at-least-once, deduplicable by the event id).
//   - charge.before_send (charge, request): a claimed attempt's request is
//     about to leave (its slot and rate-limit token taken) and the lease check
//     that guards it has not run yet. Killed there, the attempt is as at
//     attempt.after_commit. Armed as charge.before_send=stop instead, the
//     process stops itself there (see below).
//   - gateway.after_send_check (apicall, Do): a leased request (a charge, a
//     refund) passed the lease check the caller runs after its waits, and the
//     HTTP client has yet to take a connection and write it: the stretch a
//     paused process could otherwise resume into and send on a lease a peer
//     has taken over. Meant to be armed as a stop point; the connection's own
//     check right before the first byte is written refuses the request on
//     resume (docs/protocol.md, "No send on a lost lease").
//
// Stop points pause instead of kill: NAME=stop (BILLINGD_FAILPOINT=
// charge.before_send=stop) makes the process send itself SIGSTOP the first
// time it reaches the point, as a long GC pause, a frozen VM or an operator's
// kill -STOP would. A test waits for the stopped state, lets the lease run out
// and a peer take the work over, then sends SIGCONT: the process resumes right
// where it stopped, and what it does next is what the test checks (docs/protocol.md:
// nothing is sent on a lost lease). Later hits of the point pass.
//
// Error points are the other kind: instead of killing the process, an armed
// error point makes one write fail, a given number of times, as a dropped
// database connection would, and the process goes on. They are armed as
// NAME=N in the same variable (BILLINGD_FAILPOINT=store.mark_email_sent=3), or
// from a Go test with FailTimes:
//
//   - store.mark_email_sent (store, MarkEmailSent): the transaction that
//     records an email as sent — after the SMTP server accepted it — fails and
//     rolls back. The mail worker retries that write; it never sends the email
//     again.
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Error points, named <component>.<write>.
const (
	StoreMarkEmailSent = "store.mark_email_sent"
)

// ErrorNames lists every error point.
func ErrorNames() []string { return []string{StoreMarkEmailSent} }

// ErrInjected is what an armed error point returns.
var ErrInjected = errors.New("failpoint: injected write failure")

// failures holds how many more times each error point fails. The map is built
// once, here, and only read afterwards; the counts are atomic.
var failures = func() map[string]*atomic.Int64 {
	m := map[string]*atomic.Int64{}
	for _, n := range ErrorNames() {
		m[n] = new(atomic.Int64)
	}
	return m
}()

// Err returns ErrInjected (wrapped with the point's name) while the error
// point name has failures left, using one up, and nil otherwise. Disarmed it is
// one map read and one atomic load.
func Err(name string) error {
	c := failures[name]
	if c == nil || c.Load() <= 0 {
		return nil
	}
	if c.Add(-1) < 0 {
		c.Add(1)
		return nil
	}
	return fmt.Errorf("%s: %w", name, ErrInjected)
}

// FailTimes arms the error point name to fail its next n writes, for a test;
// the returned function disarms it. It panics on an unknown name.
func FailTimes(name string, n int) (disarm func()) {
	c := failures[name]
	if c == nil {
		panic("failpoint: unknown error point " + name)
	}
	c.Store(int64(n))
	return func() { c.Store(0) }
}

// Remaining says how many more times the error point name will fail.
func Remaining(name string) int {
	if c := failures[name]; c != nil {
		return int(c.Load())
	}
	return 0
}

// Env is the environment variable that arms failpoints: a comma-separated list
// of names.
const Env = "BILLINGD_FAILPOINT"

// The failpoints, named <component>.<moment>.
const (
	InvoiceAfterCommit  = "invoice.after_commit"
	AttemptAfterCommit  = "attempt.after_commit"
	ChargeAfterSend     = "charge.after_send"
	ChargeBeforeCommit  = "charge.before_commit"
	WebhookBeforeCommit = "webhook.before_commit"
	MailAfterSend       = "mail.after_send"
	ReconcileAfterRead  = "reconcile.after_read"
	// EventsBeforePost: an event is committed (with the change it reports)
	// and claimed, and not yet POSTed to events.url.
	EventsBeforePost = "events.before_post"
	// EventsAfterPost: the receiver answered, and the try is not recorded.
	EventsAfterPost = "events.after_post"
	// ChargeBeforeSend: a claimed attempt's request is about to leave, before
	// the lease check that guards it.
	ChargeBeforeSend = "charge.before_send"
	// GatewayAfterSendCheck: a leased request passed its caller's lease
	// check and the HTTP client has not written it yet.
	GatewayAfterSendCheck = "gateway.after_send_check"
)

// StopAction is the value that arms a failpoint as a stop point
// (NAME=stop): the process SIGSTOPs itself there once instead of dying.
const StopAction = "stop"

// Names lists every failpoint, in the order a charge passes them.
func Names() []string {
	return []string{InvoiceAfterCommit, AttemptAfterCommit, ChargeAfterSend, ChargeBeforeCommit,
		WebhookBeforeCommit, MailAfterSend, ReconcileAfterRead, EventsBeforePost, EventsAfterPost, ChargeBeforeSend, GatewayAfterSendCheck}
}

// enabled is true when any failpoint is armed: the only thing a disarmed Hit
// reads. Both variables are written once, during package initialization, and
// only read afterwards, so they need no synchronization.
var (
	enabled bool
	armed   map[string]bool
	// stops names the points armed as stop points; stopped records which
	// of them has stopped the process already (each stops it once).
	stops   map[string]bool
	stopped sync.Map
)

func init() { arm(os.Getenv(Env)) }

// arm parses the environment's list. Unknown names are reported on stderr (a
// misspelt failpoint would otherwise make a crash test pass without crashing).
func arm(list string) {
	enabled, armed, stops = false, nil, nil
	stopped.Range(func(k, _ any) bool { stopped.Delete(k); return true })
	for _, c := range failures {
		c.Store(0)
	}
	known := map[string]bool{}
	for _, n := range Names() {
		known[n] = true
	}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if name, action, ok := strings.Cut(n, "="); ok && action == StopAction && known[name] {
			if armed == nil {
				armed = map[string]bool{}
			}
			if stops == nil {
				stops = map[string]bool{}
			}
			armed[name], stops[name] = true, true
			enabled = true
			continue
		}
		if name, count, ok := strings.Cut(n, "="); ok {
			times, err := strconv.Atoi(count)
			if c := failures[name]; c != nil && err == nil && times > 0 {
				c.Store(int64(times))
				fmt.Fprintf(os.Stderr, "billingd: error point %s armed from %s: its next %d write(s) fail\n", name, Env, times)
				continue
			}
			fmt.Fprintf(os.Stderr, "billingd: %s names unknown error point or count %q (known: %s, as NAME=N)\n", Env, n, strings.Join(ErrorNames(), ", "))
			continue
		}
		if !known[n] {
			fmt.Fprintf(os.Stderr, "billingd: %s names unknown failpoint %q (known: %s)\n", Env, n, strings.Join(Names(), ", "))
			continue
		}
		if armed == nil {
			armed = map[string]bool{}
		}
		armed[n] = true
		enabled = true
	}
	if enabled {
		var kills, pauses []string
		for _, n := range Armed() {
			if stops[n] {
				pauses = append(pauses, n)
			} else {
				kills = append(kills, n)
			}
		}
		if len(kills) > 0 {
			fmt.Fprintf(os.Stderr, "billingd: failpoints armed from %s: the process will SIGKILL itself at %s\n", Env, strings.Join(kills, ", "))
		}
		if len(pauses) > 0 {
			fmt.Fprintf(os.Stderr, "billingd: stop points armed from %s: the process will SIGSTOP itself once at %s\n", Env, strings.Join(pauses, ", "))
		}
	}
}

// Armed lists the armed failpoints (nil in production).
func Armed() []string {
	var out []string
	for _, n := range Names() {
		if armed[n] {
			out = append(out, n)
		}
	}
	return out
}

// Enabled reports whether name is armed.
func Enabled(name string) bool { return enabled && armed[name] }

// Hit kills the process with SIGKILL when name is armed (or, armed as a stop
// point, stops it with SIGSTOP the first time), and returns at once
// otherwise. It is small enough to be inlined: a disarmed call is one load and
// one branch.
func Hit(name string) {
	if enabled {
		hit(name)
	}
}

// hit is the slow path, kept out of Hit so that Hit inlines.
func hit(name string) {
	if !armed[name] {
		return
	}
	if stops[name] {
		if _, again := stopped.LoadOrStore(name, true); again {
			return
		}
		fmt.Fprintf(os.Stderr, "billingd: stop point %s reached: SIGSTOP\n", name)
		stop()
		fmt.Fprintf(os.Stderr, "billingd: resumed after stop point %s\n", name)
		return
	}
	fmt.Fprintf(os.Stderr, "billingd: failpoint %s reached: SIGKILL\n", name)
	kill()
	// SIGKILL is delivered asynchronously; nothing after the point may run.
	for {
		time.Sleep(time.Hour)
	}
}
