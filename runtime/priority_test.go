package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
)

// TestStepPriorities: with one worker slot, ready tasks of a prioritized
// flow start highest priority first; a flow without priorities stays FIFO.
func TestStepPriorities(t *testing.T) {
	for _, tc := range []struct {
		name  string
		prios map[string]int
		want  []string
	}{
		{"fifo", nil, []string{"lo", "mid", "hi"}},
		{"prioritized", map[string]int{"hi": 10, "mid": 5}, []string{"hi", "mid", "lo"}},
		{"negative", map[string]int{"lo": -1, "hi": 3}, []string{"hi", "mid", "lo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			def, err := qflow.NewFlow("prio").
				Step("lo", qflow.StepDef{}).
				Step("mid", qflow.StepDef{}).
				Step("hi", qflow.StepDef{}).
				Build()
			if err != nil {
				t.Fatal(err)
			}
			id, err := e.client.DefineFlow(ctx, def)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.client.SetStepPriorities(ctx, id, tc.prios); err != nil {
				t.Fatal(err)
			}
			// Two runs queued before any worker runs: all six tasks are ready.
			var ids []uuid.UUID
			for range 2 {
				rid, err := e.client.StartRun(ctx, "prio", map[string]int{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, rid)
			}
			var mu sync.Mutex
			var order []string
			h := func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
				mu.Lock()
				order = append(order, task.Step)
				mu.Unlock()
				return json.RawMessage(`1`), nil
			}
			e.startWorker(def, map[string]qflow.Handler{"lo": h, "mid": h, "hi": h},
				&qflow.WorkerOptions{Concurrency: 1, BatchSize: 1})
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			for _, rid := range ids {
				if _, err := e.client.WaitRun(wctx, rid); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			// Both runs' tasks are ready together: each priority level is
			// served (for both runs) before the next.
			var want []string
			for _, s := range tc.want {
				want = append(want, s, s)
			}
			if tc.prios == nil {
				want = append(slices.Clone(tc.want), tc.want...) // FIFO: run by run
			}
			if !slices.Equal(order, want) {
				t.Fatalf("start order %v, want %v", order, want)
			}
		})
	}
}

// TestStepPrioritiesErrors: unknown steps, unknown flow versions and
// priorities that do not fit the engine's integer are refused, with the
// package's errors; the SQL function refuses mismatched arrays itself.
func TestStepPrioritiesErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, _ := qflow.NewFlow("prio_err").Step("a", qflow.StepDef{}).Build()
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id    int
		prios map[string]int
		want  error
	}{
		{id, map[string]int{"nope": 1}, qflow.ErrInvalidFlow},
		{id, map[string]int{"a": 1 << 40}, qflow.ErrInvalidFlow},
		{id + 1000, map[string]int{"a": 1}, qflow.ErrUnknownFlow},
	} {
		if err := e.client.SetStepPriorities(ctx, tc.id, tc.prios); !errors.Is(err, tc.want) {
			t.Errorf("SetStepPriorities(%d, %v) = %v, want %v", tc.id, tc.prios, err, tc.want)
		}
	}
	if _, err := e.db.Pool.Exec(ctx, `SELECT qflow.set_step_priorities($1::integer, $2::text[], $3::integer[])`, id, []string{"a"}, []int32{1, 2}); err == nil {
		t.Error("set_step_priorities with 1 slug and 2 priorities: no error")
	}
	if err := e.client.SetStepPriorities(ctx, id, nil); err != nil {
		t.Errorf("no priorities: %v", err)
	}
}

// TestGetFlowInfo: a flow version is found by the id DefineFlow returned.
func TestGetFlowInfo(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, _ := qflow.NewFlow("info").Step("a", qflow.StepDef{}).Step("b", qflow.StepDef{DependsOn: []string{"a"}}).Build()
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	def2, _ := qflow.NewFlow("info").Step("a", qflow.StepDef{}).Build()
	id2, err := e.client.DefineFlow(ctx, def2)
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.client.GetFlowInfo(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != id2 || info.Slug != "info" || info.Version != 2 || info.Steps != 1 || info.ShapeHash != def2.ShapeHash() || info.Queue != "info_2" {
		t.Errorf("GetFlowInfo(%d) = %+v", id2, info)
	}
	if info, err := e.client.GetFlowInfo(ctx, id); err != nil || info.Version != 1 {
		t.Errorf("GetFlowInfo(%d) = %+v, %v", id, info, err)
	}
	if _, err := e.client.GetFlowInfo(ctx, id2+1000); !errors.Is(err, qflow.ErrUnknownFlow) {
		t.Errorf("unknown id: %v", err)
	}
}

// TestStepPrioritiesFromDefinition: priorities given in the definition
// (StepOptions.Priority) take effect without SetStepPriorities; a new
// priority on the same shape keeps the flow version and still takes
// effect; a definition without priorities leaves the version's alone.
func TestStepPrioritiesFromDefinition(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	build := func(lo, mid, hi int) qflow.FlowDef {
		def, err := qflow.NewFlow("prio_def").
			Step("lo", qflow.StepDef{Options: qflow.StepOptions{Priority: lo}}).
			Step("mid", qflow.StepDef{Options: qflow.StepOptions{Priority: mid}}).
			Step("hi", qflow.StepDef{Options: qflow.StepOptions{Priority: hi}}).
			Build()
		if err != nil {
			t.Fatal(err)
		}
		return def
	}
	var mu sync.Mutex
	var order []string
	h := func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		mu.Lock()
		order = append(order, task.Step)
		mu.Unlock()
		return json.RawMessage(`1`), nil
	}
	// run defines def, queues two runs with no worker running, then runs
	// them with one slot and returns the order the steps started in.
	run := func(def qflow.FlowDef) (int, []string) {
		t.Helper()
		id, err := e.client.DefineFlow(ctx, def)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uuid.UUID
		for range 2 {
			rid, err := e.client.StartRun(ctx, def.Slug, map[string]int{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, rid)
		}
		mu.Lock()
		order = nil
		mu.Unlock()
		w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Concurrency: 1, BatchSize: 1, Logger: quiet(), PollInterval: 100 * time.Millisecond})
		if err := w.Register(def, map[string]qflow.Handler{"lo": h, "mid": h, "hi": h}); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		for _, rid := range ids {
			if _, err := e.client.WaitRun(wctx, rid); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return id, slices.Clone(order)
	}
	id1, got := run(build(0, 5, 10))
	if want := []string{"hi", "hi", "mid", "mid", "lo", "lo"}; !slices.Equal(got, want) {
		t.Fatalf("definition priorities: start order %v, want %v", got, want)
	}
	id2, got := run(build(20, 5, 10))
	if id2 != id1 {
		t.Fatalf("a new priority made flow version id %d, want the same version (%d)", id2, id1)
	}
	if want := []string{"lo", "lo", "hi", "hi", "mid", "mid"}; !slices.Equal(got, want) {
		t.Fatalf("redefined priorities: start order %v, want %v", got, want)
	}
	// A definition without priorities (code that knows nothing of them)
	// leaves the version's priorities as they are.
	if _, got := run(build(0, 0, 0)); !slices.Equal(got, []string{"lo", "lo", "hi", "hi", "mid", "mid"}) {
		t.Fatalf("definition without priorities: start order %v, want the stored priorities kept", got)
	}
	if err := e.client.SetStepPriorities(ctx, id1, map[string]int{"lo": 0, "mid": 0, "hi": 0}); err != nil {
		t.Fatal(err)
	}
	if _, got := run(build(0, 0, 0)); !slices.Equal(got, []string{"lo", "mid", "hi", "lo", "mid", "hi"}) {
		t.Fatalf("priorities cleared: start order %v, want FIFO", got)
	}
}

// TestRunPriority: a high-priority run started after a backlog of
// low-priority runs is claimed first by a worker with one slot, both when
// the worker starts after the backlog and when it is busy while the runs
// arrive; runs of equal priority stay FIFO.
func TestRunPriority(t *testing.T) {
	for _, busy := range []bool{false, true} {
		name := "queued"
		if busy {
			name = "busy"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			def, err := qflow.NewFlow("runprio").Step("work", qflow.StepDef{TakesInput: true}).Build()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.DefineFlow(ctx, def); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var order []string
			release := make(chan struct{})
			h := func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
				var in map[string]string
				if err := json.Unmarshal(task.Input, &in); err != nil {
					return nil, err
				}
				name := in["run"]
				if name == "blocker" {
					<-release
				}
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return json.RawMessage(`1`), nil
			}
			var ids []uuid.UUID
			start := func(name string, prio int) {
				t.Helper()
				rid, err := e.client.StartRun(ctx, "runprio", name, &qflow.StartOptions{Priority: prio})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, rid)
			}
			if busy {
				// No polls, and the worker's first round trip over before the
				// blocker starts: a round trip that reserved the slot before
				// the blocker took it locally may claim low0 ahead of the
				// others (the local start does not see the pump's reservation).
				e.startWorker(def, map[string]qflow.Handler{"work": h},
					&qflow.WorkerOptions{Concurrency: 1, BatchSize: 1, PollInterval: time.Hour})
				time.Sleep(300 * time.Millisecond)
				start("blocker", 0)
				waitFor(t, func() bool {
					var n int
					_ = e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'started'`).Scan(&n)
					return n == 1
				})
			}
			for i := range 5 {
				start(fmt.Sprintf("low%d", i), 0)
			}
			start("negative", -1)
			start("high", 10)
			start("high2", 10)
			start("mid", 3)
			if busy {
				close(release)
			} else {
				e.startWorker(def, map[string]qflow.Handler{"work": h}, &qflow.WorkerOptions{Concurrency: 1, BatchSize: 1})
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			for _, rid := range ids {
				if _, err := e.client.WaitRun(wctx, rid); err != nil {
					t.Fatal(err)
				}
			}
			want := []string{"high", "high2", "mid", "low0", "low1", "low2", "low3", "low4", "negative"}
			if busy {
				want = append([]string{"blocker"}, want...)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(order, want) {
				t.Fatalf("order %v, want %v", order, want)
			}
		})
	}
}

// TestRunPriorityPlusStep: a task's claim priority is its step's priority
// plus its run's, clamped to 32 bits, and a run priority on a flow version
// without step priorities reaches its tasks.
func TestRunPriorityPlusStep(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, err := qflow.NewFlow("prio_sum").
		Step("a", qflow.StepDef{Options: qflow.StepOptions{Priority: 7}}).
		Step("b", qflow.StepDef{Options: qflow.StepOptions{Priority: -3}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := qflow.NewFlow("prio_plain").Step("a", qflow.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		def  qflow.FlowDef
		prio int
		want []int32
	}{
		{def, 0, []int32{7, -3}},
		{def, 100, []int32{107, 97}},
		{def, math.MaxInt32, []int32{math.MaxInt32, math.MaxInt32 - 3}},
		{def, math.MinInt32, []int32{math.MinInt32 + 7, math.MinInt32}},
		{plain, 0, []int32{0}},
		{plain, -5, []int32{-5}},
	} {
		h, err := e.client.StartFlow(ctx, tc.def, map[string]int{}, &qflow.StartOptions{Priority: tc.prio})
		if err != nil {
			t.Fatal(err)
		}
		var got []int32
		if err := e.db.Pool.QueryRow(ctx, `SELECT array_agg(priority ORDER BY step_idx) FROM qflow.step_tasks WHERE run_id = $1`, h.ID).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s with run priority %d: task priorities %v, want %v", tc.def.Slug, tc.prio, got, tc.want)
		}
	}
	if _, err := e.client.StartRun(ctx, "prio_plain", 1, &qflow.StartOptions{Priority: 1 << 40}); !errors.Is(err, qflow.ErrBadInput) {
		t.Errorf("priority 1<<40: %v, want ErrBadInput", err)
	}
}

// TestStartClaimHonoursPriority: a start that claims its runs' first tasks
// for a worker of its own process (qflow.start_runs_claim) claims nothing
// when another run's visible task has a higher claim priority, and claims
// as before otherwise.
func TestStartClaimHonoursPriority(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, err := qflow.NewFlow("prio_local").Step("a", qflow.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	worker := uuid.New()
	claim := func(prio int) int {
		t.Helper()
		var seq []int64
		if err := e.db.Pool.QueryRow(ctx, `SELECT o_seq FROM qflow.start_runs_claim($1::integer, ARRAY['{}'::jsonb], $2::jsonb, $3::uuid, $1::integer, 1, 30000, false)`,
			id, fmt.Sprintf(`{"priority": %d}`, prio), worker).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		return len(seq)
	}
	if n := claim(0); n != 1 {
		t.Fatalf("no other work queued: claimed %d, want 1", n)
	}
	if _, err := e.client.StartRun(ctx, "prio_local", map[string]int{}, &qflow.StartOptions{Priority: 5}); err != nil {
		t.Fatal(err)
	}
	if n := claim(0); n != 0 {
		t.Errorf("a priority-5 task queued: a priority-0 start claimed %d, want 0", n)
	}
	if n := claim(5); n != 1 {
		t.Errorf("a priority-5 task queued: a priority-5 start claimed %d, want 1", n)
	}
	if n := claim(9); n != 1 {
		t.Errorf("a priority-5 task queued: a priority-9 start claimed %d, want 1", n)
	}
}

// TestStartClaimTakesTheRunsHighestPriorityTasks: a start that claims
// fewer tasks than its run has ready takes those with the highest step
// priority, not the first steps of the definition.
func TestStartClaimTakesTheRunsHighestPriorityTasks(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("prio_local_steps").
		Step("side1", qflow.StepDef{}).Step("side2", qflow.StepDef{}).
		Step("urgent", qflow.StepDef{Options: qflow.StepOptions{Priority: 10}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	_, steps := startClaimingOne(t, e, def, `{}`)
	if len(steps) != 1 || steps[0] != 2 {
		t.Fatalf("claimed the tasks of steps %v; want [2] (urgent)", steps)
	}
}

// TestStartClaimLeavesAnEmptyMapsDependentsToClaims: when a root step is
// an empty map, which completes at once and starts its dependents in the
// same transaction, the start claims nothing itself (a dependent may have
// the highest priority), and the first claim takes the highest-priority
// task.
func TestStartClaimLeavesAnEmptyMapsDependentsToClaims(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, err := qflow.NewFlow("prio_emptymap").
		Step("m", qflow.StepDef{Map: true}).
		Step("b", qflow.StepDef{}).
		Step("c", qflow.StepDef{DependsOn: []string{"m"}, Options: qflow.StepOptions{Priority: 10}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	id, steps := startClaimingOne(t, e, def, `[]`)
	if len(steps) != 0 {
		t.Fatalf("the start claimed the tasks of steps %v; want none", steps)
	}
	var step int16
	if err := e.db.Pool.QueryRow(ctx, `SELECT step_idx FROM qflow.claim($1, $2, 1, 30000)`, id, uuid.New()).Scan(&step); err != nil {
		t.Fatal(err)
	}
	if step != 2 {
		t.Fatalf("the first claim took step %d; want 2 (c, priority 10)", step)
	}
}

// startClaimingOne defines def and starts one run of it with input, the
// start claiming at most one task for a worker; it returns the flow
// version's id and the steps of the tasks the start claimed.
func startClaimingOne(t *testing.T, e *env, def qflow.FlowDef, input string) (int, []int16) {
	t.Helper()
	ctx := context.Background()
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int16
	if err := e.db.Pool.QueryRow(ctx, `SELECT o_step FROM qflow.start_runs_claim($1::integer, ARRAY[$3::jsonb], '{}'::jsonb, $2::uuid, $1::integer, 1, 30000, false)`,
		id, uuid.New(), input).Scan(&steps); err != nil {
		t.Fatal(err)
	}
	return id, steps
}
