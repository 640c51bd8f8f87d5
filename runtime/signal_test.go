package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
)

// approvalFlow: draft, then approve, which waits for signal "approval"
// and returns its task input (the draft's output and the payload).
func approvalFlow(slug string, timeout time.Duration, optional bool) (qflow.FlowDef, map[string]qflow.Handler) {
	def := qflow.FlowDef{Slug: slug, Steps: []qflow.StepDef{
		{Slug: "draft"},
		{Slug: "approve", DependsOn: []string{"draft"}, Wait: "approval", WaitTimeout: timeout, Optional: optional},
	}}
	return def, map[string]qflow.Handler{
		"draft":   func(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`"text"`), nil },
		"approve": func(_ context.Context, t *qflow.Task) (json.RawMessage, error) { return t.Input, nil },
	}
}

// waitStepStatus polls GetRun until step has status want.
func waitStepStatus(t *testing.T, e *env, id uuid.UUID, step, want string) *qflow.Run {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := e.client.GetRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.Steps {
			if s.Step == step && s.Status == want {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("step %q never became %q: %+v", step, want, r.Steps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSignalResumesWaitingStep: the waiting step has no task until the
// signal comes; then it runs with the payload under "signal", and the
// events show the wait and the resume.
func TestSignalResumesWaitingStep(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, h := approvalFlow("signal_resume", 0, false)
	e.startWorker(def, h, nil)
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"n": 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := waitStepStatus(t, e, run.ID, "approve", qflow.StatusWaiting)
	if r.Status != qflow.StatusStarted || r.Steps[1].TaskCount != nil || len(r.Steps[1].Tasks) != 0 {
		t.Fatalf("waiting run: status %s, approve %+v; want started, no task", r.Status, r.Steps[1])
	}
	time.Sleep(300 * time.Millisecond) // a worker polling meanwhile finds nothing to run
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks t JOIN qflow.steps st ON st.flow_id = t.flow_id AND st.idx = t.step_idx WHERE st.slug = 'approve'`, 0)
	if err := e.client.Signal(ctx, run.ID, "approval", map[string]any{"by": "ann", "ok": true}); err != nil {
		t.Fatal(err)
	}
	out, err := run.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]any{"approve": {"draft": "text", "signal": map[string]any{"by": "ann", "ok": true}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("output (-want +got):\n%s", diff)
	}
	evs, raw := collect(t, l, run.ID, 50*time.Millisecond)
	wantEvs := []string{
		"workflow_started started",
		"step_started draft started",
		"task_started draft[0] #1 started",
		"task_completed draft[0] #1 completed",
		"step_completed draft completed",
		"step_waiting approve waiting",
		"step_resumed approve started",
		"step_started approve started",
		"task_started approve[0] #1 started",
		"task_completed approve[0] #1 completed",
		"step_completed approve completed",
		"workflow_completed completed",
	}
	if diff := cmp.Diff(wantEvs, evs); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if !raw[5].Until.IsZero() {
		t.Errorf("step_waiting without a timeout has until %v; want none", raw[5].Until)
	}
}

// TestSignalBeforeStepIsKept: a signal sent before the run reaches the
// step (here before any worker runs) is kept, and the step starts at once
// when its dependency completes, without waiting.
func TestSignalBeforeStepIsKept(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, h := approvalFlow("signal_early", 0, false)
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.Signal(ctx, run.ID, "approval", "early"); err != nil {
		t.Fatal(err)
	}
	e.startWorker(def, h, nil)
	out, err := run.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"approve": {"draft": "text", "signal": "early"}}`; string(out) != want {
		t.Fatalf("output %s; want %s", out, want)
	}
	evs, _ := collect(t, l, run.ID, 50*time.Millisecond)
	for _, ev := range evs {
		if strings.HasPrefix(ev, "step_waiting") || strings.HasPrefix(ev, "step_resumed") {
			t.Errorf("event %q for a signal that was already there", ev)
		}
	}
}

// TestSignalBadInput: an unknown run, an unknown signal name, a second
// signal, a payload that is not JSON and a finished run are clear errors,
// and change nothing.
func TestSignalBadInput(t *testing.T) {
	e := newEnv(t)
	def, h := approvalFlow("signal_bad", 0, false)
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.Signal(ctx, uuid.New(), "approval", 1); !errors.Is(err, qflow.ErrRunNotFound) {
		t.Errorf("unknown run: %v; want ErrRunNotFound", err)
	}
	if err := e.client.Signal(ctx, run.ID, "approvals", 1); !errors.Is(err, qflow.ErrUnknownSignal) {
		t.Errorf("unknown signal: %v; want ErrUnknownSignal", err)
	}
	if err := e.client.Signal(ctx, run.ID, "Not A Name", 1); !errors.Is(err, qflow.ErrUnknownSignal) {
		t.Errorf("malformed name: %v; want ErrUnknownSignal", err)
	}
	if err := e.client.Signal(ctx, run.ID, "approval", json.RawMessage(`{nope`)); !errors.Is(err, qflow.ErrBadInput) {
		t.Errorf("payload not JSON: %v; want ErrBadInput", err)
	}
	if err := e.client.Signal(ctx, run.ID, "approval", func() {}); !errors.Is(err, qflow.ErrBadInput) {
		t.Errorf("payload that does not encode: %v; want ErrBadInput", err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.signals`, 0)
	if err := e.client.Signal(ctx, run.ID, "approval", "first"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Signal(ctx, run.ID, "approval", "second"); !errors.Is(err, qflow.ErrSignalSent) {
		t.Errorf("second signal: %v; want ErrSignalSent", err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.signals WHERE payload = '"first"'`, 1)
	assertCount(t, e, `SELECT count(*) FROM qflow.signals`, 1)
	e.startWorker(def, h, nil)
	out, err := run.Wait(ctx)
	if err != nil || !strings.Contains(string(out), `"signal": "first"`) {
		t.Fatalf("run: %s, %v; want the first payload", out, err)
	}
	if err := e.client.Signal(ctx, run.ID, "approval", "late"); !errors.Is(err, qflow.ErrRunFinished) {
		t.Errorf("completed run: %v; want ErrRunFinished", err)
	}
	other, err := e.client.StartFlow(ctx, def, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.CancelRun(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Signal(ctx, other.ID, "approval", "late"); !errors.Is(err, qflow.ErrRunFinished) {
		t.Errorf("cancelled run: %v; want ErrRunFinished", err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.signals`, 1)
}

// TestSignalWaitTimeout: a wait that times out fails the run, or skips the
// step when it is optional.
func TestSignalWaitTimeout(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, h := approvalFlow("signal_timeout", 300*time.Millisecond, false)
	e.startWorker(def, h, nil)
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = run.Wait(ctx)
	var re *qflow.RunError
	if !errors.As(err, &re) || re.Status != qflow.StatusFailed || re.Step != "approve" ||
		!strings.Contains(re.Message, `waiting for signal "approval"`) {
		t.Fatalf("Wait: %v; want the run failed at approve by the wait's timeout", err)
	}
	_, raw := collect(t, l, run.ID, 50*time.Millisecond)
	for _, ev := range raw {
		if ev.Type == "step_waiting" {
			if d := ev.Until.Sub(ev.Time); d < 250*time.Millisecond || d > 5*time.Second {
				t.Errorf("step_waiting: until %v at %v; want 300ms later", ev.Until, ev.Time)
			}
		}
	}
	if err := e.client.Signal(ctx, run.ID, "approval", 1); !errors.Is(err, qflow.ErrRunFinished) {
		t.Errorf("signal after the timeout: %v; want ErrRunFinished", err)
	}
	// Resumed, the run waits again, and a signal now completes it.
	if err := e.client.ResumeRun(ctx, run.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Signal(ctx, run.ID, "approval", "late"); err != nil {
		t.Fatalf("signal to the resumed run: %v", err)
	}
	if out, err := run.Wait(ctx); err != nil || !strings.Contains(string(out), `"signal": "late"`) {
		t.Fatalf("resumed run: %s, %v; want it completed with the signal", out, err)
	}

	opt, oh := approvalFlow("signal_timeout_opt", 300*time.Millisecond, true)
	e.startWorker(opt, oh, nil)
	run, err = e.client.StartFlow(ctx, opt, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run.Wait(ctx)
	if err != nil || string(out) != `{}` {
		t.Fatalf("optional: %s, %v; want the run completed without approve's output", out, err)
	}
	r, err := e.client.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Steps[1]; s.Status != qflow.StatusSkipped || !strings.Contains(s.Error, "timed out") {
		t.Fatalf("optional approve: %+v; want skipped with the timeout as error", s)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.waits`, 0)
}

// TestSignalWaitSurvivesWorkers: no worker runs while the run waits and
// the signal arrives; a new worker then finishes the run.
func TestSignalWaitSurvivesWorkers(t *testing.T) {
	e := newEnv(t)
	def, h := approvalFlow("signal_restart", 0, false)
	ctx := ctxT(t, 30*time.Second)
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 200 * time.Millisecond})
	if err := w.Register(def, h); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	run, err := e.client.StartFlow(ctx, def, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitStepStatus(t, e, run.ID, "approve", qflow.StatusWaiting)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := e.client.Signal(ctx, run.ID, "approval", 7); err != nil {
		t.Fatal(err)
	}
	e.startWorker(def, h, nil)
	out, err := run.Wait(ctx)
	if want := `{"approve": {"draft": "text", "signal": 7}}`; err != nil || string(out) != want {
		t.Fatalf("run: %s, %v; want %s", out, err, want)
	}
}
