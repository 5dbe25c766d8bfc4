package mail

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// Finding 12: a 5,001-character description made a 5,001-character Subject:
// line (RFC 5322 caps a line at 998 and recommends 78). Every kind's subject is
// now bounded, and the message the sender builds has no header line over 998,
// and none over 78 where the subject has spaces to fold at.
func TestLongDescriptionsMakeLegalSubjectLines(t *testing.T) {
	tpl, err := LoadTemplates("")
	require.NoError(t, err)
	for _, tc := range []struct {
		name        string
		description string
		folds       bool // has spaces: every line within 78
	}{
		{"one 5,001-character word", strings.Repeat("x", 5001), false},
		{"5,001 characters of words", strings.Repeat("word ", 1000) + "x", true},
		{"non-ASCII words", strings.Repeat("Jahresabo für Größe ", 250), true},
		{"a line break and a NUL", "Team\r\nBcc: evil@example.com\x00 plan", true},
	} {
		for _, k := range Kinds() {
			t.Run(tc.name+"/"+string(k), func(t *testing.T) {
				d := TemplateData{Merchant: "Acme", CustomerEmail: "a@example.com", Reference: "sub-1", Description: tc.description,
					Invoice: "inv_1", Amount: 1000, Currency: "USD", Link: "https://billing.example.com/pay/x"}
				r, err := tpl.Render(k, d)
				require.NoError(t, err)
				require.LessOrEqual(t, utf8.RuneCountInString(r.Subject), 200)
				require.NotContains(t, r.Subject, "\n")
				require.NotContains(t, r.Subject, "\x00")
				msg, err := buildMsg(&Outgoing{From: "Billing <billing@example.com>", To: "a@example.com", Subject: r.Subject,
					Text: r.Text, HTML: r.HTML, MessageID: "<1@example.com>"})
				require.NoError(t, err)
				var buf bytes.Buffer
				_, err = msg.WriteTo(&buf)
				require.NoError(t, err)
				head, _, _ := strings.Cut(buf.String(), "\r\n\r\n")
				subject := false
				for _, line := range strings.Split(head, "\r\n") {
					require.LessOrEqual(t, len(line), 998, "RFC 5322 line limit: %q", line)
					if strings.HasPrefix(line, "Subject:") {
						subject = true
					} else if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
						subject = false
					}
					if subject && tc.folds {
						require.LessOrEqual(t, len(line), 78, "folded subject line: %q", line)
					}
					require.False(t, strings.HasPrefix(line, "Bcc:"), "no header injected")
				}
			})
		}
	}
}
