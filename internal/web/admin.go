package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/schedule/period"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// The admin API (admin.listen): the operator actions as JSON under /v1/, for
// named bearer tokens, with an Idempotency-Key on every POST. It calls
// internal/ops, as the CLI does, so an action means the same through either
// door; the audit log names the token. docs/admin-api.md and
// docs/openapi.yaml describe it; a test validates the server against the
// latter.

// Limits and headers of the admin API.
const (
	// MaxAdminBody bounds a request body.
	MaxAdminBody = 64 << 10
	// AdminRequestTTL is how long an Idempotency-Key is remembered.
	AdminRequestTTL = 24 * time.Hour
	// HeaderIdempotencyKey names a POST's idempotency key.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderReplayed is set ("true") on an answer replayed for a repeated
	// Idempotency-Key.
	HeaderReplayed    = "Idempotent-Replayed"
	maxIdempotencyKey = 255
	maxListLimit      = 1000
	maxForecastDays   = 366
)

// AdminSettings are what a reload may change under a running admin API.
type AdminSettings struct {
	TokensFile string
	// RateLimit is requests per second per token.
	RateLimit float64
}

// AdminOptions build the admin API.
type AdminOptions struct {
	Ops   *ops.Service
	Store *store.Store
	Clock clock.Clock
	// Settings is read on every request, so a reload applies to the next one.
	Settings func() AdminSettings
	Log      zerolog.Logger
}

// Admin is the admin API's handler.
type Admin struct {
	opts   AdminOptions
	mux    *http.ServeMux
	tokens adminTokenSet

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// NewAdmin builds the admin API.
func NewAdmin(o AdminOptions) *Admin {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	a := &Admin{opts: o, mux: http.NewServeMux(), limiters: map[string]*rate.Limiter{}}
	routes := []struct {
		pattern string
		fn      func(*http.Request, *adminCall) (int, any, error)
	}{
		{"GET /v1/subscriptions", a.listSubscriptions},
		{"POST /v1/subscriptions", a.createSubscription},
		{"GET /v1/subscriptions/{reference}", a.showSubscription},
		{"POST /v1/subscriptions/{reference}/cancel", a.cancelSubscription},
		{"POST /v1/subscriptions/{reference}/pause", a.pauseSubscription},
		{"POST /v1/subscriptions/{reference}/resume", a.resumeSubscription},
		{"POST /v1/subscriptions/{reference}/update", a.updateSubscription},
		{"GET /v1/invoices", a.listInvoices},
		{"GET /v1/invoices/{number}", a.showInvoice},
		{"POST /v1/invoices/{number}/retry", a.retryInvoice},
		{"POST /v1/invoices/{number}/void", a.voidInvoice},
		{"POST /v1/invoices/{number}/refund", a.refundInvoice},
		{"GET /v1/attempts", a.listAttempts},
		{"POST /v1/attempts/{id}/resolve", a.resolveAttempt},
		{"GET /v1/dunning_cases", a.listCases},
		{"GET /v1/dunning_cases/{id}", a.showCase},
		{"POST /v1/dunning_cases/{id}/stop", a.stopCase},
		{"GET /v1/events", a.listEvents},
		{"GET /v1/events/{id}", a.showEvent},
		{"POST /v1/events/{id}/redeliver", a.redeliverEvent},
		{"GET /v1/reports/revenue", a.revenue},
		{"GET /v1/reports/export", a.export},
		{"GET /v1/forecast", a.forecast},
	}
	for _, rt := range routes {
		fn := rt.fn
		a.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			c := r.Context().Value(adminCallKey{}).(*adminCall)
			status, v, err := fn(r, c)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			adminJSON(w, status, v)
		})
	}
	return a
}

// call is one authenticated request: its token and, for a POST, its key.
type adminCall struct {
	token AdminToken
	key   string
	body  []byte
	// refundID is set by a refund: its admin_requests row names it.
	refundID *int64
}

type adminCallKey struct{}

func (c *adminCall) actor() ops.Actor { return ops.Actor{Name: c.token.Name, Via: models.ViaAdminAPI} }

// refundKey is the refund's own idempotency key: derived from the token and
// the request's key, so the same request retried after its admin_requests
// row expired still names the same refund and is applied once.
func (c *adminCall) refundKey() string {
	sum := sha256.Sum256([]byte("admin-refund\x00" + c.token.Name + "\x00" + c.key))
	return "adm_" + hex.EncodeToString(sum[:20])
}

// apiError is every error answer's body.
type adminError struct {
	Error adminErrorBody `json:"error"`
}

type adminErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Value   string `json:"value,omitempty"`
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func adminFail(w http.ResponseWriter, status int, code, msg string) {
	adminJSON(w, status, adminError{adminErrorBody{Code: code, Message: msg}})
}

// writeError maps an error to its status: a FieldError is 400 naming the
// field, ErrNotFound 404, ErrConflict 409, anything else 500 without its
// text (which may name internals), logged instead.
func (a *Admin) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *ops.FieldError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		adminFail(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the request body is larger than %d bytes", MaxAdminBody))
	case errors.Is(err, ops.ErrKeyReused):
		// The refund's own key (derived from the Idempotency-Key) outlives
		// the 24 h request record: the same key with other terms days later
		// is refused like a reuse within the day.
		adminJSON(w, http.StatusUnprocessableEntity, adminError{adminErrorBody{Code: "idempotency_key_reused", Message: err.Error(), Field: "Idempotency-Key"}})
	case errors.As(err, &fe):
		adminJSON(w, http.StatusBadRequest, adminError{adminErrorBody{Code: "invalid_field", Message: fe.Error(), Field: fe.Field, Value: fe.Value}})
	case errors.Is(err, ops.ErrNotFound):
		adminFail(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ops.ErrConflict):
		adminFail(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ops.ErrGatewayUnavailable):
		a.opts.Log.Warn().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("admin API: the gateway could not be asked")
		w.Header().Set("Retry-After", "5")
		adminFail(w, http.StatusServiceUnavailable, "gateway_unavailable", ops.ErrGatewayUnavailable.Error())
	default:
		a.opts.Log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("admin API request failed")
		adminFail(w, http.StatusInternalServerError, "internal", "internal error; the server log has the details")
	}
}

// ServeHTTP authenticates, rate-limits and, for a POST, applies the
// Idempotency-Key before the route runs.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	set := a.opts.Settings()
	tok, ok := a.authenticate(w, r, set)
	if !ok {
		return
	}
	if !a.allow(w, tok.Name, set.RateLimit) {
		return
	}
	if _, pattern := a.mux.Handler(r); pattern == "" {
		// Not a route (404) or not its method (405): the mux's status, as JSON.
		rec := newBuffered()
		a.mux.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		adminFail(w, rec.Code, "no_route", fmt.Sprintf("%s %s is not a route of the admin API (docs/admin-api.md)", r.Method, r.URL.Path))
		return
	}
	c := &adminCall{token: tok}
	if r.Method != http.MethodPost {
		a.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), adminCallKey{}, c)))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxAdminBody))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	c.body = body
	key := r.Header.Get(HeaderIdempotencyKey)
	if msg := checkIdempotencyKey(key); msg != "" {
		adminJSON(w, http.StatusBadRequest, adminError{adminErrorBody{Code: "idempotency_key", Message: HeaderIdempotencyKey + " " + msg, Field: HeaderIdempotencyKey}})
		return
	}
	c.key = key
	a.idempotent(w, r, c)
}

// checkIdempotencyKey says what is wrong with a key, "" if nothing.
func checkIdempotencyKey(key string) string {
	switch {
	case key == "":
		return "header is required on every POST (a unique value per intended action, such as a UUID)"
	case len(key) > maxIdempotencyKey:
		return fmt.Sprintf("is longer than %d characters", maxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return "must be printable ASCII without spaces"
		}
	}
	return ""
}

// idempotent runs a POST once per (token, key): the same key and body
// replay the first answer byte for byte, another body is 422, a key still in
// flight 409. A server error is not remembered, so a retry runs again.
func (a *Admin) idempotent(w http.ResponseWriter, r *http.Request, c *adminCall) {
	ctx := r.Context()
	st := a.opts.Store
	now := a.opts.Clock.Now()
	hash := AdminRequestHash(r.Method, r.URL.RequestURI(), c.body)
	if _, err := st.PruneAdminRequests(ctx, now, 100); err != nil {
		a.opts.Log.Warn().Err(err).Msg("admin API: pruning expired idempotency keys failed")
	}
	row, begun, err := st.BeginAdminRequest(ctx, now, c.token.Name, c.key, hash, r.Method, r.URL.Path, now.Add(AdminRequestTTL))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if !begun {
		switch {
		case row.RequestHash != hash:
			adminJSON(w, http.StatusUnprocessableEntity, adminError{adminErrorBody{Code: "idempotency_key_reused", Field: HeaderIdempotencyKey,
				Message: "this " + HeaderIdempotencyKey + " was used for another request (method, path or body differ); use a new key for a new action"}})
		case row.StatusCode == 0:
			w.Header().Set("Retry-After", "1")
			adminJSON(w, http.StatusConflict, adminError{adminErrorBody{Code: "request_in_flight", Field: HeaderIdempotencyKey,
				Message: "a request with this " + HeaderIdempotencyKey + " is still being processed; retry later for its answer"}})
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set(HeaderReplayed, "true")
			w.WriteHeader(row.StatusCode)
			_, _ = io.WriteString(w, row.ResponseBody)
		}
		return
	}
	rec := newBuffered()
	r.Body = io.NopCloser(bytes.NewReader(c.body))
	a.mux.ServeHTTP(rec, r.WithContext(context.WithValue(ctx, adminCallKey{}, c)))
	// The outcome is recorded even when the client went away meanwhile.
	done := context.WithoutCancel(ctx)
	if rec.Code >= 500 {
		if err := st.ForgetAdminRequest(done, row.ID); err != nil {
			a.opts.Log.Error().Err(err).Msg("admin API: dropping a failed request's idempotency key failed")
		}
	} else {
		// A refund's row expires like any other: the refund's own key
		// (derived from this one) keeps a retry days later to one refund.
		expires := now.Add(AdminRequestTTL)
		if err := st.FinishAdminRequest(done, a.opts.Clock.Now(), row.ID, rec.Code, rec.Body.String(), c.refundID, &expires); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	a.opts.Log.Info().Str("token", c.token.Name).Str("method", r.Method).Str("path", r.URL.Path).Int("status", rec.Code).
		Msg("admin API action")
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// buffered holds an answer until it is recorded under its Idempotency-Key
// (or its status is known), then is copied to the client.
type buffered struct {
	header http.Header
	Code   int
	Body   bytes.Buffer
	wrote  bool
}

func newBuffered() *buffered { return &buffered{header: http.Header{}, Code: http.StatusOK} }

func (b *buffered) Header() http.Header { return b.header }

func (b *buffered) WriteHeader(code int) {
	if !b.wrote {
		b.Code, b.wrote = code, true
	}
}

func (b *buffered) Write(p []byte) (int, error) {
	b.wrote = true
	return b.Body.Write(p)
}

// AdminRequestHash is what an Idempotency-Key is bound to: the method, the
// path with its query, and the body, byte for byte.
func AdminRequestHash(method, requestURI string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + "\n" + requestURI + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// authenticate finds the live token of an "Authorization: Bearer …" header
// and answers 401 for a missing, malformed, unknown or revoked one.
func (a *Admin) authenticate(w http.ResponseWriter, r *http.Request, set AdminSettings) (AdminToken, bool) {
	deny := func(msg string) (AdminToken, bool) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="billingd-admin"`)
		adminFail(w, http.StatusUnauthorized, "unauthorized", msg)
		return AdminToken{}, false
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return deny("an Authorization: Bearer <token> header is required")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(token, TokenPrefix) || len(token) > 200 {
		return deny("the Authorization header must be Bearer " + TokenPrefix + "…")
	}
	t, found, err := a.tokens.lookup(set.TokensFile, token)
	if err != nil {
		a.opts.Log.Error().Err(err).Msg("admin API: cannot read admin.tokens_file; every request is refused")
		adminFail(w, http.StatusInternalServerError, "internal", "the server cannot read its tokens; the server log has the details")
		return AdminToken{}, false
	}
	if !found {
		return deny("the token is not valid (unknown or revoked)")
	}
	return t, true
}

// allow spends one request of the token's rate limit, answering 429 with
// Retry-After when none is left.
func (a *Admin) allow(w http.ResponseWriter, name string, limit float64) bool {
	if !(limit > 0) {
		limit = 20
	}
	burst := int(math.Max(1, math.Ceil(limit)))
	a.mu.Lock()
	l, ok := a.limiters[name]
	if !ok {
		l = rate.NewLimiter(rate.Limit(limit), burst)
		a.limiters[name] = l
	} else if float64(l.Limit()) != limit {
		l.SetLimit(rate.Limit(limit))
		l.SetBurst(burst)
	}
	a.mu.Unlock()
	if l.Allow() {
		return true
	}
	res := l.Reserve()
	delay := res.Delay()
	res.Cancel()
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Max(1, math.Ceil(delay.Seconds())))))
	adminFail(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("more than %g requests per second for token %s (admin.rate_limit)", limit, name))
	return false
}

// decode reads a JSON object body into v: unknown fields and wrong types are
// FieldErrors naming the field; an empty body is an empty object.
func adminDecode(c *adminCall, v any) error {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(c.body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return &ops.FieldError{Field: "body", Message: "must be one JSON object"}
		}
		if _, err := dec.Token(); err != io.EOF {
			return &ops.FieldError{Field: "body", Message: "must be one JSON object"}
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return &ops.FieldError{Field: name, Message: "is not a field of this request (docs/admin-api.md)"}
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return &ops.FieldError{Field: field, Message: "must be a JSON " + adminJSONKind(te.Type.Kind().String()) + ", not a JSON " + te.Value}
	case errors.As(err, &se):
		return &ops.FieldError{Field: "body", Message: fmt.Sprintf("is not valid JSON (at byte %d): %v", se.Offset, se)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &ops.FieldError{Field: "body", Message: "is not valid JSON: it ends early"}
	}
	return &ops.FieldError{Field: "body", Message: "is not a valid request: " + err.Error()}
}

func adminJSONKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"), strings.HasPrefix(goKind, "float"):
		return "number"
	case goKind == "bool":
		return "boolean"
	case goKind == "string":
		return "string"
	case goKind == "struct", goKind == "map":
		return "object"
	case goKind == "slice":
		return "array"
	}
	return goKind
}

// query checks a GET's query parameters against the route's known ones.
func adminQuery(r *http.Request, known ...string) (url.Values, error) {
	q := r.URL.Query()
	for k := range q {
		ok := false
		for _, n := range known {
			ok = ok || k == n
		}
		if !ok {
			return nil, &ops.FieldError{Field: k, Message: "is not a query parameter of this route; known: " + strings.Join(known, ", ")}
		}
	}
	return q, nil
}

var adminFilterParams = []string{"status", "customer", "reference", "from", "to", "limit"}

// filter reads a listing's filters.
func adminFilter(r *http.Request) (ops.Filter, error) {
	q, err := adminQuery(r, adminFilterParams...)
	if err != nil {
		return ops.Filter{}, err
	}
	var f ops.Filter
	for _, s := range q["status"] {
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				f.Status = append(f.Status, part)
			}
		}
	}
	f.Customer, f.Reference = q.Get("customer"), q.Get("reference")
	if f.From, err = adminTimeParam(q, "from", time.UTC); err != nil {
		return f, err
	}
	if f.To, err = adminTimeParam(q, "to", time.UTC); err != nil {
		return f, err
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			return f, &ops.FieldError{Field: "limit", Value: s, Message: fmt.Sprintf("must be a whole number from 1 to %d", maxListLimit)}
		}
		f.Limit = n
	}
	return f, nil
}

// timeParam reads an RFC 3339 time or a YYYY-MM-DD date (its midnight in
// loc); nil when absent.
func adminTimeParam(q url.Values, name string, loc *time.Location) (*time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		t = t.UTC()
		return &t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, loc); err == nil {
		t = t.UTC()
		return &t, nil
	}
	return nil, &ops.FieldError{Field: name, Value: s, Message: "must be an RFC 3339 time (2026-03-01T00:00:00Z) or a date (2026-03-01)"}
}

func adminZoneParam(q url.Values) (*time.Location, error) {
	name := q.Get("tz")
	if name == "" {
		return time.UTC, nil
	}
	loc, err := period.LoadZone(name)
	if err != nil {
		return nil, &ops.FieldError{Field: "tz", Value: name, Message: "must be an IANA time zone name such as UTC or Europe/Berlin"}
	}
	return loc, nil
}

func adminIDParam(r *http.Request) (int64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, &ops.FieldError{Field: "id", Value: s, Message: "must be a positive whole number"}
	}
	return id, nil
}

// list wraps a listing.
type adminList[T any] struct {
	Data []T `json:"data"`
}

func adminListOf[T any](rows []T, err error) (int, any, error) {
	if err != nil {
		return 0, nil, err
	}
	if rows == nil {
		rows = []T{}
	}
	return http.StatusOK, adminList[T]{Data: rows}, nil
}

func adminOK(v any, err error) (int, any, error) {
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v, nil
}

// adminReason is the body of the actions that take nothing but a reason.
type adminReason struct {
	Reason string `json:"reason"`
}

func (a *Admin) listSubscriptions(r *http.Request, c *adminCall) (int, any, error) {
	f, err := adminFilter(r)
	if err != nil {
		return 0, nil, err
	}
	return adminListOf(a.opts.Ops.ListSubscriptions(r.Context(), f))
}

// adminCreateRequest is POST /v1/subscriptions; the anchor is read here, so that
// a bad one is a field error naming it.
type adminCreateRequest struct {
	Reference         string `json:"reference"`
	Email             string `json:"email"`
	Customer          string `json:"customer"`
	PaymentMethod     string `json:"payment_method"`
	PreviousPaymentID string `json:"previous_payment_id"`
	Amount            int64  `json:"amount"`
	Currency          string `json:"currency"`
	Interval          string `json:"interval"`
	IntervalCount     int    `json:"interval_count"`
	Anchor            string `json:"anchor"`
	Timezone          string `json:"timezone"`
	Description       string `json:"description"`
}

// created is POST /v1/subscriptions' answer.
type adminCreated struct {
	Subscription *ops.Subscription `json:"subscription"`
	Created      bool              `json:"created"`
}

func (a *Admin) createSubscription(r *http.Request, c *adminCall) (int, any, error) {
	var req adminCreateRequest
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	anchor, err := time.Parse(time.RFC3339, req.Anchor)
	if err != nil {
		return 0, nil, &ops.FieldError{Field: "anchor", Value: req.Anchor, Message: "must be an RFC 3339 time such as 2026-01-31T09:00:00Z"}
	}
	sub, made, err := a.opts.Ops.CreateSubscription(r.Context(), c.actor(), ops.NewSubscription{
		Reference: req.Reference, Email: req.Email, Customer: req.Customer, PaymentMethod: req.PaymentMethod,
		PreviousPaymentID: req.PreviousPaymentID, Amount: req.Amount, Currency: req.Currency, Interval: req.Interval,
		IntervalCount: req.IntervalCount, Anchor: anchor, Timezone: req.Timezone, Description: req.Description,
	})
	if err != nil {
		return 0, nil, err
	}
	status := http.StatusOK
	if made {
		status = http.StatusCreated
	}
	return status, adminCreated{Subscription: sub, Created: made}, nil
}

func (a *Admin) showSubscription(r *http.Request, c *adminCall) (int, any, error) {
	if _, err := adminQuery(r); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.SubscriptionStoryOf(r.Context(), r.PathValue("reference")))
}

type adminCancelRequest struct {
	Reason      string `json:"reason"`
	AtPeriodEnd bool   `json:"at_period_end"`
}

func (a *Admin) cancelSubscription(r *http.Request, c *adminCall) (int, any, error) {
	var req adminCancelRequest
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.CancelSubscription(r.Context(), c.actor(), r.PathValue("reference"), req.Reason, ops.CancelOptions{AtPeriodEnd: req.AtPeriodEnd}))
}

func (a *Admin) pauseSubscription(r *http.Request, c *adminCall) (int, any, error) {
	var req adminReason
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.PauseSubscription(r.Context(), c.actor(), r.PathValue("reference"), req.Reason))
}

func (a *Admin) resumeSubscription(r *http.Request, c *adminCall) (int, any, error) {
	var req adminReason
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.ResumeSubscription(r.Context(), c.actor(), r.PathValue("reference"), req.Reason))
}

type adminUpdateRequest struct {
	Reason            string  `json:"reason"`
	Amount            *int64  `json:"amount"`
	Description       *string `json:"description"`
	PaymentMethod     *string `json:"payment_method"`
	PreviousPaymentID *string `json:"previous_payment_id"`
	Email             *string `json:"email"`
}

func (a *Admin) updateSubscription(r *http.Request, c *adminCall) (int, any, error) {
	var req adminUpdateRequest
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	if req.Amount == nil && req.Description == nil && req.PaymentMethod == nil && req.PreviousPaymentID == nil && req.Email == nil {
		return 0, nil, &ops.FieldError{Field: "body", Message: "names nothing to change: give amount, description, payment_method (with previous_payment_id on Checkout.com) or email"}
	}
	return adminOK(a.opts.Ops.UpdateSubscription(r.Context(), c.actor(), r.PathValue("reference"), req.Reason, ops.SubscriptionUpdate{
		Amount: req.Amount, Description: req.Description, PaymentMethod: req.PaymentMethod, PreviousPaymentID: req.PreviousPaymentID, Email: req.Email,
	}))
}

func (a *Admin) listInvoices(r *http.Request, c *adminCall) (int, any, error) {
	f, err := adminFilter(r)
	if err != nil {
		return 0, nil, err
	}
	return adminListOf(a.opts.Ops.ListInvoices(r.Context(), f))
}

func (a *Admin) showInvoice(r *http.Request, c *adminCall) (int, any, error) {
	if _, err := adminQuery(r); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.InvoiceStoryOf(r.Context(), r.PathValue("number")))
}

func (a *Admin) retryInvoice(r *http.Request, c *adminCall) (int, any, error) {
	var req adminReason
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.RetryInvoice(r.Context(), c.actor(), r.PathValue("number"), req.Reason))
}

func (a *Admin) voidInvoice(r *http.Request, c *adminCall) (int, any, error) {
	var req adminReason
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.VoidInvoice(r.Context(), c.actor(), r.PathValue("number"), req.Reason))
}

type adminRefundRequest struct {
	Reason string `json:"reason"`
	// Amount in minor units, at least 1; absent refunds what is left (an
	// explicit 0 is refused, so a client's zero value never becomes a full
	// refund).
	Amount       *int64 `json:"amount"`
	RefundReason string `json:"refund_reason"`
}

func (a *Admin) refundInvoice(r *http.Request, c *adminCall) (int, any, error) {
	var req adminRefundRequest
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	var amount int64
	if req.Amount != nil {
		if amount = *req.Amount; amount < 1 {
			return 0, nil, &ops.FieldError{Field: "amount", Value: strconv.FormatInt(amount, 10), Message: "must be at least 1 (minor units); leave it out to refund what is left"}
		}
	}
	switch models.RefundReason(req.RefundReason) {
	case "", models.RefundReasonRequestedByCustomer, models.RefundReasonFraudulent:
	default:
		return 0, nil, &ops.FieldError{Field: "refund_reason", Value: req.RefundReason, Message: "must be requested_by_customer or fraudulent"}
	}
	rf, err := a.opts.Ops.RefundInvoice(r.Context(), c.actor(), r.PathValue("number"), req.Reason,
		ops.RefundOptions{Amount: amount, Reason: models.RefundReason(req.RefundReason), Key: c.refundKey()})
	if err != nil {
		return 0, nil, err
	}
	if rf != nil && rf.ID != 0 {
		id := rf.ID
		c.refundID = &id
	}
	return http.StatusOK, rf, nil
}

func (a *Admin) listAttempts(r *http.Request, c *adminCall) (int, any, error) {
	f, err := adminFilter(r)
	if err != nil {
		return 0, nil, err
	}
	return adminListOf(a.opts.Ops.ListAttempts(r.Context(), f))
}

type adminResolveRequest struct {
	Reason     string `json:"reason"`
	MarkFailed bool   `json:"mark_failed"`
}

func (a *Admin) resolveAttempt(r *http.Request, c *adminCall) (int, any, error) {
	id, err := adminIDParam(r)
	if err != nil {
		return 0, nil, err
	}
	var req adminResolveRequest
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.ResolveAttempt(r.Context(), c.actor(), id, req.Reason, req.MarkFailed))
}

func (a *Admin) listCases(r *http.Request, c *adminCall) (int, any, error) {
	f, err := adminFilter(r)
	if err != nil {
		return 0, nil, err
	}
	return adminListOf(a.opts.Ops.ListCases(r.Context(), f))
}

func (a *Admin) showCase(r *http.Request, c *adminCall) (int, any, error) {
	id, err := adminIDParam(r)
	if err != nil {
		return 0, nil, err
	}
	if _, err := adminQuery(r); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.CaseStoryOf(r.Context(), id))
}

func (a *Admin) stopCase(r *http.Request, c *adminCall) (int, any, error) {
	id, err := adminIDParam(r)
	if err != nil {
		return 0, nil, err
	}
	var req adminReason
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.StopDunning(r.Context(), c.actor(), id, req.Reason))
}

// listEvents is GET /v1/events: the events to the merchant's systems,
// oldest first; after=<evt_ id> pages on from the last one of a page.
func (a *Admin) listEvents(r *http.Request, c *adminCall) (int, any, error) {
	q, err := adminQuery(r, "type", "status", "subscription", "object", "from", "to", "limit", "after")
	if err != nil {
		return 0, nil, err
	}
	f := ops.EventFilter{Subscription: q.Get("subscription"), Object: q.Get("object"), After: q.Get("after")}
	for _, name := range []string{"type", "status"} {
		for _, v := range q[name] {
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part == "" {
					continue
				}
				if name == "type" {
					f.Types = append(f.Types, part)
				} else {
					f.Statuses = append(f.Statuses, part)
				}
			}
		}
	}
	if f.From, err = adminTimeParam(q, "from", time.UTC); err != nil {
		return 0, nil, err
	}
	if f.To, err = adminTimeParam(q, "to", time.UTC); err != nil {
		return 0, nil, err
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			return 0, nil, &ops.FieldError{Field: "limit", Value: s, Message: fmt.Sprintf("must be a whole number from 1 to %d", maxListLimit)}
		}
		f.Limit = n
	}
	return adminListOf(a.opts.Ops.ListEvents(r.Context(), f))
}

func (a *Admin) showEvent(r *http.Request, c *adminCall) (int, any, error) {
	if _, err := adminQuery(r); err != nil {
		return 0, nil, err
	}
	return adminOK(a.opts.Ops.EventOf(r.Context(), r.PathValue("id")))
}

// redeliverEvent is POST /v1/events/{id}/redeliver: the event POSTed again
// to events.url now. The answer says what the receiver answered (200 even
// when it refused: the redelivery ran and is recorded); its Idempotency-Key
// keeps a client's retry to one redelivery.
func (a *Admin) redeliverEvent(r *http.Request, c *adminCall) (int, any, error) {
	var req adminReason
	if err := adminDecode(c, &req); err != nil {
		return 0, nil, err
	}
	rs, err := a.opts.Ops.RedeliverEvents(r.Context(), c.actor(), req.Reason, ops.EventSelection{IDs: []string{r.PathValue("id")}})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, rs[0], nil
}

// adminRevenue is GET /v1/reports/revenue's answer.
type adminRevenue struct {
	From     time.Time        `json:"from"`
	To       time.Time        `json:"to"`
	Timezone string           `json:"timezone"`
	Rows     []ops.RevenueRow `json:"rows"`
}

func (a *Admin) revenue(r *http.Request, c *adminCall) (int, any, error) {
	from, to, loc, err := adminReportRange(r)
	if err != nil {
		return 0, nil, err
	}
	rows, err := a.opts.Ops.Revenue(r.Context(), from, to)
	if err != nil {
		return 0, nil, err
	}
	if rows == nil {
		rows = []ops.RevenueRow{}
	}
	return http.StatusOK, adminRevenue{From: from, To: to, Timezone: loc.String(), Rows: rows}, nil
}

// adminReportRange reads a report's range: month=YYYY-MM, or from and to
// together, in tz (UTC by default).
func adminReportRange(r *http.Request) (from, to time.Time, loc *time.Location, err error) {
	q, err := adminQuery(r, "from", "to", "month", "tz")
	if err != nil {
		return from, to, nil, err
	}
	loc, err = adminZoneParam(q)
	if err != nil {
		return from, to, nil, err
	}
	if m := q.Get("month"); m != "" {
		if q.Get("from") != "" || q.Get("to") != "" {
			return from, to, nil, &ops.FieldError{Field: "month", Value: m, Message: "excludes from and to"}
		}
		start, err := time.ParseInLocation("2006-01", m, loc)
		if err != nil {
			return from, to, nil, &ops.FieldError{Field: "month", Value: m, Message: "must be YYYY-MM"}
		}
		return start.UTC(), start.AddDate(0, 1, 0).UTC(), loc, nil
	}
	f, err := adminTimeParam(q, "from", loc)
	if err != nil {
		return from, to, nil, err
	}
	t, err := adminTimeParam(q, "to", loc)
	if err != nil {
		return from, to, nil, err
	}
	if f == nil || t == nil {
		return from, to, nil, &ops.FieldError{Field: "month", Message: "give month=YYYY-MM, or both from and to"}
	}
	if !t.After(*f) {
		return from, to, nil, &ops.FieldError{Field: "to", Value: q.Get("to"), Message: "must be after from"}
	}
	return *f, *t, loc, nil
}

// adminExport is GET /v1/reports/export's answer: the accounting export's
// rows (the columns of `billingd report export --csv`) and their totals per
// currency, which are GET /v1/reports/revenue's rows for the same range.
type adminExport struct {
	From     time.Time        `json:"from"`
	To       time.Time        `json:"to"`
	Timezone string           `json:"timezone"`
	Rows     []ops.ExportRow  `json:"rows"`
	Totals   []ops.RevenueRow `json:"totals"`
}

func (a *Admin) export(r *http.Request, c *adminCall) (int, any, error) {
	from, to, loc, err := adminReportRange(r)
	if err != nil {
		return 0, nil, err
	}
	rows := []ops.ExportRow{}
	totals, err := a.opts.Ops.Export(r.Context(), from, to, func(row ops.ExportRow) error {
		rows = append(rows, row)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, adminExport{From: from, To: to, Timezone: loc.String(), Rows: rows, Totals: totals}, nil
}

// adminForecast is GET /v1/forecast's answer.
type adminForecast struct {
	Days     int               `json:"days"`
	Timezone string            `json:"timezone"`
	Rows     []ops.ForecastRow `json:"rows"`
}

func (a *Admin) forecast(r *http.Request, c *adminCall) (int, any, error) {
	q, err := adminQuery(r, "days", "tz")
	if err != nil {
		return 0, nil, err
	}
	loc, err := adminZoneParam(q)
	if err != nil {
		return 0, nil, err
	}
	days := 30
	if s := q.Get("days"); s != "" {
		if days, err = strconv.Atoi(s); err != nil || days < 1 || days > maxForecastDays {
			return 0, nil, &ops.FieldError{Field: "days", Value: s, Message: fmt.Sprintf("must be a whole number from 1 to %d", maxForecastDays)}
		}
	}
	rows, err := a.opts.Ops.Forecast(r.Context(), a.opts.Clock.Now(), days, loc)
	if err != nil {
		return 0, nil, err
	}
	if rows == nil {
		rows = []ops.ForecastRow{}
	}
	return http.StatusOK, adminForecast{Days: days, Timezone: loc.String(), Rows: rows}, nil
}
