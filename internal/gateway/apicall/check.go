package apicall

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// KeyRules says which idempotency keys a provider is sent. A key is checked
// before it goes into a header because net/http refuses a header value with
// control characters, and a key net/http would refuse must not look like a
// network failure: the engine would retry it forever.
type KeyRules struct {
	// Max is the longest key sent.
	Max int
	// TooLong finishes the message for a longer key; it is a format with one
	// %d, which receives Max (e.g. "the gateway accepts at most %d").
	TooLong string
}

// Check validates key. An empty key is refused only when required, that is
// for a call that may move money, where a resend without a key could charge
// twice.
func (k KeyRules) Check(key string, required bool) error {
	if key == "" {
		if required {
			return errors.New("idempotency key is required for a call that may move money")
		}
		return nil
	}
	if len(key) > k.Max {
		return fmt.Errorf("idempotency key is %d characters long, "+k.TooLong, len(key), k.Max)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= 0x20 || c >= 0x7f {
			return errors.New("idempotency key must be printable ASCII without spaces")
		}
	}
	return nil
}

// IDRules says what an object id of a provider looks like. Ids go into URL
// paths; accepting only a provider's alphabet (letters, digits, '_' and '-',
// and '.' where the provider uses it) means an id can never change which path
// is requested, and needs no escaping.
type IDRules struct {
	// MaxLen is the longest id accepted.
	MaxLen int
	// AllowDot admits '.' inside ids; "." and ".." are still refused, since
	// they are path segments, not ids.
	AllowDot bool
}

// Check validates id; kind names it in the error ("payment intent").
func (r IDRules) Check(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%s id is empty", kind)
	}
	if len(id) > r.MaxLen {
		return fmt.Errorf("%s id is too long", kind)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' ||
			(r.AllowDot && c == '.')
		if !ok {
			return fmt.Errorf("%s id contains a character not allowed in an id", kind)
		}
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%s id is not an id", kind)
	}
	return nil
}

// IsLoopback reports whether host is localhost or a loopback IP: the only hosts
// to which a secret key may travel over plain http, because that traffic never
// leaves the machine.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsHeaderSafe reports whether s can be put in a header value without being
// rejected by net/http, which would otherwise surface as a bogus transient
// error on every call instead of a refusal at the start.
func IsHeaderSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// IsBrowserURL reports whether u is an absolute http(s) URL: the only kind of
// address a customer's browser should be sent to or back from.
func IsBrowserURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "https" || p.Scheme == "http") && p.Host != ""
}
