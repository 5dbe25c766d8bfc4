package mail

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/money"
	"github.com/billingd/billingd/internal/store"
)

//go:embed templates/*
var builtinTemplates embed.FS

// TemplateData is what an email template can show. Amount is in the currency's
// minor unit; show it with {{money .Amount .Currency}}. Times are UTC; show them
// with {{date …}} or {{datetime …}}. Link is the customer's pay or card-update
// URL and is empty for kinds that carry none.
type TemplateData struct {
	Merchant      string // the display name of mail.from
	CustomerEmail string
	Reference     string // the subscription's merchant reference
	Description   string // the subscription's description ("Pro plan"), may be empty
	Invoice       string // the invoice's public id
	Amount        int64
	Currency      string
	PeriodStart   time.Time
	PeriodEnd     time.Time
	NextRetryAt   *time.Time // next automatic attempt, nil when none is scheduled
	DeclineCode   string     // the gateway's decline code, shown with {{declineReason .DeclineCode}}
	FinalAction   string     // cancel | unpaid | past_due, for subscription_ended
	PaidAt        *time.Time
	Link          string
	// Card is the subscription's card: {{.Card.Name}} ("Visa ending in
	// 4242") and {{.Card.Expiry}} ("12/2035"), both "" when unknown; test
	// {{if .Card.Known}} before naming it.
	Card Card
	// NextChargeAt is the subscription's next charge (card_expiring).
	NextChargeAt time.Time
}

// Card is a saved card as emails name it: never more than brand, last 4 and
// expiry.
type Card = store.CardOnFile

// Plan names what the customer pays for: the subscription's description, or its
// reference when it has none.
func (d TemplateData) Plan() string {
	if strings.TrimSpace(d.Description) != "" {
		return d.Description
	}
	if d.Reference != "" {
		return "your subscription (" + d.Reference + ")"
	}
	return "your subscription"
}

// Rendered is one email's content.
type Rendered struct {
	Subject string
	Text    string
	HTML    string
}

// Kinds lists every email kind billingd sends; each has a subject, a text and an
// HTML template.
func Kinds() []models.EmailKind {
	return []models.EmailKind{models.EmailActionRequired, models.EmailPaymentFailed, models.EmailCardUpdate,
		models.EmailRecovered, models.EmailSubscriptionEnded, models.EmailCardExpiring}
}

// linkKinds are the kinds whose whole point is the link: a template for them
// that does not show {{.Link}} is refused at load time.
var linkKinds = map[models.EmailKind]bool{
	models.EmailActionRequired: true,
	models.EmailPaymentFailed:  true,
	models.EmailCardUpdate:     true,
	models.EmailCardExpiring:   true,
}

// Template file suffixes, one file per part and kind: <kind><suffix>.
const (
	subjectSuffix = ".subject.tmpl"
	textSuffix    = ".txt.tmpl"
	htmlSuffix    = ".html.tmpl"
)

// Templates holds the parsed and checked templates of every kind.
type Templates struct {
	byKind map[models.EmailKind]*kindTemplates
	// Sources names where each file came from (a path in the override
	// directory, or "built-in"), for check-config output and logs.
	Sources map[string]string
}

type kindTemplates struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// funcs are the helpers every template may call.
var funcs = map[string]any{
	"money":         money.Format,
	"date":          formatDate,
	"datetime":      formatDateTime,
	"declineReason": DeclineReason,
}

// LoadTemplates parses the built-in templates and, when dir is not empty,
// replaces each by the file of the same name in dir (for example
// payment_failed.html.tmpl alone). A file in dir that is not a template name is
// an error naming it (a typo would otherwise be silently ignored); hidden files
// (".keep") are skipped. Every template is parsed and executed against sample
// data here, so that a broken template stops billingd at startup with the file's
// name instead of failing a customer's email at night.
func LoadTemplates(dir string) (*Templates, error) {
	type source struct {
		name, origin string
		body         []byte
	}
	files := map[string]*source{}
	entries, err := fs.ReadDir(builtinTemplates, "templates")
	if err != nil {
		return nil, fmt.Errorf("mail: built-in templates: %w", err)
	}
	for _, e := range entries {
		body, err := builtinTemplates.ReadFile("templates/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("mail: built-in template %s: %w", e.Name(), err)
		}
		files[e.Name()] = &source{name: e.Name(), origin: "built-in template " + e.Name(), body: body}
	}
	for _, k := range Kinds() {
		for _, suffix := range []string{subjectSuffix, textSuffix, htmlSuffix} {
			if files[string(k)+suffix] == nil {
				return nil, fmt.Errorf("mail: built-in template %s%s is missing", k, suffix)
			}
		}
	}
	sources := map[string]string{}
	for name := range files {
		sources[name] = "built-in"
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("mail: templates directory: %w", err)
		}
		var unknown []string
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			path := filepath.Join(dir, name)
			if files[name] == nil || e.IsDir() {
				unknown = append(unknown, path)
				continue
			}
			body, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("mail: template %s: %w", path, err)
			}
			files[name] = &source{name: name, origin: path, body: body}
			sources[name] = path
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("mail: unknown file(s) in templates directory: %s (template files are named <kind>%s, <kind>%s or <kind>%s, with kind one of %s)",
				strings.Join(unknown, ", "), subjectSuffix, textSuffix, htmlSuffix, kindList())
		}
	}

	t := &Templates{byKind: map[models.EmailKind]*kindTemplates{}, Sources: sources}
	var errs []error
	for _, k := range Kinds() {
		kt := &kindTemplates{}
		subj, txt, html := files[string(k)+subjectSuffix], files[string(k)+textSuffix], files[string(k)+htmlSuffix]
		var perr error
		if kt.subject, perr = texttemplate.New(subj.origin).Funcs(funcs).Option("missingkey=error").Parse(string(subj.body)); perr != nil {
			errs = append(errs, fmt.Errorf("mail: %s: %w", subj.origin, perr))
		}
		if kt.text, perr = texttemplate.New(txt.origin).Funcs(funcs).Option("missingkey=error").Parse(string(txt.body)); perr != nil {
			errs = append(errs, fmt.Errorf("mail: %s: %w", txt.origin, perr))
		}
		if kt.html, perr = htmltemplate.New(html.origin).Funcs(funcs).Option("missingkey=error").Parse(string(html.body)); perr != nil {
			errs = append(errs, fmt.Errorf("mail: %s: %w", html.origin, perr))
		}
		if kt.subject == nil || kt.text == nil || kt.html == nil {
			continue
		}
		t.byKind[k] = kt
		for _, sample := range samples() {
			r, err := t.Render(k, sample)
			if err != nil {
				errs = append(errs, fmt.Errorf("mail: %w", err))
				break
			}
			if sample.Link == "" || !linkKinds[k] {
				continue
			}
			if !strings.Contains(r.Text, sample.Link) {
				errs = append(errs, fmt.Errorf("mail: %s: the email must show the customer's link ({{.Link}})", txt.origin))
			}
			if !strings.Contains(r.HTML, sample.Link) {
				errs = append(errs, fmt.Errorf("mail: %s: the email must show the customer's link ({{.Link}})", html.origin))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

func kindList() string {
	ks := make([]string, 0, len(Kinds()))
	for _, k := range Kinds() {
		ks = append(ks, string(k))
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// samples are the data every template is executed against at load time: one
// with every field set, and sparse ones with the optional fields empty (no
// description, no retry date, no link), so that a template that only breaks on
// a nil date fails at startup too.
func samples() []TemplateData {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	retry := start.AddDate(0, 0, 3)
	paid := start.Add(50 * time.Hour)
	full := TemplateData{
		Merchant:      "Example Billing",
		CustomerEmail: "customer@example.com",
		Reference:     "sub-1001",
		Description:   "Pro plan",
		Invoice:       "inv_sample0000000000000",
		Amount:        2750,
		Currency:      "USD",
		PeriodStart:   start,
		PeriodEnd:     start.AddDate(0, 1, 0),
		NextRetryAt:   &retry,
		DeclineCode:   "insufficient_funds",
		FinalAction:   "cancel",
		PaidAt:        &paid,
		Link:          "https://billing.example.com/pay/SAMPLE-TOKEN-0123456789",
		Card:          Card{Brand: "visa", Last4: "4242", ExpMonth: 3, ExpYear: 2026},
		NextChargeAt:  start.AddDate(0, 1, 0),
	}
	sparse := full
	sparse.Description, sparse.NextRetryAt, sparse.PaidAt, sparse.DeclineCode, sparse.FinalAction = "", nil, nil, "", "unpaid"
	sparse.Card = Card{}
	noLink := sparse
	noLink.Link, noLink.Amount, noLink.Currency = "", 1200, "JPY"
	return []TemplateData{full, sparse, noLink}
}

// Render produces the subject, text and HTML of an email. The subject is folded
// onto one line; the text's blank lines left by conditionals are tidied.
func (t *Templates) Render(kind models.EmailKind, d TemplateData) (*Rendered, error) {
	kt := t.byKind[kind]
	if kt == nil {
		return nil, fmt.Errorf("no template for email kind %q", kind)
	}
	var subj, txt, html bytes.Buffer
	if err := kt.subject.Execute(&subj, d); err != nil {
		return nil, fmt.Errorf("%s: %w", kt.subject.Name(), err)
	}
	if err := kt.text.Execute(&txt, d); err != nil {
		return nil, fmt.Errorf("%s: %w", kt.text.Name(), err)
	}
	if err := kt.html.Execute(&html, d); err != nil {
		return nil, fmt.Errorf("%s: %w", kt.html.Name(), err)
	}
	r := &Rendered{Subject: subjectLine(subj.String()), Text: tidyText(txt.String()), HTML: html.String()}
	if r.Subject == "" {
		return nil, fmt.Errorf("%s: renders an empty subject", kt.subject.Name())
	}
	if strings.TrimSpace(r.Text) == "" {
		return nil, fmt.Errorf("%s: renders an empty body", kt.text.Name())
	}
	return r, nil
}

// MaxSubject is the longest subject billingd sends, in characters. RFC 5322
// caps a header line at 998 characters and recommends 78; the sender's mail
// library folds a subject at its spaces (and Q-encodes non-ASCII words in
// short encoded-words), so with this bound even a subject that is one long
// word (a description without spaces) keeps "Subject: " and itself well
// under 998, and any other subject folds into lines of at most 78.
const MaxSubject = 200

// subjectLine makes a rendered subject one header's worth: whitespace runs
// (line breaks included) become one space, control characters are dropped,
// and a subject longer than MaxSubject is cut at a space where one is near,
// ending in "…".
func subjectLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && !unicode.IsSpace(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= MaxSubject {
		return s
	}
	cut := string(r[:MaxSubject-1])
	if i := strings.LastIndex(cut, " "); i >= len(cut)*3/4 {
		cut = cut[:i]
	}
	return strings.TrimRight(cut, " ") + "…"
}

// tidyText trims trailing spaces, collapses runs of blank lines into one and
// ends the text with a single newline, so templates can use {{if}} blocks freely.
func tidyText(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	out := make([]string, 0, len(lines))
	blank := true // drops leading blank lines
	for _, l := range lines {
		l = strings.TrimRight(l, " \t")
		if l == "" {
			if blank {
				continue
			}
			blank = true
		} else {
			blank = false
		}
		out = append(out, l)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return strings.Join(out, "\n") + "\n"
}

// formatDate shows a day the way customers read it: "3 March 2026". It accepts
// a time.Time or a *time.Time (nil shows nothing).
func formatDate(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return ""
	}
	return t.UTC().Format("2 January 2006")
}

// formatDateTime shows a moment: "3 March 2026 at 14:05 UTC".
func formatDateTime(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return ""
	}
	return t.UTC().Format("2 January 2006 at 15:04 UTC")
}

func timeOf(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, !t.IsZero()
	case *time.Time:
		if t == nil || t.IsZero() {
			return time.Time{}, false
		}
		return *t, true
	default:
		return time.Time{}, false
	}
}

// DeclineReason explains a decline code in plain words, or returns "" for codes
// it does not know (a raw code would only confuse the customer). The words come
// from the decline catalogue in internal/gateway, which the pay pages use too,
// so an email and the page it links to never explain one decline two ways.
func DeclineReason(code string) string {
	return gateway.DeclineWords(code)
}

// MerchantName is the display name customers see: the name part of mail.from
// ("Billing" in "Billing <billing@example.com>"), else the address itself.
func MerchantName(from string) string {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return strings.TrimSpace(from)
	}
	if a.Name != "" {
		return a.Name
	}
	return a.Address
}

// AddressDomain is the domain of mail.from, for the Message-IDs of outbox rows
// (store.Tx.EnqueueEmail). It is "" when from has none.
func AddressDomain(from string) string {
	addr := from
	if a, err := mail.ParseAddress(from); err == nil {
		addr = a.Address
	}
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.Trim(addr[i+1:], "> ")
	}
	return ""
}
