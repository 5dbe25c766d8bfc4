package mail_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net"
	stdmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/mail"
	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

func capture(t *testing.T) *smtpcapture.Server {
	t.Helper()
	s, err := smtpcapture.Start("", "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func senderFor(t *testing.T, host string, port int, mutate ...func(*config.MailConfig)) *mail.SMTPSender {
	t.Helper()
	cfg := config.MailConfig{Host: host, Port: port, TLS: config.MailTLSNone, From: "Acme Billing <billing@acme.example>"}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := mail.NewSMTPSender(cfg, 5*time.Second)
	require.NoError(t, err)
	return s
}

func outgoing() *mail.Outgoing {
	return &mail.Outgoing{
		From:      "Acme Billing <billing@acme.example>",
		To:        "alice@example.com",
		Subject:   "Your payment of 2.750 KWD didn't go through",
		Text:      "Hello,\nPlease pay: https://billing.example.com/pay/tok_1\n",
		HTML:      `<p>Hello, <a href="https://billing.example.com/pay/tok_1">pay</a></p>`,
		MessageID: "<0123456789abcdef.case-1-step-0@acme.example>",
		Date:      time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC),
	}
}

// parts decodes a captured message's text and HTML alternatives.
func parts(t *testing.T, raw []byte) (hdr stdmail.Header, text, html string) {
	t.Helper()
	msg, err := stdmail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", mt)
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		body, err := io.ReadAll(p)
		require.NoError(t, err)
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch ct {
		case "text/plain":
			text = string(body)
		case "text/html":
			html = string(body)
		}
	}
	return msg.Header, text, html
}

func TestSMTPSenderDelivers(t *testing.T) {
	srv := capture(t)
	s := senderFor(t, srv.Host(), srv.Port())
	m := outgoing()
	require.NoError(t, s.Send(context.Background(), m))
	require.NoError(t, s.Send(context.Background(), m), "a resend")

	msgs := srv.Messages()
	require.Len(t, msgs, 2)
	for _, got := range msgs {
		require.Equal(t, "billing@acme.example", got.From)
		require.Equal(t, []string{"alice@example.com"}, got.To)
		require.Equal(t, m.Subject, got.Subject)
		require.Equal(t, m.MessageID, got.MessageID, "the row's Message-ID, stable across resends")
		hdr, text, html := parts(t, got.Raw)
		from, err := stdmail.ParseAddress(hdr.Get("From"))
		require.NoError(t, err)
		require.Equal(t, "Acme Billing", from.Name)
		require.Equal(t, "<alice@example.com>", hdr.Get("To"))
		require.Equal(t, "auto-generated", hdr.Get("Auto-Submitted"))
		date, err := hdr.Date()
		require.NoError(t, err)
		require.True(t, date.Equal(m.Date))
		require.Equal(t, m.Text, strings.ReplaceAll(text, "\r\n", "\n"))
		require.Equal(t, m.HTML, html)
	}
}

func TestSMTPSenderAuthenticates(t *testing.T) {
	srv := capture(t)
	srv.RequireAuth("billingd", "s3cret")
	good := senderFor(t, srv.Host(), srv.Port(), func(c *config.MailConfig) { c.Username, c.Password = "billingd", "s3cret" })
	require.NoError(t, good.Send(context.Background(), outgoing()))
	require.Equal(t, 1, srv.Count())

	bad := senderFor(t, srv.Host(), srv.Port(), func(c *config.MailConfig) { c.Username, c.Password = "billingd", "wrong" })
	err := bad.Send(context.Background(), outgoing())
	var se *mail.SendError
	require.ErrorAs(t, err, &se)
	require.True(t, se.Temporary, "a refused login is a config problem: retry, never drop")
	require.True(t, se.Config)
	require.Equal(t, 535, se.Code)
	require.Equal(t, mail.StageAuth, se.Stage)
	require.False(t, mail.Permanent(err))

	anon := senderFor(t, srv.Host(), srv.Port())
	err = anon.Send(context.Background(), outgoing())
	require.ErrorAs(t, err, &se)
	require.True(t, se.Temporary)
	require.True(t, se.Config)
	require.Equal(t, 530, se.Code)
	require.Equal(t, 1, srv.Count())
}

// scripted is an SMTP server whose replies to MAIL, RCPT and DATA are set by a test.
type scripted struct {
	mail, rcpt, data *smtp.SMTPError
}

// String is the scripted reply's text, which errors must keep.
func (s *scripted) String() string {
	for _, r := range []*smtp.SMTPError{s.mail, s.rcpt, s.data} {
		if r != nil {
			return r.Message
		}
	}
	return ""
}

func (s *scripted) NewSession(*smtp.Conn) (smtp.Session, error) { return &scriptedSession{s}, nil }

type scriptedSession struct{ s *scripted }

func (ss *scriptedSession) Reset()        {}
func (ss *scriptedSession) Logout() error { return nil }
func (ss *scriptedSession) Mail(string, *smtp.MailOptions) error {
	if ss.s.mail != nil {
		return ss.s.mail
	}
	return nil
}
func (ss *scriptedSession) Rcpt(string, *smtp.RcptOptions) error {
	if ss.s.rcpt != nil {
		return ss.s.rcpt
	}
	return nil
}
func (ss *scriptedSession) Data(r io.Reader) error {
	_, _ = io.Copy(io.Discard, r)
	if ss.s.data != nil {
		return ss.s.data
	}
	return nil
}

func startScripted(t *testing.T, sc *scripted) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := smtp.NewServer(sc)
	srv.Domain = "scripted.localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
}

func reply(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

func TestSendErrorClassification(t *testing.T) {
	tests := []struct {
		name      string
		sc        scripted
		permanent bool
		config    bool
		code      int
		stage     string
	}{
		{name: "550 unknown user at RCPT", sc: scripted{rcpt: reply(550, smtp.EnhancedCode{5, 1, 1}, "No such user")}, permanent: true, code: 550, stage: mail.StageRcpt},
		{name: "551 user not local", sc: scripted{rcpt: reply(551, smtp.EnhancedCode{5, 1, 6}, "User not local")}, permanent: true, code: 551, stage: mail.StageRcpt},
		{name: "552 mailbox full at DATA", sc: scripted{data: reply(552, smtp.EnhancedCode{5, 2, 2}, "Mailbox full")}, permanent: true, code: 552, stage: mail.StageData},
		{name: "553 bad mailbox name", sc: scripted{rcpt: reply(553, smtp.EnhancedCode{5, 1, 3}, "Bad address")}, permanent: true, code: 553, stage: mail.StageRcpt},
		{name: "554 rejected as spam at DATA", sc: scripted{data: reply(554, smtp.EnhancedCode{5, 7, 1}, "Message rejected")}, permanent: true, code: 554, stage: mail.StageData},
		{name: "501 malformed address at RCPT", sc: scripted{rcpt: reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")}, permanent: true, code: 501, stage: mail.StageRcpt},
		{name: "450 mailbox busy", sc: scripted{rcpt: reply(450, smtp.EnhancedCode{4, 2, 1}, "Try later")}, code: 450, stage: mail.StageRcpt},
		{name: "451 local error at DATA", sc: scripted{data: reply(451, smtp.EnhancedCode{4, 3, 0}, "Local error")}, code: 451, stage: mail.StageData},
		{name: "452 insufficient storage", sc: scripted{rcpt: reply(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient storage")}, code: 452, stage: mail.StageRcpt},
		{name: "554 relay access denied is ours", sc: scripted{rcpt: reply(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied")}, config: true, code: 554, stage: mail.StageRcpt},
		{name: "550 sender rejected at MAIL is ours", sc: scripted{mail: reply(550, smtp.EnhancedCode{5, 7, 1}, "Sender address rejected")}, config: true, code: 550, stage: mail.StageMail},
		{name: "530 auth required at MAIL is ours", sc: scripted{mail: reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")}, config: true, code: 530, stage: mail.StageAuth},
		{name: "503 bad sequence is not the customer's", sc: scripted{rcpt: reply(503, smtp.EnhancedCode{5, 5, 1}, "Bad sequence")}, config: true, code: 503, stage: mail.StageRcpt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := tt.sc
			host, port := startScripted(t, &sc)
			err := senderFor(t, host, port).Send(context.Background(), outgoing())
			require.Error(t, err)
			var se *mail.SendError
			require.ErrorAs(t, err, &se)
			require.Equal(t, tt.permanent, mail.Permanent(err), "%v", err)
			require.Equal(t, !tt.permanent, se.Temporary)
			require.Equal(t, tt.config, se.Config, "%v", err)
			require.Equal(t, tt.code, se.Code)
			require.Equal(t, tt.stage, se.Stage)
			require.NotContains(t, err.Error(), "alice@example.com", "errors go to logs: no customer address")
			require.Contains(t, err.Error(), tt.sc.String())
		})
	}
}

func TestConnectionFailuresAreTemporary(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedPort := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	down := capture(t)
	down.SetDown(true)

	// A server that accepts the connection and never greets: a timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()

	// A server that speaks something other than TLS on an implicit-TLS port.
	plain := capture(t)

	tests := []struct {
		name   string
		sender func() *mail.SMTPSender
		code   int
		stage  string
	}{
		{name: "connection refused", sender: func() *mail.SMTPSender { return senderFor(t, "127.0.0.1", closedPort) }, stage: mail.StageConnect},
		{name: "421 greeting", sender: func() *mail.SMTPSender { return senderFor(t, down.Host(), down.Port()) }, code: 421, stage: mail.StageConnect},
		{name: "timeout", sender: func() *mail.SMTPSender {
			s, err := mail.NewSMTPSender(config.MailConfig{Host: "127.0.0.1", Port: silent.Addr().(*net.TCPAddr).Port, TLS: config.MailTLSNone}, 100*time.Millisecond)
			require.NoError(t, err)
			return s
		}, stage: mail.StageConnect},
		{name: "TLS handshake failure", sender: func() *mail.SMTPSender {
			return senderFor(t, plain.Host(), plain.Port(), func(c *config.MailConfig) { c.TLS = config.MailTLSImplicit })
		}, stage: mail.StageTLS},
		{name: "STARTTLS not offered", sender: func() *mail.SMTPSender {
			return senderFor(t, plain.Host(), plain.Port(), func(c *config.MailConfig) { c.TLS = config.MailTLSStartTLS })
		}, stage: mail.StageTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sender().Send(context.Background(), outgoing())
			require.Error(t, err)
			require.False(t, mail.Permanent(err), "%v", err)
			var se *mail.SendError
			require.ErrorAs(t, err, &se)
			require.True(t, se.Temporary)
			require.Equal(t, tt.code, se.Code, "%v", err)
			require.Equal(t, tt.stage, se.Stage, "%v", err)
		})
	}
}

func TestBuildErrors(t *testing.T) {
	srv := capture(t)
	s := senderFor(t, srv.Host(), srv.Port())
	m := outgoing()
	m.To = "not an address"
	err := s.Send(context.Background(), m)
	require.True(t, mail.Permanent(err), "a malformed customer address never becomes deliverable: %v", err)

	m = outgoing()
	m.From = "broken"
	err = s.Send(context.Background(), m)
	require.False(t, mail.Permanent(err), "a bad sender is billingd's config: %v", err)

	m = outgoing()
	m.MessageID = ""
	require.False(t, mail.Permanent(s.Send(context.Background(), m)))
	require.Zero(t, srv.Count())
}

func TestPermanentOnlyTrustsSendError(t *testing.T) {
	require.False(t, mail.Permanent(nil))
	require.False(t, mail.Permanent(errors.New("550 looks permanent but was not classified")))
	require.True(t, mail.Permanent(&mail.SendError{Temporary: false, Code: 550}))
	require.False(t, mail.Permanent(&mail.SendError{Temporary: true, Code: 421}))
}

func TestNewSMTPSenderValidates(t *testing.T) {
	_, err := mail.NewSMTPSender(config.MailConfig{}, time.Second)
	require.Error(t, err)
	_, err = mail.NewSMTPSender(config.MailConfig{Host: "smtp.example.com", Port: 587, TLS: "ssl"}, time.Second)
	require.ErrorContains(t, err, "ssl")
}

func TestDefaultPorts(t *testing.T) {
	tests := []struct {
		tls  string
		want string
	}{
		{config.MailTLSStartTLS, "smtp.example.com:587"},
		{config.MailTLSImplicit, "smtp.example.com:465"},
		{config.MailTLSNone, "smtp.example.com:25"},
	}
	for _, tt := range tests {
		t.Run(tt.tls, func(t *testing.T) {
			s, err := mail.NewSMTPSender(config.MailConfig{Host: "smtp.example.com", TLS: tt.tls}, time.Second)
			require.NoError(t, err)
			require.Equal(t, tt.want, s.Addr())
		})
	}
}
