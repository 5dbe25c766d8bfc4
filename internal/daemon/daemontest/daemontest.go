// Package daemontest builds the assembled daemon for end-to-end tests, around
// the real constructor daemon.New: a fresh database (SQLite in t.TempDir, or a
// PostgreSQL schema), the bundled simulator in-process, a real SMTP server
// that keeps what it receives, and a simulated clock. A test changes only what
// a user can change — the clock, the gateway URL, the SMTP server and config
// keys — and drives the daemon with Tick, so that what it proves is what
// `billingd run` does.
package daemontest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// Test secrets of the simulator and its webhooks.
const (
	SecretKey     = "sk_test_daemontest"
	WebhookSecret = "whsec_daemontest"
)

// Options shape a bundle. Zero values give a working daemon at a fixed start
// time on SQLite.
type Options struct {
	// Start is the simulated clock's first instant.
	Start time.Time
	// Postgres runs on a fresh PostgreSQL schema (skipped without a server).
	Postgres bool
	// Sim overrides the simulator's options (its key, seed, clock and webhook
	// target are always set by the bundle).
	Sim sim.Options
	// Configure adjusts the config before the daemon is built, as a user
	// would edit config.yaml.
	Configure func(*config.Config)
	// NoMail leaves mail.host empty (emails wait in the outbox).
	NoMail bool
	// Prepare runs after the simulator, the gateway client and the config
	// exist and before daemon.New opens the database: an upgrade test writes
	// an older schema's database there (Configure points database.dsn at it)
	// with cards saved at the simulator, and the daemon then migrates it as
	// a new binary started on it would.
	Prepare func(b *Bundle)
	// NoWebhooks configures no webhook endpoint at the simulator, as a
	// merchant who never registered one: billingd learns outcomes only from
	// its own requests and the reconciler. Tests of those paths need it, or a
	// webhook would settle what they mean to settle.
	NoWebhooks bool
	// Front, when set, wraps the simulator's HTTP API as billingd (and
	// Client) reach it: a proxy in front of the gateway that breaks answers
	// the way a real network or load balancer can. The simulator still
	// records what reached it.
	Front func(http.Handler) http.Handler
	// Log, when set, also receives the daemon's log (JSON lines), for tests
	// that assert what an operator would read.
	Log io.Writer
	// Provider is gateway.provider: "wooshpay" (the default) or "checkout".
	// The simulator speaks that provider's API and signs its webhooks, and
	// the daemon is configured for it, as a merchant on it would.
	Provider string
	// Name names the daemon's instance (daemon.Options.Name): bundles on
	// one database in one process need names of their own to be a cluster.
	Name string
}

// Providers are the gateways every reliability test runs against.
var Providers = []string{config.ProviderWooshPay, config.ProviderCheckout}

// Bundle is one assembled daemon and the fakes around it.
type Bundle struct {
	D     *daemon.Daemon
	Clock *clock.Fake
	Sim   *sim.Server
	// Gateway is a client of the simulator's API, as billingd's own.
	Gateway daemon.GatewayClient
	// Signup saves cards the way the merchant's signup page does.
	Signup *signup.Saver
	// Provider is the bundle's gateway.provider.
	Provider string
	SMTP     *smtpcapture.Server
	Config   *config.Config
	Store    *store.Store
	// URL serves the daemon's handler (webhooks, pay pages, metrics).
	URL string

	mu        sync.Mutex
	series    map[string]string // saved card -> the payment that stored it (Checkout.com)
	customers int
	handler   *atomic.Pointer[http.Handler]
	log       io.Writer
	name      string
}

// New builds a bundle; everything is closed when the test ends.
func New(t testing.TB, o Options) *Bundle {
	t.Helper()
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	}
	if o.Provider == "" {
		o.Provider = config.ProviderWooshPay
	}
	clk := clock.NewFake(o.Start)
	b := &Bundle{Clock: clk, Provider: o.Provider, series: map[string]string{}, handler: &atomic.Pointer[http.Handler]{}}
	// The daemon closes last, after the simulator stopped delivering webhooks
	// and the HTTP side stopped serving, as `billingd run` shuts down.
	t.Cleanup(func() {
		if b.D != nil {
			_ = b.D.Close()
		}
	})

	// billingd's HTTP side comes first: the simulator needs its webhook URL.
	handler := b.handler
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := handler.Load()
		if h == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	b.URL = front.URL

	so := o.Sim
	if so.ProcessingDelay == 0 {
		so.ProcessingDelay = time.Millisecond
	}
	if so.Webhook.Retry == nil {
		so.Webhook.Retry = []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	}
	so.SecretKey, so.Seed, so.Now, so.Provider = SecretKey, 42, clk.Now, o.Provider
	so.Webhook.URL, so.Webhook.Secret = front.URL+"/webhooks/"+o.Provider, WebhookSecret
	if o.NoWebhooks {
		so.Webhook.URL = ""
	}
	gw := sim.New(so)
	ctx, cancel := context.WithCancel(context.Background())
	gw.Start(ctx)
	var api http.Handler = gw
	if o.Front != nil {
		api = o.Front(gw)
	}
	simSrv := httptest.NewServer(api)
	t.Cleanup(func() { simSrv.Close(); cancel(); gw.Close() })
	b.Sim = gw

	saver, err := signup.New(signup.Gateway{Provider: o.Provider, BaseURL: simSrv.URL, SecretKey: SecretKey, Timeout: 5 * time.Second})
	require.NoError(t, err)
	b.Signup = saver

	cfg := config.Default()
	cfg.Gateway.Provider = o.Provider
	if o.Postgres {
		cfg.Database.Driver = config.DriverPostgres
		cfg.Database.DSN = storetest.PostgresDSN(t)
	} else {
		cfg.Database.DSN = filepath.Join(t.TempDir(), "billingd.db")
	}
	cfg.Gateway.BaseURL = simSrv.URL
	cfg.Gateway.SecretKey = config.Secret(SecretKey)
	cfg.Gateway.WebhookSecret = config.Secret(WebhookSecret)
	cfg.Gateway.Timeout = config.Duration(5 * time.Second)
	client, err := daemon.NewGatewayClient(cfg)
	require.NoError(t, err)
	b.Gateway = client
	cfg.Gateway.RateLimit = 1000
	cfg.Gateway.Concurrency = 16
	cfg.Retry.InitialInterval = config.Duration(10 * time.Millisecond)
	cfg.Retry.MaxInterval = config.Duration(200 * time.Millisecond)
	cfg.Retry.MaxElapsedTime = config.Duration(5 * time.Second)
	cfg.HTTP.PublicBaseURL = front.URL
	cfg.Mail.From = "Acme Billing <billing@example.com>"
	if !o.NoMail {
		smtp, err := smtpcapture.Start("127.0.0.1:0", "")
		require.NoError(t, err)
		t.Cleanup(func() { _ = smtp.Close() })
		b.SMTP = smtp
		cfg.Mail.Host, cfg.Mail.Port, cfg.Mail.TLS = smtp.Host(), smtp.Port(), "none"
		cfg.Mail.Username, cfg.Mail.Password = "", ""
	} else {
		cfg.Mail.Host = ""
	}
	if o.Configure != nil {
		o.Configure(cfg)
	}
	require.NoError(t, cfg.Validate())
	b.Config = cfg
	if o.Prepare != nil {
		o.Prepare(b)
	}

	b.name = o.Name
	b.log = testWriter{t}
	if o.Log != nil {
		b.log = io.MultiWriter(b.log, o.Log)
	}
	b.Start(t)
	return b
}

// Stop closes the daemon, as `billingd run` does when it stops: the database
// is closed (SQLite's instance lock released), its HTTP side answers 503.
func (b *Bundle) Stop(t testing.TB) {
	t.Helper()
	b.handler.Store(nil)
	require.NoError(t, b.D.Close())
	b.D, b.Store = nil, nil
}

// Start builds a fresh daemon with daemon.New on the bundle's config and
// database, as `billingd run` started again (after a restore, say) would,
// with the same clock and simulator.
func (b *Bundle) Start(t testing.TB) {
	t.Helper()
	require.Nil(t, b.D, "the bundle's daemon is running; Stop it first")
	d, err := daemon.New(context.Background(), b.Config, daemon.Options{Clock: b.Clock, Log: b.log, Name: b.name})
	require.NoError(t, err)
	b.D, b.Store = d, d.Store()
	h := d.Handler()
	b.handler.Store(&h)
}

// Each runs fn on SQLite and, when a server is configured, PostgreSQL.
func Each(t *testing.T, o Options, fn func(t *testing.T, b *Bundle)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { o := o; o.Postgres = false; fn(t, New(t, o)) })
	t.Run("postgres", func(t *testing.T) { o := o; o.Postgres = true; fn(t, New(t, o)) })
}

// EachProvider runs fn once per gateway provider, as a subtest named after
// it; o.Provider is set for each.
func EachProvider(t *testing.T, o Options, fn func(t *testing.T, o Options)) {
	t.Helper()
	for _, p := range Providers {
		t.Run(p, func(t *testing.T) { o := o; o.Provider = p; fn(t, o) })
	}
}

// SaveCard runs the provider's save-card flow for a new customer (a
// SetupIntent on WooshPay, a card-storing verification on Checkout.com) and
// returns the gateway ids billingd is given.
func (b *Bundle) SaveCard(t testing.TB, number string) (customer, paymentMethod string) {
	t.Helper()
	return b.SaveCardKeyed(t, number, "")
}

// SaveCardKeyed is SaveCard under an idempotency key: the same key gives the
// same customer and card, so that a test can put two subscriptions on one.
func (b *Bundle) SaveCardKeyed(t testing.TB, number, key string) (customer, paymentMethod string) {
	t.Helper()
	// Each customer has an address of its own: Checkout.com finds a
	// customer by email, so a shared one would merge two customers. Under a
	// key the address follows the key, so that the keyed requests repeat
	// their parameters exactly (a key reused with other parameters is an
	// idempotency error on WooshPay).
	var email string
	if key != "" {
		sum := sha256.Sum256([]byte(key))
		email = fmt.Sprintf("c%s-%x@example.com", number[len(number)-4:], sum[:8])
	} else {
		b.mu.Lock()
		b.customers++
		email = fmt.Sprintf("c%s-%d@example.com", number[len(number)-4:], b.customers)
		b.mu.Unlock()
	}
	saved, err := b.Signup.Save(context.Background(), signup.Card{Number: number, ExpMonth: 12, ExpYear: 2035, CVC: "123",
		Email: email, Key: key})
	require.NoError(t, err)
	b.mu.Lock()
	b.series[saved.PaymentMethod] = saved.PreviousPaymentID
	b.mu.Unlock()
	return saved.Customer, saved.PaymentMethod
}

// WithSeries fills in each subscription's previous_payment_id from the card
// the bundle saved (Checkout.com chains charges to the payment that stored the
// card), as the merchant's CSV would carry it.
func (b *Bundle) WithSeries(subs ...storetest.Subscription) []storetest.Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]storetest.Subscription(nil), subs...)
	for i := range out {
		if out[i].PreviousPaymentID == "" {
			out[i].PreviousPaymentID = b.series[out[i].PaymentMethod]
		}
	}
	return out
}

// Seed imports subscriptions through the store's import path, as
// `billingd subscriptions import` does.
func (b *Bundle) Seed(t testing.TB, subs ...storetest.Subscription) {
	t.Helper()
	b.SeedAt(t, b.Clock.Now(), subs...)
}

// SeedAt is Seed with the import's time given.
func (b *Bundle) SeedAt(t testing.TB, now time.Time, subs ...storetest.Subscription) {
	t.Helper()
	storetest.Seed(t, b.Store, now, b.WithSeries(subs...)...)
}

// Run advances the simulated clock by step until total has passed, running
// the daemon's due jobs (Tick) at the start and after every step, and letting
// the simulator settle processing charges and deliver webhooks in between.
func (b *Bundle) Run(t testing.TB, total, step time.Duration) {
	t.Helper()
	ctx := context.Background()
	end := b.Clock.Now().Add(total)
	for {
		b.settleGateway()
		b.D.Tick(ctx)
		if !b.Clock.Now().Before(end) {
			return
		}
		b.Clock.Advance(step)
	}
}

// settleGateway lets processing charges settle and gives the simulator's
// webhooks (delivered on the wall clock) a moment to arrive.
func (b *Bundle) settleGateway() {
	b.Sim.SettleDue()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.Sim.WaitWebhooks(ctx)
}

// PayLinks returns the pay-page URLs (http.public_base_url + "/pay/" + the raw
// token) in the emails the SMTP server received, in arrival order, each once.
// The raw token exists only in the email, so a test reaches the pay page the
// way the customer does: from the message.
func (b *Bundle) PayLinks(t testing.TB) []string {
	t.Helper()
	require.NotNil(t, b.SMTP, "PayLinks needs mail (Options.NoMail is set)")
	re := regexp.MustCompile(regexp.QuoteMeta(b.Config.HTTP.PublicBaseURL) + `/pay/[A-Za-z0-9_-]+`)
	var out []string
	seen := map[string]bool{}
	for _, m := range b.SMTP.Messages() {
		for _, text := range messageTexts(t, m.Raw) {
			for _, u := range re.FindAllString(text, -1) {
				if !seen[u] {
					seen[u] = true
					out = append(out, u)
				}
			}
		}
	}
	return out
}

// messageTexts decodes the text parts of a MIME message (quoted-printable
// would otherwise break a long URL across soft line breaks).
func messageTexts(t testing.TB, raw []byte) []string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	return partTexts(t, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
}

func partTexts(t testing.TB, contentType, encoding string, body io.Reader) []string {
	t.Helper()
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mediaType = "text/plain"
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		var out []string
		r := multipart.NewReader(body, params["boundary"])
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				return out
			}
			require.NoError(t, err)
			out = append(out, partTexts(t, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p)...)
		}
	}
	if !strings.HasPrefix(mediaType, "text/") {
		return nil
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	require.NoError(t, err)
	return []string{string(b)}
}

type testWriter struct{ t testing.TB }

// Write sends the daemon's log to the test log only on failure (-v shows all).
func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(string(p))
	}
	return len(p), nil
}

// LogBuffer collects what a running daemon (or simulator) writes while the test
// reads it: Options.Log, a simulator's Logf, a command's stdout.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Operator builds a second process's view of the bundle's system for
// operator actions, as `billingd invoices refund …` does beside a running
// daemon: daemon.New with Options.Operator on the bundle's config and clock.
// The bundle's daemon keeps running (or not: a test that never Ticks it has
// no daemon at work), so a test can show an action works either way.
func (b *Bundle) Operator(t testing.TB) *ops.Service {
	t.Helper()
	d, err := daemon.New(context.Background(), b.Config, daemon.Options{Clock: b.Clock, Log: testWriter{t}, Operator: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d.Ops()
}

// SaveCardExpiring is SaveCard with the card's expiry given (month 1–12,
// four-digit year), for tests of the expiring-card notice.
func (b *Bundle) SaveCardExpiring(t testing.TB, number string, month, year int) (customer, paymentMethod string) {
	t.Helper()
	b.mu.Lock()
	b.customers++
	email := fmt.Sprintf("c%s-%d@example.com", number[len(number)-4:], b.customers)
	b.mu.Unlock()
	saved, err := b.Signup.Save(context.Background(), signup.Card{Number: number, ExpMonth: month, ExpYear: year, CVC: "123", Email: email})
	require.NoError(t, err)
	b.mu.Lock()
	b.series[saved.PaymentMethod] = saved.PreviousPaymentID
	b.mu.Unlock()
	return saved.Customer, saved.PaymentMethod
}

// MessageTexts decodes the text parts (plain and HTML) of a received message,
// as a mail client shows them.
func MessageTexts(t testing.TB, raw []byte) []string {
	t.Helper()
	return messageTexts(t, raw)
}
