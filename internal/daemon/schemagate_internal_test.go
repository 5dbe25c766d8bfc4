package daemon

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSchemaGateStopsRunningJobs checks the gate's contract with the
// scheduler: a job started while claiming has its stop context canceled the
// moment a newer schema is seen (so it stops at its next safe point), no job
// starts while the schema is newer, and jobs start again once it is not.
func TestSchemaGateStopsRunningJobs(t *testing.T) {
	g := newSchemaGate(14)
	require.False(t, g.set(14), "the known version changes nothing")
	running, done, ok := g.jobContext(context.Background())
	require.True(t, ok)
	finished, doneFinished, ok := g.jobContext(context.Background())
	require.True(t, ok)
	doneFinished()
	require.Error(t, finished.Err(), "done releases the context")

	require.True(t, g.set(15))
	require.ErrorIs(t, running.Err(), context.Canceled, "the running job is told to stop")
	done() // the job reached its safe point
	require.Contains(t, g.note(), "database schema version 15 is newer than this billingd knows (14)")
	_, _, ok = g.jobContext(context.Background())
	require.False(t, ok, "no job starts on a newer schema")
	require.False(t, g.set(16), "still newer: no change to report")

	require.True(t, g.set(14), "rolled back")
	require.Empty(t, g.note())
	again, doneAgain, ok := g.jobContext(context.Background())
	require.True(t, ok)
	require.NoError(t, again.Err())
	doneAgain()
	require.Empty(t, g.running, "every job context was released")
}
