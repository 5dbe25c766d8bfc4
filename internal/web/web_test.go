package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHealthAndReadiness(t *testing.T) {
	dbErr := errors.New("database is locked")
	var failing bool
	s := New(Check{Name: "database", Fn: func(context.Context) error {
		if failing {
			return dbErr
		}
		return nil
	}}, Check{Name: "scheduler", Fn: func(context.Context) error { return nil }})

	get := func(path string) (*httptest.ResponseRecorder, map[string]any) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec, body
	}
	rec, _ := get("/healthz")
	require.Equal(t, http.StatusOK, rec.Code)

	rec, body := get("/readyz")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, true, body["ready"])

	failing = true
	rec, body = get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, false, body["ready"])
	require.Equal(t, "database is locked", body["checks"].(map[string]any)["database"])
	require.Equal(t, "ok", body["checks"].(map[string]any)["scheduler"])

	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}
