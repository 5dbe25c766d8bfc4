package charge_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
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
