package apicall

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ParseBaseURL validates a provider's API root at startup, where a mistake
// should stop the daemon rather than fail every charge later. Every request
// carries the secret key, so the root must be an absolute http(s) URL without
// credentials, query or fragment, and plain http is refused towards any host
// but loopback. Errors start with prefix and never quote the raw input, which
// could hold a credential. The path comes back without a trailing slash, ready
// for a request path to be appended.
func ParseBaseURL(prefix, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New(prefix + ": base URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the input; report only that it is malformed.
		return nil, errors.New(prefix + ": base URL is not a valid URL")
	}
	if u.User != nil {
		return nil, errors.New(prefix + ": base URL must not contain credentials; use the secret key option")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("%s: base URL scheme must be https or http, not %q", prefix, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New(prefix + ": base URL has no host")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, errors.New(prefix + ": base URL must not have a query or fragment")
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("%s: plain http is only allowed for loopback hosts, not %q: the secret key would travel in clear text", prefix, u.Hostname())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}
