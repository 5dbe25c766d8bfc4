package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Server is the simulated WooshPay API. It is an http.Handler; all its state lives
// in memory behind one mutex that is never held across a sleep or network I/O, so
// it stays correct and responsive under many concurrent clients.
type Server struct {
	opts Options
	now  func() time.Time
	wire wireLayer // the provider's routes, encodings, auth, events

	api *http.ServeMux // the provider's API routes, behind faults and auth
	ctl *http.ServeMux // /_sim/, /3ds/, /healthz

	// faultMu guards the fault RNG and the current fault settings: one seeded
	// source, so a seed plus a request order reproduces every decision.
	faultMu sync.Mutex
	rng     *rand.Rand
	faults  Faults

	reqSeq atomic.Uint64

	// limiter enforces Options.RateLimit; nil when unlimited. It has its own
	// lock, so admitting or refusing a request never takes mu.
	limiter     *rate.Limiter
	rateLimited atomic.Int64 // Stats.RateLimited, counted without mu

	mu              sync.Mutex
	idBase          uint64
	idSeq           uint64
	secretRNG       *rand.Rand
	customers       map[string]*customer
	methods         map[string]*paymentMethod
	setups          map[string]*setupIntent
	intents         map[string]*paymentIntent
	sessions        map[string]*checkoutSession // setup-mode checkout sessions
	intentList      []*paymentIntent            // creation order, for Ledger
	byOrder         map[string][]*paymentIntent // merchant_order_id → intents, oldest first
	processing      map[string]*paymentIntent   // intents waiting for SettleDue
	capturing       map[string]*paymentIntent   // approved payments whose capture is deferred
	awaiting        map[string]*paymentIntent   // challenges that expire (Checkout.com)
	refunds         map[string]*refund
	refundList      []*refund            // creation order, for Refunds
	refundsByIntent map[string][]*refund // payment intent → its refunds
	idem            map[idemKey]*idemEntry
	idemQueue       []idemQueued // stored entries in first-use order, for expiry
	events          []Event
	stats           Stats

	// testHookExecuting, when set by a test, runs after an idempotency key has
	// been reserved and before the request executes, to hold a request in flight.
	testHookExecuting func()

	wh webhooks

	life    sync.Mutex
	started bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Stats counts what the simulator saw and did, so a test can assert that its
// faults actually fired and that a run ended with every webhook delivered.
type Stats struct {
	// Requests is the number of API requests received.
	Requests int64 `json:"requests"`
	// RateLimited counts API requests refused with 429 because they exceeded
	// Options.RateLimit (they are included in Requests). It never counts the
	// random 429s of Faults.RateLimit, which are in Faults.RateLimit, so a load
	// test can tell "the client exceeded the limit" from injected faults.
	RateLimited int64 `json:"rate_limited"`
	// Faults counts injected faults by kind.
	Faults FaultCounts `json:"faults"`
	// Replays counts answers replayed from an idempotency key.
	Replays int64 `json:"replays"`
	// Conflicts counts 409 idempotency_key_in_use answers.
	Conflicts int64 `json:"conflicts"`
	// IdempotencyMismatches counts 400 idempotency_error answers (same key,
	// different parameters).
	IdempotencyMismatches int64 `json:"idempotency_mismatches"`
	// PaymentIntents is how many intents exist.
	PaymentIntents int64 `json:"payment_intents"`
	// Events is how many events were generated.
	Events int64 `json:"events"`
	// WebhookAttempts counts delivery attempts, including retries, spoiled
	// attempts and lost ones.
	WebhookAttempts int64 `json:"webhook_attempts"`
	// WebhooksDelivered counts deliveries (events, and duplicate copies of them)
	// whose correctly signed attempt the endpoint acknowledged with a 2xx.
	WebhooksDelivered int64 `json:"webhooks_delivered"`
	// WebhookRejections counts attempts the endpoint answered with a 4xx: every
	// spoiled attempt of a receiver that verifies signatures, and any correctly
	// signed one it wrongly refused.
	WebhookRejections int64 `json:"webhook_rejections"`
	// WebhookServerErrors counts attempts the endpoint answered with a 5xx.
	WebhookServerErrors int64 `json:"webhook_server_errors"`
	// WebhookRetries counts attempts that failed and were scheduled again.
	WebhookRetries int64 `json:"webhook_retries"`
	// WebhooksFailed counts deliveries given up after the last retry.
	WebhooksFailed int64 `json:"webhooks_failed"`
	// WebhooksPending is how many deliveries are queued, waiting for their first
	// try or a retry, or in flight.
	WebhooksPending int64 `json:"webhooks_pending"`
	// WebhooksSuppressed counts events not delivered at all because delivery was
	// disabled (Delivery.Disabled) when they were generated.
	WebhooksSuppressed int64 `json:"webhooks_suppressed"`
	// WebhookDuplicates counts duplicate copies sent (the first attempt of every
	// copy beyond an event's first delivery).
	WebhookDuplicates int64 `json:"webhook_duplicates"`
	// WebhookBadSignatures counts attempts sent signed with a wrong secret.
	WebhookBadSignatures int64 `json:"webhook_bad_signatures"`
	// WebhookStaleTimestamps counts attempts sent with a stale timestamp.
	WebhookStaleTimestamps int64 `json:"webhook_stale_timestamps"`
	// WebhooksLost counts attempts that were never sent (Delivery.Lose).
	WebhooksLost int64 `json:"webhooks_lost"`
	// WebhookSpoofsAccepted counts badly signed or stale attempts the endpoint
	// acknowledged with a 2xx: a receiver under test should keep it at zero.
	WebhookSpoofsAccepted int64 `json:"webhook_spoofs_accepted"`
}

// FaultCounts counts injected faults by kind.
type FaultCounts struct {
	Error5xxBefore int64 `json:"error_5xx_before"` // 500s answered before executing
	Error5xxAfter  int64 `json:"error_5xx_after"`  // 500s hiding an executed answer
	RateLimit      int64 `json:"rate_limit"`       // 429s
	Slow           int64 `json:"slow"`             // delayed answers
	Drop           int64 `json:"drop"`             // connections closed without an answer
}

// Errors returned by PassChallenge and FailChallenge.
var (
	// ErrNotFound means there is no PaymentIntent with that id.
	ErrNotFound = errors.New("sim: no such payment intent")
	// ErrUnexpectedState means the PaymentIntent is not waiting for a challenge.
	ErrUnexpectedState = errors.New("sim: payment intent is not in requires_action")
	// ErrNotSucceeded means the PaymentIntent has not succeeded (DuplicateSuccess).
	ErrNotSucceeded = errors.New("sim: payment intent has not succeeded")
)

// New builds a Server. Call Start to run settlement and webhook delivery in the
// background, or drive them from a test with SettleDue.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	seed := uint64(opts.Seed)
	s := &Server{
		opts:            opts,
		now:             opts.Now,
		rng:             rand.New(rand.NewPCG(seed, 0x5eed_fa17)),
		faults:          opts.Faults,
		secretRNG:       rand.New(rand.NewPCG(seed, 0x5ec2e7)),
		idBase:          idBase(seed),
		customers:       map[string]*customer{},
		methods:         map[string]*paymentMethod{},
		setups:          map[string]*setupIntent{},
		intents:         map[string]*paymentIntent{},
		sessions:        map[string]*checkoutSession{},
		byOrder:         map[string][]*paymentIntent{},
		processing:      map[string]*paymentIntent{},
		capturing:       map[string]*paymentIntent{},
		awaiting:        map[string]*paymentIntent{},
		refunds:         map[string]*refund{},
		refundsByIntent: map[string][]*refund{},
		idem:            map[idemKey]*idemEntry{},
	}
	if opts.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(opts.RateLimit), opts.RateBurst)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wire = newWireLayer(s, opts.Provider)
	s.wh.init(opts.Webhook, seed)
	s.api = s.apiRoutes()
	s.ctl = s.controlRoutes()
	return s
}

// idBase spreads seeds over 19-digit numbers (the shape of WooshPay's ids), so two
// runs with different seeds do not hand out the same ids; a restarted standalone
// simulator must not reuse a pi_ id billingd already associates with an attempt.
func idBase(seed uint64) uint64 {
	z := seed + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return 1_000_000_000_000_000_000 + (z%7_000_000_000)*1_000_000_000
}

// newIDLocked returns prefix_ followed by 19 digits, unique within the server.
func (s *Server) newIDLocked(prefix string) string {
	s.idSeq++
	return prefix + "_" + strconv.FormatUint(s.idBase+s.idSeq, 10)
}

const secretAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func (s *Server) newSecretLocked() string {
	var b [24]byte
	for i := range b {
		b[i] = secretAlphabet[s.secretRNG.IntN(len(secretAlphabet))]
	}
	return string(b[:])
}

// ServeHTTP routes the provider's API paths to the API (faults and auth apply) and everything else to
// the control plane.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.wire.isAPI(r.URL.Path) {
		s.serveAPI(w, r)
		return
	}
	s.ctl.ServeHTTP(w, r)
}

// Start begins the background work: settling processing intents on time and
// delivering webhooks. It returns at once; the work stops when ctx is done or
// Close is called. Calling it more than once has no further effect.
func (s *Server) Start(ctx context.Context) {
	s.life.Lock()
	defer s.life.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	context.AfterFunc(ctx, s.cancel)
	s.wg.Add(1)
	go s.settleLoop()
	s.wh.start(s)
	limit := "unlimited"
	if s.limiter != nil {
		limit = fmt.Sprintf("%g/s, burst %d", s.opts.RateLimit, s.opts.RateBurst)
	}
	s.logf("sim: started (seed=%d, processing delay %s, latency %s, rate limit %s)",
		s.opts.Seed, s.opts.ProcessingDelay, s.opts.Latency, limit)
}

// Close stops the background work, abandons queued, delayed and retrying webhook
// deliveries, cancels in-flight ones and waits for them to end, so it returns
// promptly whatever the delays and retry schedule. The handler keeps answering
// requests.
func (s *Server) Close() {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return
	}
	s.closed = true
	s.life.Unlock()
	s.cancel()
	s.wg.Wait()
	s.wh.stop()
}

// Serve runs the simulator on ln until ctx is done: Start, serve HTTP, then shut
// down gracefully and Close. It is what `billingd sim` runs.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.Start(ctx)
	defer s.Close()
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.logf("sim: listening on %s", ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close()
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

func (s *Server) settleLoop() {
	defer s.wg.Done()
	interval := min(max(s.opts.ProcessingDelay/10, 10*time.Millisecond), time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.SettleDue()
			s.expireIdempotencyKeys()
		}
	}
}

// SetFaults replaces the fault settings at runtime, typically to turn faults off so
// that a test run can settle. Settings are used as given; see Faults.Validate.
func (s *Server) SetFaults(f Faults) {
	s.faultMu.Lock()
	s.faults = f
	s.faultMu.Unlock()
}

// Faults returns the current fault settings.
func (s *Server) Faults() Faults {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.faults
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.PaymentIntents = int64(len(s.intentList))
	s.mu.Unlock()
	st.RateLimited = s.rateLimited.Load()
	st.WebhooksPending = s.wh.pending()
	return st
}

// Ledger returns every PaymentIntent in creation order: the gateway-side truth
// that exactly-once tests compare billingd's books against.
func (s *Server) Ledger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LedgerEntry, 0, len(s.intentList))
	for _, pi := range s.intentList {
		if pi.verification {
			continue // a card check moves no money
		}
		out = append(out, s.ledgerLocked(pi))
	}
	return out
}

// Events returns the events generated so far, oldest first (at most
// Options.EventHistory of the most recent ones).
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs := s.events
	if limit := s.opts.EventHistory; limit > 0 && len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	return slices.Clone(evs)
}

// SettleDue moves every processing intent whose ProcessingDelay has elapsed (per
// Now) to succeeded and emits payment_intent.succeeded. The background loop calls
// it; tests with a fake clock call it after advancing time.
func (s *Server) SettleDue() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.settleCapturesLocked(now)
	if len(s.processing) == 0 {
		return
	}
	var due []*paymentIntent
	for _, pi := range s.processing {
		if now.Sub(pi.processingSince) >= s.opts.ProcessingDelay {
			due = append(due, pi)
		}
	}
	slices.SortFunc(due, func(a, b *paymentIntent) int { return strings.Compare(a.id, b.id) })
	for _, pi := range due {
		delete(s.processing, pi.id)
		pi.deferCapture = false // settled late: captured with the approval
		s.succeedLocked(pi, now)
	}
}

// PassChallenge completes the 3-D Secure challenge of an intent in
// requires_action: it succeeds and payment_intent.succeeded is emitted. This is
// what the challenge page's "pass" button does.
func (s *Server) PassChallenge(piID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi, err := s.challengedLocked(piID)
	if err != nil {
		return err
	}
	s.succeedLocked(pi, s.now())
	return nil
}

// FailChallenge fails the 3-D Secure challenge: the intent returns to
// requires_payment_method with an authentication failure as last_payment_error,
// and payment_intent.payment_failed is emitted.
func (s *Server) FailChallenge(piID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi, err := s.challengedLocked(piID)
	if err != nil {
		return err
	}
	delete(s.awaiting, pi.id)
	pi.status = statusRequiresPaymentMethod
	pi.challengeURL = ""
	pi.lastError = authenticationFailure
	s.wire.onPayment(payFailed, pi)
	return nil
}

func (s *Server) challengedLocked(piID string) (*paymentIntent, error) {
	pi := s.intents[piID]
	if pi == nil {
		return nil, ErrNotFound
	}
	if pi.status != statusRequiresAction {
		return nil, ErrUnexpectedState
	}
	return pi, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}
