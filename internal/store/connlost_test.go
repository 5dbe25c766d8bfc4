package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestConnectionLostTellsAGoneConnectionFromARefusedStatement(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"terminated backend", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{"connection failure", fmt.Errorf("store: migrate: %w", &pgconn.PgError{Code: "08006"}), true},
		{"broken pipe", errors.New("write tcp 127.0.0.1:1->127.0.0.1:5432: write: broken pipe"), true},
		{"unexpected EOF", fmt.Errorf("store: instance heartbeat: %w", errors.New("unexpected EOF")), true},
		{"read-only", &pgconn.PgError{Code: "25006"}, false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"syntax", errors.New(`ERROR: syntax error at or near "SELEC"`), false},
		{"canceled", context.Canceled, false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ConnectionLost(tc.err))
		})
	}
}
