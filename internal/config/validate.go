package config

import (
	"fmt"
	"math"
	"net"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/robfig/cron/v3"

	// The daemon validates and later loads schedule.timezone; embedding the
	// zone database keeps both working on minimal hosts without tzdata.
	_ "time/tzdata"
)

// Limits enforced by Validate. They are generous; their point is to catch a
// typo (an extra zero, a swapped field) before it reaches the gateway.
const (
	MaxConcurrency        = 1024
	MaxPageSize           = 100000
	MaxRetryScheduleSteps = 15
)

// secretKeys are the keys whose values are never shown in an error.
// database.dsn is included because a postgres DSN usually carries a password.
var secretKeys = map[string]bool{
	"database.dsn":                    true,
	"gateway.secret_key":              true,
	"gateway.webhook_secret":          true,
	"gateway.webhook_secret_previous": true,
	"mail.password":                   true,
}

// displayValue is the value an error may show for key.
func displayValue(key, v string) string {
	if v != "" && secretKeys[key] {
		return Redacted
	}
	return v
}

// Validate checks the semantics of the configuration and returns every
// problem it finds as Errors (sorted by key), or nil. Reporting all problems
// at once saves an operator the edit-run-edit loop on a service that is down.
//
// It reads the file system only to check mail.templates_dir.
func (c *Config) Validate() error { return c.check().asError() }

type validator struct {
	errs  Errors
	lines map[string]int
}

func (v *validator) add(key, value, format string, args ...any) {
	v.errs = append(v.errs, FieldError{
		Key:     key,
		Value:   displayValue(key, value),
		Message: fmt.Sprintf(format, args...),
		Line:    v.lines[key],
	})
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.add(key, value, "must be one of %s", strings.Join(allowed, ", "))
}

func (v *validator) positive(key string, d Duration) {
	if d <= 0 {
		v.add(key, d.String(), "must be a positive duration")
	}
}

func (v *validator) intRange(key string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(key, strconv.Itoa(n), "must be between %d and %d", lo, hi)
	}
}

func (v *validator) required(key, value, hint string) bool {
	if value != "" {
		return true
	}
	v.add(key, "", "is required%s", hint)
	return false
}

func (c *Config) check() Errors { return c.checkFor(NeedAll) }

func (c *Config) checkFor(need Need) Errors {
	v := &validator{lines: c.lines}
	c.checkDatabase(v)
	if need.Gateway {
		c.checkGatewayAPI(v)
	}
	if need.Webhooks {
		c.checkWebhooks(v)
	}
	if need.Schedule {
		c.checkSchedule(v)
	}
	if need.Billing {
		c.checkRetry(v)
		c.checkDunning(v)
		c.checkReconcile(v)
	}
	if need.HTTP {
		c.checkHTTP(v)
	}
	if need.Mail {
		c.checkMail(v)
	}
	if need.Admin {
		c.checkAdmin(v)
	}
	c.checkEvents(v, need.EventsSecret)
	c.checkCluster(v)
	v.oneOf("log.level", c.Log.Level, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError)
	v.oneOf("log.format", c.Log.Format, LogFormatJSON, LogFormatConsole)
	return v.errs
}

var kvDSN = regexp.MustCompile(`^\s*[A-Za-z_]+\s*=`)

func (c *Config) checkDatabase(v *validator) {
	d := c.Database
	v.oneOf("database.driver", d.Driver, DriverSQLite, DriverPostgres)
	switch d.Driver {
	case DriverSQLite:
		if v.required("database.dsn", d.DSN, " (a file path such as "+DefaultSQLiteDSN+")") {
			if msg := sqliteDSNProblem(d.DSN); msg != "" {
				v.add("database.dsn", d.DSN, "%s", msg)
			}
		}
	case DriverPostgres:
		if !v.required("database.dsn", d.DSN, " when database.driver is postgres (or set database.dsn_file)") {
			break
		}
		ok := false
		if strings.HasPrefix(d.DSN, "postgres://") || strings.HasPrefix(d.DSN, "postgresql://") {
			u, err := url.Parse(d.DSN)
			ok = err == nil && u.Host != ""
		} else {
			ok = kvDSN.MatchString(d.DSN)
		}
		if !ok {
			v.add("database.dsn", d.DSN, "must be a postgres URL (postgres://user@host:5432/billingd) or a key=value DSN (host=... dbname=...)")
		} else if _, err := pgconn.ParseConfig(d.DSN); err != nil {
			// The driver's own parser: what it refuses here, billingd run
			// would refuse at start (sslmode=nope, a bad port, a missing
			// sslrootcert file).
			v.add("database.dsn", d.DSN, "is not accepted by the PostgreSQL driver: %s", pgParseMessage(err))
		}
	}
	c.checkPgBouncer(v)
	v.oneOf("database.synchronous", d.Synchronous, SynchronousFull, SynchronousNormal)
	v.positive("database.busy_timeout", d.BusyTimeout)
	if d.MaxOpenConns < 0 {
		v.add("database.max_open_conns", strconv.Itoa(d.MaxOpenConns), "must be 0 (driver default) or more")
	}
}

func (c *Config) checkGatewayAPI(v *validator) {
	g := c.Gateway
	v.oneOf("gateway.provider", g.Provider, ProviderWooshPay, ProviderCheckout)
	if g.BaseURL == "" && DefaultBaseURL(g.Provider) == "" {
		// An unknown provider has no default URL; gateway.provider says so.
	} else if v.required("gateway.base_url", g.BaseURL, "") {
		v.url("gateway.base_url", g.BaseURL)
		v.providerHost(g.Provider, g.BaseURL)
	}
	if v.required("gateway.secret_key", string(g.SecretKey), ` (for example secret_key: "${WOOSHPAY_SECRET_KEY}"), or set gateway.secret_key_file`) {
		v.token("gateway.secret_key", string(g.SecretKey))
		v.secretKey(g.Provider, string(g.SecretKey), g.SecretKeyFile, simulatorURL(g.BaseURL))
	}
	v.positive("gateway.timeout", g.Timeout)
	v.intRange("gateway.concurrency", g.Concurrency, 1, MaxConcurrency)
	if !(g.RateLimit > 0) || math.IsInf(g.RateLimit, 0) {
		v.add("gateway.rate_limit", strconv.FormatFloat(g.RateLimit, 'g', -1, 64), "must be a positive number of requests per second")
	}
}

func (c *Config) checkWebhooks(v *validator) {
	g := c.Gateway
	if v.required("gateway.webhook_secret", string(g.WebhookSecret), ` (for example webhook_secret: "${WOOSHPAY_WEBHOOK_SECRET}"), or set gateway.webhook_secret_file`) {
		v.token("gateway.webhook_secret", string(g.WebhookSecret))
	}
	v.token("gateway.webhook_secret_previous", string(g.WebhookSecretPrevious))
	v.positive("gateway.webhook_tolerance", g.WebhookTolerance)
}

// token rejects whitespace and control characters in a credential: they
// usually come from a copied line ending and would only surface later as an
// authentication failure in the middle of a billing run.
func (v *validator) token(key, s string) {
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		v.add(key, s, "must not contain whitespace or control characters")
	}
}

// secretKeyShapes are the providers' API secret keys: WooshPay's sk_ or
// rk_, the mode, then the key's characters; Checkout.com's sk_sbox_… (a
// sandbox key), sk_… (production) or sk_test_… (a sandbox key of its older
// accounts).
var secretKeyShapes = map[string]struct {
	re   *regexp.Regexp
	hint string
}{
	ProviderWooshPay: {regexp.MustCompile(`^(sk|rk)_(test|live)_[A-Za-z0-9_]+$`), "a WooshPay secret key (sk_test_…, sk_live_…, or a restricted rk_… key)"},
	ProviderCheckout: {regexp.MustCompile(`^sk_(sbox_)?[a-z2-7]{26}[a-z2-7*#$=]$|^sk_(test_)?\w{8}-\w{4}-\w{4}-\w{4}-\w{12}$`),
		"a Checkout.com secret key (sk_sbox_… for the sandbox or sk_… live, 27 characters after the prefix; or a previous-platform sk_test_<uuid> / sk_<uuid>)"},
}

// simulatorKeyShape is what a secret key must look like when the base URL is
// on loopback (the bundled simulator, which accepts any key it was started
// with): a secret key's prefix and one token.
var simulatorKeyShape = regexp.MustCompile(`^sk_[A-Za-z0-9_-]{4,}$`)

// simulatorURL reports whether base is a loopback address: the bundled
// simulator or a local test gateway.
func simulatorURL(base string) bool {
	u, err := url.Parse(base)
	return err == nil && isLoopback(u.Hostname())
}

// providerHosts are the API domains of each provider: a base URL of the
// other provider's is a copy-paste mistake that would fail every charge.
var providerHosts = map[string]string{ProviderWooshPay: "wooshpay.com", ProviderCheckout: "checkout.com"}

// providerHost refuses a base URL that belongs to the other provider.
func (v *validator) providerHost(provider, base string) {
	u, err := url.Parse(base)
	if err != nil {
		return
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	for p, domain := range providerHosts {
		if p != provider && (host == domain || strings.HasSuffix(host, "."+domain)) {
			v.add("gateway.base_url", u.Redacted(), "is %s's API, but gateway.provider is %s", p, provider)
		}
	}
}

// secretKey refuses a key the gateway would refuse at the first charge: a
// publishable key (pk_…, meant for browsers) or anything not shaped like a
// secret key. The error names gateway.secret_key, or gateway.secret_key_file
// (with the file's path) when the key came from a file, and never shows the
// key itself.
func (v *validator) secretKey(provider, s, file string, simulator bool) {
	key, shown := "gateway.secret_key", s
	if file != "" {
		key, shown = "gateway.secret_key_file", file
	}
	shape, ok := secretKeyShapes[provider]
	if ok && simulator && provider == ProviderCheckout && simulatorKeyShape.MatchString(s) {
		// The bundled simulator takes the key it was started with; the
		// production shapes are checked when the URL is a real gateway's.
		return
	}
	switch {
	case !ok:
		// gateway.provider is reported on its own.
	case strings.HasPrefix(s, "pk_"):
		v.add(key, shown, "holds a publishable key (pk_…); billingd needs %s", shape.hint)
	case !shape.re.MatchString(s) && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		v.add(key, shown, "does not look like %s", shape.hint)
	}
}

// sqliteDSNProblem checks a SQLite DSN the way the store reads it: a file
// path (optionally file:…) with an optional URL query of driver parameters.
func sqliteDSNProblem(dsn string) string {
	path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	if path == "" || path == ":memory:" || strings.HasPrefix(path, ":memory:") {
		return "must be a database file path (an in-memory database loses money state)"
	}
	if _, err := url.ParseQuery(query); err != nil {
		return "has a query the SQLite driver cannot read: " + err.Error()
	}
	return ""
}

// pgParseMessage is pgconn's reason without the connection string it
// quotes (whose password pgconn redacts only on a best-effort basis).
func pgParseMessage(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "`: "); i >= 0 {
		s = s[i+3:]
	}
	return s
}

// url checks an absolute http(s) URL. Plain http is allowed only for
// loopback hosts: the bundled simulator and local development, never a
// real gateway or customer-facing address.
func (v *validator) url(key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" || !u.IsAbs() {
		v.add(key, redactURL(raw), "must be an absolute URL such as https://example.com")
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			v.add(key, u.Redacted(), "must use https (http is allowed only for localhost and loopback addresses)")
			return
		}
	default:
		v.add(key, u.Redacted(), "must be an https URL")
		return
	}
	if u.User != nil {
		v.add(key, u.Redacted(), "must not contain a user name or password")
		return
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		v.add(key, u.Redacted(), "must not have a query string or fragment; only a path prefix is allowed")
	}
}

func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if strings.Contains(raw, "@") {
		return Redacted
	}
	return raw
}

func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) checkSchedule(v *validator) {
	s := c.Schedule
	if v.required("schedule.billing", s.Billing, ` (a cron spec such as "*/5 * * * *" or "@hourly")`) {
		if strings.HasPrefix(s.Billing, "TZ=") || strings.HasPrefix(s.Billing, "CRON_TZ=") {
			v.add("schedule.billing", s.Billing, "must not carry a time zone; set schedule.timezone instead")
		} else if err := parseCron(s.Billing); err != nil {
			v.add("schedule.billing", s.Billing, "invalid cron spec: %v", err)
		}
	}
	if v.required("schedule.timezone", s.Timezone, " (an IANA name such as UTC or Europe/Berlin)") {
		if s.Timezone == "Local" {
			v.add("schedule.timezone", s.Timezone, "must be an IANA name such as UTC or Europe/Berlin; Local depends on the host")
		} else if _, err := time.LoadLocation(s.Timezone); err != nil {
			v.add("schedule.timezone", s.Timezone, "unknown time zone; use an IANA name such as UTC or Europe/Berlin")
		}
	}
	v.positive("schedule.drain_timeout", s.DrainTimeout)
	v.intRange("schedule.page_size", s.PageSize, 1, MaxPageSize)
}

// parseCron validates a spec with the scheduler's own parser, converting a
// panic inside it (it has had some on malformed input) into an error.
func parseCron(spec string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	_, err = cron.ParseStandard(spec)
	return err
}

func (c *Config) checkRetry(v *validator) {
	r := c.Retry
	v.positive("retry.initial_interval", r.InitialInterval)
	v.positive("retry.max_interval", r.MaxInterval)
	v.positive("retry.max_elapsed_time", r.MaxElapsedTime)
	if r.InitialInterval > 0 && r.MaxInterval > 0 && r.MaxInterval < r.InitialInterval {
		v.add("retry.max_interval", r.MaxInterval.String(), "must be at least retry.initial_interval (%s)", r.InitialInterval)
	}
}

func (c *Config) checkDunning(v *validator) {
	d := c.Dunning
	switch n := len(d.RetrySchedule); {
	case n == 0:
		v.add("dunning.retry_schedule", "", "must list at least one delay, such as [24h, 72h]")
	case n > MaxRetryScheduleSteps:
		v.add("dunning.retry_schedule", "", "must have at most %d entries, has %d", MaxRetryScheduleSteps, n)
	}
	for i, step := range d.RetrySchedule {
		v.positive(fmt.Sprintf("dunning.retry_schedule[%d]", i), step)
	}
	v.oneOf("dunning.final_action", d.FinalAction, FinalActionCancel, FinalActionUnpaid, FinalActionPastDue)
	v.positive("dunning.link_ttl", d.LinkTTL)
	v.positive("dunning.wake_every", d.WakeEvery)
	if d.ChallengeTimeout < Duration(time.Minute) || d.ChallengeTimeout > Duration(24*time.Hour) {
		v.add("dunning.challenge_timeout", d.ChallengeTimeout.String(), "must be between 1m and 24h")
	}
	v.intRange("dunning.link_charges_per_hour", d.LinkChargesPerHour, 1, 100)
	if d.CardExpiryNotice < 0 || d.CardExpiryNotice > Duration(90*24*time.Hour) {
		v.add("dunning.card_expiry_notice", d.CardExpiryNotice.String(), "must be between 0 (off) and 2160h (90 days)")
	}
}

func (c *Config) checkReconcile(v *validator) {
	r := c.Reconcile
	v.positive("reconcile.every", r.Every)
	v.positive("reconcile.after", r.After)
	switch n := len(r.Backoff); {
	case n == 0:
		v.add("reconcile.backoff", "", "must list at least one delay, such as [5m, 1h, 24h]")
	case n > 20:
		v.add("reconcile.backoff", "", "must have at most 20 entries, has %d", n)
	}
	for i, step := range r.Backoff {
		v.positive(fmt.Sprintf("reconcile.backoff[%d]", i), step)
	}
}

func (c *Config) checkHTTP(v *validator) {
	h := c.HTTP
	if v.required("http.listen", h.Listen, ` (host:port such as "127.0.0.1:8080")`) {
		_, port, err := net.SplitHostPort(h.Listen)
		if err != nil {
			v.add("http.listen", h.Listen, `must be host:port such as "127.0.0.1:8080" or ":8080"`)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			v.add("http.listen", h.Listen, "port must be a number from 0 to 65535")
		}
	}
	if v.required("http.public_base_url", h.PublicBaseURL, " (the https address customers and the gateway use to reach billingd)") {
		v.url("http.public_base_url", h.PublicBaseURL)
	}
}

func (c *Config) checkMail(v *validator) {
	m := c.Mail
	v.intRange("mail.port", m.Port, 1, 65535)
	v.oneOf("mail.tls", m.TLS, MailTLSStartTLS, MailTLSImplicit, MailTLSNone)
	if m.Host != "" {
		if _, _, err := net.SplitHostPort(m.Host); err == nil {
			v.add("mail.host", m.Host, "must be a host name without a port; set mail.port")
		}
		v.required("mail.from", m.From, ` when mail.host is set (for example "Billing <billing@example.com>")`)
		if m.TLS == MailTLSNone && m.Password != "" && !isLoopback(m.Host) {
			v.add("mail.tls", m.TLS, "must be starttls or tls when a password is sent to a remote host")
		}
	}
	if m.From != "" {
		if _, err := mail.ParseAddress(m.From); err != nil {
			v.add("mail.from", m.From, `must be an email address such as "Billing <billing@example.com>"`)
		}
	}
	if m.TemplatesDir != "" {
		fi, err := os.Stat(m.TemplatesDir)
		switch {
		case err != nil:
			v.add("mail.templates_dir", m.TemplatesDir, "must be an existing directory: %v", statReason(err))
		case !fi.IsDir():
			v.add("mail.templates_dir", m.TemplatesDir, "must be a directory, not a file")
		}
	}
}

func statReason(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// checkAdmin checks the admin API's section: off without a listen address;
// with one, a readable tokens file, a positive rate limit, and TLS files
// (both or neither, readable) — required when the address is not loopback,
// because bearer tokens must not cross a network in clear text.
func (c *Config) checkAdmin(v *validator) {
	a := c.Admin
	if !(a.RateLimit > 0) || math.IsInf(a.RateLimit, 0) {
		v.add("admin.rate_limit", strconv.FormatFloat(a.RateLimit, 'g', -1, 64), "must be a positive number of requests per second per token")
	}
	if a.Listen == "" {
		return
	}
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		v.add("admin.listen", a.Listen, `must be host:port such as "127.0.0.1:8443", or empty to turn the admin API off`)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add("admin.listen", a.Listen, "port must be a number from 0 to 65535")
	}
	if v.required("admin.tokens_file", a.TokensFile, " when admin.listen is set (create it with `billingd admin-tokens add NAME`)") {
		v.readableFile("admin.tokens_file", a.TokensFile, " (create it with `billingd admin-tokens add NAME`)")
	}
	switch {
	case a.TLSCertFile != "" && a.TLSKeyFile == "":
		v.add("admin.tls_key_file", "", "is required when admin.tls_cert_file is set")
	case a.TLSCertFile == "" && a.TLSKeyFile != "":
		v.add("admin.tls_cert_file", "", "is required when admin.tls_key_file is set")
	}
	v.readableFile("admin.tls_cert_file", a.TLSCertFile, "")
	v.readableFile("admin.tls_key_file", a.TLSKeyFile, "")
	if err == nil && !a.TLS() && !isLoopbackListen(host) {
		v.add("admin.listen", a.Listen, "is not a loopback address: set admin.tls_cert_file and admin.tls_key_file (bearer tokens must not cross a network in clear text), or listen on 127.0.0.1")
	}
}

// checkEvents checks the events section: off without a url; with one, an
// https URL (http only to loopback: the payloads carry customers' emails),
// a signing secret when the command delivers, a timeout and a retry period.
func (c *Config) checkEvents(v *validator, secrets bool) {
	e := c.Events
	v.positive("events.timeout", e.Timeout)
	if e.Timeout.D() > 5*time.Minute {
		v.add("events.timeout", e.Timeout.String(), "must be at most 5m (a receiver should answer at once and work afterwards)")
	}
	if e.RetryFor.D() < time.Hour || e.RetryFor.D() > 30*24*time.Hour {
		v.add("events.retry_for", e.RetryFor.String(), "must be between 1h and 720h (30 days); the default is 72h")
	}
	if e.URL == "" {
		return
	}
	v.url("events.url", e.URL)
	if !secrets {
		return
	}
	if v.required("events.secret", string(e.Secret), " when events.url is set (or events.secret_file): receivers verify each delivery with it") {
		v.token("events.secret", string(e.Secret))
		if len(e.Secret) < 16 {
			v.add("events.secret", "", "must be at least 16 characters (generate one with `openssl rand -hex 32`)")
		}
	}
	if e.SecretPrevious != "" {
		v.token("events.secret_previous", string(e.SecretPrevious))
	}
}

// readableFile checks that path ("" is not checked) names a regular file
// this process can open.
func (v *validator) readableFile(key, path, hint string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		v.add(key, path, "must be a readable file: %v%s", statReason(err), hint)
		return
	case fi.IsDir():
		v.add(key, path, "must be a file, not a directory")
		return
	}
	f, err := os.Open(path)
	if err != nil {
		v.add(key, path, "must be a readable file: %v", statReason(err))
		return
	}
	_ = f.Close()
}

// isLoopbackListen reports whether a listen host stays on this machine: ""
// and 0.0.0.0 / :: bind every interface, so they do not.
func isLoopbackListen(host string) bool {
	return host != "" && isLoopback(host)
}

// checkCluster checks the cluster section: a heartbeat long enough not to
// load the database and short enough that a dead instance's share of the
// gateway's limits is taken over soon; a reserved pay-page share that leaves
// most of the budget to billing.
func (c *Config) checkCluster(v *validator) {
	cl := c.Cluster
	if cl.Heartbeat.D() < time.Second || cl.Heartbeat.D() > time.Minute {
		v.add("cluster.heartbeat", cl.Heartbeat.String(), "must be between 1s and 1m; the default is 5s")
	}
	if cl.PayPageShare < 0 || cl.PayPageShare > 0.5 {
		v.add("cluster.pay_page_share", strconv.FormatFloat(cl.PayPageShare, 'g', -1, 64), "must be between 0 and 0.5 (the part of gateway.rate_limit reserved for pay pages); the default is 0.1")
	}
}
