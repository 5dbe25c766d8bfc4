package charge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/dunning"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// instantGateway succeeds at once: what is left of Execute is the result write.
type instantGateway struct{ *scripted }

func (instantGateway) CreatePaymentIntent(_ context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	return echoAmount(intent("pi_"+req.IdempotencyKey, gateway.IntentSucceeded), req)
}

// BenchmarkResultWrite measures recording a succeeded outcome, one op per
// attempt (so per charge): Execute against a gateway that answers at once,
// which leaves the engine's recorder — FinishAttempt, MarkInvoicePaid,
// ReactivateIfSettled and the dunning hook (the daemon's dunning service, as
// configured by default) in the outcome's transaction. With one worker every
// outcome is its own transaction; with 64 (the default concurrency) they share
// transactions through group commit. SQLite with synchronous=FULL, and
// PostgreSQL when BILLINGD_TEST_POSTGRES_DSN is set. cpu-ns/op is this
// process's CPU time per op (not a PostgreSQL server's).
func BenchmarkResultWrite(b *testing.B) {
	for _, db := range []string{store.SQLite, store.Postgres} {
		for _, workers := range []int{1, 64} {
			b.Run(fmt.Sprintf("db=%s/workers=%d", db, workers), func(b *testing.B) {
				st := storetest.Open(b, db)
				claimed := claimBatches(b, st, b.N)
				cfg := config.Default()
				hook := &dunning.Service{Store: st, Policy: dunning.Policy{Schedule: cfg.Dunning.RetryDelays(), FinalAction: models.FinalAction(cfg.Dunning.FinalAction)},
					LinkTTL: cfg.Dunning.LinkTTL.D(), PublicBaseURL: "https://billing.example.com", MailDomain: "example.com", Log: zerolog.Nop()}
				eng := charge.New(charge.Options{Store: st, Gateway: instantGateway{&scripted{}}, Clock: clock.NewFake(t0), Log: zerolog.Nop(),
					Retry: fastRetry, Hook: hook})
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := loadtest.CPUTime()
				executeAll(eng, claimed, workers, func(a *models.ChargeAttempt, status models.AttemptStatus, err error) {
					if err != nil || status != models.AttemptSucceeded {
						b.Errorf("attempt %d: %s %v", a.ID, status, err)
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(loadtest.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// claimBatches seeds n open invoices and claims an attempt for each, in claims
// of 64 as a pass makes them.
func claimBatches(b *testing.B, st *store.Store, n int) []models.ChargeAttempt {
	b.Helper()
	ctx := context.Background()
	require.NoError(b, loadtest.SeedOpenInvoices(ctx, st, n, t0))
	claimed := make([]models.ChargeAttempt, 0, n)
	for len(claimed) < n {
		batch, err := st.ClaimNewAttempts(ctx, "bench", t0, t0.Add(time.Hour), 64)
		require.NoError(b, err)
		require.NotEmpty(b, batch, "%d of %d claimed", len(claimed), n)
		claimed = append(claimed, batch...)
	}
	require.Len(b, claimed, n)
	return claimed
}

// BenchmarkOutcomeBatch measures one group commit of 128 succeeded outcomes
// (one op per outcome) on SQLite, batched (writeSuccesses) and one by one in
// the same transaction: the statement cost the batched write saves.
func BenchmarkOutcomeBatch(b *testing.B) {
	const batch = 128
	for _, batched := range []bool{false, true} {
		b.Run(fmt.Sprintf("batched=%v", batched), func(b *testing.B) {
			defer charge.SetBatchSuccesses(charge.SetBatchSuccesses(batched))
			n := (b.N + batch - 1) / batch * batch
			st, claimed := claimedAttempts(b, n)
			eng := charge.New(charge.Options{Store: st, Gateway: instantGateway{&scripted{}}, Clock: clock.NewFake(t0), Log: zerolog.Nop(), Retry: fastRetry})
			outs := make([]store.Outcome, n)
			for i := range claimed {
				a := &claimed[i]
				outs[i] = store.Outcome{Now: t0, Attempt: a, Result: store.AttemptResult{Status: models.AttemptSucceeded,
					PaymentIntentID: "pi_" + a.IdempotencyKey, Tries: 1, LastHTTPStatus: 200}}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < n; i += batch {
				_, errs := eng.CommitOutcomes(context.Background(), outs[i:i+batch])
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
