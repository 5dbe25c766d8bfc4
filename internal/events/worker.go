package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/metrics"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// Settings are the events section as the worker uses it; the worker reads
// them at every run, so a reload's new secret or timeout applies at once.
type Settings struct {
	URL string
	// Secrets sign each delivery: the current secret, then the previous
	// one during a rotation ("" when none).
	Secrets  []string
	Timeout  time.Duration
	RetryFor time.Duration
}

// Defaults for zero Worker fields. A batch is a few rounds of the
// concurrency, so that even a receiver that answers at the timeout every
// time leaves the last event of a batch enough of its lease.
const (
	DefaultLeaseFor    = 2 * time.Minute
	DefaultBatch       = 16
	DefaultConcurrency = 4
)

// Worker drains the events outbox. Several workers (in several instances on
// PostgreSQL) may run at once; leases keep them off each other's rows, and
// the claim hands out only each subscription's oldest pending event.
type Worker struct {
	Store    *store.Store
	Settings func() Settings
	// Client posts the events; nil is a client that follows no redirect
	// (a 3xx is not a delivery).
	Client *http.Client
	Clock  clock.Clock
	Owner  string // lease owner, unique per process (host:pid)
	// LeaseFor must comfortably exceed Settings.Timeout: an event whose
	// lease has less than Timeout left is not sent in this run.
	LeaseFor    time.Duration
	Batch       int
	Concurrency int
	Log         zerolog.Logger
	Metrics     *metrics.Metrics // may be nil
	// UserAgent names the sender ("billingd/<version>").
	UserAgent string
}

// Summary counts what one RunOnce did.
type Summary struct {
	Delivered, Retried, Failed, LeaseLost int
}

// RetryDelay is how long an event that was not delivered waits before its
// next try, given how many tries were made (1 after the first): 30s, 1m, 2m,
// … doubling, capped at 1h. Deterministic, so tests on an injected clock can
// assert the schedule; with the default retry_for of 72h an event is tried
// about 80 times.
func RetryDelay(tries int) time.Duration {
	const base, ceiling = 30 * time.Second, time.Hour
	if tries <= 1 {
		return base
	}
	if tries > 8 {
		return ceiling
	}
	return min(base<<(tries-1), ceiling)
}

// NextTry decides what follows a try that was not delivered: the time of
// the next one, or nil when it would fall after the retry period (measured
// from when the event occurred) — then the event has failed.
func NextTry(e *models.Event, now time.Time, retryFor time.Duration) *time.Time {
	next := now.Add(RetryDelay(e.Attempts + 1))
	if next.Sub(e.OccurredAt) > retryFor {
		return nil
	}
	return &next
}

// writeTimeout bounds recording a try once it is over; recording runs
// without the caller's cancellation, so a delivered event is marked so even
// when shutdown began meanwhile.
const writeTimeout = 15 * time.Second

// RunOnce claims due events batch after batch until none is left and POSTs
// each. It returns an error only when the database fails; an event it could
// not finish keeps its lease and is picked up again after the lease expires.
func (w *Worker) RunOnce(ctx context.Context) (Summary, error) {
	var sum Summary
	set := w.Settings()
	if set.URL == "" {
		return sum, nil
	}
	leaseFor := w.LeaseFor
	if leaseFor <= 0 {
		leaseFor = DefaultLeaseFor
	}
	if set.Timeout <= 0 || set.Timeout >= leaseFor {
		return sum, fmt.Errorf("events: timeout %s must be shorter than the lease %s", set.Timeout, leaseFor)
	}
	batch := w.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	conc := w.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	for ctx.Err() == nil {
		now := w.Clock.Now()
		claimed, err := w.Store.ClaimDueEvents(ctx, w.Owner, now, now.Add(leaseFor), batch)
		if err != nil {
			return sum, err
		}
		if len(claimed) == 0 {
			return sum, nil
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, conc)
		for i := range claimed {
			e := &claimed[i]
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				outcome := w.deliver(ctx, set, e)
				mu.Lock()
				switch outcome {
				case "delivered":
					sum.Delivered++
				case "retried":
					sum.Retried++
				case "failed":
					sum.Failed++
				case "lease_lost":
					sum.LeaseLost++
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	return sum, nil
}

// deliver POSTs one claimed event and records the try; it returns the
// outcome counted in the metrics ("" when nothing was recorded).
func (w *Worker) deliver(ctx context.Context, set Settings, e *models.Event) string {
	log := w.Log.With().Str("event", e.PublicID).Str("type", string(e.Type)).Int64("subscription_id", e.SubscriptionID).Logger()
	if e.LeaseUntil != nil && e.LeaseUntil.Sub(w.Clock.Now()) < set.Timeout {
		// Too little of the lease is left to finish a POST before another
		// worker may claim the event again; it is sent after the lease.
		return ""
	}
	failpoint.Hit(failpoint.EventsBeforePost)
	try := Post(ctx, w.client(), set, e, w.Clock.Now(), w.UserAgent)
	if ctx.Err() != nil && !try.Delivered {
		// Shutdown interrupted the POST: the event keeps its lease and is
		// tried again after it, not counted as the receiver's failure.
		return ""
	}
	failpoint.Hit(failpoint.EventsAfterPost)
	now := w.Clock.Now()
	outcome := "delivered"
	if !try.Delivered {
		try.NextAttemptAt = NextTry(e, now, set.RetryFor)
		outcome = "retried"
		if try.NextAttemptAt == nil {
			outcome = "failed"
		}
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	err := w.Store.FinishEvent(wctx, now, e, try)
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		log.Warn().Msg("event was taken over by another worker; its try is not recorded")
		w.Metrics.Event("lease_lost")
		return "lease_lost"
	case err != nil:
		log.Error().Err(err).Msg("could not record the event's try; it is tried again after its lease")
		return ""
	}
	w.Metrics.Event(outcome)
	ev := log.Info()
	if outcome != "delivered" {
		ev = log.Warn().Int("http_status", try.Status).Str("error", try.Error)
		if try.NextAttemptAt != nil {
			ev = ev.Time("next_attempt_at", *try.NextAttemptAt)
		}
	}
	ev.Int("attempts", e.Attempts).Msg("event " + outcome)
	return outcome
}

func (w *Worker) client() *http.Client {
	if w.Client != nil {
		return w.Client
	}
	return NoRedirectClient()
}

// NoRedirectClient is an HTTP client that returns a redirect as the answer
// instead of following it: a receiver that moved must be configured anew,
// not followed with a signed payload to wherever it points.
func NoRedirectClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// maxErrorBody is how much of a non-2xx answer's body is kept in last_error.
const maxErrorBody = 256

// Post sends one event's stored body to set.URL, signed at now, and says how
// it went. It never records anything: the worker and `billingd events
// redeliver` do.
func Post(ctx context.Context, client *http.Client, set Settings, e *models.Event, now time.Time, userAgent string) store.EventTry {
	ctx, cancel := context.WithTimeout(ctx, set.Timeout)
	defer cancel()
	body := []byte(e.Body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, set.URL, bytes.NewReader(body))
	if err != nil {
		return store.EventTry{Error: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(now, body, set.Secrets...))
	req.Header.Set("Billingd-Event-Id", e.PublicID)
	req.Header.Set("Billingd-Event-Type", string(e.Type))
	req.Header.Set("Billingd-Delivery-Attempt", strconv.Itoa(e.Attempts+1))
	if userAgent != "" {
		req.Header.Set("User-Agent", userAgent)
	}
	resp, err := client.Do(req)
	if err != nil {
		return store.EventTry{Error: err.Error()}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return store.EventTry{Status: resp.StatusCode, Delivered: true}
	}
	msg := resp.Status
	if len(bytes.TrimSpace(snippet)) > 0 {
		msg += ": " + string(bytes.TrimSpace(snippet))
	}
	return store.EventTry{Status: resp.StatusCode, Error: msg}
}
