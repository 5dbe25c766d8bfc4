package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// DefaultMaxWebhookBody caps a webhook body. Gateway events are a few KiB; a
// larger body is refused before it is read into memory.
const DefaultMaxWebhookBody = 1 << 20

// WebhookReceiver takes the gateway's webhooks: the authoritative final signal of
// a payment. It verifies the signature over the raw body before parsing anything,
// stores the event in the inbox (unique by the gateway's event id) and applies it
// in the same transaction, so an event is either stored and applied, or neither
// and the gateway retries.
type WebhookReceiver struct {
	Store  *store.Store
	Engine *charge.Engine
	// RetryNow is called after a commit that scheduled an immediate retry (a
	// new card saved for an invoice in dunning), to start a pass.
	RetryNow func()
	Verifier gateway.WebhookVerifier
	Clock    clock.Clock
	Log      zerolog.Logger
	Metrics  *metrics.Metrics
	MaxBody  int64
}

// ServeHTTP answers 2xx when the event is stored (or was already), 400 for a
// malformed delivery or an event without an id, 401 for a bad or stale signature, 413 for an oversized
// body, and 500 when storing or applying failed (so the gateway retries). Only a
// 2xx changes anything.
func (h *WebhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	maxBody := h.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxWebhookBody
	}
	clk := h.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	log := h.Log.With().Str("remote", r.RemoteAddr).Logger()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reject(w, log, http.StatusRequestEntityTooLarge, "", "body larger than the webhook limit")
			return
		}
		h.reject(w, log, http.StatusBadRequest, "", "could not read the body")
		return
	}
	now := clk.Now()
	ev, err := h.Verifier.VerifyWebhook(body, r.Header, now)
	switch {
	case err == nil:
	case errors.Is(err, gateway.ErrWebhookSignature), errors.Is(err, gateway.ErrWebhookStale):
		h.reject(w, log, http.StatusUnauthorized, "", err.Error())
		return
	default:
		h.reject(w, log, http.StatusBadRequest, "", err.Error())
		return
	}
	if strings.TrimSpace(ev.ID) == "" {
		// The event id is the inbox's unique key: without one a redelivery
		// could not be told from a new event. Refused; nothing is stored.
		h.reject(w, log, http.StatusBadRequest, ev.Type, "event has no id")
		return
	}
	log = log.With().Str("event_id", ev.ID).Str("event_type", ev.Type).Logger()

	row := &models.WebhookEvent{GatewayEventID: ev.ID, Type: ev.Type, ObjectID: objectID(ev), Result: models.WebhookIgnored,
		Payload: string(body), CreatedAt: now, UpdatedAt: now}
	if !ev.Created.IsZero() {
		created := ev.Created.UTC()
		row.GatewayCreatedAt = &created
	}
	var out charge.EventOutcome
	duplicate := false
	err = h.Store.InTx(context.WithoutCancel(r.Context()), func(tx *store.Tx) error {
		inserted, err := tx.InsertWebhookEvent(row)
		if err != nil {
			return err
		}
		if !inserted {
			duplicate = true
			return nil
		}
		out, err = h.Engine.ApplyEvent(tx, now, ev)
		if err != nil {
			return err
		}
		failpoint.Hit(failpoint.WebhookBeforeCommit)
		if out.NeedsReview {
			return tx.FlagWebhookForReview(row.ID, out.Detail)
		}
		return tx.SetWebhookResult(row.ID, out.Result, out.Detail)
	})
	if err != nil {
		log.Error().Err(err).Msg("webhook could not be stored or applied; answering 500 so the gateway retries")
		h.Metrics.Webhook(ev.Type, "error")
		http.Error(w, "temporary failure, retry later", http.StatusInternalServerError)
		return
	}
	result := string(out.Result)
	switch {
	case duplicate:
		result = "duplicate"
	case out.NeedsReview:
		result = "needs_review"
	}
	h.Metrics.Webhook(ev.Type, result)
	if out.Attempt != nil {
		log = charge.Logger(log, out.Attempt)
	}
	if out.Warning != "" {
		log.Error().Msg(out.Warning)
	}
	log.Info().Str("result", result).Str("detail", out.Detail).Msg("webhook received")
	if out.RetryNow && h.RetryNow != nil {
		h.RetryNow()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"received": true, "result": result})
}

func (h *WebhookReceiver) reject(w http.ResponseWriter, log zerolog.Logger, status int, eventType, reason string) {
	h.Metrics.Webhook(eventType, "rejected")
	log.Warn().Int("status", status).Str("reason", reason).Msg("webhook rejected; nothing changed")
	http.Error(w, http.StatusText(status)+": "+reason, status)
}

func objectID(ev *gateway.Event) string {
	switch {
	case ev.PaymentIntent != nil:
		return ev.PaymentIntent.ID
	case ev.SetupIntent != nil:
		return ev.SetupIntent.ID
	case ev.Refund != nil:
		return ev.Refund.ID
	}
	return ""
}
