package apicall

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTransportError(t *testing.T) {
	closed := ClosedText{BeforeStatus: "closed before a status", MidBody: "closed mid-body"}
	scrub := func(s string) string { return strings.ReplaceAll(s, "sk_live_x", Redacted) }
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	refused := errors.New("dial tcp: connection refused by sk_live_x")
	tests := []struct {
		name      string
		ctx       context.Context
		status    int
		err       error
		want      string
		wantCause error
	}{
		{name: "caller canceled", ctx: canceled, err: io.EOF,
			want: "p: GET /x: context canceled", wantCause: context.Canceled},
		{name: "caller canceled while reading a body", ctx: canceled, status: 200, err: io.EOF,
			want: "p: GET /x: 200 reading body: context canceled", wantCause: context.Canceled},
		{name: "timeout inside url.Error", ctx: context.Background(),
			err:  &url.Error{Op: "Post", URL: "http://127.0.0.1:1/x", Err: context.DeadlineExceeded},
			want: "p: GET /x: no answer within 2s: context deadline exceeded", wantCause: context.DeadlineExceeded},
		{name: "closed before a status", ctx: context.Background(), err: &url.Error{Op: "Get", URL: "http://h/x", Err: io.EOF},
			want: "p: GET /x: closed before a status: EOF", wantCause: io.EOF},
		{name: "closed mid-body", ctx: context.Background(), status: 200, err: io.ErrUnexpectedEOF,
			want: "p: GET /x: 200 reading body: closed mid-body: unexpected EOF", wantCause: io.ErrUnexpectedEOF},
		{name: "other error is scrubbed and keeps its chain", ctx: context.Background(), err: refused,
			want: "p: GET /x: dial tcp: connection refused by [redacted]", wantCause: refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := TransportError(tt.ctx, "p: GET /x", tt.status, tt.err, 2*time.Second, closed, scrub)
			require.EqualError(t, err, tt.want)
			require.ErrorIs(t, err, tt.wantCause)
			require.NotContains(t, err.Error(), "127.0.0.1")
		})
	}
}
