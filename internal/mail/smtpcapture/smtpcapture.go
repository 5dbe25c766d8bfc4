// Package smtpcapture is an in-process SMTP server that keeps what it receives:
// `billingd demo` writes the dunning emails it sends into a directory as .eml
// files, and tests read them back. It can also misbehave on purpose: refuse
// service for a while (SetDown) or refuse chosen recipients (SetReject), so that
// tests can prove a broken mail server delays emails without losing or
// duplicating them.
//
// It speaks plain SMTP without TLS and is meant for loopback only.
package smtpcapture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// DefaultAddr is where Start listens when given "": a free loopback port.
const DefaultAddr = "127.0.0.1:0"

// Message is one accepted email.
type Message struct {
	From      string   // envelope sender (MAIL FROM)
	To        []string // envelope recipients (RCPT TO)
	Subject   string   // the decoded Subject header
	MessageID string   // the Message-ID header, angle brackets included
	Raw       []byte   // the message as received
	Path      string   // the .eml file, "" when the server keeps messages in memory only
}

// Server is a running capture server. Its methods are safe for concurrent use.
type Server struct {
	smtp *smtp.Server
	ln   net.Listener
	dir  string
	done chan struct{}

	down atomic.Bool

	mu     sync.Mutex
	msgs   []Message
	reject func(rcpt string) bool
	user   string
	pass   string
}

// Start listens on addr ("" for DefaultAddr) and serves until Close. Each
// accepted message is recorded and, when dir is not "", written to
// dir/NNNN-<subject>.eml (the directory is created if needed; files are private
// to the user because emails carry pay links).
func Start(addr, dir string) (*Server, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("smtpcapture: %w", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtpcapture: listen %s: %w", addr, err)
	}
	s := &Server{dir: dir, done: make(chan struct{})}
	srv := smtp.NewServer(backend{s})
	srv.Domain = "smtpcapture.localhost"
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = 10 << 20
	srv.MaxRecipients = 50
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.smtp = srv
	s.ln = &gate{Listener: ln, s: s}
	go func() {
		defer close(s.done)
		_ = srv.Serve(s.ln)
	}()
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is the listening IP, for a mail.host setting.
func (s *Server) Host() string {
	host, _, _ := net.SplitHostPort(s.Addr())
	return host
}

// Port is the listening port, for a mail.port setting.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops listening and drops open connections.
func (s *Server) Close() error {
	err := s.smtp.Close()
	// Serve may not have registered the listener yet; closing it here makes
	// sure Serve returns either way.
	_ = s.ln.Close()
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// SetDown makes the server refuse service: while down, every new connection is
// greeted with "421 Service not available" and closed, as a relay under
// maintenance does, so senders see a temporary failure. Sessions already open
// are not affected.
func (s *Server) SetDown(down bool) { s.down.Store(down) }

// SetReject makes the server answer "550 5.1.1" to RCPT TO for every recipient
// for which fn returns true, a permanent refusal. nil accepts everyone.
func (s *Server) SetReject(fn func(rcpt string) bool) {
	s.mu.Lock()
	s.reject = fn
	s.mu.Unlock()
}

// RequireAuth makes the server demand AUTH PLAIN with these credentials before
// MAIL FROM ("" for both accepts anyone, the default).
func (s *Server) RequireAuth(user, pass string) {
	s.mu.Lock()
	s.user, s.pass = user, pass
	s.mu.Unlock()
}

// Messages returns the accepted messages in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	copy(out, s.msgs)
	return out
}

// Count returns how many messages were accepted.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// store records an accepted message and writes its file. A message that cannot
// be written is refused with a temporary error, so the sender keeps it.
func (s *Server) store(from string, to []string, raw []byte) error {
	m := Message{From: from, To: append([]string(nil), to...), Raw: raw}
	if parsed, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		m.MessageID = strings.TrimSpace(parsed.Header.Get("Message-Id"))
		subj := parsed.Header.Get("Subject")
		if dec, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
			subj = dec
		}
		m.Subject = subj
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir != "" {
		name := fmt.Sprintf("%04d-%s.eml", len(s.msgs)+1, fileSlug(m.Subject, m.MessageID))
		path := filepath.Join(s.dir, name)
		if err := writeFile(path, raw); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot store message"}
		}
		m.Path = path
	}
	s.msgs = append(s.msgs, m)
	return nil
}

// writeFile writes through a temporary name, so a reader of the directory never
// sees half a message.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// fileSlug turns a subject (or, without one, the Message-ID) into a short,
// portable file name part.
func fileSlug(subject, messageID string) string {
	src := subject
	if strings.TrimSpace(src) == "" {
		src = strings.Trim(messageID, "<>")
	}
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(src) {
		if b.Len() >= 60 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	slug := strings.Trim(b.String(), "-")
	if slug == "" {
		return "message"
	}
	return slug
}

// gate is the listener that turns connections away while the server is down.
type gate struct {
	net.Listener
	s *Server
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !g.s.down.Load() {
			return c, nil
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, "421 4.3.2 Service not available, try again later\r\n")
		_ = c.Close()
	}
}

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

// session is one SMTP conversation.
type session struct {
	s      *Server
	authed bool
	from   string
	to     []string
}

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		ss.s.mu.Lock()
		user, pass := ss.s.user, ss.s.pass
		ss.s.mu.Unlock()
		if user != "" && (username != user || password != pass) {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.s.mu.Lock()
	needAuth := ss.s.user != ""
	ss.s.mu.Unlock()
	if needAuth && !ss.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	reject := ss.s.reject
	ss.s.mu.Unlock()
	if reject != nil && reject(to) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return ss.s.store(ss.from, ss.to, raw)
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }
