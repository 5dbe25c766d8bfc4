package apicall

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway/budget"
	"github.com/stretchr/testify/require"
)

// TestDefaultHTTPClientChecksRightBeforeWriting: a leased request whose
// check still passed when the caller ran it, and fails by the time the
// connection is about to write (a process paused in between), leaves
// nothing at the server, on a fresh connection and on a reused one, over
// plain HTTP and TLS; the caller gets the check's own error.
func TestDefaultHTTPClientChecksRightBeforeWriting(t *testing.T) {
	errLost := errors.New("the lease ran out")
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tls]
		t.Run(name, func(t *testing.T) {
			var got atomic.Int32
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1); w.WriteHeader(http.StatusOK) })
			srv := httptest.NewUnstartedServer(h)
			hc := DefaultHTTPClient(5 * time.Second)
			if tls {
				srv.StartTLS()
				hc.Transport.(*http.Transport).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
			} else {
				srv.Start()
			}
			t.Cleanup(srv.Close)
			send := func(check func() error) Answer {
				ctx := context.Background()
				if check != nil {
					ctx = budget.WithSendCheck(ctx, check)
				}
				return Do(ctx, hc, 5*time.Second, Request{Method: http.MethodPost, URL: srv.URL, Body: map[string]int{"amount": 1},
					IdempotencyHeader: "Idempotency-Key", IdempotencyKey: "k"}, Limits{MaxBody: 1 << 10, MaxDrain: 1 << 10})
			}
			// passesOnce passes the caller's check and fails the connection's.
			passesOnce := func() func() error {
				var calls atomic.Int32
				return func() error {
					if calls.Add(1) == 1 {
						return nil
					}
					return errLost
				}
			}

			refused := send(passesOnce())
			require.ErrorIs(t, refused.Err, errLost, "fresh connection")
			require.Zero(t, got.Load(), "nothing reached the server")

			ok := send(func() error { return nil })
			require.NoError(t, ok.Err)
			require.Equal(t, http.StatusOK, ok.Status)
			require.EqualValues(t, 1, got.Load())

			refused = send(passesOnce())
			require.ErrorIs(t, refused.Err, errLost, "reused connection")
			require.EqualValues(t, 1, got.Load(), "nothing more reached the server")

			unchecked := send(nil)
			require.NoError(t, unchecked.Err, "a request without a check is not held by an earlier refusal")
			require.EqualValues(t, 2, got.Load())
		})
	}
}
