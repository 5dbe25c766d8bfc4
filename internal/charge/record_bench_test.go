package charge_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/loadtest"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// instantGateway succeeds at once: what is left of Execute is the result write.
type instantGateway struct{ *scripted }

func (instantGateway) CreatePaymentIntent(_ context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	return intent("pi_"+req.IdempotencyKey, gateway.IntentSucceeded)
}

// BenchmarkResultWrite measures recording a succeeded outcome (attempt, invoice,
// subscription, dunning hook) on SQLite with synchronous=FULL, one op per
// attempt. With one worker every outcome is its own transaction; with 64 they
// share transactions through group commit.
func BenchmarkResultWrite(b *testing.B) {
	for _, workers := range []int{1, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			ctx := context.Background()
			t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			st := storetest.SQLite(b)
			require.NoError(b, loadtest.SeedOpenInvoices(ctx, st, b.N, t0))
			claimed, err := st.ClaimNewAttempts(ctx, "bench", t0, t0.Add(time.Hour), b.N)
			require.NoError(b, err)
			require.Len(b, claimed, b.N)
			eng := charge.New(charge.Options{Store: st, Gateway: instantGateway{&scripted{}}, Clock: clock.NewFake(t0), Log: zerolog.Nop(),
				Retry: charge.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second, MaxElapsedTime: time.Second}})
			jobs := make(chan *models.ChargeAttempt)
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for a := range jobs {
						if status, err := eng.Execute(ctx, a); err != nil || status != models.AttemptSucceeded {
							b.Errorf("attempt %d: %s %v", a.ID, status, err)
						}
					}
				}()
			}
			for i := range claimed {
				jobs <- &claimed[i]
			}
			close(jobs)
			wg.Wait()
		})
	}
}
