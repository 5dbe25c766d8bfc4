package sim

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config is what `billingd sim` runs: an address and the simulator's options.
type Config struct {
	Listen  string
	Options Options
}

// DefaultListen is where `billingd sim` listens unless told otherwise: loopback
// only, since the simulator has no real security.
const DefaultListen = "127.0.0.1:12111"

// faultFlags maps Faults and Delivery fields to the flags that set them, so a
// validation error names the flag the operator typed.
var faultFlags = map[FaultField]string{
	FieldError5xxBefore: "--fault-5xx-before",
	FieldError5xxAfter:  "--fault-5xx-after",
	FieldRateLimit:      "--fault-429",
	FieldRetryAfter:     "--retry-after",
	FieldSlow:           "--fault-slow",
	FieldSlowDelay:      "--slow-delay",
	FieldDrop:           "--fault-drop",
	FieldExclusiveSum:   "--fault-5xx-before + --fault-5xx-after + --fault-429 + --fault-drop",

	FieldLatency:          "--latency",
	FieldRequestRateLimit: "--rate-limit",
	FieldRequestRateBurst: "--rate-burst",

	FieldWebhookDuplicates:     "--webhook-duplicates",
	FieldWebhookMaxCopies:      "--webhook-max-copies",
	FieldWebhookDelay:          "--webhook-delay",
	FieldWebhookMaxDelay:       "--webhook-max-delay",
	FieldWebhookBadSignature:   "--webhook-bad-signature",
	FieldWebhookStaleTimestamp: "--webhook-stale",
	FieldWebhookLose:           "--webhook-lose",
}

// flagError rewrites a validation error so that it names the flag.
func flagError(err error) error {
	var fe *FaultError
	if errors.As(err, &fe) {
		if name, ok := faultFlags[fe.Field]; ok {
			return fmt.Errorf("%s: %s", name, fe.Msg)
		}
	}
	return err
}

// simUsageHeader opens `billingd sim -h`: what the simulator is for, how it is
// usually started, and (followed by TestCardTable) the cards that pick each
// outcome, which is what a tester needs first.
const simUsageHeader = `billingd sim — a WooshPay (or, with --provider checkout, Checkout.com)
simulator on loopback, for demos, tests and staging

usage: billingd sim [flags]

example:
  billingd sim --listen 127.0.0.1:12111 --secret-key sk_test_x \
    --webhook-url http://127.0.0.1:8080/webhooks/wooshpay --webhook-secret whsec_x
  (then gateway.base_url: http://127.0.0.1:12111 in billingd's config)

  billingd sim --provider checkout --listen 127.0.0.1:12111 --secret-key sk_sbox_x \
    --webhook-url http://127.0.0.1:8080/webhooks/checkout --webhook-secret whsec_x
  (then gateway.provider: checkout and gateway.base_url: http://127.0.0.1:12111)

GET /_sim/ledger lists every payment; PUT /_sim/faults and PUT /_sim/webhooks
switch faults and webhook delivery modes at run time (docs/simulator.md).

test cards (save one, then charge it off-session; on Checkout.com the same
outcomes come with its response codes, docs/simulator.md):
`

// ParseFlags parses the arguments of `billingd sim` (without the subcommand name)
// and validates them; every error names the offending flag. When --seed is not
// given the seed is taken from the clock, so that a restarted simulator hands out
// fresh ids; Server.Start logs it so a run can be reproduced. -h/--help returns
// an error wrapping flag.ErrHelp whose text is the usage.
func ParseFlags(args []string) (Config, error) {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		cfg     Config
		o       = &cfg.Options
		retries string
	)
	fs.StringVar(&cfg.Listen, "listen", DefaultListen, "`address` to listen on")
	fs.StringVar(&o.Provider, "provider", "", "the `API` to speak: wooshpay or checkout (Checkout.com) (default wooshpay)")
	fs.DurationVar(&o.ChallengeExpiry, "challenge-expiry", 0, "how long a Checkout.com 3-D Secure payment waits before it expires (default 10m)")
	fs.StringVar(&o.SecretKey, "secret-key", "", "the only accepted secret `key` (empty: any non-empty key)")
	fs.Int64Var(&o.Seed, "seed", 0, "seed of fault and webhook decisions and ids (default: from the clock)")
	fs.Float64Var(&o.Faults.Error5xxBefore, "fault-5xx-before", 0, "`probability` of a 500 before the request is processed")
	fs.Float64Var(&o.Faults.Error5xxAfter, "fault-5xx-after", 0, "`probability` of a 500 after the request is processed and recorded")
	fs.Float64Var(&o.Faults.RateLimit, "fault-429", 0, "`probability` of a 429 with Retry-After")
	fs.DurationVar(&o.Faults.RetryAfter, "retry-after", defaultRetryAfter, "Retry-After sent with 429 (whole seconds, rounded up)")
	fs.Float64Var(&o.Faults.Slow, "fault-slow", 0, "`probability` of answering late (see --slow-delay)")
	fs.DurationVar(&o.Faults.SlowDelay, "slow-delay", 5*time.Second, "how late a slow answer is")
	fs.Float64Var(&o.Faults.Drop, "fault-drop", 0, "`probability` of processing then closing the connection without an answer")
	fs.DurationVar(&o.Latency, "latency", 0, "answer every /v1/ request no sooner than this after it arrived (the request is processed first, then the answer waits)")
	fs.Float64Var(&o.RateLimit, "rate-limit", 0, "refuse /v1/ requests beyond this `rate` (requests per second) with 429 and Retry-After, unprocessed (0: unlimited)")
	fs.IntVar(&o.RateBurst, "rate-burst", 0, "`requests` admitted at once under --rate-limit (0: the rate limit rounded up, i.e. that many in any second)")
	fs.DurationVar(&o.ProcessingDelay, "processing-delay", defaultProcessingDelay, "how long a processing charge takes to succeed")
	fs.StringVar(&o.PublicURL, "public-url", "", "base `URL` of links handed out (3-D Secure and checkout pages); default from the request Host")
	fs.StringVar(&o.Webhook.URL, "webhook-url", "", "`URL` that receives webhook events (empty: no delivery)")
	fs.StringVar(&o.Webhook.Secret, "webhook-secret", "", "HMAC `secret` for Wooshpay-Signature (Cko-Signature with --provider checkout)")
	fs.BoolVar(&o.Webhook.TimestampMillis, "webhook-ms", false, "sign webhooks with t in milliseconds instead of seconds")
	fs.DurationVar(&o.Webhook.Timeout, "webhook-timeout", defaultWebhookTimeout, "timeout of one webhook delivery attempt")
	fs.StringVar(&retries, "webhook-retry", "", "comma-separated `delays` between webhook retries (default 1s,2s,5s,10s,30s,1m,5m; \"none\" for no retry)")
	d := &o.Webhook.Delivery
	fs.Float64Var(&d.Duplicates, "webhook-duplicates", 0, "`probability` that an event is delivered more than once (see --webhook-max-copies)")
	fs.IntVar(&d.MaxCopies, "webhook-max-copies", defaultMaxCopies, "most `copies` of a duplicated event (at least 2)")
	fs.DurationVar(&d.Delay, "webhook-delay", 0, "fixed wait before each delivery's first try")
	fs.DurationVar(&d.MaxDelay, "webhook-max-delay", 0, "random extra wait, up to this, before each delivery's first try: delivers out of order")
	fs.Float64Var(&d.BadSignature, "webhook-bad-signature", 0, "`probability` that a delivery is first sent signed with a wrong secret")
	fs.Float64Var(&d.StaleTimestamp, "webhook-stale", 0, "`probability` that a delivery is first sent with a 10-minute-old timestamp")
	fs.Float64Var(&d.Lose, "webhook-lose", 0, "`probability` that a delivery's first attempt is lost and it only arrives on a retry")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b bytes.Buffer
			b.WriteString(simUsageHeader)
			b.WriteString(TestCardTable())
			b.WriteString("\nflags:\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return Config{}, fmt.Errorf("%w\n%s", flag.ErrHelp, b.String())
		}
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["seed"] {
		o.Seed = time.Now().UnixNano()
	}

	if o.Provider != "" && o.Provider != ProviderWooshPay && o.Provider != ProviderCheckout {
		return Config{}, fmt.Errorf("--provider: %q is neither wooshpay nor checkout", o.Provider)
	}
	if o.ChallengeExpiry < 0 {
		return Config{}, errors.New("--challenge-expiry: must not be negative")
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return Config{}, fmt.Errorf("--listen: %q is not host:port: %v", cfg.Listen, err)
	}
	if err := o.Validate(); err != nil {
		return Config{}, flagError(err)
	}
	if o.Faults.RetryAfter <= 0 {
		return Config{}, errors.New("--retry-after: must be positive")
	}
	if o.ProcessingDelay <= 0 {
		return Config{}, errors.New("--processing-delay: must be positive")
	}
	if o.Webhook.Timeout <= 0 {
		return Config{}, errors.New("--webhook-timeout: must be positive")
	}
	if o.PublicURL != "" && !absoluteHTTPURL(o.PublicURL) {
		return Config{}, fmt.Errorf("--public-url: %q is not an absolute http(s) URL", o.PublicURL)
	}
	if o.Webhook.URL != "" {
		if !absoluteHTTPURL(o.Webhook.URL) {
			return Config{}, fmt.Errorf("--webhook-url: %q is not an absolute http(s) URL", o.Webhook.URL)
		}
		if o.Webhook.Secret == "" {
			return Config{}, errors.New("--webhook-secret: required when --webhook-url is set")
		}
	}
	switch retries {
	case "":
	case "none":
		o.Webhook.Retry = []time.Duration{}
	default:
		for _, part := range strings.Split(retries, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(part))
			if err != nil || d < 0 {
				return Config{}, fmt.Errorf("--webhook-retry: %q is not a non-negative duration", part)
			}
			o.Webhook.Retry = append(o.Webhook.Retry, d)
		}
	}
	return cfg, nil
}

func absoluteHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
