package apicall

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKeyRulesCheck(t *testing.T) {
	rules := KeyRules{Max: 10, TooLong: "at most %d are sent"}
	tests := []struct {
		name     string
		key      string
		required bool
		wantErr  string
	}{
		{name: "empty optional", key: "", required: false},
		{name: "empty required", key: "", required: true, wantErr: "idempotency key is required"},
		{name: "printable", key: "abc-123_X", required: true},
		{name: "at the limit", key: strings.Repeat("k", 10), required: true},
		{name: "too long", key: strings.Repeat("k", 11), required: true, wantErr: "idempotency key is 11 characters long, at most 10 are sent"},
		{name: "space", key: "a b", required: true, wantErr: "printable ASCII without spaces"},
		{name: "newline", key: "a\nb", required: false, wantErr: "printable ASCII without spaces"},
		{name: "DEL", key: "a\x7f", required: false, wantErr: "printable ASCII without spaces"},
		{name: "non-ASCII", key: "é", required: false, wantErr: "printable ASCII without spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rules.Check(tt.key, tt.required)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestIDRulesCheck(t *testing.T) {
	dotted := IDRules{MaxLen: 8, AllowDot: true}
	plain := IDRules{MaxLen: 8}
	tests := []struct {
		name    string
		rules   IDRules
		id      string
		wantErr string
	}{
		{name: "plain id", rules: plain, id: "pay_a-1Z"},
		{name: "empty", rules: plain, id: "", wantErr: "payment id is empty"},
		{name: "too long", rules: plain, id: "pay_12345", wantErr: "payment id is too long"},
		{name: "slash", rules: plain, id: "pay/1", wantErr: "not allowed in an id"},
		{name: "query", rules: plain, id: "pay?x=1", wantErr: "not allowed in an id"},
		{name: "dot refused without AllowDot", rules: plain, id: "pi.1", wantErr: "not allowed in an id"},
		{name: "dot admitted with AllowDot", rules: dotted, id: "pi.1"},
		{name: "dot segment", rules: dotted, id: ".", wantErr: "payment id is not an id"},
		{name: "dot-dot segment", rules: dotted, id: "..", wantErr: "payment id is not an id"},
		{name: "percent", rules: dotted, id: "pi%2F", wantErr: "not allowed in an id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rules.Check("payment", tt.id)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LocalHost", true},
		{"127.0.0.1", true},
		{"127.9.8.7", true},
		{"::1", true},
		{"10.0.0.1", false},
		{"example.com", false},
		{"localhost.example.com", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			require.Equal(t, tt.want, IsLoopback(tt.host))
		})
	}
}

func TestIsHeaderSafe(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"billingd/1 (sk_test)", true},
		{"tab\tinside", false},
		{"new\nline", false},
		{"del\x7f", false},
		{"utf-8 é", true},
		{"", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, IsHeaderSafe(tt.in))
		})
	}
}

func TestIsBrowserURL(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"https://shop.example/return", true},
		{"http://127.0.0.1:8080/x", true},
		{"javascript:alert(1)", false},
		{"/relative/path", false},
		{"https://", false},
		{"ftp://host/file", false},
		{"://bad", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, IsBrowserURL(tt.in))
		})
	}
}
