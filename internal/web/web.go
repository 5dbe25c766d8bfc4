// Package web serves billingd's HTTP surface on http.listen: health and readiness
// for systemd and load balancers (and, as they arrive, webhooks, pay pages and
// metrics).
package web

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Check is one readiness condition; it returns nil when ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Server is the HTTP handler set.
type Server struct {
	mux    *http.ServeMux
	checks []Check
}

// New builds the handler with its readiness checks (database reachable,
// migrations current, scheduler alive).
func New(checks ...Check) *Server {
	s := &Server{mux: http.NewServeMux(), checks: checks}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s
}

// Handle mounts another route (webhooks, pay pages, metrics).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// healthz answers 200 while the process serves HTTP: liveness, nothing more.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz runs every check with a short deadline and answers 503 naming the failed
// ones, so an operator sees at once what is wrong.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	result := map[string]string{}
	ok := true
	for _, c := range s.checks {
		if err := c.Fn(ctx); err != nil {
			result[c.Name] = err.Error()
			ok = false
		} else {
			result[c.Name] = "ok"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": result})
}
