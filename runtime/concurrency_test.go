package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

func TestTwoWorkersRunEveryTaskExactlyOnce(t *testing.T) {
	e := newEnv(t)
	def, _ := qflow.NewFlow("shared").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{DependsOn: []string{"b"}}).
		Build()
	var mu sync.Mutex
	executions := map[string]int{}
	byWorker := [2]atomic.Int32{}
	handlers := func(w int) map[string]qflow.Handler {
		h := map[string]qflow.Handler{}
		for _, s := range []string{"a", "b", "c"} {
			h[s] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
				mu.Lock()
				executions[fmt.Sprintf("%s/%s", task.RunID, task.Step)]++
				mu.Unlock()
				byWorker[w].Add(1)
				return task.Input, nil
			}
		}
		return h
	}
	e.startWorker(def, handlers(0), &qflow.WorkerOptions{Concurrency: 4, BatchSize: 8})
	e.startWorker(def, handlers(1), &qflow.WorkerOptions{Concurrency: 4, BatchSize: 8})
	ctx := ctxT(t, 120*time.Second)
	const runs = 500
	inputs := make([]any, runs)
	for i := range inputs {
		inputs[i] = i
	}
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	ids, err := e.client.StartRuns(ctx, "shared", inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := e.client.WaitRun(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(executions) != 3*runs {
		t.Fatalf("%d distinct tasks executed, want %d", len(executions), 3*runs)
	}
	for k, n := range executions {
		if n != 1 {
			t.Errorf("task %s executed %d times", k, n)
		}
	}
	if byWorker[0].Load() == 0 || byWorker[1].Load() == 0 {
		t.Errorf("work was not shared: %d and %d tasks", byWorker[0].Load(), byWorker[1].Load())
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 3*runs)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE finished_at IS NULL`, 0)
}

func TestDeadWorkersTaskIsRetakenAfterLease(t *testing.T) {
	e := newEnv(t)
	def := single("orphan", qflow.StepOptions{Retries: 1})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	claimedByA := make(chan struct{})
	a := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Lease: time.Second, Logger: quiet()})
	if err := a.Register(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		close(claimedByA)
		<-release // never finishes while the test runs
		return nil, nil
	}}); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(context.Background()) }()
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	<-claimedByA
	a.Abandon() // as if its process died: no release, no heartbeat
	<-aDone
	began := time.Now()
	b := e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		return json.RawMessage(fmt.Sprintf(`{"attempt": %d}`, task.Attempt)), nil
	}}, &qflow.WorkerOptions{PollInterval: 100 * time.Millisecond})
	out, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"only": {"attempt": 2}}` {
		t.Fatalf("output %s; want the second attempt's", out)
	}
	if waited := time.Since(began); waited > 5*time.Second {
		t.Errorf("took %v to recover a 1s lease", waited)
	}
	run, _ := e.client.GetRun(ctx, h.ID)
	if task := run.Steps[0].Tasks[0]; task.WorkerID == nil || *task.WorkerID != b.ID() {
		t.Errorf("task finished by %v, want worker B %v", task.WorkerID, b.ID())
	}
}

func TestLeaseExpiredWithNoAttemptsLeftFails(t *testing.T) {
	e := newEnv(t)
	def := single("orphan_once", qflow.StepOptions{Retries: qflow.NoRetries})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	claimed := make(chan struct{})
	a := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Lease: 500 * time.Millisecond, Logger: quiet()})
	_ = a.Register(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		close(claimed)
		<-release
		return nil, nil
	}})
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(context.Background()) }()
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-claimed
	a.Abandon()
	<-aDone
	e.startWorker(def, map[string]qflow.Handler{"only": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		t.Error("a task with no attempts left ran again")
		return nil, nil
	}}, &qflow.WorkerOptions{PollInterval: 100 * time.Millisecond})
	_, err = h.Wait(ctx)
	var re *qflow.RunError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "lease expired") {
		t.Fatalf("Wait: %v; want failure naming the expired lease", err)
	}
}

func TestGracefulShutdownReleasesUnfinishedTasks(t *testing.T) {
	e := newEnv(t)
	def := single("handover", qflow.StepOptions{Retries: qflow.NoRetries})
	started := make(chan struct{})
	a := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{ShutdownTimeout: 200 * time.Millisecond, Logger: quiet()})
	_ = a.Register(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		close(started)
		<-ctx.Done() // ends only when the worker gives up on it
		return nil, ctx.Err()
	}})
	actx, stop := context.WithCancel(context.Background())
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx) }()
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	stop()
	if err := <-aDone; err != nil {
		t.Fatalf("graceful Run: %v", err)
	}
	// Released without using up its only attempt: another worker finishes it at once.
	e.startWorker(def, map[string]qflow.Handler{"only": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		return json.RawMessage(`"done"`), nil
	}}, nil)
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSequentialRunsOneTaskAtATime(t *testing.T) {
	e := newEnv(t)
	def, _ := qflow.NewFlow("seq").MapStep("each", "", qflow.StepOptions{}).Build()
	var running, maxRunning atomic.Int32
	h := map[string]qflow.Handler{"each": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		n := running.Add(1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		return task.Input, nil
	}}
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 8})
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 8})
	ctx := ctxT(t, 60*time.Second)
	run, err := e.client.StartFlow(ctx, def, []int{1, 2, 3, 4, 5, 6, 7, 8}, &qflow.StartOptions{Sequential: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := run.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"each": [1, 2, 3, 4, 5, 6, 7, 8]}` {
		t.Fatalf("output %s", out)
	}
	if maxRunning.Load() != 1 {
		t.Fatalf("%d tasks of a sequential run ran at once", maxRunning.Load())
	}
	// The same flow without the option runs in parallel.
	maxRunning.Store(0)
	run, _ = e.client.StartFlow(ctx, def, []int{1, 2, 3, 4, 5, 6, 7, 8}, nil)
	if _, err := run.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if maxRunning.Load() < 2 {
		t.Fatalf("parallel run never ran two tasks at once")
	}
}

// TestStartRetriesOverride: StartOptions.Retries replaces every step's
// retries for one run; it counts the tries after the first.
func TestStartRetriesOverride(t *testing.T) {
	e := newEnv(t)
	def := single("override", qflow.StepOptions{Retries: 4, BaseDelay: time.Millisecond})
	var calls atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{"only": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		calls.Add(1)
		return nil, errors.New("nope")
	}}, &qflow.WorkerOptions{PollInterval: 20 * time.Millisecond})
	for _, tc := range []struct {
		retries   int
		wantCalls int32
	}{{qflow.NoRetries, 1}, {1, 2}, {0, 5}} {
		calls.Store(0)
		waitFailed(t, e, def, nil, &qflow.StartOptions{Retries: tc.retries})
		if got := calls.Load(); got != tc.wantCalls {
			t.Errorf("StartOptions.Retries %d: %d calls, want %d", tc.retries, got, tc.wantCalls)
		}
	}
}

func TestNewShapeBecomesNewVersion(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	v1 := single("evolving", qflow.StepOptions{})
	v2 := qflow.FlowDef{Slug: "evolving", Steps: []qflow.StepDef{
		{Slug: "only", TakesInput: true},
		{Slug: "extra", DependsOn: []string{"only"}},
	}}
	id1, err := e.client.DefineFlow(ctx, v1)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := e.client.DefineFlow(ctx, v1)
	id2, err := e.client.DefineFlow(ctx, v2)
	if err != nil {
		t.Fatal(err)
	}
	if again != id1 || id2 == id1 {
		t.Fatalf("ids v1 %d, v1 again %d, v2 %d: want v1 idempotent and v2 new", id1, again, id2)
	}
	// A run started on v1 keeps v1 even though v2 is newer; StartRun by slug takes v2.
	h1, err := e.client.StartFlow(ctx, v1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.client.StartRun(ctx, "evolving", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`1`), nil }
	e.startWorker(v1, map[string]qflow.Handler{"only": echo}, nil)
	e.startWorker(v2, map[string]qflow.Handler{"only": echo, "extra": echo}, nil)
	o1, err := h1.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := e.client.WaitRun(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(o1) != `{"only": 1}` || string(o2) != `{"extra": 1}` {
		t.Fatalf("outputs %s and %s", o1, o2)
	}
	flows, _ := e.client.ListFlows(ctx)
	if len(flows) != 2 || flows[0].Version != 1 || flows[1].Version != 2 || flows[0].Queue == flows[1].Queue {
		t.Fatalf("flows %+v", flows)
	}
}
