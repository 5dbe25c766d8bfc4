package budget

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/stretchr/testify/require"
)

// admissions runs workers background (and customers pay-page) goroutines
// taking tokens from l for d and returns the admission times of each class.
func admissions(t *testing.T, l *Limiter, background, customers int, d time.Duration) (rest, pay []time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	run := func(customer bool) {
		defer wg.Done()
		c := ctx
		if customer {
			c = CustomerFacing(ctx)
		}
		for l.Wait(c) == nil {
			now := time.Now()
			mu.Lock()
			if customer {
				pay = append(pay, now)
			} else {
				rest = append(rest, now)
			}
			mu.Unlock()
		}
	}
	for i := 0; i < background; i++ {
		wg.Add(1)
		go run(false)
	}
	for i := 0; i < customers; i++ {
		wg.Add(1)
		go run(true)
	}
	wg.Wait()
	return rest, pay
}

// conforms checks the admissions against a token bucket of rate and burst,
// with slack requests for the timers' jitter.
func conforms(t *testing.T, times []time.Time, rate float64, burst, slack int) {
	t.Helper()
	for i := range times {
		for j := i; j < len(times); j++ {
			allowed := float64(burst) + times[j].Sub(times[i]).Seconds()*rate + float64(slack)
			require.LessOrEqual(t, float64(j-i+1), allowed, "%d requests in %s", j-i+1, times[j].Sub(times[i]))
		}
	}
}

func sorted(a, b []time.Time) []time.Time {
	out := append(append([]time.Time(nil), a...), b...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Before(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func TestPayShareIsLentWhileNoPayPageWaits(t *testing.T) {
	l := NewLimiter(100, 0.5)
	rest, _ := admissions(t, l, 8, 0, 600*time.Millisecond)
	// The whole rate, not just the rest's half: ~60 in 0.6 s.
	require.GreaterOrEqual(t, len(rest), 48)
	conforms(t, rest, 100, 2+25, 1)
}

func TestPayShareIsReservedWhilePayPagesWait(t *testing.T) {
	l := NewLimiter(100, 0.3)
	rest, pay := admissions(t, l, 16, 2, 800*time.Millisecond)
	// Pay pages get at least their 30/s however many background workers
	// wait; together they never go over the rate.
	require.GreaterOrEqual(t, len(pay), 18, "pay pages got %d, background %d", len(pay), len(rest))
	require.GreaterOrEqual(t, len(rest)+len(pay), 64)
	conforms(t, sorted(rest, pay), 100, 2+25, 1)
}

func TestZeroShareAdmitsNothingUntilRaised(t *testing.T) {
	l := NewLimiter(0, 0.1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, l.Wait(ctx), context.DeadlineExceeded)

	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background()) }()
	time.Sleep(20 * time.Millisecond)
	l.Set(50, 0.1)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Second):
		t.Fatal("a raised share did not wake the waiter")
	}
}

func TestGuardStopsAdmissions(t *testing.T) {
	l := NewLimiter(1000, 0)
	var valid atomic.Bool
	var renewals atomic.Int32
	fail := true
	l.Guard(valid.Load, func(context.Context) {
		renewals.Add(1)
		if !fail {
			valid.Store(true)
			l.Set(1000, 0)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, l.Wait(ctx), context.DeadlineExceeded, "an expired share sends nothing, tokens or not")
	require.Equal(t, int32(1), renewals.Load(), "a failed renewal is retried after a pause, not in a loop")
	fail = false
	require.NoError(t, l.Wait(context.Background()), "the renewal a waiter asks for lets it through")
	require.Equal(t, int32(2), renewals.Load())
}

func TestLoweredRateHoldsAtOnce(t *testing.T) {
	l := NewLimiter(1000, 0.1)
	l.Set(20, 0.1)
	rest, _ := admissions(t, l, 4, 0, 500*time.Millisecond)
	require.LessOrEqual(t, len(rest), 2+10+5+1)
}

func TestSlotsLoweredWithRequestsOpen(t *testing.T) {
	s := NewSlots(3)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		require.NoError(t, s.Acquire(ctx))
	}
	s.SetCap(1)
	require.Equal(t, 3, s.InFlight(), "the open requests are still at the gateway")
	s.Release()
	s.Release()
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Acquire(short), context.DeadlineExceeded, "one open under a cap of one")
	s.Release()
	require.NoError(t, s.Acquire(ctx))
	require.Equal(t, 1, s.InFlight())

	s.SetCap(0)
	got := make(chan error, 1)
	go func() { got <- s.Acquire(ctx) }()
	s.Release()
	time.Sleep(10 * time.Millisecond)
	require.Empty(t, got, "a cap of nothing admits nothing")
	s.SetCap(2)
	require.NoError(t, <-got)
}

// fakeFull counts calls and, for CreatePaymentIntent, sends two requests
// (a look-up before a resend).
type fakeFull struct {
	Full
	requests atomic.Int32
	open     atomic.Int32
	maxOpen  atomic.Int32
}

func (f *fakeFull) send(ctx context.Context) {
	if err := Request(ctx); err != nil {
		return
	}
	f.requests.Add(1)
	n := f.open.Add(1)
	for {
		m := f.maxOpen.Load()
		if n <= m || f.maxOpen.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	f.open.Add(-1)
}

func (f *fakeFull) CreatePaymentIntent(ctx context.Context, _ gateway.PaymentIntentRequest) gateway.Result {
	f.send(ctx)
	f.send(ctx)
	return gateway.Result{Kind: gateway.Succeeded}
}

func (f *fakeFull) RetrieveCustomer(ctx context.Context, id string) (*gateway.Customer, error) {
	f.send(ctx)
	return &gateway.Customer{ID: id}, nil
}

func TestClientTakesATokenPerRequestAndASlotPerCall(t *testing.T) {
	inner := &fakeFull{}
	b := New(40, 0.1, 2)
	c := Wrap(inner, b)
	_, lists := c.(gateway.PaymentLister)
	require.False(t, lists, "a provider without a payment list keeps none")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if i%2 == 0 {
					c.CreatePaymentIntent(ctx, gateway.PaymentIntentRequest{})
				} else {
					_, _ = c.RetrieveCustomer(ctx, "cus_1")
				}
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, int(inner.requests.Load()), 2+10+20+1, "every HTTP request took a token")
	require.GreaterOrEqual(t, int(inner.requests.Load()), 12)
	require.LessOrEqual(t, int(inner.maxOpen.Load()), 2)

	res := c.CreatePaymentIntent(ctx, gateway.PaymentIntentRequest{})
	require.Equal(t, gateway.Transient, res.Kind, "a call whose context ended while it waited sends nothing and is not a verdict")
}

func TestShareOfNothingAsksForARenewal(t *testing.T) {
	for _, tt := range []struct {
		name        string
		rate        float64
		concurrency int
	}{{"no slots", 50, 0}, {"no rate", 0, 2}} {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.rate, 0.1, tt.concurrency)
			var renewals atomic.Int32
			b.Limiter.Guard(func() bool { return true }, func(context.Context) {
				if renewals.Add(1) == 2 { // the first renewal finds no headroom yet
					b.Set(50, 0.1, 2)
				}
			})
			inner := &fakeFull{}
			c := Wrap(inner, b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := c.RetrieveCustomer(ctx, "cus_1")
			require.NoError(t, err)
			require.EqualValues(t, 1, inner.requests.Load())
			require.EqualValues(t, 2, renewals.Load())
		})
	}
}
