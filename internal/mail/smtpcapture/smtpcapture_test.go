package smtpcapture_test

import (
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/billingd/billingd/internal/mail/smtpcapture"
	"github.com/stretchr/testify/require"
)

const sample = "From: Billing <billing@example.com>\r\n" +
	"To: alice@example.com\r\n" +
	"Subject: =?UTF-8?q?Payment_received:_27.50_USD_=E2=9C=93?=\r\n" +
	"Message-ID: <abc.case-1@example.com>\r\n" +
	"\r\n" +
	"Thank you!\r\n"

func start(t *testing.T, dir string) *smtpcapture.Server {
	t.Helper()
	s, err := smtpcapture.Start("", dir)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestCapturesToFilesAndMemory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	s := start(t, dir)
	require.True(t, strings.HasPrefix(s.Addr(), "127.0.0.1:"), "loopback by default")
	require.NotZero(t, s.Port())

	require.NoError(t, smtp.SendMail(s.Addr(), nil, "billing@example.com", []string{"alice@example.com"}, []byte(sample)))
	noSubject := strings.Replace(sample, "Subject: =?UTF-8?q?Payment_received:_27.50_USD_=E2=9C=93?=\r\n", "", 1)
	require.NoError(t, smtp.SendMail(s.Addr(), nil, "billing@example.com", []string{"bob@example.com"}, []byte(noSubject)))

	msgs := s.Messages()
	require.Len(t, msgs, 2)
	m := msgs[0]
	require.Equal(t, "billing@example.com", m.From)
	require.Equal(t, []string{"alice@example.com"}, m.To)
	require.Equal(t, "Payment received: 27.50 USD ✓", m.Subject, "encoded subjects are decoded")
	require.Equal(t, "<abc.case-1@example.com>", m.MessageID)
	require.Equal(t, filepath.Join(dir, "0001-payment-received-27-50-usd.eml"), m.Path)
	onDisk, err := os.ReadFile(m.Path)
	require.NoError(t, err)
	require.Equal(t, m.Raw, onDisk)
	info, err := os.Stat(m.Path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "emails carry pay links: private files")

	require.Equal(t, filepath.Join(dir, "0002-abc-case-1-example-com.eml"), msgs[1].Path, "without a subject the Message-ID names the file")
	require.Equal(t, 2, s.Count())
}

func TestMemoryOnly(t *testing.T) {
	s := start(t, "")
	require.NoError(t, smtp.SendMail(s.Addr(), nil, "billing@example.com", []string{"alice@example.com"}, []byte(sample)))
	require.Len(t, s.Messages(), 1)
	require.Empty(t, s.Messages()[0].Path)
}

func TestMisbehaviour(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(s *smtpcapture.Server)
		auth     smtp.Auth
		rcpt     string
		wantCode int
	}{
		{name: "down answers 421", setup: func(s *smtpcapture.Server) { s.SetDown(true) }, rcpt: "alice@example.com", wantCode: 421},
		{name: "rejected recipient gets 550", setup: func(s *smtpcapture.Server) {
			s.SetReject(func(rcpt string) bool { return strings.HasPrefix(rcpt, "bounce") })
		}, rcpt: "bounce@example.com", wantCode: 550},
		{name: "other recipients still accepted", setup: func(s *smtpcapture.Server) {
			s.SetReject(func(rcpt string) bool { return strings.HasPrefix(rcpt, "bounce") })
		}, rcpt: "alice@example.com"},
		{name: "auth required", setup: func(s *smtpcapture.Server) { s.RequireAuth("u", "p") }, rcpt: "alice@example.com", wantCode: 530},
		{name: "wrong password", setup: func(s *smtpcapture.Server) { s.RequireAuth("u", "p") },
			auth: smtp.PlainAuth("", "u", "wrong", "127.0.0.1"), rcpt: "alice@example.com", wantCode: 535},
		{name: "right password", setup: func(s *smtpcapture.Server) { s.RequireAuth("u", "p") },
			auth: smtp.PlainAuth("", "u", "p", "127.0.0.1"), rcpt: "alice@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, "")
			tt.setup(s)
			err := smtp.SendMail(s.Addr(), tt.auth, "billing@example.com", []string{tt.rcpt}, []byte(sample))
			if tt.wantCode == 0 {
				require.NoError(t, err)
				require.Equal(t, 1, s.Count())
				return
			}
			var tp *textproto.Error
			require.ErrorAs(t, err, &tp)
			require.Equal(t, tt.wantCode, tp.Code)
			require.Zero(t, s.Count())
		})
	}
}

func TestBackUpAfterDown(t *testing.T) {
	s := start(t, "")
	s.SetDown(true)
	require.Error(t, smtp.SendMail(s.Addr(), nil, "billing@example.com", []string{"a@example.com"}, []byte(sample)))
	s.SetDown(false)
	require.NoError(t, smtp.SendMail(s.Addr(), nil, "billing@example.com", []string{"a@example.com"}, []byte(sample)))
	require.Equal(t, 1, s.Count())
}
