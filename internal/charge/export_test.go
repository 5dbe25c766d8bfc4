package charge

import (
	"context"

	"github.com/billingd/billingd/internal/store"
)

// CommitOutcomes records outs as the recorder records one group commit of
// them (commitOutcomes), and returns each outcome's warning and error.
func (e *Engine) CommitOutcomes(ctx context.Context, outs []store.Outcome) ([]string, []error) {
	batch := make([]*pendingOutcome, len(outs))
	for i, o := range outs {
		batch[i] = &pendingOutcome{a: o.Attempt, r: o.Result, now: o.Now}
	}
	e.commitOutcomes(ctx, batch)
	warnings, errs := make([]string, len(outs)), make([]error, len(outs))
	for i, p := range batch {
		warnings[i], errs[i] = p.warning, p.err
	}
	return warnings, errs
}

// SetBatchSuccesses turns the batched write of runs of successes on or off
// and returns the previous setting.
func SetBatchSuccesses(on bool) bool {
	was := batchSuccesses
	batchSuccesses = on
	return was
}
