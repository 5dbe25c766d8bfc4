package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// controlRoutes serves everything outside /v1/: the /_sim/ control plane (no
// auth, never faulted), the 3-D Secure challenge page and /healthz.
func (s *Server) controlRoutes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	m.HandleFunc("GET /_sim/ledger", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Ledger()))
	})
	m.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Stats()))
	})
	m.HandleFunc("GET /_sim/events", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Events()))
	})
	m.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.Faults()))
	})
	m.HandleFunc("PUT /_sim/faults", s.putFaults)
	m.HandleFunc("GET /_sim/webhooks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(s.WebhookDelivery()))
	})
	m.HandleFunc("PUT /_sim/webhooks", s.putWebhooks)
	m.HandleFunc("POST /_sim/settle", func(w http.ResponseWriter, _ *http.Request) {
		s.SettleDue()
		writeJSON(w, http.StatusOK, []byte(`{"ok":true}`))
	})
	m.HandleFunc("POST /_sim/payment_intents/{id}/challenge", s.postChallenge)
	m.HandleFunc("GET /3ds/{id}", s.challengePage)
	m.HandleFunc("POST /3ds/{id}", s.challengeSubmit)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody(apiError{
			Type: "invalid_request_error", Message: "Unrecognized request URL (" + r.Method + ": " + r.URL.Path + ").",
		}))
	})
	return m
}

func controlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody(apiError{Type: "invalid_request_error", Message: msg}))
}

func (s *Server) putFaults(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		controlError(w, http.StatusBadRequest, "could not read body")
		return
	}
	var j faultsJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		controlError(w, http.StatusBadRequest, "invalid faults: "+err.Error())
		return
	}
	f := j.faults()
	if err := f.Validate(); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.SetFaults(f)
	s.logf("sim: faults set to %s", mustJSON(f))
	writeJSON(w, http.StatusOK, mustJSON(f))
}

// putWebhooks replaces the delivery modes (SetWebhookDelivery), including
// "enabled", which is true when omitted. "workers" may be omitted or repeat the
// current value, since the workers are started once.
func (s *Server) putWebhooks(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		controlError(w, http.StatusBadRequest, "could not read body")
		return
	}
	var j deliveryJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		controlError(w, http.StatusBadRequest, "invalid webhook delivery: "+err.Error())
		return
	}
	d := j.delivery()
	if err := d.Validate(); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if cur := s.WebhookDelivery().Workers; d.Workers != 0 && d.Workers != cur {
		controlError(w, http.StatusBadRequest, string(FieldWebhookWorkers)+": cannot change at runtime (is "+strconv.Itoa(cur)+")")
		return
	}
	s.SetWebhookDelivery(d)
	d = s.WebhookDelivery()
	s.logf("sim: webhook delivery set to %s", mustJSON(d))
	writeJSON(w, http.StatusOK, mustJSON(d))
}

func (s *Server) postChallenge(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var err error
	switch r.URL.Query().Get("result") {
	case "pass":
		err = s.PassChallenge(id)
	case "fail":
		err = s.FailChallenge(id)
	default:
		controlError(w, http.StatusBadRequest, "result must be pass or fail")
		return
	}
	switch {
	case errors.Is(err, ErrNotFound):
		controlError(w, http.StatusNotFound, "No such payment_intent: '"+id+"'")
	case err != nil:
		controlError(w, http.StatusConflict, err.Error())
	default:
		writeJSON(w, http.StatusOK, s.intentJSON(id))
	}
}

func (s *Server) intentJSON(id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mustJSON(s.intents[id].wire())
}

var challengeTemplate = template.Must(template.New("3ds").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>3-D Secure (simulator)</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>3-D Secure</h1>
<p>WooshPay simulator: payment <code>{{.ID}}</code> of {{.Amount}} {{.Currency}} (minor units).</p>
{{if .Pending}}<form method="post">
<button name="result" value="pass">Pass authentication</button>
<button name="result" value="fail">Fail authentication</button>
</form>{{else}}<p>This payment is <b>{{.Status}}</b>; there is nothing to authenticate.</p>
{{if .ReturnURL}}<p><a href="{{.ReturnURL}}">Return to the merchant</a></p>{{end}}{{end}}
</body></html>
`))

type challengeView struct {
	ID, Currency, Status, ReturnURL string
	Amount                          int64
	Pending                         bool
}

func (s *Server) challengeView(id string) (challengeView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi := s.intents[id]
	if pi == nil {
		return challengeView{}, false
	}
	return challengeView{
		ID: pi.id, Currency: pi.currency, Status: pi.status, ReturnURL: pi.returnURL,
		Amount: pi.amount, Pending: pi.status == statusRequiresAction,
	}, true
}

func (s *Server) challengePage(w http.ResponseWriter, r *http.Request) {
	v, found := s.challengeView(r.PathValue("id"))
	if !found {
		http.Error(w, "no such payment", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = challengeTemplate.Execute(w, v)
}

// challengeSubmit is the page's button: it passes or fails the challenge and
// sends the customer back to return_url, as the issuer's page would, with the
// payment_intent and redirect_status query parameters Stripe adds.
func (s *Server) challengeSubmit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var err error
	redirectStatus := "succeeded"
	switch r.FormValue("result") {
	case "pass":
		err = s.PassChallenge(id)
	case "fail":
		err = s.FailChallenge(id)
		redirectStatus = "failed"
	default:
		http.Error(w, "result must be pass or fail", http.StatusBadRequest)
		return
	}
	if errors.Is(err, ErrNotFound) {
		http.Error(w, "no such payment", http.StatusNotFound)
		return
	}
	v, _ := s.challengeView(id)
	if err != nil || v.ReturnURL == "" {
		// Already handled, or nowhere to go back to: show the current state.
		s.challengePage(w, r)
		return
	}
	u, perr := url.Parse(v.ReturnURL)
	if perr != nil {
		s.challengePage(w, r)
		return
	}
	q := u.Query()
	q.Set("payment_intent", id)
	q.Set("redirect_status", redirectStatus)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}
