package sim

import (
	"bytes"
	"html/template"
	"net/http"
)

// The hosted pages (setup checkout and 3-D Secure challenge) are plain HTML
// forms without JavaScript, so that a person, curl, and headless Chromium can all
// drive them. Inputs and buttons have stable id and name attributes for browser
// automation. html/template escapes every value, including merchant-supplied
// URLs in links.
var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; background: #f5f6f8; color: #1b1f24; margin: 0 }
main { max-width: 28em; margin: 3em auto; background: #fff; padding: 1.5em 2em; border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.12) }
label { display: block; margin-top: .8em; font-size: .9em }
input { width: 100%; box-sizing: border-box; padding: .5em; font-size: 1em }
.row { display: flex; gap: .8em } .row > div { flex: 1 }
button { margin-top: 1.2em; padding: .6em 1.2em; font-size: 1em; cursor: pointer }
.error { color: #a40e26; background: #fdecee; padding: .6em; border-radius: 4px }
.amount { font-size: 1.6em; font-weight: 600 }
table { border-collapse: collapse; font-size: .85em; margin-top: .5em } td { padding: .15em .6em .15em 0 }
.note { color: #6a737d; font-size: .8em; margin-top: 2em }
</style></head><body><main>
{{end}}

{{define "foot"}}<p class="note">{{if .Brand}}{{.Brand}}{{else}}WooshPay{{end}} simulator &middot; test mode: no real card is charged.</p>
</main></body></html>
{{end}}

{{define "setup"}}{{template "head" .}}<h1>Save a card</h1>
<p>Enter the card to use for your future payments.</p>
{{if .Error}}<p id="error" class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" autocomplete="off">
<label for="card_number">Card number</label>
<input id="card_number" name="card_number" type="text" inputmode="numeric" autocomplete="cc-number" placeholder="4242 4242 4242 4242">
<div class="row">
<div><label for="exp_month">Expiry month</label>
<input id="exp_month" name="exp_month" type="text" inputmode="numeric" autocomplete="cc-exp-month" placeholder="MM" value="{{.ExpMonth}}"></div>
<div><label for="exp_year">Expiry year</label>
<input id="exp_year" name="exp_year" type="text" inputmode="numeric" autocomplete="cc-exp-year" placeholder="YYYY" value="{{.ExpYear}}"></div>
<div><label for="cvc">CVC</label>
<input id="cvc" name="cvc" type="text" inputmode="numeric" autocomplete="cc-csc" placeholder="123"></div>
</div>
<button type="submit" id="save">Save card</button>
</form>
<p><a id="cancel" href="{{.CancelURL}}">Cancel</a></p>
<h2>Test cards</h2>
<p>Any future expiry date and any three-digit CVC.</p>
<table id="test-cards">{{range .TestCards}}<tr><td><code>{{.Number}}</code></td><td>{{.Outcome}}</td></tr>{{end}}</table>
{{template "foot" .}}{{end}}

{{define "3ds"}}{{template "head" .}}<h1>Authenticate your payment</h1>
<p>Your bank asks you to confirm this payment.</p>
<p class="amount" id="amount">{{.Amount}}</p>
<p>Payment <code id="payment_intent">{{.PaymentIntent}}</code></p>
<form method="post">
<button type="submit" id="pass" name="result" value="pass">Complete authentication</button>
<button type="submit" id="fail" name="result" value="fail">Fail authentication</button>
</form>
{{template "foot" .}}{{end}}

{{define "message"}}{{template "head" .}}<h1>{{.Title}}</h1>
<p id="message">{{.Message}}</p>
{{if .LinkURL}}<p><a id="back" href="{{.LinkURL}}">{{.LinkText}}</a></p>{{end}}
{{template "foot" .}}{{end}}
`))

// pageView is the data of every hosted page; each template reads its own fields.
type pageView struct {
	Title string
	// Brand names the provider in the footer; empty is WooshPay.
	Brand string
	// message page
	Message, LinkURL, LinkText string
	// setup form
	Error, ExpMonth, ExpYear, CancelURL string
	TestCards                           []testCardRow
	// 3-D Secure challenge
	Amount, PaymentIntent string
}

// renderPage executes a page into a buffer first, so a template error becomes a
// clean 500 instead of half a page.
func renderPage(w http.ResponseWriter, status int, name string, v pageView) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, v); err != nil {
		http.Error(w, "page error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderMessage shows a page with a title, a sentence and an optional link.
func renderMessage(w http.ResponseWriter, status int, title, message, linkURL, linkText string) {
	renderPage(w, status, "message", pageView{Title: title, Message: message, LinkURL: linkURL, LinkText: linkText})
}
