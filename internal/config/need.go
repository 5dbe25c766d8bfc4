package config

import "strings"

// Need names the parts of the configuration a command uses. The database and
// log sections are always read and validated; every other part is read only
// when its field is true.
//
// A command loads only what it uses so that it needs only the secrets it
// uses: `billingd status` run from an operator's shell must not fail because
// WOOSHPAY_SECRET_KEY is not set there, and a command that never talks to the
// gateway should not hold its key at all. For a part that is not needed:
//
//   - ${NAME} references in its values are not expanded (an unset variable is
//     not an error) and the key keeps its default;
//   - its *_file secrets are not read (an unreadable credential is not an
//     error) and its secrets are left empty, even when written literally;
//   - Validate's rules for it do not run.
//
// The file's shape is checked whatever is needed: YAML syntax, unknown keys,
// duplicate keys and values of the wrong type stay errors, so a typo is never
// silently ignored by one command and fatal to the next.
type Need struct {
	// Gateway is the gateway API: gateway.provider, base_url, secret_key (or
	// secret_key_file), timeout, concurrency and rate_limit.
	Gateway bool
	// Webhooks is the verification of the gateway's webhooks:
	// gateway.webhook_secret (or webhook_secret_file) and webhook_tolerance.
	Webhooks bool
	// Schedule is the schedule section (cron, time zone, drain, page size).
	Schedule bool
	// Billing is what a billing pass decides with: the retry, dunning and
	// reconcile sections.
	Billing bool
	// HTTP is the http section (listener, public base URL).
	HTTP bool
	// Mail is the mail section, including mail.password (or password_file).
	Mail bool
	// Admin is the admin section: the admin API's listener, its tokens file
	// (which must exist) and its TLS files.
	Admin bool
	// AdminTokens reads the admin section (${NAME} expanded, paths resolved)
	// without validating it: `billingd admin-tokens` creates the tokens file
	// the daemon's validation requires.
	AdminTokens bool
	// EventsSecret is the signing secrets of the events to the merchant
	// (events.secret, secret_file, secret_previous): what delivers events.
	// The rest of the events section (url, timeout, retry_for) is read by
	// every command, like the database: whatever changes state records
	// its events when events.url is set.
	EventsSecret bool
}

// Predefined needs. Commands should use one of these rather than spell out a
// Need, so the CLI's commands stay consistent with each other.
var (
	// NeedAll is everything: run, once, demo and check-config.
	NeedAll = Need{Gateway: true, Webhooks: true, Schedule: true, Billing: true, HTTP: true, Mail: true, Admin: true, EventsSecret: true}
	// NeedDatabase is the database (and log) alone: commands that only read or
	// migrate the database, such as status and migrate. They need no gateway
	// or SMTP secret.
	NeedDatabase = Need{}
	// NeedDatabaseAndGatewayKey adds the gateway API (with its secret key) and
	// the schedule section (schedule.timezone is the default time zone of new
	// subscriptions) to the database: what `subscriptions import` needs to
	// verify customer and payment-method ids with the gateway. It needs no
	// webhook secret and no SMTP password.
	NeedDatabaseAndGatewayKey = Need{Gateway: true, Schedule: true}
	// NeedAdminTokens is the database (and log) and admin.tokens_file, for
	// `billingd admin-tokens add|list|revoke`.
	NeedAdminTokens = Need{AdminTokens: true}
)

// uses reports whether the dotted key (e.g. "gateway.secret_key_file" or
// "dunning.retry_schedule[2]") belongs to a needed part.
func (n Need) uses(key string) bool {
	section, rest, _ := strings.Cut(key, ".")
	name, _, _ := strings.Cut(rest, "[")
	switch section {
	case "database", "log":
		return true
	case "gateway":
		switch name {
		case "":
			// The section itself (for example "gateway: 5", a wrong shape).
			return true
		case "webhook_secret", "webhook_secret_file", "webhook_secret_previous", "webhook_tolerance":
			return n.Webhooks
		}
		return n.Gateway
	case "schedule":
		return n.Schedule || name == ""
	case "retry", "dunning", "reconcile":
		return n.Billing || name == ""
	case "http":
		return n.HTTP || name == ""
	case "mail":
		return n.Mail || name == ""
	case "admin":
		return n.Admin || n.AdminTokens || name == ""
	case "events":
		switch name {
		case "secret", "secret_file", "secret_previous":
			return n.EventsSecret
		}
		return true
	}
	// Keys outside any section (syntax errors, unknown sections) are about
	// the file's shape.
	return true
}

// clearUnused empties the secrets of the parts a command does not need, so
// that it cannot use them by accident.
func (n Need) clearUnused(c *Config) {
	if !n.Gateway {
		c.Gateway.SecretKey = ""
	}
	if !n.Webhooks {
		c.Gateway.WebhookSecret = ""
		c.Gateway.WebhookSecretPrevious = ""
	}
	if !n.Mail {
		c.Mail.Password = ""
	}
	if !n.EventsSecret {
		c.Events.Secret, c.Events.SecretPrevious = "", ""
	}
}

// LoadFor reads the config file at path like Load and validates the parts
// need names, reporting the problems of both stages together (as
// LoadAndValidate does, which is LoadFor with NeedAll). Parts that are not
// needed are handled as Need describes.
func LoadFor(path string, need Need) (*Config, error) { return Options{}.LoadFor(path, need) }

// ParseFor is LoadFor for a document already in memory; relative paths are
// resolved against baseDir.
func ParseFor(data []byte, baseDir string, need Need) (*Config, error) {
	return Options{}.ParseFor(data, baseDir, need)
}

// LoadFor is the package-level LoadFor with these options.
func (o Options) LoadFor(path string, need Need) (*Config, error) {
	data, baseDir, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	return o.ParseFor(data, baseDir, need)
}

// ParseFor is the package-level ParseFor with these options.
func (o Options) ParseFor(data []byte, baseDir string, need Need) (*Config, error) {
	res := o.parseFor(data, baseDir, need)
	if res.cfg == nil {
		return nil, res.errs.asError()
	}
	all := res.errs
	for _, e := range res.cfg.checkFor(need) {
		if !res.covers(e.Key) {
			all = append(all, e)
		}
	}
	if len(all) > 0 {
		return nil, all.asError()
	}
	return res.cfg, nil
}

// ValidateFor is Validate restricted to the parts need names.
func (c *Config) ValidateFor(need Need) error { return c.checkFor(need).asError() }
