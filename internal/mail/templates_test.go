package mail_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/mail"
	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

func sampleData(amount int64, currency string) mail.TemplateData {
	start := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	retry := time.Date(2026, 2, 4, 9, 0, 0, 0, time.UTC)
	paid := time.Date(2026, 2, 5, 14, 30, 0, 0, time.UTC)
	return mail.TemplateData{
		Merchant: "Acme Billing", CustomerEmail: "alice@example.com", Reference: "sub-42", Description: "Team plan",
		Invoice: "inv_abc", Amount: amount, Currency: currency, PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0),
		NextRetryAt: &retry, DeclineCode: "insufficient_funds", FinalAction: "cancel", PaidAt: &paid,
		Link: "https://billing.example.com/pay/tok_0123456789abcdef",
		Card: mail.Card{Brand: "mastercard", Last4: "4444", ExpMonth: 4, ExpYear: 2026}, NextChargeAt: start.AddDate(0, 1, 0),
	}
}

func TestEveryKindRenders(t *testing.T) {
	tpl, err := mail.LoadTemplates("")
	require.NoError(t, err)
	currencies := []struct {
		amount   int64
		currency string
		want     string
	}{
		{2750, "KWD", "2.750 KWD"},
		{1200, "JPY", "1200 JPY"},
		{1999, "EUR", "19.99 EUR"},
	}
	withLink := map[models.EmailKind]bool{models.EmailActionRequired: true, models.EmailPaymentFailed: true, models.EmailCardUpdate: true, models.EmailCardExpiring: true}
	// The emails about a card name it (brand, last 4, expiry); the
	// expiring-card notice belongs to no invoice.
	withCard := withLink
	for _, k := range mail.Kinds() {
		for _, c := range currencies {
			t.Run(string(k)+"/"+c.currency, func(t *testing.T) {
				d := sampleData(c.amount, c.currency)
				if !withLink[k] {
					d.Link = ""
				}
				r, err := tpl.Render(k, d)
				require.NoError(t, err)
				require.NotEmpty(t, r.Subject)
				require.NotContains(t, r.Subject, "\n")
				require.Contains(t, r.Text, c.want, "text shows the amount in the currency's exponent")
				require.Contains(t, r.HTML, c.want)
				if k != models.EmailCardExpiring {
					require.Contains(t, r.Text, "inv_abc")
				}
				if withCard[k] {
					for _, part := range []string{r.Text, r.HTML} {
						require.Contains(t, part, "Mastercard ending in 4444")
						require.Contains(t, part, "04/2026")
					}
				}
				require.Contains(t, r.Text, "Acme Billing")
				require.Contains(t, r.HTML, "<html")
				require.NotContains(t, r.Text, "<no value>")
				require.NotContains(t, r.HTML, "<no value>")
				if withLink[k] {
					require.Contains(t, r.Text, d.Link)
					require.Contains(t, r.HTML, `href="`+d.Link+`"`)
				} else {
					require.NotContains(t, r.Text, "https://")
				}
			})
		}
	}
}

func TestTemplateWording(t *testing.T) {
	tpl, err := mail.LoadTemplates("")
	require.NoError(t, err)
	d := sampleData(2750, "USD")
	tests := []struct {
		name   string
		kind   models.EmailKind
		mutate func(d *mail.TemplateData)
		want   []string
		absent []string
	}{
		{name: "3-D Secure", kind: models.EmailActionRequired,
			want: []string{"Your bank needs you to confirm your payment", "Team plan"}},
		{name: "retry date", kind: models.EmailPaymentFailed,
			want: []string{"4 February 2026", "insufficient funds", "pay now"}},
		{name: "no retry scheduled", kind: models.EmailPaymentFailed, mutate: func(d *mail.TemplateData) { d.NextRetryAt = nil },
			want: []string{"Please pay using this secure link"}, absent: []string{"try again automatically"}},
		{name: "card update", kind: models.EmailCardUpdate, mutate: func(d *mail.TemplateData) { d.DeclineCode = "expired_card" },
			want: []string{"the card has expired", "add a new card"}},
		{name: "receipt", kind: models.EmailRecovered, want: []string{"5 February 2026 at 14:30 UTC", "received your payment"}},
		{name: "canceled", kind: models.EmailSubscriptionEnded, want: []string{"canceled"}},
		{name: "suspended", kind: models.EmailSubscriptionEnded, mutate: func(d *mail.TemplateData) { d.FinalAction = "unpaid" },
			want: []string{"suspended"}, absent: []string{"canceled"}},
		{name: "no description", kind: models.EmailPaymentFailed, mutate: func(d *mail.TemplateData) { d.Description = "" },
			want: []string{"your subscription (sub-42)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dd := d
			if tt.mutate != nil {
				tt.mutate(&dd)
			}
			r, err := tpl.Render(tt.kind, dd)
			require.NoError(t, err)
			all := r.Subject + "\n" + r.Text
			for _, w := range tt.want {
				require.Contains(t, all, w)
			}
			for _, a := range tt.absent {
				require.NotContains(t, all, a)
			}
			require.NotContains(t, r.Text, "\n\n\n", "blank lines left by conditionals are tidied")
		})
	}
}

func TestRenderIsSafeWithHostileData(t *testing.T) {
	tpl, err := mail.LoadTemplates("")
	require.NoError(t, err)
	d := sampleData(100, "USD")
	d.Description = "Evil <script>alert(1)</script>\r\nBcc: victim@example.com"
	r, err := tpl.Render(models.EmailCardUpdate, d)
	require.NoError(t, err)
	require.NotContains(t, r.Subject, "\n", "a newline in data cannot inject headers")
	require.NotContains(t, r.Subject, "\r")
	require.NotContains(t, r.HTML, "<script>")
	require.Contains(t, r.HTML, "&lt;script&gt;")

	d.Link = "javascript:alert(1)"
	r, err = tpl.Render(models.EmailPaymentFailed, d)
	require.NoError(t, err)
	require.NotContains(t, r.HTML, `href="javascript:`)
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func TestOverrideDirReplacesOneFile(t *testing.T) {
	builtin, err := mail.LoadTemplates("")
	require.NoError(t, err)
	dir := t.TempDir()
	path := writeFile(t, dir, "payment_failed.subject.tmpl", "Heads up from {{.Merchant}}: {{money .Amount .Currency}} is unpaid\n")
	writeFile(t, dir, ".gitkeep", "")
	tpl, err := mail.LoadTemplates(dir)
	require.NoError(t, err)
	require.Equal(t, path, tpl.Sources["payment_failed.subject.tmpl"])
	require.Equal(t, "built-in", tpl.Sources["payment_failed.txt.tmpl"])

	d := sampleData(2750, "KWD")
	got, err := tpl.Render(models.EmailPaymentFailed, d)
	require.NoError(t, err)
	want, err := builtin.Render(models.EmailPaymentFailed, d)
	require.NoError(t, err)
	require.Equal(t, "Heads up from Acme Billing: 2.750 KWD is unpaid", got.Subject)
	require.Equal(t, want.Text, got.Text, "the other parts stay built-in")
	require.Equal(t, want.HTML, got.HTML)
}

func TestBadTemplatesFailAtLoad(t *testing.T) {
	tests := []struct {
		name, file, body string
		want             []string
	}{
		{name: "syntax error", file: "recovered.txt.tmpl", body: "Thanks {{.Amount", want: []string{"recovered.txt.tmpl"}},
		{name: "unknown function", file: "recovered.html.tmpl", body: "<p>{{mony .Amount .Currency}}</p>", want: []string{"recovered.html.tmpl", "mony"}},
		{name: "unknown field fails on execution", file: "card_update.subject.tmpl", body: "Update {{.Cardd}}", want: []string{"card_update.subject.tmpl", "Cardd"}},
		{name: "nil date dereference", file: "payment_failed.txt.tmpl", body: "{{.Link}} retry {{.NextRetryAt.Year}}", want: []string{"payment_failed.txt.tmpl"}},
		{name: "link kind without the link", file: "action_required.txt.tmpl", body: "Please confirm {{money .Amount .Currency}}.", want: []string{"action_required.txt.tmpl", "{{.Link}}"}},
		{name: "empty subject", file: "recovered.subject.tmpl", body: "{{if false}}x{{end}}", want: []string{"recovered.subject.tmpl", "empty subject"}},
		{name: "unknown file", file: "payment_faild.txt.tmpl", body: "hi", want: []string{"payment_faild.txt.tmpl", "unknown file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, tt.file, tt.body)
			_, err := mail.LoadTemplates(dir)
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		_, err := mail.LoadTemplates(filepath.Join(t.TempDir(), "nope"))
		require.Error(t, err)
	})
}

func TestRenderUnknownKind(t *testing.T) {
	tpl, err := mail.LoadTemplates("")
	require.NoError(t, err)
	_, err = tpl.Render("newsletter", sampleData(1, "USD"))
	require.ErrorContains(t, err, "newsletter")
}

func TestMerchantNameAndDomain(t *testing.T) {
	tests := []struct{ from, name, domain string }{
		{"Acme Billing <billing@acme.example>", "Acme Billing", "acme.example"},
		{"billing@acme.example", "billing@acme.example", "acme.example"},
		{`"Acme, Inc." <billing@acme.example>`, "Acme, Inc.", "acme.example"},
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			require.Equal(t, tt.name, mail.MerchantName(tt.from))
			require.Equal(t, tt.domain, mail.AddressDomain(tt.from))
		})
	}
}

func TestDeclineReason(t *testing.T) {
	require.Equal(t, "the card has expired", mail.DeclineReason("expired_card"))
	require.Equal(t, "the card is no longer active", mail.DeclineReason("stolen_card"), "never accuse the customer")
	require.Empty(t, mail.DeclineReason("weird_code_42"), "unknown codes are not shown")
	require.True(t, strings.HasPrefix(mail.DeclineReason("insufficient_funds"), "your bank"))
}

func TestDeclineReasonIsTheCatalogues(t *testing.T) {
	for _, code := range []string{"insufficient_funds", "generic_decline", "do_not_honor", "processing_error", "try_again_later",
		"expired_card", "lost_card", "stolen_card", "incorrect_number", "do_not_try_again", "revocation_of_authorization", gateway.CodePaymentMethodGone} {
		t.Run(code, func(t *testing.T) {
			require.NotEmpty(t, mail.DeclineReason(code))
			require.Equal(t, gateway.DeclineWords(code), mail.DeclineReason(code), "emails and pay pages share one wording")
		})
	}
}
