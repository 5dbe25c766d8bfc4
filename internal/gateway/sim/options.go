package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Options configures a Server. The zero value is a working simulator that accepts
// any non-empty secret key, uses the wall clock, injects no faults and delivers no
// webhooks.
type Options struct {
	// Provider is the API the simulator speaks: "wooshpay" (the default) or
	// "checkout" (Checkout.com). The core — objects, ledger, idempotency,
	// faults, webhook delivery, hosted pages, the 3-D Secure challenge — is
	// the same; routes, encodings, auth, signatures and event names are the
	// provider's.
	Provider string
	// ChallengeExpiry is how long (on Now) a Checkout.com payment waits for
	// its 3-D Secure challenge before it expires (status Expired, event
	// payment_expired). Default 10 minutes. WooshPay's intents wait until
	// canceled.
	ChallengeExpiry time.Duration
	// CaptureDelay is how long (on Now) after its approval a Checkout.com
	// merchant-initiated payment is captured (payment_captured); SettleDue
	// captures it. Default 0: at the next settlement pass.
	CaptureDelay time.Duration
	// SecretKey is the only secret key accepted on the API (WooshPay's Basic-auth user
	// name, Checkout.com's Bearer token). Empty accepts any
	// non-empty key, which is convenient for demos where the key is generated.
	SecretKey string
	// Now is the simulator's clock: created timestamps, settlement of processing
	// intents, idempotency-key expiry and webhook signature timestamps all read it,
	// so a test can share one fake clock with billingd. Default time.Now.
	Now func() time.Time
	// Seed makes fault decisions, webhook delivery decisions, object ids and
	// client secrets deterministic: the same seed and the same request order give
	// the same run.
	Seed int64
	// Faults are the initial fault probabilities; SetFaults changes them at runtime.
	Faults Faults
	// ProcessingDelay is how long a "processing" charge takes to settle to succeeded,
	// measured on Now. Default 2s.
	ProcessingDelay time.Duration
	// PublicURL is the base of links the simulator hands out to browsers (the
	// 3-D Secure challenge page, the setup checkout page). Default:
	// http(s)://<request Host>.
	PublicURL string
	// Webhook configures event delivery.
	Webhook WebhookOptions
	// EventHistory bounds how many of the most recent events Events keeps, so a
	// load test with millions of charges does not grow memory without bound.
	// 0 means 100000; negative means unbounded.
	EventHistory int
	// Latency is the simulated network and gateway round trip: every API answer
	// (success, decline, error, idempotent replay, 401, the 429 of RateLimit, and
	// the faults that answer or drop the connection) is held until at least this
	// long after the request arrived, measured on the wall clock, not on Now. The
	// request is processed first and the answer then waits for what remains, so an
	// intent exists before its answer is sent, as with a real gateway whose answer
	// is still on the wire; processing time counts toward the latency. The wait
	// holds no lock and ends early, writing nothing, when the client goes away.
	// 0 (the default) answers at once; negative is treated as 0 (see Validate).
	Latency time.Duration
	// RateLimit caps API requests at this many per second (a token bucket of
	// RateBurst requests refilled at RateLimit per second); 0 means unlimited,
	// negative is treated as 0 (see Validate). A request over the limit is checked
	// first, before fault injection and authentication, and refused with 429, the
	// rate_limit error body and a Retry-After (whole seconds, at least 1) saying
	// when a request would be admitted; it is not processed: no fault is drawn for
	// it, nothing is created and its idempotency key is not used. Stats counts it
	// in RateLimited, apart from the random 429s of Faults.RateLimit.
	RateLimit float64
	// RateBurst is how many requests may arrive at once under RateLimit. 0 means
	// RateLimit rounded up, at least 1, i.e. "RateLimit requests in any second"
	// as live gateways count. Ignored when RateLimit is 0.
	RateBurst int
	// Logf, when set, receives one line per API request and per webhook attempt.
	// Lines never contain request bodies, so they never contain card data.
	Logf func(format string, args ...any)
}

// Faults are per-request fault probabilities for API requests. One uniform draw
// per request picks at most one of Error5xxBefore, RateLimit, Error5xxAfter and
// Drop (their sum should not exceed 1; earlier ones win when it does); a second,
// independent draw decides Slow. Both draws happen for every API request that
// Options.RateLimit admits (all of them when it is 0), so the sequence of
// decisions depends only on the seed and the order of admitted requests.
type Faults struct {
	// Error5xxBefore answers 500 before doing anything: nothing is executed or
	// recorded, a retry with the same key executes for the first time.
	Error5xxBefore float64 `json:"error_5xx_before"`
	// Error5xxAfter executes and records the request (including its idempotent
	// answer), then answers 500: the caller cannot know the charge happened, and a
	// replay with the same key returns the real stored answer.
	Error5xxAfter float64 `json:"error_5xx_after"`
	// RateLimit answers 429 with Retry-After before doing anything.
	RateLimit float64 `json:"rate_limit"`
	// RetryAfter is the wait advertised on 429; the header carries whole seconds,
	// rounded up, at least 1. Default 1s.
	RetryAfter time.Duration `json:"retry_after"`
	// Slow delays the answer by SlowDelay after the request was executed and
	// recorded, to trip client timeouts.
	Slow      float64       `json:"slow"`
	SlowDelay time.Duration `json:"slow_delay"`
	// Drop executes and records the request, then closes the connection without
	// writing any response.
	Drop float64 `json:"drop"`
}

// faultsJSON is Faults on the wire of PUT/GET /_sim/faults: durations as Go
// duration strings ("1.5s"), also accepted as integer nanoseconds.
type faultsJSON struct {
	Error5xxBefore float64      `json:"error_5xx_before"`
	Error5xxAfter  float64      `json:"error_5xx_after"`
	RateLimit      float64      `json:"rate_limit"`
	RetryAfter     jsonDuration `json:"retry_after"`
	Slow           float64      `json:"slow"`
	SlowDelay      jsonDuration `json:"slow_delay"`
	Drop           float64      `json:"drop"`
}

// MarshalJSON writes durations as Go duration strings so the control endpoint is
// readable by humans.
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		Error5xxBefore: f.Error5xxBefore, Error5xxAfter: f.Error5xxAfter,
		RateLimit: f.RateLimit, RetryAfter: jsonDuration(f.RetryAfter),
		Slow: f.Slow, SlowDelay: jsonDuration(f.SlowDelay), Drop: f.Drop,
	})
}

// UnmarshalJSON accepts durations as Go duration strings or integer nanoseconds,
// so `curl -X PUT -d '{"drop":0.1,"slow_delay":"3s"}'` works.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = j.faults()
	return nil
}

func (j faultsJSON) faults() Faults {
	return Faults{
		Error5xxBefore: j.Error5xxBefore, Error5xxAfter: j.Error5xxAfter,
		RateLimit: j.RateLimit, RetryAfter: time.Duration(j.RetryAfter),
		Slow: j.Slow, SlowDelay: time.Duration(j.SlowDelay), Drop: j.Drop,
	}
}

type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = jsonDuration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("duration must be a string like \"1s\" or integer nanoseconds, got %s", b)
	}
	*d = jsonDuration(n)
	return nil
}

// FaultField names a Faults, Delivery or Options field in validation errors;
// ParseFlags maps these to flag names. Faults and Delivery fields are the JSON
// names of PUT /_sim/faults and PUT /_sim/webhooks.
type FaultField string

// Faults fields, as named in validation errors.
const (
	FieldError5xxBefore FaultField = "error_5xx_before"
	FieldError5xxAfter  FaultField = "error_5xx_after"
	FieldRateLimit      FaultField = "rate_limit"
	FieldRetryAfter     FaultField = "retry_after"
	FieldSlow           FaultField = "slow"
	FieldSlowDelay      FaultField = "slow_delay"
	FieldDrop           FaultField = "drop"
	// FieldExclusiveSum is the sum of the four mutually exclusive probabilities.
	FieldExclusiveSum FaultField = "error_5xx_before+error_5xx_after+rate_limit+drop"
)

// Options fields, as named in validation errors. FieldRequestRateLimit is
// Options.RateLimit, the real limit, not the 429 fault probability
// FieldRateLimit.
const (
	FieldLatency          FaultField = "latency"
	FieldRequestRateLimit FaultField = "rate_limit_per_second"
	FieldRequestRateBurst FaultField = "rate_burst"
)

// FaultError is a validation error that names the offending field, so callers can
// translate it into their own vocabulary (a flag name, a JSON key).
type FaultError struct {
	Field FaultField
	Msg   string
}

// Error reports the field and what is wrong with it.
func (e *FaultError) Error() string { return string(e.Field) + ": " + e.Msg }

// Validate checks that every probability is within [0, 1], that the mutually
// exclusive ones sum to at most 1 and that durations are not negative.
func (f Faults) Validate() error {
	probs := []struct {
		field FaultField
		v     float64
	}{
		{FieldError5xxBefore, f.Error5xxBefore},
		{FieldError5xxAfter, f.Error5xxAfter},
		{FieldRateLimit, f.RateLimit},
		{FieldSlow, f.Slow},
		{FieldDrop, f.Drop},
	}
	for _, p := range probs {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			return &FaultError{p.field, fmt.Sprintf("probability must be between 0 and 1, got %v", p.v)}
		}
	}
	if sum := f.Error5xxBefore + f.Error5xxAfter + f.RateLimit + f.Drop; sum > 1+1e-9 {
		return &FaultError{FieldExclusiveSum, fmt.Sprintf("probabilities sum to %v, must not exceed 1", sum)}
	}
	if f.RetryAfter < 0 {
		return &FaultError{FieldRetryAfter, "must not be negative"}
	}
	if f.SlowDelay < 0 {
		return &FaultError{FieldSlowDelay, "must not be negative"}
	}
	if f.Slow > 0 && f.SlowDelay == 0 {
		return &FaultError{FieldSlowDelay, "must be positive when slow answers are enabled"}
	}
	return nil
}

// Validate checks the options an operator can get wrong: the fault
// probabilities (Faults.Validate), the webhook delivery modes
// (Delivery.Validate), and that Latency, RateLimit and RateBurst are not
// negative (RateLimit must also be a finite number). Errors are *FaultError.
// New does not call it: it uses options as given, treating a negative latency,
// rate or burst as 0.
func (o Options) Validate() error {
	if err := o.Faults.Validate(); err != nil {
		return err
	}
	if err := o.Webhook.Delivery.Validate(); err != nil {
		return err
	}
	if o.Latency < 0 {
		return &FaultError{FieldLatency, fmt.Sprintf("must not be negative, got %s", o.Latency)}
	}
	if math.IsNaN(o.RateLimit) || math.IsInf(o.RateLimit, 0) || o.RateLimit < 0 {
		return &FaultError{FieldRequestRateLimit, fmt.Sprintf("must be a finite, non-negative number of requests per second (0: unlimited), got %v", o.RateLimit)}
	}
	if o.RateBurst < 0 {
		return &FaultError{FieldRequestRateBurst, fmt.Sprintf("must not be negative (0: the rate limit rounded up), got %d", o.RateBurst)}
	}
	return nil
}

// defaultRateBurst is the burst of a rate limit when Options.RateBurst is 0: the
// limit rounded up, at least 1, so that "N per second" admits N at once.
func defaultRateBurst(limit float64) int {
	if limit >= math.MaxInt32 {
		return math.MaxInt32
	}
	return max(1, int(math.Ceil(limit)))
}

// WebhookOptions configures event delivery to one endpoint.
type WebhookOptions struct {
	// URL receives every event as a POST; empty disables delivery (events are still
	// recorded and available from Events).
	URL string
	// Secret is the HMAC-SHA256 key of the signature header (Wooshpay-Signature,
	// or Cko-Signature on Checkout.com).
	Secret string
	// Retry is the wait before each retry of a failed delivery (non-2xx answer or
	// connection error); after the last one the event is given up and counted in
	// Stats. Nil means 1s, 2s, 5s, 10s, 30s, 1m, 5m: WooshPay retries for 72 hours,
	// which is useless in a simulator. An empty non-nil slice means no retry.
	// Tests use a few milliseconds per step so that retries finish quickly.
	//
	// Attempts spoiled on purpose (see Delivery) are retried on the same schedule,
	// at once when it is empty, but do not use it up: after them a delivery still
	// gets len(Retry) retries of correctly signed attempts.
	Retry []time.Duration
	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration
	// TimestampMillis signs with t in Unix milliseconds instead of seconds (WooshPay;
	// Checkout.com signs no timestamp); the
	// receiver must accept both.
	TimestampMillis bool
	// Delivery shapes how events reach the endpoint: duplicates, reordering,
	// spoiled first attempts, or no delivery at all; SetWebhookDelivery changes it
	// at runtime.
	Delivery Delivery
}

const (
	defaultProcessingDelay = 2 * time.Second
	defaultRetryAfter      = time.Second
	defaultWebhookTimeout  = 10 * time.Second
	defaultWebhookWorkers  = 4
	defaultEventHistory    = 100000
	idempotencyTTL         = 24 * time.Hour
	maxIdempotencyKeyLen   = 255
	maxBodyBytes           = 1 << 20
)

// DefaultWebhookRetry is the retry schedule used when WebhookOptions.Retry is nil.
var DefaultWebhookRetry = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
	30 * time.Second, time.Minute, 5 * time.Minute,
}

// defaultChallengeExpiry is how long a Checkout.com 3-D Secure payment waits.
const defaultChallengeExpiry = 10 * time.Minute

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProcessingDelay <= 0 {
		o.ProcessingDelay = defaultProcessingDelay
	}
	if o.Provider == "" {
		o.Provider = ProviderWooshPay
	}
	if o.ChallengeExpiry <= 0 {
		o.ChallengeExpiry = defaultChallengeExpiry
	}
	o.CaptureDelay = max(o.CaptureDelay, 0)
	if o.Webhook.Retry == nil {
		o.Webhook.Retry = DefaultWebhookRetry
	}
	o.Webhook.Retry = append([]time.Duration(nil), o.Webhook.Retry...)
	if o.Webhook.Timeout <= 0 {
		o.Webhook.Timeout = defaultWebhookTimeout
	}
	o.Webhook.Delivery = o.Webhook.Delivery.withDefaults()
	if o.EventHistory == 0 {
		o.EventHistory = defaultEventHistory
	}
	o.Latency = max(o.Latency, 0)
	if math.IsNaN(o.RateLimit) || o.RateLimit <= 0 || math.IsInf(o.RateLimit, 1) {
		o.RateLimit, o.RateBurst = 0, 0 // unlimited
	} else if o.RateBurst <= 0 {
		o.RateBurst = defaultRateBurst(o.RateLimit)
	}
	return o
}
