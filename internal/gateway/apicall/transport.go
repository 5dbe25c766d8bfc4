package apicall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"
)

// ClosedText names a connection that closed before the whole answer arrived,
// before any status (BeforeStatus) or after it (MidBody); a provider may use
// one phrase for both.
type ClosedText struct {
	BeforeStatus string
	MidBody      string
}

// TransportError explains an exchange that produced no complete answer; the
// outcome is unknown either way. where names the call ("wooshpay: POST /v1/…"),
// status is the answer's status when only its body failed, timeout is the
// request's bound, and scrub cleans any text taken from err.
//
// When the caller's own context ended, the result wraps the context's error,
// so the engine can tell shutdown from a gateway problem. A *url.Error is
// unwrapped first, because the URL is already named by where and it would
// repeat the base URL in every stored error.
func TransportError(ctx context.Context, where string, status int, err error, timeout time.Duration, closed ClosedText, scrub func(string) string) error {
	if status != 0 {
		where = fmt.Sprintf("%s: %d reading body", where, status)
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", where, cerr)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: no answer within %s: %w", where, timeout, err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		phrase := closed.MidBody
		if status == 0 {
			phrase = closed.BeforeStatus
		}
		return fmt.Errorf("%s: %s: %w", where, phrase, err)
	}
	return Rephrased(where+": "+scrub(err.Error()), err)
}
