package apicall

import (
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
