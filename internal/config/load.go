package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// maxSecretFileSize bounds what a *_file key may read. Credentials are a few
// hundred bytes; the limit turns a misconfigured path such as /dev/zero into an
// error instead of a hung or exhausted daemon.
const maxSecretFileSize = 64 << 10

// Options carries the outside world Load and Parse consult. The zero value
// uses the process environment and the real file system; tests inject both so
// they never mutate global state.
type Options struct {
	// LookupEnv resolves ${NAME} references. Nil means os.LookupEnv.
	LookupEnv func(name string) (value string, ok bool)
	// ReadFile reads *_file secrets. Nil means a size-limited os read.
	ReadFile func(path string) ([]byte, error)
}

// Load reads the config file at path and parses it with the file's directory
// as the base for relative *_file and templates_dir paths, using the process
// environment. It does not call Validate; see LoadAndValidate.
//
// A file that cannot be read is returned as a plain error wrapping the
// os error (so errors.Is(err, fs.ErrNotExist) works); every problem with the
// content comes back as Errors.
func Load(path string) (*Config, error) { return Options{}.Load(path) }

// Parse decodes a configuration document: strict YAML, ${ENV} expansion,
// defaults, then *_file secrets (relative paths resolved against baseDir; an
// empty baseDir means the working directory). It does not call Validate, so a
// caller may still adjust the result (the demo fills in its own values) before
// validating. Problems are returned as Errors.
func Parse(data []byte, baseDir string) (*Config, error) { return Options{}.Parse(data, baseDir) }

// LoadAndValidate is Load followed by Validate, reporting the problems of both
// stages together so `billingd check-config` can show everything in one run.
// Validation findings that merely repeat a parse problem (a key whose value
// was rejected while parsing is also "required") are left out.
func LoadAndValidate(path string) (*Config, error) { return Options{}.LoadAndValidate(path) }

// ParseAndValidate is Parse followed by Validate with the same merging of
// problems as LoadAndValidate.
func ParseAndValidate(data []byte, baseDir string) (*Config, error) {
	return Options{}.ParseAndValidate(data, baseDir)
}

// Load is the package-level Load with these options.
func (o Options) Load(path string) (*Config, error) {
	data, baseDir, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	return o.Parse(data, baseDir)
}

// Parse is the package-level Parse with these options.
func (o Options) Parse(data []byte, baseDir string) (*Config, error) {
	res := o.parse(data, baseDir)
	if len(res.errs) > 0 {
		return nil, res.errs.asError()
	}
	return res.cfg, nil
}

// LoadAndValidate is the package-level LoadAndValidate with these options.
func (o Options) LoadAndValidate(path string) (*Config, error) {
	data, baseDir, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	return o.ParseAndValidate(data, baseDir)
}

// ParseAndValidate is the package-level ParseAndValidate with these options.
func (o Options) ParseAndValidate(data []byte, baseDir string) (*Config, error) {
	return o.ParseFor(data, baseDir, NeedAll)
}

func readConfigFile(path string) (data []byte, baseDir string, err error) {
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("config: %w", err)
	}
	baseDir = filepath.Dir(path)
	if abs, err := filepath.Abs(baseDir); err == nil {
		baseDir = abs
	}
	return data, baseDir, nil
}

// parseResult is a best-effort configuration plus the problems found. cfg is
// nil only when the document could not be read as YAML at all; otherwise keys
// with problems keep their defaults, so Validate can still report the rest.
type parseResult struct {
	cfg  *Config
	errs Errors
	// suppress lists keys (beyond those in errs) whose validation findings
	// would only restate a parse problem.
	suppress []string
}

// covers reports whether key is, or lies under, a key that already has a
// parse problem.
func (r parseResult) covers(key string) bool {
	check := func(k string) bool {
		return k != "" && (key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"["))
	}
	for _, e := range r.errs {
		if check(e.Key) {
			return true
		}
	}
	for _, k := range r.suppress {
		if check(k) {
			return true
		}
	}
	return false
}

func (o Options) parse(data []byte, baseDir string) parseResult {
	return o.parseFor(data, baseDir, NeedAll)
}

func (o Options) parseFor(data []byte, baseDir string, need Need) parseResult {
	root, errs := readDocument(data)
	if len(errs) > 0 {
		return parseResult{errs: errs}
	}

	p := &parser{lookupEnv: o.LookupEnv, lines: map[string]int{}, written: map[string]bool{}, need: need}
	if p.lookupEnv == nil {
		p.lookupEnv = os.LookupEnv
	}
	cfg := Default()
	// The sqlite default path is applied after decoding, and only for sqlite:
	// see DefaultSQLiteDSN. The gateway's default URL is the provider's.
	cfg.Database.DSN = ""
	cfg.Gateway.BaseURL = ""

	if root != nil {
		clean := p.section(root, configType, "")
		if clean != nil && len(clean.Content) > 0 {
			if err := strictDecode(clean, cfg); err != nil {
				// The walk above admits only known keys with well-typed
				// values, so this is a bug in this package, not in the file.
				p.errs = append(p.errs, FieldError{Message: "internal error decoding configuration: " + err.Error()})
			}
		}
	}
	cfg.lines = p.lines

	res := parseResult{cfg: cfg}
	read := o.ReadFile
	if read == nil {
		read = readSecretFile
	}
	p.readSecretFiles(cfg, baseDir, read, &res)

	if cfg.Database.DSN == "" && cfg.Database.DSNFile == "" && cfg.Database.Driver == DriverSQLite {
		cfg.Database.DSN = DefaultSQLiteDSN
	}
	if _, present := p.lines["gateway.base_url"]; cfg.Gateway.BaseURL == "" && !present {
		cfg.Gateway.BaseURL = DefaultBaseURL(cfg.Gateway.Provider)
	}
	cfg.Gateway.BaseURL = trimTrailingSlash(cfg.Gateway.BaseURL)
	cfg.HTTP.PublicBaseURL = trimTrailingSlash(cfg.HTTP.PublicBaseURL)
	if d := cfg.Mail.TemplatesDir; d != "" && !filepath.IsAbs(d) && baseDir != "" {
		cfg.Mail.TemplatesDir = filepath.Join(baseDir, d)
	}
	// The admin API's files are read relative to the config file, like
	// mail.templates_dir, whatever directory the command runs in.
	for _, f := range []*string{&cfg.Admin.TokensFile, &cfg.Admin.TLSCertFile, &cfg.Admin.TLSKeyFile} {
		if *f != "" && !filepath.IsAbs(*f) && baseDir != "" {
			*f = filepath.Join(baseDir, *f)
		}
	}

	need.clearUnused(cfg)
	res.errs = append(res.errs, p.errs...)
	return res
}

// trimTrailingSlash turns "https://host/prefix/" into "https://host/prefix"
// so that joining paths never produces "//"; it leaves values that are not
// URLs alone for Validate to reject.
func trimTrailingSlash(u string) string {
	t := strings.TrimRight(u, "/")
	if i := strings.Index(t, "://"); i > 0 && len(t) > i+3 {
		return t
	}
	return u
}

// secretFileSpec ties a secret key to its *_file sibling.
type secretFileSpec struct {
	key, fileKey string
	value        func() string
	set          func(string)
	path         *string
}

func (p *parser) readSecretFiles(cfg *Config, baseDir string, read func(string) ([]byte, error), res *parseResult) {
	specs := []secretFileSpec{
		{"database.dsn", "database.dsn_file",
			func() string { return cfg.Database.DSN },
			func(v string) { cfg.Database.DSN = v },
			&cfg.Database.DSNFile},
		{"gateway.secret_key", "gateway.secret_key_file",
			func() string { return string(cfg.Gateway.SecretKey) },
			func(v string) { cfg.Gateway.SecretKey = Secret(v) },
			&cfg.Gateway.SecretKeyFile},
		{"gateway.webhook_secret", "gateway.webhook_secret_file",
			func() string { return string(cfg.Gateway.WebhookSecret) },
			func(v string) { cfg.Gateway.WebhookSecret = Secret(v) },
			&cfg.Gateway.WebhookSecretFile},
		{"events.secret", "events.secret_file",
			func() string { return string(cfg.Events.Secret) },
			func(v string) { cfg.Events.Secret = Secret(v) },
			&cfg.Events.SecretFile},
		{"mail.password", "mail.password_file",
			func() string { return string(cfg.Mail.Password) },
			func(v string) { cfg.Mail.Password = Secret(v) },
			&cfg.Mail.PasswordFile},
	}
	for _, s := range specs {
		if !p.need.uses(s.key) {
			continue
		}
		if *s.path == "" {
			if p.written[s.fileKey] {
				// The *_file value was written but rejected (say, an unset
				// ${CREDENTIALS_DIRECTORY}): that error is the one to fix, and
				// the secret is not "required" on top of it.
				res.suppress = append(res.suppress, s.key)
			}
			continue
		}
		if s.value() != "" || p.written[s.key] {
			// Both were written. Which one was meant cannot be guessed, and
			// an error about the key's own ${NAME} (typically an unset
			// variable of the example file) would send the operator after
			// the wrong fix, so this is the only error for the key.
			p.dropErrors(s.key)
			p.errs = append(p.errs, FieldError{
				Key:     s.key,
				Message: fmt.Sprintf("set either %s or %s, not both (leave %s empty or remove it)", s.key, s.fileKey, s.key),
				Line:    p.lines[s.key],
			})
			res.suppress = append(res.suppress, s.fileKey)
			continue
		}
		path := *s.path
		if !filepath.IsAbs(path) && baseDir != "" {
			path = filepath.Join(baseDir, path)
		}
		*s.path = path
		data, err := read(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			p.errs = append(p.errs, FieldError{
				Key:     s.fileKey,
				Message: fmt.Sprintf("cannot read %s: %v", path, err),
				Line:    p.lines[s.fileKey],
			})
			res.suppress = append(res.suppress, s.key)
			continue
		}
		v := strings.TrimRightFunc(string(data), unicode.IsSpace)
		if v == "" {
			p.errs = append(p.errs, FieldError{
				Key:     s.fileKey,
				Message: fmt.Sprintf("file %s is empty", path),
				Line:    p.lines[s.fileKey],
			})
			res.suppress = append(res.suppress, s.key)
			continue
		}
		s.set(v)
	}
}

// dropErrors removes the problems already recorded for key.
func (p *parser) dropErrors(key string) {
	kept := p.errs[:0]
	for _, e := range p.errs {
		if e.Key != key {
			kept = append(kept, e)
		}
	}
	p.errs = kept
}

// readSecretFile reads at most maxSecretFileSize bytes.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSecretFileSize {
		return nil, fmt.Errorf("larger than %d KiB; is this the right file?", maxSecretFileSize>>10)
	}
	return data, nil
}
