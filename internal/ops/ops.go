// Package ops holds the operator actions — cancel, pause, resume and update a
// subscription; retry, void and refund an invoice; resolve an attempt that
// needs review; stop a dunning case — and the listings, stories and reports
// ops read. The CLI and the admin API both call this package, so an action
// means the same whichever door it came through.
//
// Every action is one transaction that keeps every related row consistent
// (the subscription, its invoices, dunning cases, pay links and queued
// emails) and writes one audit_log row with the actor, the reason and the
// target before and after. An action that needs the gateway commits its
// intent first (a refund row, a cancel request, a charge attempt) and then
// calls with that intent's own idempotency key, through the same charge
// engine the daemon uses, so it works the same whether the daemon runs or
// not, and the daemon's jobs finish whatever the call left indefinite.
package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/events"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Options are what the assembly (internal/daemon) gives the operator actions.
type Options struct {
	Store *store.Store
	Clock clock.Clock
	// Engine is the charge engine: refunds, intent cancels, reads of an
	// attempt's payment and immediate charges go through it. Nil in a
	// read-only process: every action that needs the gateway then fails with
	// ErrNoGateway and changes nothing.
	Engine *charge.Engine
	// Gateway is the gateway client the engine charges through: reconcile
	// reads payments with it (and lists them where the client is a
	// gateway.PaymentLister). Nil like Engine.
	Gateway gateway.Gateway
	// Limiter is the engine's gateway rate limit, which reconcile's reads
	// wait for too; nil is unlimited.
	Limiter *rate.Limiter
	// Accounts reads customers and payment methods at the gateway (whose a
	// card is, and its brand, last 4 and expiry). Nil like Engine.
	Accounts gateway.Accounts
	// Dunning is the charge engine's dunning hook: a card an operator gives
	// a subscription lets its open dunning case proceed exactly as a card the
	// customer saved on the pay page does (AfterPaymentMethodSaved). Nil
	// only makes the card the subscription's.
	Dunning charge.Hook
	// Provider is gateway.provider (wooshpay | checkout).
	Provider string
	// Owner names this process in the leases its actions take.
	Owner string
	// Location is schedule.timezone: the default zone of subscriptions
	// created through the admin API.
	Location *time.Location
	Log      zerolog.Logger
	// Events are the events section as a sender uses it (read at each
	// redelivery, so a reload's new secret applies): `billingd events
	// redeliver` and the admin API POST with them. Nil, or settings without
	// a url or secret, refuse a redelivery.
	Events func() events.Settings
	// EventsClient posts redeliveries; nil follows no redirect, as the
	// worker does.
	EventsClient *http.Client
}

// Service performs operator actions and answers ops' reads.
type Service struct {
	opts Options
}

// New builds the service.
func New(opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	return &Service{opts: opts}
}

// Store is the database the service acts on.
func (s *Service) Store() *store.Store { return s.opts.Store }

func (s *Service) now() time.Time { return s.opts.Clock.Now().UTC() }

// Actor is who performs an action, as the audit log names it.
type Actor struct {
	// Name is the person or token: --actor, else the login user, or the admin
	// API token's name.
	Name string
	// Via is the door: the CLI or the admin API.
	Via models.AuditVia
}

// CLIActor is the actor of a command: flag (--actor) when given, else the
// login user ($SUDO_USER first, so `sudo billingd …` names the person).
func CLIActor(flag string) Actor {
	name := strings.TrimSpace(flag)
	if name == "" {
		name = os.Getenv("SUDO_USER")
	}
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = os.Getenv("USER")
	}
	if name == "" {
		name = "unknown"
	}
	return Actor{Name: name, Via: models.ViaCLI}
}

// Errors an action returns; the CLI maps them to exit codes and the admin
// API to HTTP statuses.
var (
	// ErrNotFound: no object has that id or reference (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object's state does not allow the action (409), such
	// as voiding a paid invoice; the message says what state it is in.
	ErrConflict = errors.New("conflict")
	// ErrNoGateway: the action needs the gateway and this process has no
	// gateway client (a read-only command).
	ErrNoGateway = errors.New("this action needs the gateway: gateway.secret_key must be set")
	// ErrKeyReused: an idempotency key already names an action with other
	// terms (a refund of another amount); it is refused, never answered
	// with the first action as if it were this one. It comes wrapped in a
	// FieldError naming the key (a 422 on the admin API, exit 2 on the CLI).
	ErrKeyReused = errors.New("idempotency key already used with other terms")
)

// FieldError is bad input, naming the field (a flag, a JSON field) and the
// value: a 400 on the admin API, exit 2 on the CLI.
type FieldError struct {
	Field   string `json:"field"`
	Value   string `json:"value,omitempty"`
	Message string `json:"message"`
	// Cause, when set, is the error class behind it (ErrKeyReused).
	Cause error `json:"-"`
}

// Unwrap lets errors.Is see the class of a bad input.
func (e *FieldError) Unwrap() error { return e.Cause }

func (e *FieldError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Message)
	}
	return e.Field + ": " + e.Message
}

// conflictf is an ErrConflict with the state that forbids the action.
func conflictf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConflict}, args...)...)
}

// notFound is an ErrNotFound naming what was looked for.
func notFound(kind, id string) error {
	return fmt.Errorf("%s %q: %w", kind, id, ErrNotFound)
}

// needReason refuses a destructive action without a reason.
func needReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return &FieldError{Field: "reason", Message: "is required for this action"}
	}
	return nil
}

// Audited is what an action hands to audit: its target and that target's
// state before and after (marshaled to JSON).
type Audited struct {
	Action     string
	TargetType string
	TargetID   int64
	TargetRef  string
	Before     any
	After      any
}

// audit writes the action's audit_log row inside tx.
func audit(tx *store.Tx, now time.Time, a Actor, reason string, d Audited) error {
	before, err := snapshot(d.Before)
	if err != nil {
		return err
	}
	after, err := snapshot(d.After)
	if err != nil {
		return err
	}
	via := a.Via
	if via == "" {
		via = models.ViaCLI
	}
	return tx.InsertAudit(now, &models.AuditEntry{Actor: a.Name, Via: via, Action: d.Action, TargetType: d.TargetType,
		TargetID: d.TargetID, TargetRef: d.TargetRef, Reason: strings.TrimSpace(reason), BeforeJSON: before, AfterJSON: after})
}

func snapshot(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("ops: audit snapshot: %w", err)
	}
	return string(b), nil
}

// Audit target types.
const (
	TargetSubscription = "subscription"
	TargetInvoice      = "invoice"
	TargetAttempt      = "attempt"
	TargetDunningCase  = "dunning_case"
	TargetRefund       = "refund"
)
