package runtime_test

import (
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

// A fan-out of 1,000 tasks or more analyses the engine's tables in the
// transaction that makes it, so the plans every session caches while the
// tables were small are made again once it commits (a settle planned on a
// near-empty task table reads all of it for each key).
func TestFanOutRefreshesStatistics(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, err := qflow.NewFlow("fanout_stats").MapStep("m", "", qflow.StepOptions{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	reltuples := func() float64 {
		var n float64
		if err := e.db.Pool.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'qflow.step_tasks'::regclass`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	small := make([]int, 10)
	if _, err := e.client.StartFlow(ctx, def, small, nil); err != nil {
		t.Fatal(err)
	}
	if n := reltuples(); n >= 10 {
		t.Fatalf("a fan-out of 10 analysed the task table (reltuples %v)", n)
	}
	// No worker runs: nothing else analyses.
	if _, err := e.client.StartFlow(ctx, def, make([]int, 1500), nil); err != nil {
		t.Fatal(err)
	}
	if n := reltuples(); n < 1500 {
		t.Fatalf("after a fan-out of 1,500 the statistics know %v tasks", n)
	}
}
