package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// Chains run in process (WorkerOptions.ChainWindow): a run's next single
// step runs in the slot that ran its dependency, and the chain is recorded
// in one transaction. These tests check that what is recorded, and what
// the events say, is the same as when every step is claimed.

// TestChainRecordsWhatClaimsRecord runs the same chain with chains on and
// off and compares every run's events and the tasks' records, with the
// steps defined in chain order and with c defined before b.
func TestChainRecordsWhatClaimsRecord(t *testing.T) {
	t.Run("in order", func(t *testing.T) { testChainRecordsWhatClaimsRecord(t, false) })
	t.Run("c before b", func(t *testing.T) { testChainRecordsWhatClaimsRecord(t, true) })
}

func testChainRecordsWhatClaimsRecord(t *testing.T, reorder bool) {
	var chained []string // the events of a run with chains on
	var chainedRows string
	for _, window := range []time.Duration{0, -1} {
		e := newEnv(t)
		l := listenEvents(t, e)
		def, h := chain3(t, "chained")
		if reorder {
			def.Steps[1], def.Steps[2] = def.Steps[2], def.Steps[1]
		}
		w := e.startWorker(def, h, &qflow.WorkerOptions{ChainWindow: window})
		ctx := ctxT(t, 30*time.Second)
		var want []string
		for i := range 5 {
			from := time.Now()
			run, err := e.client.StartFlow(ctx, def, map[string]int{"v": i}, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := run.Wait(ctx)
			if err != nil || string(out) != `{"c": {"v": `+string(rune('3'+i))+`}}` {
				t.Fatalf("window %v: run %d: %s, %v", window, i, out, err)
			}
			got, evs := collect(t, l, run.ID, 50*time.Millisecond)
			checkTimes(t, evs, from, time.Now())
			if i == 0 {
				want = got
			} else if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("window %v: run %d events differ from run 0 (-want +got):\n%s", window, i, diff)
			}
		}
		if window == 0 {
			if w.Inlined() < 10 {
				t.Fatalf("%d tasks ran inline; want b and c of each run (10)", w.Inlined())
			}
			chained = want
		} else {
			if w.Inlined() != 0 {
				t.Fatalf("ChainWindow -1: %d tasks ran inline", w.Inlined())
			}
			if diff := cmp.Diff(chained, want); diff != "" {
				t.Fatalf("events with chains differ from events without (-chains +claims):\n%s", diff)
			}
		}
		assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1
			AND started_at <= finished_at AND worker_id IS NOT NULL`, 15)
		assertCount(t, e, `SELECT count(*) FROM qflow.step_states WHERE status = 'completed'`, 15)
		// Every column that does not hold a time, an id or an order.
		var rows string
		if err := e.db.Pool.QueryRow(ctx, `SELECT string_agg(format('run %s step %s: task %s %s in=%s out=%s prio=%s max=%s deadline=%s ev=%s seq=%s lane=%s key=%s trace=%s err=%s; state %s %s/%s out=%s err=%s',
				r.input->>'v', t.step_idx, t.status, t.attempts, t.input, t.output, t.priority, t.max_attempts,
				t.deadline IS NOT NULL, t.events, t.sequential, t.lane, t.limit_key, t.trace_context, t.error,
				s.status, s.remaining_tasks, s.task_count, s.output, s.error), E'\n' ORDER BY (r.input->>'v')::int, t.step_idx)
			FROM qflow.step_tasks t JOIN qflow.runs r ON r.id = t.run_id
			JOIN qflow.step_states s ON s.run_id = t.run_id AND s.step_idx = t.step_idx`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		// The runs, and the statistics of their steps.
		if _, err := e.db.Pool.Exec(ctx, `SELECT qflow.fold_step_stats()`); err != nil {
			t.Fatal(err)
		}
		var runs string
		if err := e.db.Pool.QueryRow(ctx, `SELECT (SELECT string_agg(format('run %s: %s left=%s out=%s err=%s',
				r.input->>'v', r.status, r.remaining_steps, r.output, r.error), E'\n' ORDER BY (r.input->>'v')::int)
				FROM qflow.runs r)
			|| E'\n' || (SELECT string_agg(format('step %s: runs=%s tasks=%s ok=%s attempts=%s', s.step_slug, s.runs, s.tasks,
				s.successes, s.attempts), E'\n' ORDER BY s.step_slug) FROM qflow.step_stats s)`).Scan(&runs); err != nil {
			t.Fatal(err)
		}
		rows += "\n" + runs
		if window == 0 {
			chainedRows = rows
		} else if diff := cmp.Diff(chainedRows, rows); diff != "" {
			t.Fatalf("rows with chains differ from rows without (-chains +claims):\n%s", diff)
		}
	}
}

// TestChainInlineFailureAfterRecordedSuccess: in one chain, b succeeds
// inline (written completed at once) and c fails inline (a failed attempt
// of a task the same settle creates); c is retried and the run completes.
func TestChainInlineFailureAfterRecordedSuccess(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "inlinefailc")
	def.Steps[2].Options.BaseDelay = time.Millisecond
	var cRuns atomic.Int32
	c := h["c"]
	h["c"] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		if cRuns.Add(1) == 1 {
			return nil, errors.New("first try fails")
		}
		return c(ctx, task)
	}
	w := e.startWorker(def, h, &qflow.WorkerOptions{ChainWindow: time.Minute})
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 3}}` {
		t.Fatalf("%s, %v", out, err)
	}
	if cRuns.Load() != 2 || w.Inlined() < 2 {
		t.Fatalf("c ran %d times, %d tasks inline; want 2 and at least 2", cRuns.Load(), w.Inlined())
	}
	assertCount(t, e, `SELECT attempts FROM qflow.step_tasks WHERE step_idx = 1 AND status = 'completed'`, 1)
	assertCount(t, e, `SELECT attempts FROM qflow.step_tasks WHERE step_idx = 2 AND status = 'completed'`, 2)
}

// blockStep makes the handler of step in h wait for release before it
// runs, and counts its calls.
func blockStep(h map[string]qflow.Handler, step string, release <-chan struct{}) *atomic.Int32 {
	var calls atomic.Int32
	inner := h[step]
	h[step] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		calls.Add(1)
		<-release
		return inner(ctx, task)
	}
	return &calls
}

// TestChainSlowStepIsPromoted: an inline step still running when the
// window closes becomes a claimed task of the worker: its dependency's
// result is recorded at once, and its own is recorded when it ends.
func TestChainSlowStepIsPromoted(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "promoted")
	release := make(chan struct{})
	bRuns := blockStep(h, "b", release)
	w := e.startWorker(def, h, &qflow.WorkerOptions{ChainWindow: 20 * time.Millisecond})
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitStep(t, e, run.ID, "a", qflow.StatusCompleted)
	r, err := e.client.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Steps[1]; s.Status != qflow.StatusStarted || len(s.Tasks) != 1 || s.Tasks[0].Status != qflow.StatusStarted ||
		s.Tasks[0].Attempts != 1 {
		t.Fatalf("b while it runs: %+v; want started, its task claimed once", s)
	}
	close(release)
	out, err := run.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 3}}` {
		t.Fatalf("%s, %v", out, err)
	}
	if bRuns.Load() != 1 || w.Inlined() < 1 {
		t.Fatalf("b ran %d times, %d tasks inline; want 1 and at least 1", bRuns.Load(), w.Inlined())
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 3)
}

// Promotions are bounded: when many chains outrun the window together,
// at most two promotions are on their way at once, and the others wait for
// their turn while their handlers run on. Here the promotions' settles
// wait for the runs' locks, which the test holds; once it lets go, every
// slow step is promoted in turn and every run completes, each step run
// once.
func TestChainPromotionsAreBounded(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "promotions")
	release := make(chan struct{})
	bRuns := blockStep(h, "b", release)
	const window = 300 * time.Millisecond
	w := e.startWorker(def, h, &qflow.WorkerOptions{ChainWindow: window, Concurrency: 8})
	waitFor(t, w.Local)
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	const n = 6
	inputs := make([]any, n)
	for i := range inputs {
		inputs[i] = map[string]int{"v": 0}
	}
	began := time.Now()
	ids, err := e.client.StartRuns(ctx, "promotions", inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return bRuns.Load() == n })
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM qflow.runs FOR SHARE`); err != nil {
		t.Fatal(err)
	}
	if time.Since(began) >= window {
		t.Skip("the machine is too slow for this test's window")
	}
	time.Sleep(window + 2*window)
	if got := w.Promotions(); got != 2 {
		t.Errorf("%d promotions on their way while %d chains outran the window; want 2", got, n)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	for _, id := range ids {
		out, err := e.client.WaitRun(ctx, id)
		if err != nil || string(out) != `{"c": {"v": 3}}` {
			t.Fatalf("run %s: %s, %v", id, out, err)
		}
	}
	if bRuns.Load() != n {
		t.Errorf("b ran %d times for %d runs", bRuns.Load(), n)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 3*n)
}

// TestChainInlineFailureIsAnAttempt: an inline step that fails is
// recorded as a failed attempt and retried as any task.
func TestChainInlineFailureIsAnAttempt(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "inlinefail")
	def.Steps[1].Options.BaseDelay = time.Millisecond
	var bRuns atomic.Int32
	b := h["b"]
	h["b"] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		if bRuns.Add(1) == 1 {
			return nil, errors.New("first try fails")
		}
		return b(ctx, task)
	}
	w := e.startWorker(def, h, nil)
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 3}}` {
		t.Fatalf("%s, %v", out, err)
	}
	if bRuns.Load() != 2 || w.Inlined() < 1 {
		t.Fatalf("b ran %d times, %d tasks inline; want 2 and at least 1", bRuns.Load(), w.Inlined())
	}
	r, err := e.client.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if task := r.Steps[1].Tasks[0]; task.Attempts != 2 {
		t.Fatalf("b: %d attempts recorded; want 2", task.Attempts)
	}
}

// TestChainCrashRunsTheChainAgain: a worker that dies in the middle of a
// chain has recorded nothing of it; after the lease, another worker runs
// the chain from its first task, and each task is recorded once.
func TestChainCrashRunsTheChainAgain(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "chaincrash")
	started := make(chan struct{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var aRuns atomic.Int32
	a := h["a"]
	frozen := map[string]qflow.Handler{
		"a": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			aRuns.Add(1)
			return a(ctx, task)
		},
		"b": func(context.Context, *qflow.Task) (json.RawMessage, error) {
			close(started)
			<-release // as if the process froze, then died
			return nil, errors.New("never recorded")
		},
		"c": h["c"],
	}
	w1 := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), Lease: time.Second, ChainWindow: time.Minute})
	if err := w1.Register(def, frozen); err != nil {
		t.Fatal(err)
	}
	go w1.Run(context.Background()) //nolint:errcheck // abandoned
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	w1.Abandon()
	r, err := e.client.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Steps[0].Status != qflow.StatusStarted || r.Steps[1].Status != "" && r.Steps[1].Status != qflow.StatusCreated {
		t.Fatalf("before the lease ends: a %q, b %q; want a started and b not yet", r.Steps[0].Status, r.Steps[1].Status)
	}
	h["a"] = frozen["a"]
	e.startWorker(def, h, &qflow.WorkerOptions{Lease: time.Second})
	out, err := run.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 3}}` {
		t.Fatalf("%s, %v", out, err)
	}
	if aRuns.Load() != 2 {
		t.Fatalf("a ran %d times; want 2 (the chain again from a)", aRuns.Load())
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed'`, 3)
	assertCount(t, e, `SELECT attempts FROM qflow.step_tasks WHERE step_idx = 0`, 2)
	assertCount(t, e, `SELECT attempts FROM qflow.step_tasks WHERE step_idx = 1`, 1)
}

// TestChainStopsAtTheRunsDeadline: no step of a run past its deadline
// starts in a chain.
func TestChainStopsAtTheRunsDeadline(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "chaindeadline")
	var bRan atomic.Bool
	a := h["a"]
	h["a"] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		time.Sleep(300 * time.Millisecond)
		return a(ctx, task)
	}
	h["b"] = func(context.Context, *qflow.Task) (json.RawMessage, error) {
		bRan.Store(true)
		return json.RawMessage(`{"v": 2}`), nil
	}
	e.startWorker(def, h, &qflow.WorkerOptions{ChainWindow: time.Minute})
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 0}, &qflow.StartOptions{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.Wait(ctx); err == nil {
		t.Fatal("the run completed past its deadline")
	}
	if bRan.Load() {
		t.Fatal("b ran past the run's deadline")
	}
}

// TestChainInlineResultOnlyForTasksItsSettleCreated: a chain's inline
// result is recorded only into the task that the chain's own completion of
// the dependency created, never into one another worker's completion
// created (from an output that may differ from the chain's).
func TestChainInlineResultOnlyForTasksItsSettleCreated(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := chain3(t, "inlineown")
	flowID, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := e.client.StartRuns(ctx, "inlineown", []any{map[string]int{"v": 0}, map[string]int{"v": 0}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w1, w2 := uuid.New(), uuid.New()
	// w1 claims both runs' a with a lease that lapses at once; w2 claims
	// run 0's a again and records it.
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.claim($1, $2, 10, 1)`, flowID, w1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	var got uuid.UUID
	if err := e.db.Pool.QueryRow(ctx, `SELECT run_id FROM qflow.claim($1, $2, 1, 60000)`, flowID, w2).Scan(&got); err != nil {
		t.Fatalf("w2's claim: %v", err)
	}
	if got != ids[0] { // w2 took the other run's a: name the runs the other way round
		ids[0], ids[1] = ids[1], ids[0]
	}
	const none = `'{}', '{}', '{}', '{}', '{}', '{}'`
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid], ARRAY[0]::smallint[], ARRAY[0],
		ARRAY['{"v": 99}'::jsonb], `+none+`, `+none+`, '{}', 0, 0, 1000)`, w2, ids[0]); err != nil {
		t.Fatal(err)
	}
	// w1 settles its chains: a of both runs, then b inline, computed from
	// its own a ({"v": 1}).
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid, $3::uuid], ARRAY[0, 0]::smallint[], ARRAY[0, 0],
		ARRAY['{"v": 1}', '{"v": 1}']::jsonb[], `+none+`,
		ARRAY[$2::uuid, $3::uuid], ARRAY[1, 1]::smallint[], ARRAY[0, 0], ARRAY['{"v": 2}', '{"v": 2}']::jsonb[],
		ARRAY[NULL, NULL]::text[], ARRAY[false, false], '{}', 0, 0, 1000)`, w1, ids[0], ids[1]); err != nil {
		t.Fatal(err)
	}
	var status string
	var attempts int
	if err := e.db.Pool.QueryRow(ctx, `SELECT status, attempts FROM qflow.step_tasks WHERE run_id = $1 AND step_idx = 1`, ids[0]).Scan(&status, &attempts); err != nil {
		t.Fatal(err)
	}
	if status != qflow.StatusQueued || attempts != 0 {
		t.Fatalf("run 0's b: %s after %d attempts; want queued, untouched (w1's b was computed from another a)", status, attempts)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT status, attempts FROM qflow.step_tasks WHERE run_id = $1 AND step_idx = 1`, ids[1]).Scan(&status, &attempts); err != nil {
		t.Fatal(err)
	}
	if status != qflow.StatusCompleted || attempts != 1 {
		t.Fatalf("run 1's b: %s after %d attempts; want completed by the chain", status, attempts)
	}
}

// TestChainInlineResultNotRecordedInARunTheSettleFails: a settle that
// completes a, holds b's inline result and fails a parallel step x of the
// same run for good records no result for b (as when b's task is created
// and then cancelled with the run).
func TestChainInlineResultNotRecordedInARunTheSettleFails(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, err := qflow.NewFlow("inlinefailed").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("x", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	_, ids, w := startClaimed(t, e, def, map[string]int{"v": 0})
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid], ARRAY[0]::smallint[], ARRAY[0],
		ARRAY['{"v": 1}'::jsonb], ARRAY[$2::uuid], ARRAY[1]::smallint[], ARRAY[0], ARRAY['boom'], ARRAY[true], ARRAY[NULL]::bigint[],
		ARRAY[$2::uuid], ARRAY[2]::smallint[], ARRAY[0], ARRAY['{"v": 2}']::jsonb[], ARRAY[NULL]::text[], ARRAY[false],
		ARRAY[NULL]::bigint[], 0, 0, 1000)`, w, ids[0]); err != nil {
		t.Fatal(err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs WHERE status = 'failed'`, 1)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_states WHERE step_idx = 2 AND status = 'completed'`, 0)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE step_idx = 2 AND status = 'completed'`, 0)
}

// TestChainInlineResultGivenTwice: a settle that carries the same inline
// result twice records it once, and fails nothing else.
func TestChainInlineResultGivenTwice(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := chain3(t, "inlinetwice")
	_, ids, w := startClaimed(t, e, def, map[string]int{"v": 0})
	const none = `'{}', '{}', '{}', '{}', '{}', '{}'`
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid, $2::uuid], ARRAY[0, 0]::smallint[], ARRAY[0, 0],
		ARRAY['{"v": 1}', '{"v": 1}']::jsonb[], `+none+`,
		ARRAY[$2::uuid, $2::uuid], ARRAY[1, 1]::smallint[], ARRAY[0, 0], ARRAY['{"v": 2}', '{"v": 2}']::jsonb[],
		ARRAY[NULL, NULL]::text[], ARRAY[false, false], ARRAY[NULL, NULL]::bigint[], 0, 0, 1000)`, w, ids[0]); err != nil {
		t.Fatalf("a settle with a result given twice: %v", err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE step_idx = 1 AND status = 'completed' AND attempts = 1`, 1)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE step_idx = 0 AND status = 'completed' AND attempts = 1`, 1)
}

// TestChainManyRunsInOneSettle: chains of several runs finish together and
// are recorded by the same settles; each inline task's input is its own
// run's dependency output (not another run's), and its output its own.
func TestChainManyRunsInOneSettle(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, h := chain3(t, "chain_many")
	const n = 8
	var arrived atomic.Int32
	release := make(chan struct{})
	c := h["c"]
	h["c"] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		if arrived.Add(1) == n {
			close(release)
		}
		select { // every c returns at once, so their results settle together
		case <-release:
		case <-time.After(5 * time.Second):
		}
		return c(ctx, task)
	}
	w := e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: n, ChainWindow: 10 * time.Second})
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	inputs := make([]any, n)
	for i := range inputs {
		inputs[i] = map[string]int{"v": 100 * i}
	}
	ids, err := e.client.StartRuns(ctx, def.Slug, inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		out, err := e.client.WaitRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(out), fmt.Sprintf(`{"c": {"v": %d}}`, 100*i+3); got != want {
			t.Errorf("run %d: output %s, want %s", i, got, want)
		}
	}
	if w.Inlined() < 2*n {
		t.Fatalf("%d steps ran inline, want %d", w.Inlined(), 2*n)
	}
	type row struct{ Step, Input, Output string }
	for i, id := range ids {
		rows, err := e.db.Pool.Query(ctx, `SELECT st.slug, t.input::text, t.output::text FROM qflow.step_tasks t
			JOIN qflow.steps st ON st.flow_id = t.flow_id AND st.idx = t.step_idx
			WHERE t.run_id = $1 AND st.slug <> 'a' ORDER BY st.slug`, id)
		if err != nil {
			t.Fatal(err)
		}
		var got []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.Step, &r.Input, &r.Output); err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		want := []row{
			{"b", fmt.Sprintf(`{"a": {"v": %d}}`, 100*i+1), fmt.Sprintf(`{"v": %d}`, 100*i+2)},
			{"c", fmt.Sprintf(`{"b": {"v": %d}}`, 100*i+2), fmt.Sprintf(`{"v": %d}`, 100*i+3)},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("run %d tasks (-want +got):\n%s", i, diff)
		}
	}
}

// TestChainSettleMixesRunsItEndsWithOthers: one settle holds two runs whose
// chains end them (finish_chains) and, between them, one whose chain stops
// before its last step (the general path). Each run gets its own rows and
// events.
func TestChainSettleMixesRunsItEndsWithOthers(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	l := listenEvents(t, e)
	def, _ := chain3(t, "mixed")
	_, ids, w := startClaimed(t, e, def, map[string]int{"v": 0}, map[string]int{"v": 10}, map[string]int{"v": 20})
	// Run 0's task a was created by a session with events off: its
	// completion publishes nothing, the rest of the run does.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.step_tasks SET events = false WHERE run_id = $1 AND step_idx = 0`, ids[0]); err != nil {
		t.Fatal(err)
	}
	// The fast path takes runs 0 and 2 (seen in a transaction rolled back).
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var fast []uuid.UUID
	err = tx.QueryRow(ctx, `SELECT o_runs FROM qflow.finish_chains($1, clock_timestamp(), ARRAY[$2::uuid, $3::uuid, $4::uuid],
		ARRAY[0, 0, 0]::smallint[], ARRAY[0, 0, 0], ARRAY['{"v": 1}', '{"v": 11}', '{"v": 21}']::jsonb[],
		ARRAY[$2::uuid, $2::uuid, $3::uuid, $4::uuid, $4::uuid], ARRAY[1, 2, 1, 1, 2]::smallint[], ARRAY[0, 0, 0, 0, 0],
		ARRAY['{"v": 2}', '{"v": 3}', '{"v": 12}', '{"v": 22}', '{"v": 23}']::jsonb[], ARRAY[NULL, NULL, NULL, NULL, NULL]::text[])`,
		w, ids[0], ids[1], ids[2]).Scan(&fast)
	tx.Rollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantFast := []uuid.UUID{ids[0], ids[2]}
	slices.SortFunc(wantFast, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if diff := cmp.Diff(wantFast, fast); diff != "" {
		t.Fatalf("runs finish_chains records (-want +got):\n%s", diff)
	}
	const none = `'{}', '{}', '{}', '{}', '{}', '{}'`
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid, $3::uuid, $4::uuid], ARRAY[0, 0, 0]::smallint[],
		ARRAY[0, 0, 0], ARRAY['{"v": 1}', '{"v": 11}', '{"v": 21}']::jsonb[], `+none+`,
		ARRAY[$2::uuid, $2::uuid, $3::uuid, $4::uuid, $4::uuid], ARRAY[1, 2, 1, 1, 2]::smallint[], ARRAY[0, 0, 0, 0, 0],
		ARRAY['{"v": 2}', '{"v": 3}', '{"v": 12}', '{"v": 22}', '{"v": 23}']::jsonb[],
		ARRAY[NULL, NULL, NULL, NULL, NULL]::text[], ARRAY[false, false, false, false, false], '{}', 0, 0, 1000)`,
		w, ids[0], ids[1], ids[2]); err != nil {
		t.Fatal(err)
	}
	var got []string
	rows, err := e.db.Pool.Query(ctx, `SELECT format('%s %s', r.input->>'v', coalesce(r.output::text, r.status)) || coalesce(' ' || (
			SELECT string_agg(format('%s:%s in=%s out=%s', t.step_idx, t.status, t.input, t.output), ' ' ORDER BY t.step_idx)
			FROM qflow.step_tasks t WHERE t.run_id = r.id), '')
		FROM qflow.runs r ORDER BY (r.input->>'v')::int`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`0 {"c": {"v": 3}} 0:completed in={"run": {"v": 0}} out={"v": 1} 1:completed in={"a": {"v": 1}} out={"v": 2} 2:completed in={"b": {"v": 2}} out={"v": 3}`,
		`10 started 0:completed in={"run": {"v": 10}} out={"v": 11} 1:completed in={"a": {"v": 11}} out={"v": 12} 2:queued in={"b": {"v": 12}} out=`,
		`20 {"c": {"v": 23}} 0:completed in={"run": {"v": 20}} out={"v": 21} 1:completed in={"a": {"v": 21}} out={"v": 22} 2:completed in={"b": {"v": 22}} out={"v": 23}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("runs and tasks (-want +got):\n%s", diff)
	}
	ended := []string{"workflow_started started", "step_started a started", "task_started a[0] #1 started",
		"task_completed a[0] #1 completed", "step_completed a completed",
		"step_started b started", "task_started b[0] #1 started", "task_completed b[0] #1 completed", "step_completed b completed",
		"step_started c started", "task_started c[0] #1 started", "task_completed c[0] #1 completed", "step_completed c completed",
		"workflow_completed completed"}
	quietA := slices.Concat(ended[:3], ended[5:])
	wants := map[uuid.UUID][]string{ids[0]: quietA, ids[1]: ended[:10], ids[2]: ended}
	evs := map[uuid.UUID][]string{}
	for n := 0; n < len(quietA)+len(ended)+10; {
		select {
		case m := <-l.C():
			if m.Event != nil {
				evs[m.Event.RunID] = append(evs[m.Event.RunID], describe(*m.Event))
				n++
			}
		case <-ctx.Done():
			t.Fatalf("events %q, want %q", evs, wants)
		}
	}
	if diff := cmp.Diff(wants, evs); diff != "" {
		t.Fatalf("the runs' events (-want +got):\n%s", diff)
	}
	select {
	case m := <-l.C():
		t.Fatalf("an event more: %+v", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestFinishChainsTakesOnlyRunsItEnds calls finish_chains (in transactions
// rolled back) with results it must leave to the general path, one case
// at a time, and once with results it takes, so that each case can fail.
func TestFinishChainsTakesOnlyRunsItEnds(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	chain, _ := chain3(t, "fc_chain")
	twoLeaves, err := qflow.NewFlow("fc_leaves").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{DependsOn: []string{"b"}}).
		Step("d", qflow.StepDef{TakesInput: true}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	w := uuid.New()
	// start defines def, starts one run with opts and claims its task a.
	start := func(def qflow.FlowDef, opts *qflow.StartOptions) uuid.UUID {
		t.Helper()
		flowID, err := e.client.DefineFlow(ctx, def)
		if err != nil {
			t.Fatal(err)
		}
		id, err := e.client.StartRun(ctx, def.Slug, map[string]int{"v": 0}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.claim($1, $2, 10, 60000)`, flowID, w); err != nil {
			t.Fatal(err)
		}
		return id
	}
	type result struct {
		step   int
		output any // nil: NULL
		err    any // nil: NULL
		took   int
	}
	// taken runs finish_chains on run id's completion of a (output aOut)
	// and inline results, and reports whether it took the run.
	taken := func(id uuid.UUID, aOut any, inline []result) bool {
		t.Helper()
		tx, err := e.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		var irun []uuid.UUID
		var istep, itook []int
		var iout, ierr []any
		for _, r := range inline {
			irun, istep, itook = append(irun, id), append(istep, r.step), append(itook, r.took)
			iout, ierr = append(iout, r.output), append(ierr, r.err)
		}
		var runs []uuid.UUID
		if err := tx.QueryRow(ctx, `SELECT coalesce(o_runs, '{}') FROM qflow.finish_chains($1, clock_timestamp(),
			ARRAY[$2::uuid], ARRAY[0]::smallint[], ARRAY[0], ARRAY[$3::jsonb],
			$4::uuid[], $5::smallint[], $6::integer[], $7::jsonb[], $8::text[])`,
			w, id, aOut, irun, istep, itook, iout, ierr).Scan(&runs); err != nil {
			t.Fatal(err)
		}
		return len(runs) == 1 && runs[0] == id
	}
	ok := []result{{1, `{"v": 2}`, nil, 0}, {2, `{"v": 3}`, nil, 0}}
	plain := start(chain, nil)
	// A run of a flow with two leaves whose other leaf, d, is done: only
	// the leaf count tells it from a chain's end.
	leaves := start(twoLeaves, nil)
	const none = `'{}', '{}', '{}', '{}', '{}', '{}'`
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid], ARRAY[3]::smallint[], ARRAY[0],
		ARRAY['{"d": 1}'::jsonb], `+none+`, '{}', '{}', '{}', '{}', '{}', '{}', '{}', 0, 0, 1000)`, w, leaves); err != nil {
		t.Fatal(err)
	}
	assertCount(t, e, `SELECT remaining_steps FROM qflow.runs WHERE id = '`+leaves.String()+`'`, 3)
	if !taken(plain, `{"v": 1}`, ok) {
		t.Fatal("a chain to the run's end was not taken")
	}
	for _, c := range []struct {
		name   string
		run    uuid.UUID
		aOut   any
		inline []result
	}{
		{"the chain stops before the leaf", plain, `{"v": 1}`, ok[:1]},
		{"a result given twice", plain, `{"v": 1}`, append(ok, ok[1])},
		{"an inline failure", plain, `{"v": 1}`, []result{ok[0], {2, nil, "boom", 0}}},
		{"an inline task still running", plain, `{"v": 1}`, []result{ok[0], {2, `{"v": 3}`, nil, -5}}},
		{"the completion is a skip", plain, nil, ok},
		{"a step skipped", plain, `{"v": 1}`, ok[1:]},
		{"a sequential run", start(chain, &qflow.StartOptions{Sequential: true}), `{"v": 1}`, ok},
		{"a flow with two leaves, the other done", leaves, `{"v": 1}`, ok},
	} {
		if taken(c.run, c.aOut, c.inline) {
			t.Errorf("%s: finish_chains took the run", c.name)
		}
	}
	// A run past its deadline.
	late := start(chain, &qflow.StartOptions{Timeout: time.Hour})
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.runs SET deadline = now() - interval '1 second' WHERE id = $1`, late); err != nil {
		t.Fatal(err)
	}
	if taken(late, `{"v": 1}`, ok) {
		t.Error("a run past its deadline: finish_chains took it")
	}
}

// A settle whose chain stops before the run's last step takes the general
// path: record_inline writes b (its events are published after a's, by
// finish_tasks as p_direct_events). The run's events must carry times in
// the order they are published.
func TestChainStoppingShortPublishesTimesInOrder(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	l := listenEvents(t, e)
	def, _ := chain3(t, "revts")
	from := time.Now()
	flowID, ids, w := startClaimed(t, e, def, map[string]int{"v": 0})
	const none = `'{}', '{}', '{}', '{}', '{}', '{}'`
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid], ARRAY[0]::smallint[],
		ARRAY[0], ARRAY['{"v": 1}']::jsonb[], `+none+`,
		ARRAY[$2::uuid], ARRAY[1]::smallint[], ARRAY[0], ARRAY['{"v": 2}']::jsonb[],
		ARRAY[NULL]::text[], ARRAY[false], '{}', 0, 0, 1000)`, w, ids[0]); err != nil {
		t.Fatal(err)
	}
	// c is queued now: complete it the ordinary way so the run ends.
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.claim($1, $2, 10, 60000)`, flowID, w); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid], ARRAY[2]::smallint[],
		ARRAY[0], ARRAY['{"v": 3}']::jsonb[], `+none+`, '{}', '{}', '{}', '{}', '{}', '{}', '{}', 0, 0, 1000)`, w, ids[0]); err != nil {
		t.Fatal(err)
	}
	got, evs := collect(t, l, ids[0], 50*time.Millisecond)
	if len(got) != 14 {
		t.Fatalf("events %q, want the run's 14", got)
	}
	checkTimes(t, evs, from, time.Now())
}

// TestFinishChainsWritesEventsAsEvDoes: finish_chains writes its events
// out field by field rather than through qflow.ev. It ends four runs in
// one settle: a chain with a retried first task (attempt 3) and inline
// steps that took 3 and 1,200 ms; a chain whose first task was created
// with events off; a chain whose run has events off; and the one run of a
// one-step flow with 40-character slugs (its completion is its leaf).
// Each run's events must be the general path's, with the attempts and
// durations the results gave, and every event must read byte for byte as
// qflow.ev writes the same fields.
func TestFinishChainsWritesEventsAsEvDoes(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	l := listenEvents(t, e)
	def, _ := chain3(t, "evbytes")
	_, ids, w := startClaimed(t, e, def, map[string]int{"v": 0}, map[string]int{"v": 10}, map[string]int{"v": 20})
	long := strings.Repeat("x", 39)
	oneDef, err := qflow.NewFlow("o"+long).Step("s"+long, qflow.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	_, oneIDs := startClaimedBy(t, e, oneDef, w, map[string]int{"v": 30})
	// Run 0's first task: its third attempt, started 1 s ago, its step 3 s
	// ago. Run 1's first task was created with events off; run 2 has
	// events off.
	for _, u := range []struct {
		sql string
		run uuid.UUID
	}{
		{`UPDATE qflow.step_tasks SET attempts = 3, started_at = clock_timestamp() - interval '1 s' WHERE run_id = $1 AND step_idx = 0`, ids[0]},
		{`UPDATE qflow.step_states SET started_at = clock_timestamp() - interval '3 s' WHERE run_id = $1 AND step_idx = 0`, ids[0]},
		{`UPDATE qflow.step_tasks SET events = false WHERE run_id = $1 AND step_idx = 0`, ids[1]},
		{`UPDATE qflow.runs SET events = false WHERE id = $1`, ids[2]},
		{`UPDATE qflow.step_tasks SET events = false WHERE run_id = $1`, ids[2]},
	} {
		if _, err := e.db.Pool.Exec(ctx, u.sql, u.run); err != nil {
			t.Fatal(err)
		}
	}
	// One settle (finish_chains runs when a settle has inline results). It
	// takes all four runs (seen in a transaction rolled back).
	const results = `ARRAY[$2::uuid, $3::uuid, $4::uuid, $5::uuid], ARRAY[0, 0, 0, 0]::smallint[],
		ARRAY[0, 0, 0, 0], ARRAY['{"v": 1}', '{"v": 11}', '{"v": 21}', '{"v": 31}']::jsonb[]`
	const inline = `ARRAY[$2::uuid, $2::uuid, $3::uuid, $3::uuid, $4::uuid, $4::uuid], ARRAY[1, 2, 1, 2, 1, 2]::smallint[],
		ARRAY[3, 1200, 0, 7, 5, 5],
		ARRAY['{"v": 2}', '{"v": 3}', '{"v": 12}', '{"v": 13}', '{"v": 22}', '{"v": 23}']::jsonb[],
		ARRAY[NULL, NULL, NULL, NULL, NULL, NULL]::text[]`
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var taken int
	err = tx.QueryRow(ctx, `SELECT cardinality(o_runs) FROM qflow.finish_chains($1, clock_timestamp(), `+results+`, `+inline+`)`,
		w, ids[0], ids[1], ids[2], oneIDs[0]).Scan(&taken)
	tx.Rollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if taken != 4 {
		t.Fatalf("finish_chains takes %d runs, want 4", taken)
	}
	const none = `'{}', '{}', '{}', '{}', '{}', '{}'`
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, `+results+`, `+none+`, `+inline+`,
		ARRAY[false, false, false, false, false, false], '{}', 0, 0, 1000)`,
		w, ids[0], ids[1], ids[2], oneIDs[0]); err != nil {
		t.Fatal(err)
	}

	// Every event, raw, as the notifications carried them; then decoded.
	var raws []string
	ends, last := 0, ""
	for ends < 3 { // runs 0, 1 and the one-step run end with workflow_completed
		select {
		case m := <-l.C():
			if m.Event == nil || m.Payload == last {
				continue // the messages of one notification share its payload
			}
			last = m.Payload
			var els []json.RawMessage
			if err := json.Unmarshal([]byte(m.Payload), &els); err != nil {
				t.Fatalf("payload %s: %v", m.Payload, err)
			}
			for _, el := range els {
				raws = append(raws, string(el))
				if strings.HasPrefix(string(el), `{"type":"workflow_completed"`) {
					ends++
				}
			}
		case <-ctx.Done():
			t.Fatalf("events so far %q: want three runs completed", raws)
		}
	}
	for quiet := time.After(200 * time.Millisecond); ; {
		select {
		case m := <-l.C():
			if m.Payload != last {
				t.Fatalf("an event more: %+v", m)
			}
			continue
		case <-quiet:
		}
		break
	}

	// The sequences, with the attempts and the inline steps' durations.
	evs := map[uuid.UUID][]string{}
	dur := map[uuid.UUID]map[string]int64{}
	for _, raw := range raws {
		ev, err := notify.ParseEvent(raw)
		if err != nil {
			t.Fatal(err)
		}
		d := describe(ev)
		if ev.Type == notify.WorkflowCompleted && ev.Step != "" {
			t.Errorf("workflow_completed names step %q", ev.Step)
		}
		evs[ev.RunID] = append(evs[ev.RunID], d)
		if dur[ev.RunID] == nil {
			dur[ev.RunID] = map[string]int64{}
		}
		dur[ev.RunID][d] = ev.DurationMS
	}
	ended := []string{"workflow_started started", "step_started a started", "task_started a[0] #1 started",
		"task_completed a[0] #3 completed", "step_completed a completed",
		"step_started b started", "task_started b[0] #1 started", "task_completed b[0] #1 completed", "step_completed b completed",
		"step_started c started", "task_started c[0] #1 started", "task_completed c[0] #1 completed", "step_completed c completed",
		"workflow_completed completed"}
	quietA := slices.Concat(ended[:3], ended[5:])
	st := "s" + long
	one := []string{"workflow_started started", "step_started " + st + " started", "task_started " + st + "[0] #1 started",
		"task_completed " + st + "[0] #1 completed", "step_completed " + st + " completed", "workflow_completed completed"}
	want := map[uuid.UUID][]string{ids[0]: ended, ids[1]: quietA, ids[2]: ended[:3], oneIDs[0]: one}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Fatalf("the runs' events (-want +got):\n%s", diff)
	}
	wantDur := map[string]int64{"task_completed b[0] #1 completed": 3, "step_completed b completed": 3,
		"task_completed c[0] #1 completed": 1200, "step_completed c completed": 1200}
	for k, v := range wantDur {
		if got := dur[ids[0]][k]; got != v {
			t.Errorf("run 0 %s: duration %d ms, want %d", k, got, v)
		}
	}
	// The first task's attempt started 1 s before the settle, its step 3 s.
	if got := dur[ids[0]]["task_completed a[0] #3 completed"]; got < 1000 || got >= 3000 {
		t.Errorf("run 0's task a took %d ms, want 1000-2999 (from the attempt's start)", got)
	}
	if got := dur[ids[0]]["step_completed a completed"]; got < 3000 || got >= 13000 {
		t.Errorf("run 0's step a took %d ms, want 3000-12999 (from the step's start)", got)
	}

	// Byte for byte as qflow.ev writes the same fields.
	type fields struct {
		Type      string  `json:"type"`
		RunID     string  `json:"run_id"`
		Flow      string  `json:"flow"`
		Step      *string `json:"step"`
		TaskIndex *int    `json:"task_index"`
		Status    *string `json:"status"`
		Attempt   *int    `json:"attempt"`
		Duration  *int64  `json:"duration_ms"`
		TS        string  `json:"ts"`
	}
	for _, raw := range raws {
		var f fields
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			t.Fatalf("event %s: %v", raw, err)
		}
		var want string
		if err := e.db.Pool.QueryRow(ctx, `SELECT qflow.ev($1, $2::uuid, $3, $4, $5, $6, $7, $8, NULL, NULL, p_ts => $9)`,
			f.Type, f.RunID, f.Flow, f.Step, f.TaskIndex, f.Status, f.Attempt, f.Duration, f.TS).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if raw != want {
			t.Errorf("event\n got %s\nwant %s (qflow.ev)", raw, want)
		}
	}
}

// startClaimed defines def, starts one run per input and claims their first
// tasks for a worker of its own (no Worker runs), which it returns with the
// flow version and the runs, so a test can call qflow.settle as that worker.
func startClaimed(t *testing.T, e *env, def qflow.FlowDef, inputs ...any) (int, []uuid.UUID, uuid.UUID) {
	t.Helper()
	w := uuid.New()
	flowID, ids := startClaimedBy(t, e, def, w, inputs...)
	return flowID, ids, w
}

// startClaimedBy is startClaimed for worker w, so that one settle can hold
// the runs of several flows.
func startClaimedBy(t *testing.T, e *env, def qflow.FlowDef, w uuid.UUID, inputs ...any) (int, []uuid.UUID) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	flowID, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := e.client.StartRuns(ctx, def.Slug, inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.claim($1, $2, 10, 60000)`, flowID, w); err != nil {
		t.Fatal(err)
	}
	return flowID, ids
}
