package apicall

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseBaseURL(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		wantErr  string
		wantURL  string
		wantPath string
	}{
		{name: "https root", raw: "https://api.example.com", wantURL: "https://api.example.com"},
		{name: "trailing slashes dropped", raw: "https://api.example.com/base//", wantURL: "https://api.example.com/base", wantPath: "/base"},
		{name: "http to loopback", raw: "http://127.0.0.1:8080", wantURL: "http://127.0.0.1:8080"},
		{name: "http to localhost", raw: "http://localhost:1", wantURL: "http://localhost:1"},
		{name: "http to IPv6 loopback", raw: "http://[::1]:9", wantURL: "http://[::1]:9"},
		{name: "empty", raw: "", wantErr: "p: base URL is required"},
		{name: "malformed is not quoted", raw: "https://sk_live_abc123@[bad", wantErr: "p: base URL is not a valid URL"},
		{name: "credentials", raw: "https://user:pw@api.example.com", wantErr: "p: base URL must not contain credentials"},
		{name: "scheme", raw: "ftp://api.example.com", wantErr: `p: base URL scheme must be https or http, not "ftp"`},
		{name: "relative", raw: "/v1", wantErr: `scheme must be https or http, not ""`},
		{name: "no host", raw: "https://", wantErr: "p: base URL has no host"},
		{name: "port only", raw: "https://:443", wantErr: "p: base URL has no host"},
		{name: "query", raw: "https://api.example.com?x=1", wantErr: "p: base URL must not have a query or fragment"},
		{name: "empty query", raw: "https://api.example.com?", wantErr: "must not have a query or fragment"},
		{name: "fragment", raw: "https://api.example.com#f", wantErr: "must not have a query or fragment"},
		{name: "plain http elsewhere", raw: "http://api.example.com", wantErr: `p: plain http is only allowed for loopback hosts, not "api.example.com"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseBaseURL("p", tt.raw)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), "sk_live_abc123")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantURL, u.String())
			require.Equal(t, tt.wantPath, u.Path)
		})
	}
}

func TestJoinURL(t *testing.T) {
	tests := []struct {
		name  string
		base  string
		path  string
		query url.Values
		want  string
	}{
		{name: "root", base: "https://api.example.com", path: "/payments", want: "https://api.example.com/payments"},
		{name: "base path kept", base: "http://127.0.0.1:9/sim/", path: "/v1/customers/cus_1", want: "http://127.0.0.1:9/sim/v1/customers/cus_1"},
		{name: "query encoded", base: "https://api.example.com", path: "/payments", query: url.Values{"reference": {"a b&c"}, "limit": {"100"}},
			want: "https://api.example.com/payments?limit=100&reference=a+b%26c"},
		{name: "empty query adds nothing", base: "https://api.example.com", path: "/x", query: url.Values{}, want: "https://api.example.com/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, err := ParseBaseURL("p", tt.base)
			require.NoError(t, err)
			require.Equal(t, tt.want, JoinURL(base, tt.path, tt.query))
			require.Equal(t, strings.TrimRight(tt.base, "/"), base.String(), "the base is not changed")
		})
	}
}
