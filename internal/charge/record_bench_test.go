package charge_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// instantGateway succeeds at once: what is left of Execute is the result write.
type instantGateway struct{ *scripted }

func (instantGateway) CreatePaymentIntent(_ context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	return echoAmount(intent("pi_"+req.IdempotencyKey, gateway.IntentSucceeded), req)
}

// BenchmarkResultWrite measures recording a succeeded outcome (attempt, invoice,
// subscription, dunning hook) on SQLite with synchronous=FULL, one op per
// attempt. With one worker every outcome is its own transaction; with 64 they
// share transactions through group commit.
func BenchmarkResultWrite(b *testing.B) {
	for _, workers := range []int{1, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			st, claimed := claimedAttempts(b, b.N)
			eng := charge.New(charge.Options{Store: st, Gateway: instantGateway{&scripted{}}, Clock: clock.NewFake(t0), Log: zerolog.Nop(), Retry: fastRetry})
			b.ReportAllocs()
			b.ResetTimer()
			executeAll(eng, claimed, workers, func(a *models.ChargeAttempt, status models.AttemptStatus, err error) {
				if err != nil || status != models.AttemptSucceeded {
					b.Errorf("attempt %d: %s %v", a.ID, status, err)
				}
			})
		})
	}
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
