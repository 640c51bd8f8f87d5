package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// subflowDefs returns a child flow "<prefix>_child" (one step, "double",
// that doubles its int input) and a parent flow "<prefix>_parent": "prep"
// adds one to the int input, "sub" runs the child on prep's output,
// "after" adds 100 to the child's "double" in sub's output (the child
// run's output, an object of its leaf steps' outputs).
func subflowDefs(t *testing.T, prefix string, sub qflow.StepOptions) (child, parent qflow.FlowDef) {
	t.Helper()
	child, err := qflow.NewFlow(prefix+"_child").
		Step("double", qflow.StepDef{TakesInput: true, Options: qflow.StepOptions{Retries: qflow.NoRetries}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	parent, err = qflow.NewFlow(prefix+"_parent").
		Step("prep", qflow.StepDef{TakesInput: true}).
		Step("sub", qflow.StepDef{DependsOn: []string{"prep"}, Options: sub}).
		Step("after", qflow.StepDef{DependsOn: []string{"sub"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return child, parent
}

// subflowHandlers are the parent's handlers; the child's "double" is
// double.
func subflowHandlers(child string, double qflow.Handler) (parent, kid map[string]qflow.Handler) {
	return map[string]qflow.Handler{
			"prep": qflow.HandlerFunc(func(_ context.Context, in struct {
				Run int `json:"run"`
			}) (int, error) {
				return in.Run + 1, nil
			}),
			"sub": qflow.Subflow(child, &qflow.SubflowOptions{Poll: 30 * time.Millisecond}),
			"after": qflow.HandlerFunc(func(_ context.Context, in struct {
				Sub struct {
					Double int `json:"double"`
				} `json:"sub"` // the child run's output: its leaf steps' outputs
			}) (int, error) {
				return in.Sub.Double + 100, nil
			}),
		}, map[string]qflow.Handler{
			"double": double,
		}
}

func doubler(calls *atomic.Int32, fail func(n int32) error) qflow.Handler {
	return qflow.HandlerFunc(func(_ context.Context, in struct {
		Run int `json:"run"`
	}) (int, error) {
		n := calls.Add(1)
		if fail != nil {
			if err := fail(n); err != nil {
				return 0, err
			}
		}
		return in.Run * 2, nil
	})
}

// startSubflowWorker runs one worker serving both flows until the test ends.
func startSubflowWorker(t *testing.T, e *env, child, parent qflow.FlowDef, ch, ph map[string]qflow.Handler, opts *qflow.WorkerOptions) *qflow.Worker {
	t.Helper()
	if opts == nil {
		opts = &qflow.WorkerOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	w := qflow.NewWorker(e.db.Pool, opts)
	if err := w.Register(child, ch); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(parent, ph); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker.Run: %v", err)
		}
	})
	return w
}

// TestSubflowReturnsChildOutput: a subflow step starts a child run on its
// dependency's output and completes with the child's output; GetRun shows
// the tree from both sides, and subflow_started names the child.
func TestSubflowReturnsChildOutput(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	child, parent := subflowDefs(t, "sf_ok", qflow.StepOptions{})
	var calls atomic.Int32
	ph, ch := subflowHandlers(child.Slug, doubler(&calls, nil))
	startSubflowWorker(t, e, child, parent, ch, ph, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, parent, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{"after": 110}` {
		t.Fatalf("Wait: %s, %v; want {\"after\": 110} ((4+1)*2+100)", out, err)
	}
	pr, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pr.ParentRunID != nil || len(pr.Children) != 1 {
		t.Fatalf("parent: ParentRunID %v, Children %+v; want none and one child", pr.ParentRunID, pr.Children)
	}
	kid := pr.Children[0]
	if diff := cmp.Diff(qflow.ChildRun{ID: kid.ID, Flow: child.Slug, Status: qflow.StatusCompleted, Step: "sub", Index: 0, Attempt: 1}, kid); diff != "" {
		t.Errorf("child (-want +got):\n%s", diff)
	}
	cr, err := e.client.GetRun(ctx, kid.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cr.ParentRunID == nil || *cr.ParentRunID != h.ID || cr.ParentStep != "sub" || string(cr.Input) != "5" ||
		string(cr.Output) != `{"double": 10}` || len(cr.Children) != 0 {
		t.Errorf("child run: parent %v/%q, input %s, output %s, children %v; want %s/sub, 5, {\"double\": 10}, none",
			cr.ParentRunID, cr.ParentStep, cr.Input, cr.Output, cr.Children, h.ID)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("child handler ran %d times; want 1", n)
	}
	_, evs := collect(t, l, h.ID, 50*time.Millisecond)
	var started []notify.Event
	for _, ev := range evs {
		if ev.Type == notify.SubflowStarted {
			started = append(started, ev)
		}
	}
	if len(started) != 1 || started[0].ChildRunID != kid.ID || started[0].ChildFlow != child.Slug ||
		started[0].Step != "sub" || started[0].Attempt != 1 || started[0].Flow != parent.Slug {
		t.Errorf("subflow_started events: %+v; want one naming child %s", started, kid.ID)
	}
}

// TestSubflowChildFailure: a failed child fails the step's attempt; the
// step's retries start a new child, its last failure fails the parent
// with the child's error, and an optional step is skipped instead.
func TestSubflowChildFailure(t *testing.T) {
	t.Run("retried", func(t *testing.T) {
		e := newEnv(t)
		child, parent := subflowDefs(t, "sf_retry", qflow.StepOptions{Retries: 1, BaseDelay: 10 * time.Millisecond})
		var calls atomic.Int32
		ph, ch := subflowHandlers(child.Slug, doubler(&calls, func(n int32) error {
			if n == 1 {
				return errors.New("child blew up")
			}
			return nil
		}))
		startSubflowWorker(t, e, child, parent, ch, ph, nil)
		ctx := ctxT(t, 30*time.Second)
		h, err := e.client.StartFlow(ctx, parent, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := h.Wait(ctx); err != nil || string(out) != `{"after": 104}` {
			t.Fatalf("Wait: %s, %v; want {\"after\": 104}", out, err)
		}
		pr, err := e.client.GetRun(ctx, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range pr.Children {
			got = append(got, fmt.Sprintf("%s attempt %d", c.Status, c.Attempt))
		}
		if diff := cmp.Diff([]string{"failed attempt 1", "completed attempt 2"}, got); diff != "" {
			t.Errorf("children (-want +got):\n%s", diff)
		}
		if st := pr.Steps[1]; st.Step != "sub" || st.Tasks[0].Attempts != 2 {
			t.Errorf("sub step: %+v; want two attempts", st)
		}
	})
	t.Run("fails parent", func(t *testing.T) {
		e := newEnv(t)
		child, parent := subflowDefs(t, "sf_fail", qflow.StepOptions{Retries: qflow.NoRetries})
		var calls atomic.Int32
		ph, ch := subflowHandlers(child.Slug, doubler(&calls, func(int32) error { return errors.New("child blew up") }))
		startSubflowWorker(t, e, child, parent, ch, ph, nil)
		ctx := ctxT(t, 30*time.Second)
		h, err := e.client.StartFlow(ctx, parent, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.Wait(ctx)
		var re *qflow.RunError
		if !errors.As(err, &re) || re.Status != qflow.StatusFailed || re.Step != "sub" ||
			!strings.Contains(re.Message, "child blew up") || !strings.Contains(re.Message, `subflow "sf_fail_child"`) {
			t.Fatalf("Wait: %v; want the parent failed at sub with the child's error", err)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("child handler ran %d times; want 1", n)
		}
	})
	t.Run("optional", func(t *testing.T) {
		e := newEnv(t)
		child, err := qflow.NewFlow("sf_opt_child").
			Step("double", qflow.StepDef{TakesInput: true, Options: qflow.StepOptions{Retries: qflow.NoRetries}}).
			Build()
		if err != nil {
			t.Fatal(err)
		}
		parent, err := qflow.NewFlow("sf_opt_parent").
			Step("prep", qflow.StepDef{TakesInput: true}).
			Step("sub", qflow.StepDef{DependsOn: []string{"prep"}, Optional: true, Options: qflow.StepOptions{Retries: qflow.NoRetries}}).
			Build()
		if err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int32
		ph, ch := subflowHandlers(child.Slug, doubler(&calls, func(int32) error { return errors.New("child blew up") }))
		delete(ph, "after")
		startSubflowWorker(t, e, child, parent, ch, ph, nil)
		ctx := ctxT(t, 30*time.Second)
		h, err := e.client.StartFlow(ctx, parent, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := h.Wait(ctx); err != nil || string(out) != `{}` {
			t.Fatalf("Wait: %s, %v; want {} (the optional subflow step skipped)", out, err)
		}
		pr, err := e.client.GetRun(ctx, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st := pr.Steps[1]; st.Status != qflow.StatusSkipped || !strings.Contains(st.Error, "child blew up") {
			t.Errorf("sub: %s %q; want skipped with the child's error", st.Status, st.Error)
		}
	})
}

// TestSubflowCancelCascades: cancelling a run cancels its running child
// and the child's own child, whose handler's context is cancelled.
func TestSubflowCancelCascades(t *testing.T) {
	e := newEnv(t)
	grand, err := qflow.NewFlow("sf_grand").Step("block", qflow.StepDef{TakesInput: true}).Build()
	if err != nil {
		t.Fatal(err)
	}
	mid, err := qflow.NewFlow("sf_mid").Step("sub", qflow.StepDef{TakesInput: true}).Build()
	if err != nil {
		t.Fatal(err)
	}
	top, err := qflow.NewFlow("sf_top").Step("sub", qflow.StepDef{TakesInput: true}).Build()
	if err != nil {
		t.Fatal(err)
	}
	blocking := make(chan struct{})
	stopped := make(chan error, 1)
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 50 * time.Millisecond})
	poll := &qflow.SubflowOptions{Poll: 30 * time.Millisecond}
	for _, r := range []struct {
		def qflow.FlowDef
		h   map[string]qflow.Handler
	}{
		{grand, map[string]qflow.Handler{"block": func(ctx context.Context, _ *qflow.Task) (json.RawMessage, error) {
			close(blocking)
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil, ctx.Err()
		}}},
		{mid, map[string]qflow.Handler{"sub": qflow.Subflow("sf_grand", poll)}},
		{top, map[string]qflow.Handler{"sub": qflow.Subflow("sf_mid", poll)}},
	} {
		if err := w.Register(r.def, r.h); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() { cancel(); <-done })
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, top, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocking:
	case <-ctx.Done():
		t.Fatal("the grandchild's step never started")
	}
	if err := h.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("the grandchild's handler was not stopped")
	}
	rows, err := e.db.Pool.Query(ctx, `
		WITH RECURSIVE tree AS (SELECT id, flow_slug, status, error, 0 AS depth FROM qflow.runs WHERE id = $1
		                        UNION ALL
		                        SELECT r.id, r.flow_slug, r.status, r.error, t.depth + 1 FROM qflow.runs r JOIN tree t ON r.parent_run_id = t.id)
		SELECT flow_slug || ' ' || status FROM tree ORDER BY depth`, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if diff := cmp.Diff([]string{"sf_top cancelled", "sf_mid cancelled", "sf_grand cancelled"}, got); diff != "" {
		t.Fatalf("run tree (-want +got):\n%s", diff)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE finished_at IS NULL`, 0)
}

// TestSubflowWorkerKilledWhileWaiting: a worker that dies after its
// subflow step started the child (before it recorded anything), while the
// child's task is also held, loses nothing: another worker runs the child,
// the parent's next attempt adopts it instead of starting a second one,
// and the parent completes with its output.
func TestSubflowWorkerKilledWhileWaiting(t *testing.T) {
	e := newEnv(t)
	_, parent := subflowDefs(t, "sf_kill", qflow.StepOptions{Retries: 2, BaseDelay: 10 * time.Millisecond})
	// The child's step may be tried again too: its first attempt dies with
	// the worker.
	child, err := qflow.NewFlow("sf_kill_child").
		Step("double", qflow.StepDef{TakesInput: true, Options: qflow.StepOptions{Retries: 2, BaseDelay: 10 * time.Millisecond}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var linked, childHeld atomic.Bool
	both := make(chan struct{}, 2)
	var calls atomic.Int32
	ph, ch := subflowHandlers(child.Slug, doubler(&calls, nil))
	inner := ph["sub"]
	ph["sub"] = func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
		_, err := inner(ctx, t) // starts and links the child
		if err != nil && !linked.Swap(true) {
			both <- struct{}{}
		}
		<-release // the worker dies before recording the snooze
		return nil, err
	}
	ch["double"] = func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
		if !childHeld.Swap(true) {
			both <- struct{}{}
		}
		<-release
		return nil, errors.New("unreachable")
	}
	a := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Lease: 500 * time.Millisecond, Logger: quiet(), PollInterval: 50 * time.Millisecond})
	if err := a.Register(child, ch); err != nil {
		t.Fatal(err)
	}
	if err := a.Register(parent, ph); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(context.Background()) }()
	ctx := ctxT(t, 60*time.Second)
	h, err := e.client.StartFlow(ctx, parent, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-both:
		case <-ctx.Done():
			t.Fatal("the child was not started and held")
		}
	}
	a.Abandon()
	<-aDone
	ph2, ch2 := subflowHandlers(child.Slug, doubler(&calls, nil))
	startSubflowWorker(t, e, child, parent, ch2, ph2, nil)
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{"after": 142}` {
		t.Fatalf("Wait: %s, %v; want {\"after\": 142}", out, err)
	}
	pr, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.Children) != 1 || pr.Children[0].Status != qflow.StatusCompleted || pr.Children[0].Attempt != 1 {
		t.Fatalf("children: %+v; want the one child of attempt 1, completed", pr.Children)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the child's step completed %d times on the second worker; want 1", n)
	}
}

// TestSubflowBadUse: a subflow handler outside a worker, a child flow
// that does not exist, and a step with two dependencies and no Input
// fail with clear errors.
func TestSubflowBadUse(t *testing.T) {
	_, err := qflow.Subflow("x", nil)(context.Background(), &qflow.Task{RunID: uuid.New(), Flow: "f", Step: "s"})
	if !errors.Is(err, qflow.ErrSubflowOutsideWorker) || !qflow.IsPermanent(err) {
		t.Errorf("outside a worker: %v; want a permanent ErrSubflowOutsideWorker", err)
	}

	e := newEnv(t)
	parent, err := qflow.NewFlow("sf_bad").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{TakesInput: true}).
		Step("nochild", qflow.StepDef{DependsOn: []string{"a"}, Optional: true, Options: qflow.StepOptions{Retries: qflow.NoRetries}}).
		Step("two", qflow.StepDef{DependsOn: []string{"a", "b"}, Optional: true, Options: qflow.StepOptions{Retries: 3}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	one := func(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`1`), nil }
	e.startWorker(parent, map[string]qflow.Handler{
		"a": one, "b": one,
		"nochild": qflow.Subflow("sf_no_such_flow", nil),
		"two":     qflow.Subflow("sf_bad", nil),
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, parent, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	pr, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range pr.Steps[2:] {
		want := map[string]string{"nochild": "unknown flow", "two": "needs SubflowOptions.Input"}[st.Step]
		if st.Status != qflow.StatusSkipped || !strings.Contains(st.Error, want) {
			t.Errorf("%s: %s %q; want skipped with an error saying %q", st.Step, st.Status, st.Error, want)
		}
	}
	if st := pr.Steps[3]; st.Tasks[0].Attempts != 1 {
		t.Errorf("two: %d attempts; want 1 (the error is permanent)", st.Tasks[0].Attempts)
	}
	if len(pr.Children) != 0 {
		t.Errorf("children: %+v; want none", pr.Children)
	}
}

// TestSubflowResumeParent: a parent cancelled while its child runs
// cancels the child; resuming the parent starts a new child, and the
// parent completes with its output.
func TestSubflowResumeParent(t *testing.T) {
	e := newEnv(t)
	child, parent := subflowDefs(t, "sf_resume", qflow.StepOptions{Retries: qflow.NoRetries})
	var calls atomic.Int32
	blocked := make(chan struct{})
	ph, ch := subflowHandlers(child.Slug, nil)
	ch["double"] = func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
		if calls.Add(1) == 1 {
			close(blocked)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		var in struct {
			Run int `json:"run"`
		}
		if err := json.Unmarshal(t.Input, &in); err != nil {
			return nil, err
		}
		return json.Marshal(in.Run * 2)
	}
	startSubflowWorker(t, e, child, parent, ch, ph, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, parent, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-blocked
	if err := h.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); !errors.Is(err, qflow.ErrRunCancelled) {
		t.Fatalf("Wait: %v; want cancelled", err)
	}
	if err := e.client.ResumeRun(ctx, h.ID, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Wait(ctx); err != nil || string(out) != `{"after": 106}` {
		t.Fatalf("Wait after resume: %s, %v; want {\"after\": 106}", out, err)
	}
	pr, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range pr.Children {
		got = append(got, c.Status)
	}
	if diff := cmp.Diff([]string{qflow.StatusCancelled, qflow.StatusCompleted}, got); diff != "" {
		t.Errorf("children (-want +got):\n%s", diff)
	}
}
