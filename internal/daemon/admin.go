package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/billingd/billingd/internal/web"
)

// The admin API's listener (admin.listen), served beside http.listen by Run.

func init() {
	// The admin listener's socket and certificate are opened at start;
	// admin.tokens_file and admin.rate_limit are read per request and apply
	// at once on reload.
	restartKeys = append(restartKeys, "admin.listen", "admin.tls_cert_file", "admin.tls_key_file")
}

// AdminServer is the running admin API listener.
type AdminServer struct {
	srv    *http.Server
	ln     net.Listener
	tls    bool
	served chan struct{}
}

// Addr is the address it listens on (the port chosen for ":0").
func (s *AdminServer) Addr() net.Addr { return s.ln.Addr() }

// TLS reports whether it serves HTTPS.
func (s *AdminServer) TLS() bool { return s.tls }

// URL is the API's base URL (scheme and address).
func (s *AdminServer) URL() string {
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	return scheme + "://" + s.ln.Addr().String()
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// and waits for the server to stop.
func (s *AdminServer) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.served
	return err
}

// AdminHandler is the admin API as the listener serves it: the operator
// actions of this daemon under the token file and rate limit in force.
func (d *Daemon) AdminHandler() http.Handler {
	return d.refuseWhileNotClaiming(web.NewAdmin(web.AdminOptions{
		Ops:   d.ops,
		Store: d.store,
		Clock: d.clock,
		Settings: func() web.AdminSettings {
			a := d.Config().Admin
			return web.AdminSettings{TokensFile: a.TokensFile, RateLimit: a.RateLimit}
		},
		Log: d.log.With().Str("component", "admin").Logger(),
	}), true)
}

// StartAdmin listens on admin.listen (HTTPS when admin.tls_cert_file and
// admin.tls_key_file are set) and serves the admin API until Shutdown. It
// returns nil, nil when admin.listen is empty. Run calls it; a test calls
// it to reach the same listener on a real port.
func (d *Daemon) StartAdmin() (*AdminServer, error) {
	cfg := d.Config().Admin
	if !cfg.Enabled() {
		return nil, nil
	}
	if d.opts.Operator {
		return nil, errors.New("admin.listen: an operator process serves no admin API")
	}
	srv := &http.Server{Handler: d.AdminHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w", cfg.Listen, err)
	}
	s := &AdminServer{srv: srv, ln: ln, served: make(chan struct{})}
	if cfg.TLS() {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("admin.tls_cert_file %s / admin.tls_key_file %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.tls = true
	}
	go func() {
		defer close(s.served)
		var err error
		if s.tls {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error().Err(err).Msg("admin API server stopped")
		}
	}()
	d.log.Info().Str("listen", ln.Addr().String()).Bool("tls", s.tls).Msg("admin API listening")
	return s, nil
}
