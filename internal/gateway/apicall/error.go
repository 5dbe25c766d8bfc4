package apicall

import (
	"fmt"

	"github.com/billingd/billingd/internal/gateway"
)

// Error is returned by provider calls that answer with an object rather than a
// gateway.Result (customers, payment methods, hosted pages, searches). It
// carries the classification the provider's decide made, so a caller can still
// tell a retryable failure (Result.Kind Transient, with RetryAfter) from a
// definite one, and errors.Is(err, gateway.ErrNotFound) holds for a 404.
// Build one with ErrorStyle.Wrap so that its text names the provider.
type Error struct {
	// Op is the method and path of the failed call, e.g. "POST /v1/customers".
	Op string
	// Result is the classified outcome; its Kind is never Succeeded.
	Result gateway.Result

	style ErrorStyle
}

// ErrorStyle is how one provider builds and prints its *Error values.
type ErrorStyle struct {
	// Prefix starts every message without a cause, e.g. "wooshpay".
	Prefix string
	// DeclineDetail prints a decline's reason and message when the Result
	// has no Err, so a declined object call explains itself.
	DeclineDetail bool
	// SucceededIsTransient turns a Succeeded Result into a Transient one with
	// an "unexpected answer" cause: an object call that reports failure on a
	// Result that claims success had an answer it could not use, and its
	// effect is unknown.
	SucceededIsTransient bool
}

// Wrap turns the Result of the call op into an *Error.
func (s ErrorStyle) Wrap(op string, r gateway.Result) error {
	if s.SucceededIsTransient && r.Kind == gateway.Succeeded {
		r.Kind = gateway.Transient
		if r.Err == nil {
			r.Err = fmt.Errorf("%s: %s: unexpected answer", s.Prefix, op)
		}
	}
	return &Error{Op: op, Result: r, style: s}
}

// Error returns a short description without secrets or card data.
func (e *Error) Error() string {
	if e.Result.Err != nil {
		return e.Result.Err.Error()
	}
	if d := e.Result.Decline; d != nil && e.style.DeclineDetail {
		msg := fmt.Sprintf("%s: %s: %d declined: %s", e.style.Prefix, e.Op, e.Result.HTTPStatus, d.Reason())
		if d.Message != "" {
			msg += ": " + d.Message
		}
		return msg
	}
	return fmt.Sprintf("%s: %s: %s", e.style.Prefix, e.Op, e.Result.Kind)
}

// Unwrap exposes the underlying cause (gateway.ErrNotFound, a context error, a
// network error).
func (e *Error) Unwrap() error { return e.Result.Err }

// Retryable reports whether the same request may be sent again (with the same
// idempotency key) because its outcome is unknown.
func (e *Error) Retryable() bool { return e.Result.Kind == gateway.Transient }
