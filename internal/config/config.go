// Package config loads billingd's YAML configuration.
//
// The file is the contract between finance ops and the daemon, so the
// package is deliberately unforgiving: unknown keys are errors (a misspelled
// "timout" must not silently fall back to a default while money moves), every
// problem names its dotted key, and secrets never appear in an error or a log line.
//
// Loading runs in a fixed order:
//
//  1. strict YAML decoding (unknown keys, duplicate keys and type mismatches are
//     errors naming the key and the line);
//  2. ${NAME} expansion inside scalar values, taken from the environment;
//  3. defaults for every key that has one;
//  4. *_file secrets, read from files such as systemd credentials.
//
// Validate then checks the semantics and returns every problem at once, so that
// `billingd check-config` can list them all in one run instead of one per edit.
package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Enum values accepted by the configuration. They are exported so that the
// packages consuming a Config switch over the same spellings Validate accepts.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"

	SynchronousFull   = "full"
	SynchronousNormal = "normal"

	ProviderWooshPay = "wooshpay"
	ProviderCheckout = "checkout"

	FinalActionCancel  = "cancel"
	FinalActionUnpaid  = "unpaid"
	FinalActionPastDue = "past_due"

	MailTLSStartTLS = "starttls"
	MailTLSImplicit = "tls"
	MailTLSNone     = "none"

	LogLevelDebug = "debug"
	LogLevelInfo  = "info"
	LogLevelWarn  = "warn"
	LogLevelError = "error"

	LogFormatJSON    = "json"
	LogFormatConsole = "console"
)

// DefaultSQLiteDSN is where the SQLite database lives when database.dsn is not
// set. It is only applied for the sqlite driver: a postgres deployment without a
// DSN is a configuration error, not a reason to quietly write to a local file.
const DefaultSQLiteDSN = "/var/lib/billingd/billingd.db"

// DefaultBaseURL is a provider's production API root, taken when
// gateway.base_url is not set ("" for an unknown provider).
func DefaultBaseURL(provider string) string {
	switch provider {
	case ProviderWooshPay:
		return "https://api.wooshpay.com"
	case ProviderCheckout:
		return "https://api.checkout.com"
	}
	return ""
}

// Config is the whole configuration of the daemon. Its zero value is not
// usable; start from Default, Load or Parse.
type Config struct {
	Database  DatabaseConfig  `yaml:"database"`
	Gateway   GatewayConfig   `yaml:"gateway"`
	Schedule  ScheduleConfig  `yaml:"schedule"`
	Retry     RetryConfig     `yaml:"retry"`
	Dunning   DunningConfig   `yaml:"dunning"`
	Reconcile ReconcileConfig `yaml:"reconcile"`
	HTTP      HTTPConfig      `yaml:"http"`
	Admin     AdminConfig     `yaml:"admin"`
	Events    EventsConfig    `yaml:"events"`
	Cluster   ClusterConfig   `yaml:"cluster"`
	Mail      MailConfig      `yaml:"mail"`
	Log       LogConfig       `yaml:"log"`

	// lines maps dotted keys to the line they were set on, so that Validate can
	// point at the offending line of a parsed file. Nil for Default().
	lines map[string]int
}

// DatabaseConfig selects and tunes the store. SQLite is the default because a
// single-node billing daemon should run without any other service.
type DatabaseConfig struct {
	// Driver is DriverSQLite or DriverPostgres.
	Driver string `yaml:"driver"`
	// DSN is a file path (or file: URI) for SQLite and a postgres URL or
	// key=value string for Postgres. It may carry a password, so it is redacted
	// wherever the config is printed.
	DSN string `yaml:"dsn"`
	// DSNFile, when set, names a file whose content becomes DSN; it keeps a
	// postgres password out of the config file. After loading it is kept only
	// for reference.
	DSNFile string `yaml:"dsn_file"`
	// Synchronous is SQLite's PRAGMA synchronous (full or normal). Full is the
	// default because a committed charge attempt must survive a power cut.
	Synchronous string `yaml:"synchronous"`
	// BusyTimeout is how long SQLite waits for a lock before failing.
	BusyTimeout Duration `yaml:"busy_timeout"`
	// MaxOpenConns caps the pool; 0 lets the store choose per driver.
	MaxOpenConns int `yaml:"max_open_conns"`
	// PgBouncer says the postgres DSN reaches the server through a
	// transaction-pooling PgBouncer: statements are then sent without named
	// prepared statements, which such a pooler (before PgBouncer 1.21) loses
	// between transactions. Off by default, because on a direct connection
	// prepared statements cost the server less.
	PgBouncer bool `yaml:"pgbouncer"`
}

// GatewayConfig describes the payment gateway connection and how hard billingd
// may push it.
type GatewayConfig struct {
	// Provider is the gateway implementation: ProviderWooshPay or
	// ProviderCheckout (Checkout.com).
	Provider string `yaml:"provider"`
	// BaseURL is the API root, without a trailing slash. Plain http is accepted
	// only for loopback hosts (the bundled simulator), never for a real gateway.
	BaseURL string `yaml:"base_url"`
	// SecretKey authenticates API calls (sk_test_… / sk_live_…).
	SecretKey Secret `yaml:"secret_key"`
	// SecretKeyFile, when set, names a file whose content becomes SecretKey.
	SecretKeyFile string `yaml:"secret_key_file"`
	// WebhookSecret verifies the signature of incoming webhooks (whsec_…).
	WebhookSecret Secret `yaml:"webhook_secret"`
	// WebhookSecretFile, when set, names a file whose content becomes
	// WebhookSecret.
	WebhookSecretFile string `yaml:"webhook_secret_file"`
	// WebhookSecretPrevious is also accepted while a webhook signing secret
	// is rotated: the gateway signs with the new one, deliveries already
	// queued with the old one still verify. Empty outside a rotation.
	WebhookSecretPrevious Secret `yaml:"webhook_secret_previous"`
	// WebhookTolerance bounds the age of a webhook signature timestamp, which
	// limits how long a captured webhook can be replayed.
	WebhookTolerance Duration `yaml:"webhook_tolerance"`
	// Timeout bounds one HTTP request to the gateway.
	Timeout Duration `yaml:"timeout"`
	// Concurrency is the number of charges in flight at once.
	Concurrency int `yaml:"concurrency"`
	// RateLimit is the ceiling on gateway requests per second, shared by all
	// workers, so a large billing run cannot trip the gateway's own limits.
	RateLimit float64 `yaml:"rate_limit"`
}

// ScheduleConfig drives the billing sweep.
type ScheduleConfig struct {
	// Billing is a cron spec (5 fields or a descriptor such as @hourly or
	// @every 1m) for the billing sweep.
	Billing string `yaml:"billing"`
	// Timezone is the IANA zone the cron spec is read in. Billing periods are
	// still computed and stored in UTC.
	Timezone string `yaml:"timezone"`
	// DrainTimeout is how long the first SIGTERM waits for in-flight charges
	// before giving up, so a deploy never cuts a charge in half by choice.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// PageSize is how many due subscriptions a sweep reads per query.
	PageSize int `yaml:"page_size"`
}

// RetryConfig is the backoff for transient failures inside one charge attempt
// (network errors, timeouts, 409, 429, 5xx), always with the same idempotency
// key. It is the short clock; dunning is the long one.
type RetryConfig struct {
	InitialInterval Duration `yaml:"initial_interval"`
	MaxInterval     Duration `yaml:"max_interval"`
	// MaxElapsedTime ends the retries; the attempt then stays unknown and the
	// reconciler resolves it.
	MaxElapsedTime Duration `yaml:"max_elapsed_time"`
}

// ReconcileConfig drives the reconciler, which settles attempts whose outcome the
// charge request and the webhooks never delivered, by reading the gateway.
type ReconcileConfig struct {
	// Every is how often the reconciler looks for stuck attempts.
	Every Duration `yaml:"every"`
	// After is how old an unresolved attempt must be before the reconciler
	// touches it, leaving time for the answer and the webhook to arrive.
	After Duration `yaml:"after"`
	// Backoff is the wait before each further look at an attempt the gateway
	// could not settle yet; after the last one it becomes needs_review.
	Backoff []Duration `yaml:"backoff"`
}

// Delays returns the reconcile backoff as plain durations.
func (r ReconcileConfig) Delays() []time.Duration {
	out := make([]time.Duration, len(r.Backoff))
	for i, v := range r.Backoff {
		out[i] = v.D()
	}
	return out
}

// DunningConfig is the recovery policy after a declined charge.
type DunningConfig struct {
	// RetrySchedule lists the delays between dunning retries: each entry is
	// measured from the previous step, not from the first failure.
	RetrySchedule []Duration `yaml:"retry_schedule"`
	// FinalAction is the subscription status once the schedule is exhausted:
	// FinalActionCancel, FinalActionUnpaid or FinalActionPastDue.
	FinalAction string `yaml:"final_action"`
	// LinkTTL is how long an emailed pay / card-update link stays valid.
	LinkTTL Duration `yaml:"link_ttl"`
	// WakeEvery is how often the daemon wakes dunning cases whose next step has
	// come (reminders, retries the card cap held back, exhaustion), on its own
	// clock, so a case never waits for a billing pass to advance.
	WakeEvery Duration `yaml:"wake_every"`
	// ChallengeTimeout is how long a payment waiting for the customer to
	// authenticate (3-D Secure) stays open: after it, billingd cancels the
	// intent at the gateway, and the invoice is free for the next retry or
	// press once the cancel is definite.
	ChallengeTimeout Duration `yaml:"challenge_timeout"`
	// LinkChargesPerHour caps the customer (on-session) charges pay links
	// start per invoice and per card in any rolling hour, whatever link was
	// used.
	LinkChargesPerHour int `yaml:"link_charges_per_hour"`
	// CardExpiryNotice is how long before a subscription's next charge a
	// customer whose card expires before that charge is asked (once per card
	// and period) to replace it, so that the charge does not fail; 0 turns
	// the notice off.
	CardExpiryNotice Duration `yaml:"card_expiry_notice"`
}

// HTTPConfig is the listener for webhooks, pay pages, health and metrics.
type HTTPConfig struct {
	// Listen is host:port. The default binds loopback only, because a reverse
	// proxy normally terminates TLS in front of billingd.
	Listen string `yaml:"listen"`
	// PublicBaseURL is how customers and the gateway reach billingd; pay links
	// and return URLs are built from it. Stored without a trailing slash.
	PublicBaseURL string `yaml:"public_base_url"`
}

// EventsConfig is the outbox to the merchant's systems: every state change a
// merchant's app acts on is recorded in the transaction that made it and
// POSTed, signed, to URL (docs/events.md).
type EventsConfig struct {
	// URL receives the events; "" turns them off (nothing is recorded:
	// with no receiver the table would only grow). Turning it on or off
	// applies at the next start.
	URL string `yaml:"url"`
	// Secret signs each delivery (Billingd-Signature, HMAC-SHA256); the
	// receiver verifies with the same value. SecretFile reads it from a file
	// instead (systemd LoadCredential=).
	Secret     Secret `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// SecretPrevious, during a rotation, signs each delivery a second time
	// (a second v1=), so receivers still holding the old secret verify too.
	SecretPrevious Secret `yaml:"secret_previous"`
	// Timeout bounds one POST; a receiver that answers later is tried again.
	Timeout Duration `yaml:"timeout"`
	// RetryFor is how long an event that is not answered 2xx is retried
	// (with backoff) before it is marked failed and stops holding back its
	// subscription's later events.
	RetryFor Duration `yaml:"retry_for"`
}

// ClusterConfig is how instances sharing one PostgreSQL database see each
// other (README, "Running several instances"). Each registers in the instances
// table and renews its row every Heartbeat; a row not renewed for
// ClusterExpiryBeats heartbeats is a dead instance, whose share of the
// gateway's limits the live ones take over.
type ClusterConfig struct {
	// Heartbeat is how often an instance renews its row; shares of
	// gateway.rate_limit and gateway.concurrency re-balance within one
	// heartbeat of an instance joining or leaving.
	Heartbeat Duration `yaml:"heartbeat"`
	// PayPageShare is the part of gateway.rate_limit reserved for
	// customer-facing pay pages (a customer waiting at a 3-D Secure or card
	// page is never queued behind a billing pass); while no pay page uses
	// it, the rest of the work may.
	PayPageShare float64 `yaml:"pay_page_share"`
}

// ClusterExpiryBeats is how many heartbeats an instance's row outlives its
// last renewal before the others count it dead.
const ClusterExpiryBeats = 3

// Expiry is how long after its last heartbeat an instance counts as dead.
func (c ClusterConfig) Expiry() time.Duration { return ClusterExpiryBeats * c.Heartbeat.D() }

// Enabled reports whether events are recorded and delivered.
func (e EventsConfig) Enabled() bool { return e.URL != "" }

// AdminConfig is the admin API's listener: the operator actions over
// authenticated HTTP for a merchant's back office and signup flow. It is off
// unless Listen is set, because it can move money (refunds) and every
// deployment should decide to expose it.
type AdminConfig struct {
	// Listen is host:port; "" turns the admin API off. A non-loopback
	// address needs TLSCertFile and TLSKeyFile: bearer tokens must not cross
	// a network in clear text.
	Listen string `yaml:"listen"`
	// TokensFile holds the named, hashed bearer tokens `billingd
	// admin-tokens add|revoke` writes; the daemon re-reads it when it
	// changes, so a revoke applies to the next request.
	TokensFile string `yaml:"tokens_file"`
	// RateLimit is the ceiling on requests per second of one token, so a
	// runaway script cannot crowd out the others (or the database).
	RateLimit float64 `yaml:"rate_limit"`
	// TLSCertFile and TLSKeyFile, when both set, make the admin listener
	// serve HTTPS with that PEM certificate chain and key.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// Enabled reports whether the admin API is served.
func (a AdminConfig) Enabled() bool { return a.Listen != "" }

// TLS reports whether the admin listener serves HTTPS.
func (a AdminConfig) TLS() bool { return a.TLSCertFile != "" && a.TLSKeyFile != "" }

// MailConfig is the SMTP relay for dunning emails. Mail is disabled when Host
// is empty, which keeps development and demo setups free of an SMTP server.
type MailConfig struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	// PasswordFile, when set, names a file whose content becomes Password.
	PasswordFile string `yaml:"password_file"`
	// TLS is MailTLSStartTLS, MailTLSImplicit or MailTLSNone.
	TLS string `yaml:"tls"`
	// From is the RFC 5322 sender, e.g. "Billing <billing@example.com>".
	From string `yaml:"from"`
	// TemplatesDir overrides the built-in email templates when set.
	TemplatesDir string `yaml:"templates_dir"`
}

// Enabled reports whether emails should be sent at all.
func (m MailConfig) Enabled() bool { return m.Host != "" }

// LogConfig selects the zerolog output.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Default returns a configuration with every default applied. It lacks the
// required values (gateway secrets, http.public_base_url), so it does not
// validate as is; the demo and tests fill those in.
func Default() *Config {
	return &Config{
		Database: DatabaseConfig{
			Driver:      DriverSQLite,
			DSN:         DefaultSQLiteDSN,
			Synchronous: SynchronousFull,
			BusyTimeout: Duration(5 * time.Second),
		},
		Gateway: GatewayConfig{
			Provider:         ProviderWooshPay,
			BaseURL:          DefaultBaseURL(ProviderWooshPay),
			WebhookTolerance: Duration(5 * time.Minute),
			Timeout:          Duration(30 * time.Second),
			Concurrency:      8,
			RateLimit:        20,
		},
		Schedule: ScheduleConfig{
			Billing:      "*/5 * * * *",
			Timezone:     "UTC",
			DrainTimeout: Duration(60 * time.Second),
			PageSize:     500,
		},
		Retry: RetryConfig{
			InitialInterval: Duration(time.Second),
			MaxInterval:     Duration(30 * time.Second),
			MaxElapsedTime:  Duration(5 * time.Minute),
		},
		Dunning: DunningConfig{
			RetrySchedule: []Duration{
				Duration(24 * time.Hour),
				Duration(72 * time.Hour),
				Duration(120 * time.Hour),
				Duration(168 * time.Hour),
			},
			FinalAction: FinalActionCancel,
			WakeEvery:   Duration(time.Minute),
			LinkTTL:     Duration(168 * time.Hour),
			// A 3-D Secure challenge normally takes a minute or two.
			ChallengeTimeout:   Duration(30 * time.Minute),
			LinkChargesPerHour: 3,
			CardExpiryNotice:   Duration(168 * time.Hour),
		},
		Reconcile: ReconcileConfig{
			Every: Duration(time.Minute),
			After: Duration(10 * time.Minute),
			Backoff: []Duration{
				Duration(5 * time.Minute),
				Duration(time.Hour),
				Duration(6 * time.Hour),
				Duration(24 * time.Hour),
			},
		},
		HTTP: HTTPConfig{
			Listen: "127.0.0.1:8080",
		},
		Admin: AdminConfig{
			RateLimit: 20,
		},
		Events: EventsConfig{
			Timeout:  Duration(10 * time.Second),
			RetryFor: Duration(72 * time.Hour),
		},
		Cluster: ClusterConfig{
			Heartbeat:    Duration(5 * time.Second),
			PayPageShare: 0.1,
		},
		Mail: MailConfig{
			Port: 587,
			TLS:  MailTLSStartTLS,
		},
		Log: LogConfig{
			Level:  LogLevelInfo,
			Format: LogFormatJSON,
		},
	}
}

// Location returns the time zone the billing cron spec is interpreted in.
func (s ScheduleConfig) Location() (*time.Location, error) {
	return time.LoadLocation(s.Timezone)
}

// RetryDelays returns the dunning schedule as plain durations, for callers
// that do not want to know about the YAML wrapper type.
func (d DunningConfig) RetryDelays() []time.Duration {
	out := make([]time.Duration, len(d.RetrySchedule))
	for i, v := range d.RetrySchedule {
		out[i] = v.D()
	}
	return out
}

// Duration is a time.Duration written in YAML as a Go duration string ("30s",
// "5m", "168h"). A bare number is rejected: "30" could mean seconds or
// nanoseconds, and guessing wrong on a timeout is an outage.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration the way it is written in the config.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a duration such as 30s, 5m or 168h")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("must be a duration such as 30s, 5m or 168h")
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back as a string, so String() output can be
// fed to Parse again.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the duration as a string, readable in JSON logs.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Redacted is what a set secret prints as.
const Redacted = "<redacted>"

// Secret is a credential. Its String, GoString and marshalling methods all
// print Redacted, so passing a Config (or any part of it) to a logger, fmt or
// an error cannot leak a key. Use Reveal where the real value is needed.
type Secret string

// Reveal returns the secret itself. Call it only where the value is handed to
// the gateway, SMTP server or HMAC, never for display.
func (s Secret) Reveal() string { return string(s) }

// String prints Redacted for a set secret and "" for an unset one, so logs
// still show whether a secret is configured.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString keeps %#v as safe as %v.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// MarshalYAML redacts the secret in Config.String output.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON redacts the secret in structured logs.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Clone returns a deep copy (slices included), so a reload can adjust a
// config without touching the one it came from.
func (c *Config) Clone() *Config {
	cp := *c
	cp.Dunning.RetrySchedule = append([]Duration(nil), c.Dunning.RetrySchedule...)
	cp.Reconcile.Backoff = append([]Duration(nil), c.Reconcile.Backoff...)
	return &cp
}

// Redacted returns a copy safe to print: secrets already redact themselves,
// and a password inside database.dsn is masked.
func (c *Config) Redacted() *Config {
	cp := c.Clone()
	cp.Database.DSN = RedactDSN(c.Database.DSN)
	cp.lines = nil
	return cp
}

// String renders the configuration as YAML with secrets redacted, for
// `check-config` output and startup logs. Its value receiver keeps a Config
// printed by value just as safe as a *Config.
func (c Config) String() string {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c.Redacted()); err != nil {
		return fmt.Sprintf("<config: %v>", err)
	}
	_ = enc.Close()
	return b.String()
}

// GoString keeps %#v from dumping the DSN.
func (c Config) GoString() string { return c.String() }

var kvPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s]*)`)

// RedactDSN masks the password in a postgres URL, a key=value DSN, or a
// sqlite file: URI (query parameters whose name mentions "pass", "secret",
// "token" or "key"). Values that cannot be parsed are masked entirely, since
// we cannot tell where a password would be.
func RedactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.Contains(dsn, "://") || strings.HasPrefix(dsn, "file:") {
		u, err := url.Parse(dsn)
		if err != nil {
			return Redacted
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
		}
		if u.RawQuery != "" {
			q := u.Query()
			for k := range q {
				lk := strings.ToLower(k)
				if strings.Contains(lk, "pass") || strings.Contains(lk, "secret") ||
					strings.Contains(lk, "token") || strings.Contains(lk, "key") {
					q.Set(k, "xxxxx")
				}
			}
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}
