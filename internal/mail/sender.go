package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/billingd/billingd/internal/config"
	gomail "github.com/wneessen/go-mail"
)

// Outgoing is one rendered email, ready for the SMTP server. MessageID is the
// outbox row's Message-ID (with or without angle brackets), the same on every
// attempt, so that a resend after a crash can be recognized as a duplicate.
type Outgoing struct {
	From      string
	To        string
	Subject   string
	Text      string
	HTML      string
	MessageID string
	Date      time.Time
}

// Sender hands an email to a mail server. An error is either a *SendError, which
// says whether retrying can help, or anything else, which callers must treat as
// temporary: an email is delayed by doubt, never dropped by it.
type Sender interface {
	Send(ctx context.Context, m *Outgoing) error
}

// Stages of an SMTP exchange, recorded in SendError.Stage so logs say where it
// broke.
const (
	StageBuild   = "build"   // composing the message (a malformed address)
	StageConnect = "connect" // TCP, greeting, EHLO
	StageTLS     = "tls"     // STARTTLS or the implicit TLS handshake
	StageAuth    = "auth"    // SMTP AUTH
	StageMail    = "mail"    // MAIL FROM
	StageRcpt    = "rcpt"    // RCPT TO
	StageData    = "data"    // DATA, the content, and the final reply
)

// SendError is a classified SMTP failure. The classification is made where the
// error happens, from the stage and the server's reply code, so the worker never
// has to guess from an error string whether retrying can help.
type SendError struct {
	// Temporary errors are retried: 4xx replies, refused connections, timeouts,
	// TLS failures, and 5xx replies that point at billingd's own settings.
	Temporary bool
	// Config marks failures that retrying alone will not fix because billingd's
	// mail settings are wrong (authentication refused, sender or relaying
	// refused, TLS certificate rejected). They are still retried, so that fixing
	// the config delivers every waiting email, but they deserve a loud log line.
	Config bool
	// Code is the SMTP reply code, 0 when the server sent none.
	Code int
	// Enhanced is the RFC 3463 status code (e.g. "5.1.1") when the server gave one.
	Enhanced string
	// Stage is where the exchange broke (StageConnect, StageRcpt, …).
	Stage string
	Err   error
}

// Error says where the exchange broke, whether it will be retried, and the
// server's reply, without the recipient's address.
func (e *SendError) Error() string {
	kind := "temporary"
	if !e.Temporary {
		kind = "permanent"
	}
	if e.Config {
		kind += ", check the mail settings"
	}
	msg := "<nil>"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	// go-mail appends the recipients and Message-ID; errors end up in logs and
	// last_error, which need neither the customer's address nor the id twice.
	for _, tail := range []string{", affected recipient(s):", ", affected message ID:"} {
		if i := strings.Index(msg, tail); i >= 0 {
			msg = msg[:i]
		}
	}
	if e.Code != 0 && !strings.HasPrefix(msg, strconv.Itoa(e.Code)) {
		msg = strconv.Itoa(e.Code) + " " + msg
	}
	return fmt.Sprintf("smtp %s (%s): %s", e.Stage, kind, msg)
}

// Unwrap exposes the underlying error.
func (e *SendError) Unwrap() error { return e.Err }

// Permanent reports whether err is a refusal that no retry can change: the
// server answered 5xx about the recipient or the message itself. Everything
// else, including errors Permanent does not recognize, is temporary, because a
// dunning email that is dropped costs a customer their subscription.
func Permanent(err error) bool {
	var se *SendError
	return errors.As(err, &se) && !se.Temporary
}

// SMTPSender sends through the configured relay with wneessen/go-mail, one
// connection (and one go-mail client) per email, so concurrent sends share no
// state. It is safe for concurrent use.
type SMTPSender struct {
	host string
	opts []gomail.Option
	addr string
}

// connKey carries a per-send holder through the dial context, so Send can close
// the connection itself when go-mail gives up half-way (a failed STARTTLS or
// AUTH leaves it open) and abort it when the caller's context ends.
type connKey struct{}

type connHolder struct{ conn net.Conn }

// NewSMTPSender builds a sender for cfg: tls "starttls" requires STARTTLS,
// "tls" speaks TLS from the first byte (SMTPS), "none" sends in clear text
// (config validation allows a password then only on loopback). When a user
// name is set, it authenticates with PLAIN or LOGIN (SCRAM or CRAM-MD5 if that is
// all the server offers). Port 0 means the usual port of the TLS mode (587,
// 465, 25). timeout bounds each phase of a send (connect, each command, the
// message); 0 means 30s.
func NewSMTPSender(cfg config.MailConfig, timeout time.Duration) (*SMTPSender, error) {
	if cfg.Host == "" {
		return nil, errors.New("mail: no SMTP host configured (mail.host)")
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tlsConf := &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
	implicit := cfg.TLS == config.MailTLSImplicit
	dialer := &net.Dialer{}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		var err error
		if implicit {
			conn, err = (&tls.Dialer{NetDialer: dialer, Config: tlsConf}).DialContext(ctx, network, addr)
		} else {
			conn, err = dialer.DialContext(ctx, network, addr)
		}
		if err == nil {
			if h, ok := ctx.Value(connKey{}).(*connHolder); ok {
				h.conn = conn
			}
		}
		return conn, err
	}
	opts := []gomail.Option{
		gomail.WithTimeout(timeout),
		gomail.WithTLSConfig(tlsConf),
		gomail.WithDialContextFunc(dial),
	}
	port := cfg.Port
	if port == 0 {
		switch cfg.TLS {
		case config.MailTLSImplicit:
			port = 465
		case config.MailTLSNone:
			port = 25
		default:
			port = 587
		}
	}
	opts = append(opts, gomail.WithPort(port))
	switch cfg.TLS {
	case config.MailTLSStartTLS, "":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case config.MailTLSImplicit:
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSPolicy(gomail.NoTLS))
	case config.MailTLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		return nil, fmt.Errorf("mail: unknown mail.tls %q (want starttls, tls or none)", cfg.TLS)
	}
	if cfg.Username != "" {
		// Explicit mechanisms rather than go-mail's auto-discovery: with our own
		// dialer go-mail cannot tell that an implicit-TLS connection is encrypted
		// and would refuse PLAIN and LOGIN there.
		mechs := []gomail.SMTPAuthType{gomail.SMTPAuthPlain, gomail.SMTPAuthLogin,
			gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1, gomail.SMTPAuthCramMD5}
		if cfg.TLS == config.MailTLSNone {
			mechs = []gomail.SMTPAuthType{gomail.SMTPAuthPlainNoEnc, gomail.SMTPAuthLoginNoEnc,
				gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1, gomail.SMTPAuthCramMD5}
		}
		opts = append(opts, gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password.Reveal()),
			gomail.WithOpportunisticSMTPAuth(mechs...))
	}
	c, err := gomail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("mail: smtp client for %s: %w", cfg.Host, err)
	}
	return &SMTPSender{host: cfg.Host, opts: opts, addr: c.ServerAddr()}, nil
}

// Addr is the relay's host:port, for logs.
func (s *SMTPSender) Addr() string { return s.addr }

// Send delivers m in one SMTP session. It returns nil once the server accepted
// the message, even if closing the session fails afterwards, since the email is
// then on its way and sending it again would duplicate it. Every error is a
// *SendError.
func (s *SMTPSender) Send(ctx context.Context, m *Outgoing) error {
	msg, err := buildMsg(m)
	if err != nil {
		return err
	}
	c, err := gomail.NewClient(s.host, s.opts...)
	if err != nil {
		return &SendError{Temporary: true, Config: true, Stage: StageConnect, Err: err}
	}
	holder := &connHolder{}
	client, err := c.DialToSMTPClientWithContext(context.WithValue(ctx, connKey{}, holder))
	if err != nil {
		if holder.conn != nil {
			_ = holder.conn.Close()
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = errors.Join(ctxErr, err)
		}
		return connectError(err)
	}
	stop := context.AfterFunc(ctx, func() { _ = holder.conn.Close() })
	defer func() {
		stop()
		_ = c.CloseWithSMTPClient(client)
		_ = holder.conn.Close()
	}()
	err = c.SendWithSMTPClient(client, msg)
	if err == nil || msg.IsDelivered() {
		// IsDelivered: the server accepted the DATA; only the RSET after it failed.
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = errors.Join(ctxErr, err)
	}
	return transactionError(err)
}

// buildMsg composes the multipart/alternative message (text first, HTML as the
// preferred alternative).
func buildMsg(m *Outgoing) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(m.From); err != nil {
		return nil, &SendError{Temporary: true, Config: true, Stage: StageBuild, Err: fmt.Errorf("sender address: %w", err)}
	}
	if err := msg.To(m.To); err != nil {
		// A malformed customer address will never become deliverable.
		return nil, &SendError{Temporary: false, Stage: StageBuild, Err: fmt.Errorf("recipient address: %w", err)}
	}
	id := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(m.MessageID), "<"), ">")
	if id == "" || strings.ContainsAny(id, "<> \r\n") {
		return nil, &SendError{Temporary: true, Stage: StageBuild, Err: fmt.Errorf("invalid Message-ID %q", m.MessageID)}
	}
	msg.SetMessageIDWithValue(id)
	date := m.Date
	if date.IsZero() {
		date = time.Now()
	}
	msg.SetDateWithValue(date)
	msg.Subject(m.Subject)
	// RFC 3834: tells auto-responders (vacation replies) not to answer.
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// authCodes are replies about credentials: 530 authentication required, 534
// mechanism too weak, 535 credentials invalid, 538 encryption required, 454
// temporary authentication failure.
var authCodes = map[int]bool{530: true, 534: true, 535: true, 538: true, 454: true}

// connectError classifies a failure before any message was offered: refused or
// reset connections, a 421 greeting, timeouts, TLS and AUTH problems. All of them
// are temporary: nothing about the email itself was judged. 5xx replies and
// certificate or authentication problems are flagged Config, because they will
// repeat until someone fixes the settings.
func connectError(err error) *SendError {
	se := &SendError{Temporary: true, Stage: StageConnect, Err: err}
	var tp *textproto.Error
	if errors.As(err, &tp) {
		se.Code = tp.Code
		se.Enhanced = enhancedCode(tp.Msg)
	}
	switch {
	case authCodes[se.Code] || isAuthSetupError(err):
		se.Stage, se.Config = StageAuth, true
	case isCertError(err):
		se.Stage, se.Config = StageTLS, true
	case isTLSError(err):
		se.Stage = StageTLS
		se.Config = strings.Contains(err.Error(), "STARTTLS")
	case se.Code >= 500:
		se.Config = true
	}
	return se
}

func isAuthSetupError(err error) bool {
	for _, target := range []error{gomail.ErrNoSupportedAuthDiscovered, gomail.ErrPlainAuthNotSupported,
		gomail.ErrLoginAuthNotSupported, gomail.ErrCramMD5AuthNotSupported, gomail.ErrSCRAMSHA1AuthNotSupported,
		gomail.ErrSCRAMSHA256AuthNotSupported} {
		if errors.Is(err, target) {
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "SMTP AUTH") || strings.Contains(msg, "unencrypted connection")
}

func isCertError(err error) bool {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

func isTLSError(err error) bool {
	var rec tls.RecordHeaderError
	var alert tls.AlertError
	msg := err.Error()
	return errors.As(err, &rec) || errors.As(err, &alert) || strings.Contains(msg, "tls:") || strings.Contains(msg, "STARTTLS")
}

// transactionError classifies a failure once the session was up, from go-mail's
// SendError (which command failed, and the reply code).
func transactionError(err error) *SendError {
	var ge *gomail.SendError
	if !errors.As(err, &ge) {
		return &SendError{Temporary: true, Stage: StageData, Err: err}
	}
	se := &SendError{Temporary: true, Code: ge.ErrorCode(), Enhanced: ge.EnhancedStatusCode(), Err: err}
	switch ge.Reason {
	case gomail.ErrSMTPMailFrom:
		se.Stage = StageMail
	case gomail.ErrSMTPRcptTo:
		se.Stage = StageRcpt
	case gomail.ErrSMTPData, gomail.ErrSMTPDataClose, gomail.ErrWriteContent, gomail.ErrNoUnencoded:
		se.Stage = StageData
	case gomail.ErrGetSender, gomail.ErrGetRcpts:
		se.Stage = StageBuild
	default:
		se.Stage = StageConnect
	}
	if se.Enhanced == "" {
		se.Enhanced = enhancedCode(err.Error())
	}
	if se.Code < 500 || se.Code > 599 {
		return se
	}
	switch {
	case authCodes[se.Code]:
		// "530 authentication required" at MAIL or RCPT: billingd did not log in.
		se.Stage, se.Config = StageAuth, true
	case se.Code >= 500 && se.Code <= 504:
		// Syntax or sequence errors (500, 502, 503, 504) are about the dialogue,
		// not the recipient; 501 on RCPT is a malformed address.
		se.Temporary = !(se.Code == 501 && se.Stage == StageRcpt)
		se.Config = se.Temporary
	case se.Stage == StageMail:
		// The relay refuses billingd's sender address: a setting to fix.
		se.Config = true
	case isRelayDenied(err):
		// "554 5.7.1 Relay access denied": billingd is not allowed to relay,
		// which is the relay's configuration, not the customer's address.
		se.Config = true
	case se.Stage == StageRcpt || se.Stage == StageData:
		se.Temporary = false
	default:
		se.Config = true
	}
	return se
}

func isRelayDenied(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "relay") && (strings.Contains(msg, "denied") || strings.Contains(msg, "not permitted") ||
		strings.Contains(msg, "not allowed"))
}

// enhancedCode finds an RFC 3463 status code (class.subject.detail) in a reply.
func enhancedCode(s string) string {
	for _, f := range strings.Fields(s) {
		parts := strings.Split(f, ".")
		if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsRune("245", rune(parts[0][0])) {
			continue
		}
		if allDigits(parts[1]) && allDigits(parts[2]) {
			return f
		}
	}
	return ""
}

func allDigits(s string) bool {
	if s == "" || len(s) > 3 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
