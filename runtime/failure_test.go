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

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
)

func single(slug string, o qflow.StepOptions) qflow.FlowDef {
	return qflow.FlowDef{Slug: slug, Steps: []qflow.StepDef{{Slug: "only", TakesInput: true, Options: o}}}
}

func waitFailed(t *testing.T, e *env, def qflow.FlowDef, input any, opts *qflow.StartOptions) (*qflow.RunError, uuid.UUID) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	h, err := e.client.StartFlow(ctx, def, input, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Wait(ctx)
	var re *qflow.RunError
	if !errors.As(err, &re) {
		t.Fatalf("Wait: %v; want *RunError", err)
	}
	return re, h.ID
}

func TestRetriesWithBackoff(t *testing.T) {
	e := newEnv(t)
	def := single("flaky", qflow.StepOptions{Retries: 2, BaseDelay: 200 * time.Millisecond})
	var mu sync.Mutex
	var starts []time.Time
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		if task.Attempt < 3 {
			return nil, fmt.Errorf("transient failure %d", task.Attempt)
		}
		return json.RawMessage(`"ok"`), nil
	}}, &qflow.WorkerOptions{PollInterval: 20 * time.Millisecond})
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if len(starts) != 3 {
		t.Fatalf("handler ran %d times, want 3", len(starts))
	}
	// delay = base × 2^(attempt−1) with ±20% jitter: ≥160ms, then ≥320ms.
	if d := starts[1].Sub(starts[0]); d < 160*time.Millisecond {
		t.Errorf("first retry after %v, want ≥ 160ms", d)
	}
	if d := starts[2].Sub(starts[1]); d < 320*time.Millisecond {
		t.Errorf("second retry after %v, want ≥ 320ms", d)
	}
	run, _ := e.client.GetRun(ctx, h.ID)
	if task := run.Steps[0].Tasks[0]; task.Attempts != 3 || task.Status != qflow.StatusCompleted {
		t.Errorf("task %+v; want 3 attempts, completed", task)
	}
}

func TestAttemptsExhaustedStoresLastError(t *testing.T) {
	e := newEnv(t)
	def := single("doomed", qflow.StepOptions{Retries: 1, BaseDelay: time.Millisecond})
	var calls atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		calls.Add(1)
		return nil, fmt.Errorf("boom %d", task.Attempt)
	}}, &qflow.WorkerOptions{PollInterval: 20 * time.Millisecond})
	re, id := waitFailed(t, e, def, nil, nil)
	if re.Step != "only" || re.Message != "boom 2" || calls.Load() != 2 {
		t.Fatalf("run error %+v after %d calls; want step only, boom 2, 2 calls", re, calls.Load())
	}
	run, _ := e.client.GetRun(context.Background(), id)
	if s := run.Steps[0]; s.Status != qflow.StatusFailed || s.Error != "boom 2" || s.Tasks[0].Error != "boom 2" || s.Tasks[0].Status != qflow.StatusFailed {
		t.Fatalf("step %+v", s)
	}
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	e := newEnv(t)
	def := single("permanent", qflow.StepOptions{Retries: 4, BaseDelay: time.Millisecond})
	var calls atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		calls.Add(1)
		return nil, qflow.Permanent(errors.New("bad record"))
	}}, nil)
	re, _ := waitFailed(t, e, def, nil, nil)
	if calls.Load() != 1 || re.Message != "bad record" {
		t.Fatalf("calls %d, error %+v; want 1 call, bad record", calls.Load(), re)
	}
}

func TestPanicFailsAttemptAndWorkerSurvives(t *testing.T) {
	e := newEnv(t)
	def := single("panicky", qflow.StepOptions{Retries: 1, BaseDelay: time.Millisecond})
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		if task.Attempt == 1 {
			panic("kaboom")
		}
		return json.RawMessage(`1`), nil
	}}, &qflow.WorkerOptions{PollInterval: 20 * time.Millisecond})
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	run, _ := e.client.GetRun(ctx, h.ID)
	if task := run.Steps[0].Tasks[0]; task.Attempts != 2 || task.Status != qflow.StatusCompleted {
		t.Fatalf("task %+v; want completed on attempt 2", task)
	}
	// A second run with a panic on every attempt fails with the panic and its stack.
	def2 := single("panicky_always", qflow.StepOptions{Retries: qflow.NoRetries})
	e.startWorker(def2, map[string]qflow.Handler{"only": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		panic("kaboom always")
	}}, nil)
	re, _ := waitFailed(t, e, def2, nil, nil)
	if !strings.HasPrefix(re.Message, "panic: kaboom always") || !strings.Contains(re.Message, "goroutine") {
		t.Fatalf("run error %q; want the panic value and a stack", re.Message)
	}
}

func TestStepTimeoutCancelsHandler(t *testing.T) {
	e := newEnv(t)
	def := single("slow", qflow.StepOptions{Retries: qflow.NoRetries, Timeout: 300 * time.Millisecond})
	ctxEnded := make(chan error, 1)
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		<-ctx.Done()
		ctxEnded <- ctx.Err()
		return nil, ctx.Err()
	}}, nil)
	re, _ := waitFailed(t, e, def, nil, nil)
	if err := <-ctxEnded; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handler context ended with %v; want DeadlineExceeded", err)
	}
	if !strings.Contains(re.Message, `step "only" timed out after 300ms`) {
		t.Fatalf("run error %q; want a timeout message", re.Message)
	}
}

func TestWholeRunTimeoutCancelsRun(t *testing.T) {
	e := newEnv(t)
	def := single("forever", qflow.StepOptions{Timeout: time.Minute})
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}, &qflow.WorkerOptions{PollInterval: 100 * time.Millisecond})
	re, _ := waitFailed(t, e, def, nil, &qflow.StartOptions{Timeout: 500 * time.Millisecond})
	if re.Status != qflow.StatusCancelled || !strings.Contains(re.Message, "run timed out") {
		t.Fatalf("run error %+v; want cancelled by its timeout", re)
	}
}

func TestCancelRunEndsBlockedHandler(t *testing.T) {
	e := newEnv(t)
	def, _ := qflow.NewFlow("cancellable").
		Step("block", qflow.StepDef{}).
		Step("after", qflow.StepDef{DependsOn: []string{"block"}}).
		Build()
	started := make(chan struct{})
	ended := make(chan error, 1)
	var afterRan atomic.Bool
	e.startWorker(def, map[string]qflow.Handler{
		"block": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			close(started)
			<-ctx.Done()
			ended <- context.Cause(ctx)
			return nil, ctx.Err()
		},
		"after": func(context.Context, *qflow.Task) (json.RawMessage, error) {
			afterRan.Store(true)
			return nil, nil
		},
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := h.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("handler context ended without a cause")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("handler context was not cancelled within 3s of CancelRun")
	}
	if _, err := h.Wait(ctx); !errors.Is(err, qflow.ErrRunCancelled) {
		t.Fatalf("Wait: %v; want ErrRunCancelled", err)
	}
	run, _ := e.client.GetRun(ctx, h.ID)
	got := []string{run.Status, run.Steps[0].Status, run.Steps[0].Tasks[0].Status, run.Steps[1].Status}
	if diff := cmp.Diff([]string{"cancelled", "cancelled", "cancelled", "cancelled"}, got); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE finished_at IS NULL`, 0)
	if afterRan.Load() {
		t.Fatal("a step after the cancelled one ran")
	}
	// Cancelling again is a no-op; an unknown run is an error.
	if err := h.Cancel(ctx); err != nil {
		t.Fatalf("second cancel: %v", err)
	}
	if err := e.client.CancelRun(ctx, uuid.New()); !errors.Is(err, qflow.ErrRunNotFound) {
		t.Fatalf("cancel unknown run: %v; want ErrRunNotFound", err)
	}
}

func TestBadInputsLeaveNothingBehind(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def := single("strict", qflow.StepOptions{})
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.StartRun(ctx, "no_such_flow", 1, nil); !errors.Is(err, qflow.ErrUnknownFlow) {
		t.Errorf("unknown flow: %v; want ErrUnknownFlow", err)
	}
	if _, err := e.client.StartRun(ctx, "x; DROP TABLE qflow.runs", 1, nil); !errors.Is(err, qflow.ErrUnknownFlow) {
		t.Errorf("hostile flow name: %v; want ErrUnknownFlow", err)
	}
	if _, err := e.client.StartRun(ctx, "strict", json.RawMessage(`{"a":`), nil); !errors.Is(err, qflow.ErrBadInput) {
		t.Errorf("undecodable input: %v; want ErrBadInput", err)
	}
	if _, err := e.client.StartRun(ctx, "strict", func() {}, nil); !errors.Is(err, qflow.ErrBadInput) {
		t.Errorf("unencodable input: %v; want ErrBadInput", err)
	}
	if _, err := e.client.StartRuns(ctx, "strict", []any{1, json.RawMessage(`nope`)}, nil); !errors.Is(err, qflow.ErrBadInput) {
		t.Errorf("batch with one bad input: %v; want ErrBadInput", err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 0)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE finished_at IS NULL`, 0)
	if _, err := e.client.DefineFlow(ctx, qflow.FlowDef{Slug: "Bad Slug", Steps: []qflow.StepDef{{Slug: "a"}}}); !errors.Is(err, qflow.ErrInvalidFlow) {
		t.Errorf("bad flow slug: %v; want ErrInvalidFlow", err)
	}
}

func TestStartRunTxRolledBackLeavesNoRun(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def := single("txflow", qflow.StepOptions{})
	var calls atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{"only": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		calls.Add(1)
		return json.RawMessage(`true`), nil
	}}, &qflow.WorkerOptions{PollInterval: 50 * time.Millisecond})
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.StartFlowTx(ctx, tx, def, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 0)
	if calls.Load() != 0 {
		t.Fatal("a task of a rolled-back run ran")
	}
	// Committed, it runs.
	tx, _ = e.db.Pool.Begin(ctx)
	id, err := e.client.StartRunTx(ctx, tx, "txflow", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.WaitRun(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func TestDuplicateCompletionIgnored(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def := single("dup", qflow.StepOptions{})
	e.startWorker(def, map[string]qflow.Handler{"only": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		return json.RawMessage(`"first"`), nil
	}}, nil)
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// A late completion and a late failure of the finished task change nothing.
	var n int
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle(gen_random_uuid(), ARRAY[$1::uuid], ARRAY[0]::smallint[], ARRAY[0],
		ARRAY['"second"'::jsonb], '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', 0, 0, 1000)`, h.ID); err != nil {
		t.Fatalf("duplicate completion: %v", err)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT qflow.fail_tasks(gen_random_uuid(), ARRAY[($1::uuid, 0, 0)::qflow.task_key], ARRAY['late'], ARRAY[true])`, h.ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("late failure: n=%d err=%v; want 0", n, err)
	}
	run, _ := e.client.GetRun(ctx, h.ID)
	if run.Status != "completed" || string(run.Output) != `{"only": "first"}` || string(run.Steps[0].Tasks[0].Output) != `"first"` {
		t.Fatalf("run changed: %+v output %s", run, run.Output)
	}
}

func TestListRuns(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def := single("listed", qflow.StepOptions{})
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	ids, err := e.client.StartRuns(ctx, "listed", []any{1, 2, 3, 4, 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.CancelRun(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	var seen []uuid.UUID
	var after uuid.UUID
	for {
		page, err := e.client.ListRuns(ctx, qflow.ListRunsParams{Flow: "listed", Status: "started", Limit: 2, After: after})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			seen = append(seen, r.ID)
		}
		after = page[len(page)-1].ID
	}
	if len(seen) != 4 {
		t.Fatalf("listed %d started runs, want 4", len(seen))
	}
	got := map[uuid.UUID]bool{}
	for _, id := range seen {
		got[id] = true
	}
	for _, id := range ids[1:] {
		if !got[id] {
			t.Errorf("run %s missing from listing", id)
		}
	}
	cancelled, _ := e.client.ListRuns(ctx, qflow.ListRunsParams{Status: "cancelled"})
	if len(cancelled) != 1 || cancelled[0].ID != ids[0] {
		t.Fatalf("cancelled runs: %+v", cancelled)
	}
	if _, err := e.client.ListRuns(ctx, qflow.ListRunsParams{Status: "bogus"}); err == nil {
		t.Fatal("ListRuns accepted an unknown status")
	}
}

func TestLateFailureCannotFailAnotherWorkersAttempt(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def := single("takeover", qflow.StepOptions{Retries: 2})
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	run, err := e.client.StartRun(ctx, "takeover", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := uuid.New(), uuid.New()
	claim := func(worker uuid.UUID) int {
		var n int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.claim($1, $2, 8, 60000)`, id, worker).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if claim(a) != 1 {
		t.Fatal("worker A claimed nothing")
	}
	// A's lease lapses and B takes the task over (attempt 2).
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.step_tasks SET vt = clock_timestamp() WHERE status = 'started'`); err != nil {
		t.Fatal(err)
	}
	if claim(b) != 1 {
		t.Fatal("worker B did not take the task over")
	}
	// A's late failure must not touch B's attempt.
	var n int
	if err := e.db.Pool.QueryRow(ctx, `SELECT qflow.fail_tasks($1, ARRAY[($2::uuid, 0, 0)::qflow.task_key], ARRAY['late failure from A'], ARRAY[false])`, a, run).Scan(&n); err != nil || n != 0 {
		t.Fatalf("late failure from A: n=%d err=%v; want 0", n, err)
	}
	var status string
	var worker uuid.UUID
	var attempts int
	if err := e.db.Pool.QueryRow(ctx, `SELECT status, worker_id, attempts FROM qflow.step_tasks WHERE run_id = $1`, run).Scan(&status, &worker, &attempts); err != nil {
		t.Fatal(err)
	}
	if status != "started" || worker != b || attempts != 2 {
		t.Fatalf("task after A's late failure: %s by %v, attempt %d; want started by B, attempt 2", status, worker, attempts)
	}
	// B's own failure is recorded.
	if err := e.db.Pool.QueryRow(ctx, `SELECT qflow.fail_tasks($1, ARRAY[($2::uuid, 0, 0)::qflow.task_key], ARRAY['B failed'], ARRAY[true])`, b, run).Scan(&n); err != nil || n != 1 {
		t.Fatalf("B's failure: n=%d err=%v; want 1", n, err)
	}
}
