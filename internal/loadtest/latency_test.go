package loadtest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistogramQuantiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		obs  func(h *Histogram)
		q    float64
		want time.Duration
	}{
		{"empty", func(*Histogram) {}, 0.5, 0},
		{"one value", func(h *Histogram) { h.Observe(50 * time.Millisecond) }, 0.99, 50 * time.Millisecond},
		{"median of 1..1000 ms", func(h *Histogram) {
			for i := 1; i <= 1000; i++ {
				h.Observe(time.Duration(i) * time.Millisecond)
			}
		}, 0.5, 500 * time.Millisecond},
		{"p99 of 1..1000 ms", func(h *Histogram) {
			for i := 1; i <= 1000; i++ {
				h.Observe(time.Duration(i) * time.Millisecond)
			}
		}, 0.99, 990 * time.Millisecond},
		{"p99 sees the slow tail", func(h *Histogram) {
			for i := 0; i < 980; i++ {
				h.Observe(2 * time.Millisecond)
			}
			for i := 0; i < 20; i++ {
				h.Observe(300 * time.Millisecond)
			}
		}, 0.99, 300 * time.Millisecond},
		{"sub-microsecond", func(h *Histogram) { h.Observe(100 * time.Nanosecond) }, 0.5, time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			tc.obs(&h)
			got := h.Quantile(tc.q)
			if tc.want == 0 {
				require.Zero(t, got)
				return
			}
			// Buckets are 1% wide and report their upper bound.
			require.GreaterOrEqual(t, got, tc.want)
			require.LessOrEqual(t, float64(got), float64(tc.want)*1.0101)
		})
	}
}

func TestHistogramConcurrentObservations(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				h.Observe(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 8000, h.Count())
}

func TestPeakRSSReadsThisProcess(t *testing.T) {
	peak, err := PeakRSS()
	require.NoError(t, err)
	require.Greater(t, peak, int64(1<<20), "a Go test binary holds more than 1 MB")
	require.Greater(t, CPUTime(), time.Duration(0))
}
