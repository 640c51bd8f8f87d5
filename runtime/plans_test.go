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

// A busy table never analysed is analysed by upkeep (qflow.refresh_stats)
// once it holds 1,000 rows, not 10,000 changes later: until then every
// session keeps the generic plans it made for a nearly empty table, which
// read the whole table where a primary-key probe would do. Starts of fewer
// than 1,000 tasks each, so no fan-out analyses the table here.
func TestUpkeepAnalysesNewTablesAtAThousandRows(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("young_tables").Step("a", qflow.StepDef{TakesInput: true}).Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	// Only upkeep analyses here: autovacuum (off on some servers, on by
	// default) would analyse after 50 changes.
	for _, table := range []string{"qflow.step_tasks", "qflow.step_states", "qflow.runs"} {
		if _, err := e.db.Pool.Exec(ctx, `ALTER TABLE `+table+` SET (autovacuum_enabled = false)`); err != nil {
			t.Fatal(err)
		}
	}
	start := func(n int) {
		t.Helper()
		inputs := make([]any, n)
		for i := range inputs {
			inputs[i] = i
		}
		if _, err := e.client.StartRuns(ctx, def.Slug, inputs, nil); err != nil {
			t.Fatal(err)
		}
		// Closed connections report their statistics as they end.
		e.db.Pool.Reset()
	}
	reltuples := func() float64 {
		t.Helper()
		var n float64
		if err := e.db.Pool.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'qflow.step_tasks'::regclass`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	refresh := func() {
		t.Helper()
		if _, err := e.db.Pool.Exec(ctx, `SELECT qflow.refresh_stats()`); err != nil {
			t.Fatal(err)
		}
	}
	live := func() int64 {
		t.Helper()
		var n int64
		if err := e.db.Pool.QueryRow(ctx, `SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'qflow.step_tasks'::regclass`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitLive := func(want int64) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); live() < want; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the statistics count %d live tasks, want %d", live(), want)
			}
		}
	}

	start(600)
	waitLive(600)
	refresh()
	if n := reltuples(); n >= 0 {
		t.Fatalf("600 tasks: the task table was analysed (reltuples %v)", n)
	}
	start(600)
	waitLive(1200)
	refresh()
	if n := reltuples(); n < 1200 {
		t.Fatalf("1,200 tasks: reltuples %v, want the table analysed", n)
	}
	// Analysed once: from now on the table waits for 10,000 changes.
	var again int
	if err := e.db.Pool.QueryRow(ctx, `SELECT qflow.refresh_stats()`).Scan(&again); err != nil {
		t.Fatal(err)
	}
	if again != 0 {
		t.Errorf("refresh_stats analysed %d tables again right after", again)
	}
}
