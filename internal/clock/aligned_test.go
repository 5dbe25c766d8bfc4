package clock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAlignedMeasure(t *testing.T) {
	tests := []struct {
		name   string
		offset time.Duration
	}{
		{"ahead", 3 * time.Second},
		{"behind", -90 * time.Minute},
		{"same", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a Aligned
			read := func(context.Context) (time.Time, error) {
				time.Sleep(2 * time.Millisecond) // a round trip
				return time.Now().Add(tc.offset), nil
			}
			off, rtt, err := a.Measure(context.Background(), read)
			require.NoError(t, err)
			require.GreaterOrEqual(t, rtt, 2*time.Millisecond)
			require.InDelta(t, float64(tc.offset), float64(off), float64(rtt), "within the round trip")
			require.InDelta(t, float64(time.Now().Add(tc.offset).UnixNano()), float64(a.Now().UnixNano()), float64(rtt+time.Millisecond))
			require.Equal(t, time.UTC, a.Now().Location())

			_, _, err = a.Measure(context.Background(), func(context.Context) (time.Time, error) { return time.Time{}, errors.New("down") })
			require.Error(t, err)
			require.Equal(t, off, a.Offset(), "a failed read keeps the offset in force")
		})
	}
}

// TestAlignedIgnoresASlowSample: a reading that took longer than
// MaxMeasureRoundTrip (it waited for a busy pool or a lock) leaves the offset
// as it was, since it could move the clock by half its round trip.
func TestAlignedIgnoresASlowSample(t *testing.T) {
	a := &Aligned{}
	_, _, err := a.Measure(context.Background(), func(context.Context) (time.Time, error) { return time.Now().Add(time.Minute), nil })
	require.NoError(t, err)
	good := a.Offset()
	_, rtt, err := a.Measure(context.Background(), func(context.Context) (time.Time, error) {
		time.Sleep(MaxMeasureRoundTrip + 50*time.Millisecond)
		return time.Now().Add(-time.Hour), nil
	})
	require.ErrorIs(t, err, ErrRoundTripTooLong, "a caller can tell a slow answer from a failed read")
	require.Greater(t, rtt, MaxMeasureRoundTrip)
	require.Equal(t, good, a.Offset(), "the slow sample moved nothing")
}
