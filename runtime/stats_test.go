package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	qflow "github.com/quantumflow/qflow/runtime"
)

// statCounts are the counters of a StepStats, for comparing.
type statCounts struct{ Runs, Tasks, Successes, Failures, Attempts, FailedAttempts, RetriedOK, Timeouts int64 }

func countsOf(s qflow.StepStats) statCounts {
	return statCounts{s.Runs, s.Tasks, s.Successes, s.Failures, s.Attempts, s.FailedAttempts, s.RetriedOK, s.Timeouts}
}

func statsBySlug(t *testing.T, c *qflow.Client, flow string) map[string]qflow.StepStats {
	t.Helper()
	list, err := c.StepStats(context.Background(), flow)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]qflow.StepStats{}
	for _, s := range list {
		if s.Flow != flow {
			t.Errorf("StepStats(%q) returned a row of flow %q", flow, s.Flow)
		}
		by[s.Step] = s
	}
	return by
}

// TestStepStatsRecordedForEveryFlow: a plain flow (no goals, no call to
// record anything) has statistics for every step once its runs finish:
// attempts that failed and were retried, attempts that timed out, a map
// step's elements, and tasks that failed for good.
func TestStepStatsRecordedForEveryFlow(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("learned").
		Options(qflow.StepOptions{BaseDelay: 10 * time.Millisecond}).
		Step("fetch", qflow.StepDef{TakesInput: true}).
		Step("each", qflow.StepDef{DependsOn: []string{"fetch"}, Map: true, Options: qflow.StepOptions{Timeout: 300 * time.Millisecond}}).
		Step("sum", qflow.StepDef{DependsOn: []string{"each"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var firstTry sync.Map // "run/index" → seen: the first attempt of elements 2 and 3 misbehaves
	e.startWorker(def, map[string]qflow.Handler{
		"fetch": qflow.HandlerFunc(func(ctx context.Context, in struct{ Run int }) ([]int, error) {
			time.Sleep(20 * time.Millisecond)
			return []int{0, 1, 2, 3, 4}, nil
		}),
		"each": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			_, seen := firstTry.LoadOrStore(fmt.Sprint(task.RunID, "/", task.Index), true)
			switch {
			case task.Index == 2 && !seen:
				return nil, errors.New("transient: connection reset")
			case task.Index == 3 && !seen:
				<-ctx.Done() // hangs until the step timeout
				return nil, ctx.Err()
			}
			return task.Input, nil
		},
		"sum": qflow.HandlerFunc(func(_ context.Context, in struct{ Each []int }) (int, error) { return len(in.Each), nil }),
	}, &qflow.WorkerOptions{Concurrency: 8})
	for i := range 2 {
		h, err := e.client.StartFlow(ctx, def, i, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// A flow whose only step fails for good after its 2 attempts.
	failing, err := qflow.NewFlow("learned_failing").
		Step("boom", qflow.StepDef{Options: qflow.StepOptions{Retries: 1, BaseDelay: time.Millisecond}}).Build()
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.RunLocal(ctx, failing, map[string]qflow.Handler{"boom": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		return nil, errors.New("always")
	}}, 1, &qflow.WorkerOptions{Logger: quiet()})
	if !errors.Is(err, qflow.ErrRunFailed) {
		t.Fatalf("failing run: %v", err)
	}

	by := statsBySlug(t, e.client, "learned")
	want := map[string]statCounts{
		"fetch": {Runs: 2, Tasks: 2, Successes: 2, Attempts: 2},
		// Per run: 5 elements, of which 2 needed a second attempt (one
		// failed, one timed out).
		"each": {Runs: 2, Tasks: 10, Successes: 10, Attempts: 14, FailedAttempts: 4, RetriedOK: 4, Timeouts: 2},
		"sum":  {Runs: 2, Tasks: 2, Successes: 2, Attempts: 2},
	}
	for step, w := range want {
		s, ok := by[step]
		if !ok {
			t.Errorf("step %s: no statistics", step)
			continue
		}
		if diff := cmp.Diff(w, countsOf(s)); diff != "" {
			t.Errorf("step %s (-want +got):\n%s", step, diff)
		}
	}
	if s := by["fetch"]; s.Samples != 2 || s.P50MS < 15 || s.MeanMS < 15 || s.MaxMS < s.P50MS || s.P99MS > 5000 {
		t.Errorf("fetch durations: %+v", s)
	}
	if s := by["each"]; s.Samples != 10 {
		t.Errorf("each: %d samples, want 10 (one per completed element)", s.Samples)
	}
	fb := statsBySlug(t, e.client, "learned_failing")
	if diff := cmp.Diff(statCounts{Runs: 1, Tasks: 1, Failures: 1, Attempts: 2, FailedAttempts: 2}, countsOf(fb["boom"])); diff != "" {
		t.Errorf("failing step (-want +got):\n%s", diff)
	}
	if fb["boom"].Samples != 0 {
		t.Errorf("a step that never succeeded has %d duration samples", fb["boom"].Samples)
	}
}

// TestStepStatsExactUnderConcurrency: two workers settle 300 runs while
// their upkeep folds the appended statistics and a reader folds them too;
// every task is counted exactly once.
func TestStepStatsExactUnderConcurrency(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("counted").Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).Build()
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]qflow.Handler{
		"a": func(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`1`), nil },
		"b": func(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`2`), nil },
	}
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 4, PollInterval: 20 * time.Millisecond})
	}
	stop := make(chan struct{})
	var reads sync.WaitGroup
	reads.Add(1)
	go func() {
		defer reads.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.client.StepStats(ctx, "counted"); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	inputs := make([]any, 300)
	for i := range inputs {
		inputs[i] = i
	}
	ids, err := e.client.StartRuns(ctx, "counted", inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := e.client.WaitRun(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	reads.Wait()
	by := statsBySlug(t, e.client, "counted")
	for _, step := range []string{"a", "b"} {
		if diff := cmp.Diff(statCounts{Runs: 300, Tasks: 300, Successes: 300, Attempts: 300}, countsOf(by[step])); diff != "" {
			t.Errorf("step %s (-want +got):\n%s", step, diff)
		}
		if by[step].Samples != 128 {
			t.Errorf("step %s: %d samples, want the window of 128", step, by[step].Samples)
		}
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_stats_pending`, 0)
}

// TestStepStatsOfAnAttemptLostWithItsWorker: a worker dies (abandoned, its
// process gone) holding tasks; their statistics are recorded once, when
// another worker completes them after the leases expire, with the lost
// attempt counted as failed. Nothing is recorded for the lost attempt
// itself: statistics are written in the transaction that finishes a task.
func TestStepStatsOfAnAttemptLostWithItsWorker(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("lost").Step("work", qflow.StepDef{TakesInput: true}).Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 10)
	dying := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), Lease: time.Second, Concurrency: 4})
	if err := dying.Register(def, map[string]qflow.Handler{"work": func(ctx context.Context, _ *qflow.Task) (json.RawMessage, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dying.Run(context.Background()) }()
	ids, err := e.client.StartRuns(ctx, "lost", []any{1, 2, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("the dying worker never started the tasks")
		}
	}
	dying.Abandon()
	<-done
	assertCount(t, e, `SELECT count(*) FROM qflow.step_stats_pending`, 0)
	e.startWorker(def, map[string]qflow.Handler{"work": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		return json.RawMessage(`"ok"`), nil
	}}, &qflow.WorkerOptions{Lease: time.Second, PollInterval: 100 * time.Millisecond})
	for _, id := range ids {
		if _, err := e.client.WaitRun(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	by := statsBySlug(t, e.client, "lost")
	if diff := cmp.Diff(statCounts{Runs: 3, Tasks: 3, Successes: 3, Attempts: 6, FailedAttempts: 3, RetriedOK: 3}, countsOf(by["work"])); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestPruneKeepsStepStats: statistics are per step, not per run, so
// pruning the runs they were learned from keeps them.
func TestPruneKeepsStepStats(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, err := qflow.NewFlow("kept").Step("a", qflow.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	for range 3 {
		if _, err := e.client.RunLocal(ctx, def, map[string]qflow.Handler{"a": func(context.Context, *qflow.Task) (json.RawMessage, error) {
			calls.Add(1)
			return json.RawMessage(`1`), nil
		}}, nil, &qflow.WorkerOptions{Logger: quiet()}); err != nil {
			t.Fatal(err)
		}
	}
	before := statsBySlug(t, e.client, "kept")["a"]
	if before.Tasks != 3 {
		t.Fatalf("before pruning: %+v", before)
	}
	time.Sleep(20 * time.Millisecond)
	res, err := e.client.Prune(ctx, qflow.PruneOptions{OlderThan: time.Millisecond})
	if err != nil || res.Runs != 3 {
		t.Fatalf("prune: %+v, %v", res, err)
	}
	after := statsBySlug(t, e.client, "kept")["a"]
	if diff := cmp.Diff(countsOf(before), countsOf(after)); diff != "" || after.Samples != 3 {
		t.Errorf("statistics changed by pruning (-before +after):\n%s samples %d", diff, after.Samples)
	}
}
