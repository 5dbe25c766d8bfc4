package ops

// Placeholder signatures of the reports; replaced by reports.go.

import (
	"context"
	"errors"
	"time"
)

// errNotBuilt is what a placeholder returns; it goes with the last stub file.
var errNotBuilt = errors.New("ops: not built yet")

// RevenueRow is one currency's money over a range.
type RevenueRow struct {
	Currency  string `json:"currency"`
	Collected Money  `json:"collected"`
	Refunded  Money  `json:"refunded"`
	Net       Money  `json:"net"`
	Payments  int    `json:"payments"`
	Refunds   int    `json:"refunds"`
}

// ForecastRow is the new-period charges of one day in one currency.
type ForecastRow struct {
	Day      string `json:"day"` // YYYY-MM-DD in the report's zone
	Currency string `json:"currency"`
	Count    int    `json:"count"`
	Total    Money  `json:"total"`
}

// Revenue reports collected, refunded and net per currency in [from, to).
func (s *Service) Revenue(ctx context.Context, from, to time.Time) ([]RevenueRow, error) {
	return nil, errNotBuilt
}

// Forecast lists the new-period charges of the next days days from now.
func (s *Service) Forecast(ctx context.Context, now time.Time, days int, loc *time.Location) ([]ForecastRow, error) {
	return nil, errNotBuilt
}
