package daemontest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A pay link is longer than a quoted-printable line: it reaches the test whole
// only if the part is decoded, whichever encoding the mail library picked.
func TestMessageTextsDecodesEachTextPart(t *testing.T) {
	link := "http://127.0.0.1:43117/pay/" + strings.Repeat("Ab-_9", 9)
	for _, tc := range []struct {
		name string
		raw  string
		want []string
	}{
		{
			name: "multipart quoted-printable with a soft break inside the URL",
			raw: "From: a@example.com\r\nContent-Type: multipart/alternative; boundary=xyz\r\n\r\n" +
				"--xyz\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				"Pay here: " + link[:40] + "=\r\n" + link[40:] + "\r\n" +
				"--xyz\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				"<a href=3D\"" + link + "\">pay</a>\r\n" +
				"--xyz--\r\n",
			want: []string{"Pay here: " + link, `<a href="` + link + `">pay</a>`},
		},
		{
			name: "single base64 part",
			raw:  "From: a@example.com\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n",
			want: []string{"hello world"},
		},
		{
			name: "attachments are not text",
			raw:  "From: a@example.com\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, messageTexts(t, []byte(tc.raw)))
		})
	}
}
