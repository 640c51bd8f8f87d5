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

	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// TestResumeMapFailedAtElement500: a map of 1,000 elements fails for good
// at element 500 after the other 999 completed, which fails the run;
// resumed with a handler that now succeeds, only element 500 and the steps
// after the map run again, and the run completes with the right output.
func TestResumeMapFailedAtElement500(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 120*time.Second)
	def, err := qflow.NewFlow("resmap").
		Step("list", qflow.StepDef{TakesInput: true}).
		MapStep("work", "list", qflow.StepOptions{}).
		Step("total", qflow.StepDef{DependsOn: []string{"work"}}).
		Step("report", qflow.StepDef{DependsOn: []string{"total"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	var work [n]atomic.Int32
	var list, total, report atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	e.startWorker(def, map[string]qflow.Handler{
		"list": qflow.HandlerFunc(func(_ context.Context, in struct{ Run int }) ([]int, error) {
			list.Add(1)
			out := make([]int, in.Run)
			for i := range out {
				out[i] = i
			}
			return out, nil
		}),
		"work": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			work[task.Index].Add(1)
			if task.Index == 500 && failing.Load() {
				// Fail only once every other element has completed, so the
				// failure cancels nothing that would otherwise complete.
				for {
					var done int
					if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.step_tasks
						WHERE run_id = $1 AND step_idx = 1 AND status = 'completed'`, task.RunID).Scan(&done); err != nil {
						return nil, err
					}
					if done == n-1 {
						return nil, qflow.Permanent(errors.New("element 500 is broken"))
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			return task.Input, nil
		},
		"total": qflow.HandlerFunc(func(_ context.Context, in struct{ Work []int }) (int, error) {
			total.Add(1)
			s := 0
			for _, v := range in.Work {
				s += v
			}
			return s, nil
		}),
		"report": qflow.HandlerFunc(func(_ context.Context, in struct{ Total int }) (string, error) {
			report.Add(1)
			return fmt.Sprintf("sum=%d", in.Total), nil
		}),
	}, nil)

	h, err := e.client.StartFlow(ctx, def, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Wait(ctx)
	var re *qflow.RunError
	if !errors.As(err, &re) || re.Status != qflow.StatusFailed || re.Step != "work" {
		t.Fatalf("first outcome: %v; want the run failed at step work", err)
	}
	r, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, task := range r.Steps[1].Tasks {
		if task.Status == qflow.StatusCompleted {
			completed++
		} else if task.Index != 500 || task.Status != qflow.StatusFailed {
			t.Fatalf("task %d is %s; only 500 should have failed", task.Index, task.Status)
		}
	}
	if completed != n-1 || total.Load() != 0 || report.Load() != 0 {
		t.Fatalf("before resuming: %d elements completed, total ran %d, report %d; want 999, 0, 0", completed, total.Load(), report.Load())
	}

	failing.Store(false)
	if err := h.Resume(ctx, &qflow.ResumeOptions{Flow: &def}); err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"report": "sum=499500"}` {
		t.Fatalf("output %s", out)
	}
	for i := range work {
		want := int32(1)
		if i == 500 {
			want = 2
		}
		if got := work[i].Load(); got != want {
			t.Errorf("element %d ran %d times; want %d", i, got, want)
		}
	}
	if list.Load() != 1 || total.Load() != 1 || report.Load() != 1 {
		t.Fatalf("list ran %d, total %d, report %d times; want 1 each", list.Load(), total.Load(), report.Load())
	}
	r, err = e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != qflow.StatusCompleted || r.Resumes != 1 || r.ResumedAt == nil || r.Error != "" || r.FailedStep != "" {
		t.Fatalf("run after resume: %+v", r)
	}
	if task := r.Steps[1].Tasks[500]; task.Attempts != 1 || task.Status != qflow.StatusCompleted {
		t.Fatalf("element 500 after resume: %+v; want completed at its first fresh attempt", task)
	}
}

// TestResumeCancelledRun: a run cancelled in the middle resumes where it
// stopped: the completed step is not run again, the cancelled one and the
// one after run; events say so. A resume rolled back (its client died
// before committing) changes nothing.
func TestResumeCancelledRun(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	l := listenEvents(t, e)
	def, _ := chain3(t, "rescancel")
	var a, b, c atomic.Int32
	started, stopped := make(chan struct{}), make(chan struct{})
	e.startWorker(def, map[string]qflow.Handler{
		"a": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
			a.Add(1)
			return json.RawMessage(`{"v": 1}`), nil
		},
		"b": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			if b.Add(1) == 1 {
				close(started)
				<-ctx.Done()
				close(stopped)
				return nil, ctx.Err()
			}
			return json.RawMessage(`{"v": 2}`), nil
		},
		"c": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
			c.Add(1)
			return json.RawMessage(`{"v": 3}`), nil
		},
	}, nil)
	h, err := e.client.StartFlow(ctx, def, map[string]int{"v": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	// b runs in the slot that ran a, which records a when the chain window
	// closes (WorkerOptions.ChainWindow): cancel once a is recorded.
	waitStep(t, e, h.ID, "a", qflow.StatusCompleted)
	if err := h.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); !errors.Is(err, qflow.ErrRunCancelled) {
		t.Fatalf("wait: %v; want cancelled", err)
	}
	<-stopped
	// Drain the cancellation's events.
	collect(t, l, h.ID, 100*time.Millisecond)

	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT qflow.resume_run($1::uuid)`, h.ID); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := e.client.GetRun(ctx, h.ID); err != nil || r.Status != qflow.StatusCancelled || r.Resumes != 0 {
		t.Fatalf("after a rolled-back resume: %+v, %v; want cancelled, never resumed", r, err)
	}

	if err := e.client.ResumeRun(ctx, h.ID, nil); err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 3}}` {
		t.Fatalf("after resume: %s, %v", out, err)
	}
	if a.Load() != 1 || b.Load() != 2 || c.Load() != 1 {
		t.Fatalf("runs: a %d, b %d, c %d; want 1, 2, 1", a.Load(), b.Load(), c.Load())
	}
	got, evs := collect(t, l, h.ID, 200*time.Millisecond)
	if evs[0].Type != notify.WorkflowResumed || evs[0].Resume != 1 || evs[0].Status != qflow.StatusStarted || evs[0].Flow != "rescancel" {
		t.Fatalf("first event after resume: %+v", evs[0])
	}
	if got[1] != "step_started b started" || got[len(got)-1] != "workflow_completed completed" || strings.Contains(strings.Join(got, "|"), "step_started a") {
		t.Fatalf("events after resume: %q", got)
	}
}

// TestResumeErrors: unknown runs, running and completed runs, a run whose
// flow definition is gone and bad options are refused with their errors,
// and nothing changes.
func TestResumeErrors(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	if err := e.client.ResumeRun(ctx, uuid.New(), nil); !errors.Is(err, qflow.ErrRunNotFound) {
		t.Fatalf("unknown run: %v; want ErrRunNotFound", err)
	}
	def, h := chain3(t, "reserr")
	release := make(chan struct{})
	b := h["b"]
	h["b"] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return b(ctx, task)
	}
	e.startWorker(def, h, nil)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = e.client.ResumeRun(ctx, run.ID, nil)
	if !errors.Is(err, qflow.ErrRunNotResumable) || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("running run: %v; want ErrRunNotResumable", err)
	}
	close(release)
	if _, err := run.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	err = e.client.ResumeRun(ctx, run.ID, &qflow.ResumeOptions{Flow: &def})
	if !errors.Is(err, qflow.ErrRunNotResumable) || !strings.Contains(err.Error(), "completed") {
		t.Fatalf("completed run: %v; want ErrRunNotResumable", err)
	}
	for _, o := range []qflow.ResumeOptions{{Retries: -2}, {Timeout: -time.Second}} {
		if err := e.client.ResumeRun(ctx, run.ID, &o); !errors.Is(err, qflow.ErrBadInput) {
			t.Fatalf("ResumeRun(%+v): %v; want ErrBadInput", o, err)
		}
	}

	// A run whose flow version lost its definition (no worker serves it).
	gone, _ := chain3(t, "resgone")
	g, err := e.client.StartFlow(ctx, gone, map[string]int{"v": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `DELETE FROM qflow.steps WHERE flow_id = (SELECT flow_id FROM qflow.runs WHERE id = $1)`, g.ID); err != nil {
		t.Fatal(err)
	}
	err = e.client.ResumeRun(ctx, g.ID, nil)
	if !errors.Is(err, qflow.ErrUnknownFlow) || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("flow gone: %v; want ErrUnknownFlow", err)
	}
	for _, id := range []uuid.UUID{run.ID, g.ID} {
		var status string
		var resumes int
		if err := e.db.Pool.QueryRow(ctx, `SELECT status, resumes FROM qflow.runs WHERE id = $1`, id).Scan(&status, &resumes); err != nil {
			t.Fatal(err)
		}
		if resumes != 0 || status == qflow.StatusStarted {
			t.Fatalf("run %s changed: %s, %d resumes", id, status, resumes)
		}
	}
}

// TestResumeShape: a definition that differs from the run's version in the
// part to re-run (a step to re-run, a step it depends on, or what a step
// to re-run feeds) is refused with ErrShapeMismatch naming the difference;
// a change elsewhere is accepted and the run keeps its version.
func TestResumeShape(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, err := qflow.NewFlow("resshape").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{DependsOn: []string{"b"}}).
		Step("side", qflow.StepDef{TakesInput: true}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var failing atomic.Bool
	failing.Store(true)
	e.startWorker(def, map[string]qflow.Handler{
		"a":    echo,
		"side": echo,
		"b": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
			if failing.Load() {
				// Fail once side is recorded, so that only b's part failed.
				waitStep(t, e, task.RunID, "side", qflow.StatusCompleted)
				return nil, qflow.Permanent(errors.New("b is broken"))
			}
			return json.RawMessage(`2`), nil
		},
		"c": echo,
	}, nil)
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); !errors.Is(err, qflow.ErrRunFailed) {
		t.Fatalf("%v; want failed", err)
	}
	edit := func(f func(*qflow.FlowDef)) *qflow.FlowDef {
		d := def
		d.Steps = append([]qflow.StepDef(nil), def.Steps...)
		f(&d)
		return &d
	}
	for name, tc := range map[string]struct {
		def  *qflow.FlowDef
		want string
	}{
		"a step to re-run": {edit(func(d *qflow.FlowDef) { d.Steps[2].Options.Retries = 8 }), `step "c" options`},
		"a dependency":     {edit(func(d *qflow.FlowDef) { d.Steps[0].TakesInput = false }), `step "a" takes the flow input=false, was true`},
		"what it feeds": {edit(func(d *qflow.FlowDef) {
			d.Steps = append(d.Steps, qflow.StepDef{Slug: "d", DependsOn: []string{"b"}})
		}), `step "b" feeds [c d], fed [c]`},
		"a removed step": {edit(func(d *qflow.FlowDef) { d.Steps = d.Steps[:2] }), `step "c" is missing`},
		"another flow":   {edit(func(d *qflow.FlowDef) { d.Slug = "other" }), `not "other"`},
	} {
		err := h.Resume(ctx, &qflow.ResumeOptions{Flow: tc.def})
		if !errors.Is(err, qflow.ErrShapeMismatch) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want ErrShapeMismatch saying %s", name, err, tc.want)
		}
	}
	if r, err := e.client.GetRun(ctx, h.ID); err != nil || r.Status != qflow.StatusFailed || r.Resumes != 0 {
		t.Fatalf("after refusals: %+v, %v", r, err)
	}
	// A change outside the failed part (side completed) is fine.
	failing.Store(false)
	ok := edit(func(d *qflow.FlowDef) { d.Steps[3].Options.Timeout = time.Minute * 5 })
	if err := h.Resume(ctx, &qflow.ResumeOptions{Flow: ok, Retries: qflow.NoRetries}); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Wait(ctx); err != nil || string(out) != `{"c": 1, "side": 1}` {
		t.Fatalf("after resume: %s, %v", out, err)
	}
	r, err := e.client.GetRun(ctx, h.ID)
	if err != nil || r.FlowVersion != 1 {
		t.Fatalf("version %d, %v; want the run's own, 1", r.FlowVersion, err)
	}
}

// TestResumeAfterAbandonedWorkers: the worker holding a run's task dies
// (Abandon) after the run is cancelled; the resume queues the task at once
// (no wait for the dead worker's lease); the worker that takes it dies
// too; a third worker finishes the run after that lease, within the
// resumed task's fresh attempt budget.
func TestResumeAfterAbandonedWorkers(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, hs := chain3(t, "resdead")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var bRuns atomic.Int32
	blocking := func(started chan struct{}) map[string]qflow.Handler {
		m := map[string]qflow.Handler{"a": hs["a"], "c": hs["c"]}
		m["b"] = func(context.Context, *qflow.Task) (json.RawMessage, error) {
			bRuns.Add(1)
			close(started)
			<-release // as if the process froze, then died
			return nil, errors.New("never recorded")
		}
		return m
	}
	spawn := func(h map[string]qflow.Handler, lease time.Duration) *qflow.Worker {
		// No chains in process: the test counts b's claims, and an inline b
		// (see WorkerOptions.ChainWindow) is claimed only when recorded.
		w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), Lease: lease, PollInterval: 100 * time.Millisecond, ChainWindow: -1})
		if err := w.Register(def, h); err != nil {
			t.Fatal(err)
		}
		go w.Run(context.Background()) //nolint:errcheck // abandoned: returns "worker abandoned"
		return w
	}
	started1 := make(chan struct{})
	w1 := spawn(blocking(started1), time.Minute)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-started1
	if err := run.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	w1.Abandon()

	started2 := make(chan struct{})
	w2 := spawn(blocking(started2), time.Second)
	if err := run.Resume(ctx, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started2: // not after w1's one-minute lease
	case <-time.After(10 * time.Second):
		t.Fatal("the resumed task was not claimed at once")
	}
	w2.Abandon()
	e.startWorker(def, hs, &qflow.WorkerOptions{Lease: time.Second, ChainWindow: -1})
	out, err := run.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 3}}` {
		t.Fatalf("output %s, %v", out, err)
	}
	r, err := e.client.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b := r.Steps[1].Tasks[0]; b.Attempts != 2 || bRuns.Load() != 2 {
		t.Fatalf("b: %d attempts since the resume, %d blocked runs; want 2 and 2", b.Attempts, bRuns.Load())
	}
}

// waitStep waits until the step of run id has status.
func waitStep(t *testing.T, e *env, id uuid.UUID, step, status string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		r, err := e.client.GetRun(context.Background(), id)
		if err != nil {
			t.Error(err)
			return
		}
		for _, s := range r.Steps {
			if s.Step == step && s.Status == status {
				return
			}
		}
	}
	t.Errorf("step %s of run %s never became %s", step, id, status)
}
