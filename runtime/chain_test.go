package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	qflow "github.com/quantumflow/qflow/runtime"
)

// Chains run in process (WorkerOptions.ChainWindow): a run's next single
// step runs in the slot that ran its dependency, and the chain is recorded
// in one transaction. These tests check that what is recorded, and what
// the events say, is the same as when every step is claimed.

// TestChainRecordsWhatClaimsRecord runs the same chain with chains on and
// off and compares every run's events and the tasks' records.
func TestChainRecordsWhatClaimsRecord(t *testing.T) {
	var chained []string // the events of a run with chains on
	for _, window := range []time.Duration{0, -1} {
		e := newEnv(t)
		l := listenEvents(t, e)
		def, h := chain3(t, "chained")
		w := e.startWorker(def, h, &qflow.WorkerOptions{ChainWindow: window})
		ctx := ctxT(t, 30*time.Second)
		var want []string
		for i := range 5 {
			run, err := e.client.StartFlow(ctx, def, map[string]int{"v": i}, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := run.Wait(ctx)
			if err != nil || string(out) != `{"c": {"v": `+string(rune('3'+i))+`}}` {
				t.Fatalf("window %v: run %d: %s, %v", window, i, out, err)
			}
			got, _ := collect(t, l, run.ID, 50*time.Millisecond)
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
	}
}

// TestChainSlowStepIsPromoted: an inline step still running when the
// window closes becomes a claimed task of the worker: its dependency's
// result is recorded at once, and its own is recorded when it ends.
func TestChainSlowStepIsPromoted(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "promoted")
	release := make(chan struct{})
	var bRuns atomic.Int32
	b := h["b"]
	h["b"] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		bRuns.Add(1)
		<-release
		return b(ctx, task)
	}
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
