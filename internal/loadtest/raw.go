package loadtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/billingd/billingd/internal/charge"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"golang.org/x/time/rate"
)

// TimedGateway measures the round trip of every CreatePaymentIntent, for the
// gateway latency percentiles of both the raw and the billingd run.
type TimedGateway struct {
	gateway.Gateway
	Latency *Histogram
}

// CreatePaymentIntent times the wrapped call.
func (t TimedGateway) CreatePaymentIntent(ctx context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	start := time.Now()
	res := t.Gateway.CreatePaymentIntent(ctx, req)
	t.Latency.Observe(time.Since(start))
	return res
}

// RawResult is what the raw ceiling run measured.
type RawResult struct {
	Requests int
	Elapsed  time.Duration
	CPU      time.Duration
	// Outcomes counts results by kind (succeeded, declined, transient…).
	Outcomes map[gateway.Kind]int
	Latency  *Histogram
}

// RunRaw sends n off-session charges built exactly as billingd builds them
// (charge.Request of an attempt with a fresh invoice id and key), through the
// same gateway client, limiter and number of workers, and does nothing else: no
// database, no retries. It is the loopback ceiling a billing pass is compared
// with. limiter may be nil (unlimited).
func RunRaw(ctx context.Context, gw gateway.Gateway, limiter *rate.Limiter, concurrency, n int, cards []Card, amount int64, currency string) (*RawResult, error) {
	if len(cards) == 0 || concurrency < 1 {
		return nil, fmt.Errorf("loadtest: raw run needs cards and a concurrency of at least 1")
	}
	res := &RawResult{Requests: n, Latency: &Histogram{}, Outcomes: map[gateway.Kind]int{}}
	timed := TimedGateway{Gateway: gw, Latency: res.Latency}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	cpu0, start := CPUTime(), time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[gateway.Kind]int{}
			defer func() {
				mu.Lock()
				for k, v := range local {
					res.Outcomes[k] += v
				}
				mu.Unlock()
			}()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				inv, err := store.NewPublicID("inv")
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				c := cards[i%len(cards)]
				a := &models.ChargeAttempt{AttemptNo: 1, IdempotencyKey: store.IdempotencyKey(inv, 1), MerchantOrderID: inv,
					Amount: amount, Currency: currency, GatewayCustomer: c.Customer, GatewayPM: c.PaymentMethod, OffSession: true}
				if limiter != nil {
					if err := limiter.Wait(ctx); err != nil {
						return
					}
				}
				local[timed.CreatePaymentIntent(ctx, charge.Request(a)).Kind]++
			}
		}()
	}
	wg.Wait()
	res.Elapsed, res.CPU = time.Since(start), CPUTime()-cpu0
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return res, firstErr
}
