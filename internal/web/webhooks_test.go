package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/billingd/billingd/internal/web"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

// stubVerifier accepts a JSON gateway.Event as body; the X-Reject header makes it
// fail the way a real verifier would.
type stubVerifier struct{}

func (stubVerifier) VerifyWebhook(body []byte, h http.Header, _ time.Time) (*gateway.Event, error) {
	switch h.Get("X-Reject") {
	case "signature":
		return nil, fmt.Errorf("bad: %w", gateway.ErrWebhookSignature)
	case "stale":
		return nil, fmt.Errorf("old: %w", gateway.ErrWebhookStale)
	case "malformed":
		return nil, fmt.Errorf("junk: %w", gateway.ErrWebhookMalformed)
	}
	var ev gateway.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, fmt.Errorf("%v: %w", err, gateway.ErrWebhookMalformed)
	}
	return &ev, nil
}

type fixture struct {
	st      *store.Store
	srv     *httptest.Server
	attempt models.ChargeAttempt
}

// newFixture has one invoice with one attempt in flight (pending, no PaymentIntent
// id recorded yet).
func newFixture(t *testing.T) *fixture {
	st := storetest.SQLite(t)
	storetest.Seed(t, st, t0, storetest.Subscription{Reference: "w1", Customer: "cus_w1", Amount: 900})
	require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, Reference: "w1", PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 900, Currency: "USD"}})
		return err
	}))
	claimed, err := st.ClaimNewAttempts(context.Background(), "worker", t0, t0.Add(time.Hour), 1)
	require.NoError(t, err)
	rcv := &web.WebhookReceiver{Store: st, Engine: charge.New(charge.Options{Store: st}), Verifier: stubVerifier{}, Clock: clock.NewFake(t0), Log: zerolog.Nop(), MaxBody: 4096}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return &fixture{st: st, srv: srv, attempt: claimed[0]}
}

func (f *fixture) post(t *testing.T, ev gateway.Event, reject string) int {
	body, err := json.Marshal(ev)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, f.srv.URL, strings.NewReader(string(body)))
	require.NoError(t, err)
	if reject != "" {
		req.Header.Set("X-Reject", reject)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func (f *fixture) state(t *testing.T) (models.AttemptStatus, models.InvoiceStatus, int64) {
	a, err := f.st.AttemptByID(context.Background(), f.attempt.ID)
	require.NoError(t, err)
	var inv models.Invoice
	require.NoError(t, f.st.DB().First(&inv, a.InvoiceID).Error)
	var events int64
	require.NoError(t, f.st.DB().Model(&models.WebhookEvent{}).Count(&events).Error)
	return a.Status, inv.Status, events
}

func (f *fixture) intentEvent(id, typ string, status gateway.IntentStatus) gateway.Event {
	return gateway.Event{ID: id, Type: typ, PaymentIntent: &gateway.PaymentIntent{ID: "pi_1", Status: status, Amount: 900, Currency: "USD", Customer: "cus_w1", PaymentMethod: "pm_new",
		Metadata: map[string]string{"idempotency_key": f.attempt.IdempotencyKey}}}
}

func TestRejectedDeliveriesChangeNothing(t *testing.T) {
	f := newFixture(t)
	ok := f.intentEvent("evt_1", gateway.EventPaymentIntentSucceeded, gateway.IntentSucceeded)
	for reject, want := range map[string]int{"signature": 401, "stale": 401, "malformed": 400} {
		require.Equal(t, want, f.post(t, ok, reject), reject)
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL, strings.NewReader(strings.Repeat("x", 5000)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	status, inv, events := f.state(t)
	require.Equal(t, models.AttemptPending, status)
	require.Equal(t, models.InvoiceOpen, inv)
	require.Zero(t, events, "nothing was stored")
}

func TestSucceededBeforeTheAnswerPaysOnceAndDuplicatesAreNoOps(t *testing.T) {
	f := newFixture(t)
	ev := f.intentEvent("evt_ok", gateway.EventPaymentIntentSucceeded, gateway.IntentSucceeded)
	require.Equal(t, 200, f.post(t, ev, ""))
	status, inv, events := f.state(t)
	require.Equal(t, models.AttemptSucceeded, status, "the webhook settles an attempt whose HTTP answer was never recorded")
	require.Equal(t, models.InvoicePaid, inv)
	require.EqualValues(t, 1, events)

	require.Equal(t, 200, f.post(t, ev, ""), "a duplicate answers 2xx")
	_, _, events = f.state(t)
	require.EqualValues(t, 1, events, "and stores nothing new")

	// A late failure for the same intent never un-pays the invoice.
	late := f.intentEvent("evt_late", gateway.EventPaymentIntentPaymentFailed, gateway.IntentRequiresPaymentMethod)
	require.Equal(t, 200, f.post(t, late, ""))
	status, inv, _ = f.state(t)
	require.Equal(t, models.AttemptSucceeded, status)
	require.Equal(t, models.InvoicePaid, inv)
	var row models.WebhookEvent
	require.NoError(t, f.st.DB().Where("gateway_event_id = ?", "evt_late").First(&row).Error)
	require.Equal(t, models.WebhookIgnored, row.Result)

	// The worker whose request is still out cannot overwrite it.
	err := f.st.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.FinishAttempt(t0, &f.attempt, store.AttemptResult{Status: models.AttemptDeclined})
	})
	require.ErrorIs(t, err, store.ErrLeaseLost)

	// The (customer, payment method) pair was recorded.
	var pm models.PaymentMethod
	require.NoError(t, f.st.DB().Where("gateway_payment_method_id = ?", "pm_new").First(&pm).Error)
}

func TestEventsApplyTheirOutcome(t *testing.T) {
	for _, tc := range []struct {
		typ    string
		status gateway.IntentStatus
		want   models.AttemptStatus
	}{
		{gateway.EventPaymentIntentPaymentFailed, gateway.IntentRequiresPaymentMethod, models.AttemptDeclined},
		{gateway.EventPaymentIntentRequiresAction, gateway.IntentRequiresAction, models.AttemptRequiresAction},
		{gateway.EventPaymentIntentCanceled, gateway.IntentCanceled, models.AttemptCanceled},
		{gateway.EventPaymentIntentProcessing, gateway.IntentProcessing, models.AttemptProcessing},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			f := newFixture(t)
			require.Equal(t, 200, f.post(t, f.intentEvent("evt_"+tc.typ, tc.typ, tc.status), ""))
			status, inv, _ := f.state(t)
			require.Equal(t, tc.want, status)
			require.Equal(t, models.InvoiceOpen, inv)
		})
	}
}

func TestForeignAndUnknownEventsAreStoredAndIgnored(t *testing.T) {
	f := newFixture(t)
	foreign := gateway.Event{ID: "evt_f", Type: gateway.EventPaymentIntentSucceeded, PaymentIntent: &gateway.PaymentIntent{ID: "pi_someone_else", Status: gateway.IntentSucceeded}}
	require.Equal(t, 200, f.post(t, foreign, ""))
	require.Equal(t, 200, f.post(t, gateway.Event{ID: "evt_r", Type: "charge.refund.updated"}, ""))
	require.Equal(t, 200, f.post(t, gateway.Event{ID: "evt_s", Type: gateway.EventSetupIntentSucceeded,
		SetupIntent: &gateway.SetupIntent{ID: "seti_1", Customer: "cus_w1", PaymentMethod: "pm_saved"}}, ""))
	status, inv, events := f.state(t)
	require.Equal(t, models.AttemptPending, status)
	require.Equal(t, models.InvoiceOpen, inv)
	require.EqualValues(t, 3, events)
	var results []string
	require.NoError(t, f.st.DB().Model(&models.WebhookEvent{}).Order("id").Pluck("result", &results).Error)
	require.Equal(t, []string{"ignored", "ignored", "applied"}, results)
}

func TestApplyFailureAnswers500AndStoresNothing(t *testing.T) {
	f := newFixture(t)
	// Break the database under the receiver: the event cannot be stored.
	require.NoError(t, f.st.DB().Exec("DROP TABLE webhook_events").Error)
	require.Equal(t, 500, f.post(t, f.intentEvent("evt_x", gateway.EventPaymentIntentSucceeded, gateway.IntentSucceeded), ""))
	a, err := f.st.AttemptByID(context.Background(), f.attempt.ID)
	require.NoError(t, err)
	require.Equal(t, models.AttemptPending, a.Status, "the transaction rolled back; the gateway will retry")
}
