package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	qflow "github.com/quantumflow/qflow/runtime"
)

func TestTuneSteps(t *testing.T) {
	def, err := qflow.NewFlow("tuned").
		Step("a", qflow.StepDef{Options: qflow.StepOptions{Idempotent: true}}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	stats := map[string]qflow.StepStats{
		// Half the attempts failed, and retries recovered them.
		"a": {Tasks: 10, Successes: 10, Attempts: 20, FailedAttempts: 10, RetriedOK: 10, Samples: 10, P50MS: 100, P99MS: 200},
		"b": {Tasks: 10, Successes: 10, Attempts: 10, Samples: 10, P50MS: 50, P99MS: 60},
		"c": {Tasks: 2, Successes: 2, Attempts: 2, Samples: 2, P50MS: 5, P99MS: 5}, // too few
	}
	if got := qflow.TuneSteps(def, stats, qflow.OptimizeOff, nil); len(got) != 0 {
		t.Fatalf("off: %+v", got)
	}
	basic := qflow.TuneSteps(def, stats, qflow.OptimizeBasic, &qflow.LearnOptions{TimeoutFloor: 500 * time.Millisecond})
	want := map[string]qflow.StepTuning{
		// p99 200ms × 3 = 600ms, rounded up to 700ms; 0.5^n < 1/1000
		// needs 10 attempts, capped at 8 (7 retries).
		"a": {Samples: 10, EstimateMS: 100, Timeout: 700 * time.Millisecond, Retries: 7},
		// p99 60ms × 3 is below the 500ms floor; no failures, own retries.
		"b": {Samples: 10, EstimateMS: 50, Timeout: 500 * time.Millisecond},
	}
	if diff := cmp.Diff(want, basic); diff != "" {
		t.Errorf("basic (-want +got):\n%s", diff)
	}
	adv := qflow.TuneSteps(def, stats, qflow.OptimizeAdvanced, nil)
	// The longest path from a is a then b: 100 + 50 ms; c, without
	// statistics, counts as the mean of the others' medians, 75 ms.
	for step, p := range map[string]int{"a": 151, "b": 51, "c": 76} {
		if adv[step].Priority != p {
			t.Errorf("advanced: %s priority %d, want %d", step, adv[step].Priority, p)
		}
	}
	if adv["a"].HedgeAfter != 0 {
		t.Error("advanced hedges")
	}
	aggr := qflow.TuneSteps(def, stats, qflow.OptimizeAggressive, &qflow.LearnOptions{HedgeFactor: 1.5})
	if aggr["a"].HedgeAfter != 150*time.Millisecond || aggr["b"].HedgeAfter != 0 {
		t.Errorf("aggressive: hedge a after %s (want 150ms), b after %s (want none: not idempotent)", aggr["a"].HedgeAfter, aggr["b"].HedgeAfter)
	}
	if l, err := qflow.ParseOptimizeLevel("Advanced"); err != nil || l != qflow.OptimizeAdvanced || l.String() != "advanced" {
		t.Errorf("ParseOptimizeLevel: %v, %v", l, err)
	}
	if _, err := qflow.ParseOptimizeLevel("max"); err == nil {
		t.Error("ParseOptimizeLevel accepted max")
	}
}

// stoppable runs a worker until the returned function is called.
func stoppable(t *testing.T, e *env, def qflow.FlowDef, h map[string]qflow.Handler, opts qflow.WorkerOptions) (stop func()) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	w := qflow.NewWorker(e.db.Pool, &opts)
	if err := w.Register(def, h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitForCount polls query until it returns want.
func waitForCount(t *testing.T, e *env, query string, want int, args ...any) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := e.db.Pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", query, n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runOnce(t *testing.T, e *env, ctx context.Context, def qflow.FlowDef, input any) time.Duration {
	t.Helper()
	began := time.Now()
	h, err := e.client.StartFlow(ctx, def, input, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return time.Since(began)
}

// TestOptimizeBasicLearnsTimeouts: a worker at the basic level, started
// before anything was learned, tunes again every Learning.Interval; once
// it has learned fetch's durations, an attempt that hangs costs the
// learned timeout, not the configured 20s.
func TestOptimizeBasicLearnsTimeouts(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("opt_hang").
		Options(qflow.StepOptions{Timeout: 20 * time.Second, BaseDelay: 10 * time.Millisecond}).
		Step("fetch", qflow.StepDef{TakesInput: true}).
		Step("use", qflow.StepDef{DependsOn: []string{"fetch"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var hang atomic.Bool
	stoppable(t, e, def, map[string]qflow.Handler{
		"fetch": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			if hang.Load() && task.Attempt == 1 {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			time.Sleep(20 * time.Millisecond)
			return json.RawMessage(`1`), nil
		},
		"use": func(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`2`), nil },
	}, qflow.WorkerOptions{Optimize: qflow.OptimizeBasic, Learning: qflow.LearnOptions{TimeoutFloor: 300 * time.Millisecond, Interval: 100 * time.Millisecond}})
	for i := range 4 {
		runOnce(t, e, ctx, def, i)
	}
	// Learned at the next tuning: p99 × 3 is under the 300ms floor.
	waitForCount(t, e, `SELECT count(*) FROM qflow.step_tuning tu JOIN qflow.steps st ON st.flow_id = tu.flow_id AND st.idx = tu.step_idx
		WHERE st.slug = 'fetch' AND tu.timeout_ms = 300 AND tu.level = 1`, 1)
	hang.Store(true)
	if took := runOnce(t, e, ctx, def, 9); took > 5*time.Second {
		t.Fatalf("a hanging attempt cost %s at the basic level; want about the learned 300ms timeout, not 20s", took)
	}
	st := statsBySlug(t, e.client, "opt_hang")["fetch"]
	if st.Timeouts != 1 || st.RetriedOK != 1 {
		t.Errorf("fetch statistics after the hang: %+v", st)
	}
}

// TestOptimizeBasicRaisesRetries: a step whose failures retries recovered
// gets more attempts at the basic level, written to its flow version; a
// worker at OptimizeOff puts the step's own back.
func TestOptimizeBasicRaisesRetries(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("opt_flaky").
		Step("flaky", qflow.StepDef{TakesInput: true, Options: qflow.StepOptions{Retries: 1, BaseDelay: time.Millisecond}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var failFirst atomic.Int32
	failFirst.Store(1)
	h := map[string]qflow.Handler{"flaky": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
		if task.Attempt <= int(failFirst.Load()) {
			return nil, errors.New("transient")
		}
		return json.RawMessage(`1`), nil
	}}
	stop := stoppable(t, e, def, h, qflow.WorkerOptions{})
	for i := range 4 { // each run: a failed attempt, then a success
		runOnce(t, e, ctx, def, i)
	}
	stop()
	attempts := `SELECT max_attempts FROM qflow.steps st JOIN qflow.flows f ON f.id = st.flow_id WHERE f.slug = 'opt_flaky'`
	waitForCount(t, e, attempts, 2)

	stop = stoppable(t, e, def, h, qflow.WorkerOptions{Optimize: qflow.OptimizeBasic})
	// Half the attempts failed: 0.5^n < 1/1000 needs 10 attempts, capped at 8.
	waitForCount(t, e, attempts, 8)
	failFirst.Store(5) // 5 failures would fail the step's own 2 attempts
	runOnce(t, e, ctx, def, 10)
	stop()

	stoppable(t, e, def, h, qflow.WorkerOptions{})
	waitForCount(t, e, attempts, 2)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tuning`, 0)
}

// TestOptimizeAdvancedClaimsCriticalPathFirst: with one slot, the chain
// that decides the run's length is claimed before the short side steps
// once the worker at the advanced level has learned the durations.
func TestOptimizeAdvancedClaimsCriticalPathFirst(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	b := qflow.NewFlow("opt_cp")
	for _, s := range []string{"side1", "side2", "side3", "side4", "side5"} {
		b.Step(s, qflow.StepDef{})
	}
	def, err := b.Step("c1", qflow.StepDef{}).
		Step("c2", qflow.StepDef{DependsOn: []string{"c1"}}).
		Step("c3", qflow.StepDef{DependsOn: []string{"c2"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	h := map[string]qflow.Handler{}
	for _, s := range def.Steps {
		d := 5 * time.Millisecond
		if s.Slug[0] == 'c' {
			d = 40 * time.Millisecond
		}
		h[s.Slug] = func(context.Context, *qflow.Task) (json.RawMessage, error) {
			mu.Lock()
			order = append(order, s.Slug)
			mu.Unlock()
			time.Sleep(d)
			return json.RawMessage(`1`), nil
		}
	}
	run := func() []string {
		mu.Lock()
		order = nil
		mu.Unlock()
		runOnce(t, e, ctx, def, nil)
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(order)
	}
	stop := stoppable(t, e, def, h, qflow.WorkerOptions{Concurrency: 1})
	off := run()
	if diff := cmp.Diff([]string{"side1", "side2", "side3", "side4", "side5", "c1", "c2", "c3"}, off); diff != "" {
		t.Fatalf("level off start order (-want +got):\n%s", diff)
	}
	run()
	run()
	stop()
	stoppable(t, e, def, h, qflow.WorkerOptions{Concurrency: 1, Optimize: qflow.OptimizeAdvanced})
	waitForCount(t, e, `SELECT count(*) FROM qflow.step_tuning WHERE priority > 0`, len(def.Steps))
	adv := run()
	// c1 is claimed first. A chain task becomes ready when its predecessor
	// is settled; the worker may refill the freed slot a moment before
	// that, so at most one side task can slip in before each of c2 and c3.
	if len(adv) != 8 || adv[0] != "c1" || slices.Index(adv, "c3") > 4 {
		t.Fatalf("advanced start order %v: want c1 first and c3 among the first five", adv)
	}
}

// TestOptimizeAggressiveHedgesIdempotentSteps: at the aggressive level a
// straggler of an idempotent step gets a second copy after about twice
// its learned median, and the first success wins.
func TestOptimizeAggressiveHedgesIdempotentSteps(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("opt_hedge").
		Step("call", qflow.StepDef{TakesInput: true, Options: qflow.StepOptions{Idempotent: true}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var straggle atomic.Bool
	var calls, cancelled atomic.Int32
	h := map[string]qflow.Handler{"call": func(ctx context.Context, _ *qflow.Task) (json.RawMessage, error) {
		if calls.Add(1) == 1 && straggle.Load() {
			select { // the first copy straggles
			case <-time.After(10 * time.Second):
			case <-ctx.Done():
				cancelled.Add(1)
				return nil, ctx.Err()
			}
		}
		time.Sleep(20 * time.Millisecond)
		return json.RawMessage(`"ok"`), nil
	}}
	stop := stoppable(t, e, def, h, qflow.WorkerOptions{})
	for i := range 4 {
		runOnce(t, e, ctx, def, i)
	}
	stop()
	stoppable(t, e, def, h, qflow.WorkerOptions{Optimize: qflow.OptimizeAggressive})
	waitForCount(t, e, `SELECT count(*) FROM qflow.step_tuning WHERE hedge_ms > 0`, 1)
	calls.Store(0)
	straggle.Store(true)
	if took := runOnce(t, e, ctx, def, 9); took > 5*time.Second {
		t.Fatalf("a straggler cost %s at the aggressive level; want about twice the learned median", took)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d calls of the handler; want 2 (the straggler and its hedge)", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cancelled.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if cancelled.Load() != 1 {
		t.Error("the straggling copy was not cancelled when its hedge won")
	}
	if st := statsBySlug(t, e.client, "opt_hedge")["call"]; st.Attempts != 5 || st.FailedAttempts != 0 {
		t.Errorf("a hedge is not an attempt: %+v", st)
	}
}

// TestOptimizeLevelChecked: a level out of range is refused when the
// worker starts.
func TestOptimizeLevelChecked(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("opt_bad").Step("a", qflow.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), Optimize: 7})
	if err := w.Register(def, map[string]qflow.Handler{"a": func(context.Context, *qflow.Task) (json.RawMessage, error) { return nil, nil }}); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(ctxT(t, 10*time.Second)); err == nil {
		t.Fatal("Run accepted optimisation level 7")
	}
}
