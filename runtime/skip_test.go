package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// Conditional and optional steps of dynamic flows (StepDef.When,
// StepDef.Optional, StepDef.AcceptsSkipped) on PostgreSQL.

// calls counts handler calls per step.
type calls struct {
	mu sync.Mutex
	n  map[string]int
	in map[string]json.RawMessage // each step's last task input
}

func newCalls() *calls { return &calls{n: map[string]int{}, in: map[string]json.RawMessage{}} }

// handler returns a handler for step slug that counts its calls, keeps
// its input and returns out.
func (c *calls) handler(slug string, out string) qflow.Handler {
	return func(_ context.Context, t *qflow.Task) (json.RawMessage, error) {
		c.mu.Lock()
		c.n[slug]++
		c.in[slug] = append(json.RawMessage(nil), t.Input...)
		c.mu.Unlock()
		return json.RawMessage(out), nil
	}
}

func (c *calls) count(slug string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[slug]
}

func (c *calls) input(slug string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.in[slug])
}

// runFlow starts a run of def and waits for its output.
func runFlow(ctx context.Context, e *env, def qflow.FlowDef, input any) (json.RawMessage, error) {
	h, err := e.client.StartFlow(ctx, def, input, nil)
	if err != nil {
		return nil, err
	}
	return h.Wait(ctx)
}

// stepStatuses maps each step of a run to its status.
func stepStatuses(r *qflow.Run) map[string]string {
	m := map[string]string{}
	for _, s := range r.Steps {
		m[s.Step] = s.Status
	}
	return m
}

func stepOf(t *testing.T, r *qflow.Run, slug string) qflow.StepState {
	t.Helper()
	for _, s := range r.Steps {
		if s.Step == slug {
			return s
		}
	}
	t.Fatalf("run %s has no step %q", r.ID, slug)
	return qflow.StepState{}
}

// triage is the flow of these tests:
//
//	classify ─┬─> quarantine (when spam) ──> notify ──> archive
//	          └──────────────┴─(takes quarantine's skip)─> report
//
// Leaves: archive and report.
func triage(t *testing.T) qflow.FlowDef {
	t.Helper()
	def, err := qflow.NewFlow("triage").
		Step("classify", qflow.StepDef{TakesInput: true}).
		Step("quarantine", qflow.StepDef{DependsOn: []string{"classify"},
			When: qflow.WhenFunc(func(_ context.Context, in struct{ Classify struct{ Spam bool } }) (bool, error) {
				return in.Classify.Spam, nil
			})}).
		Step("notify", qflow.StepDef{DependsOn: []string{"quarantine"}}).
		Step("archive", qflow.StepDef{DependsOn: []string{"notify"}}).
		Step("report", qflow.StepDef{DependsOn: []string{"classify", "quarantine"}, AcceptsSkipped: []string{"quarantine"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func triageHandlers(c *calls) map[string]qflow.Handler {
	return map[string]qflow.Handler{
		"classify": func(_ context.Context, t *qflow.Task) (json.RawMessage, error) {
			var in struct{ Run string }
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, err
			}
			c.handler("classify", "")(context.Background(), t)
			return json.Marshal(map[string]bool{"spam": strings.Contains(in.Run, "$$$")})
		},
		"quarantine": c.handler("quarantine", `"quarantined"`),
		"notify":     c.handler("notify", `"notified"`),
		"archive":    c.handler("archive", `"archived"`),
		"report":     c.handler("report", `"reported"`),
	}
}

// TestConditionalSkipCascade: a false condition skips its step without
// running the handler; a dependent that does not take the skip is skipped
// with it, down to a leaf; a dependent that takes it runs without the
// skipped step's key in its input. The run completes, its output has no
// key for the skipped leaf, and GetRun shows the skipped steps (the
// conditional one with its skipped task, the cascaded ones without tasks).
// A true condition runs everything.
func TestConditionalSkipCascade(t *testing.T) {
	e := newEnv(t)
	def := triage(t)
	c := newCalls()
	e.startWorker(def, triageHandlers(c), nil)
	ctx := ctxT(t, 30*time.Second)

	h, err := e.client.StartFlow(ctx, def, "hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("run with a skipped step: %v", err)
	}
	if string(out) != `{"report": "reported"}` {
		t.Errorf("output %s; want only report (archive was skipped)", out)
	}
	for _, slug := range []string{"quarantine", "notify", "archive"} {
		if n := c.count(slug); n != 0 {
			t.Errorf("handler of skipped step %s ran %d times", slug, n)
		}
	}
	if got := c.input("report"); got != `{"classify": {"spam": false}}` {
		t.Errorf("report's input %s; want classify's output and no quarantine key", got)
	}
	r, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"classify": "completed", "quarantine": "skipped", "notify": "skipped", "archive": "skipped", "report": "completed"}
	if diff := cmp.Diff(want, stepStatuses(r)); r.Status != qflow.StatusCompleted || diff != "" {
		t.Fatalf("run %s, steps (-want +got):\n%s", r.Status, diff)
	}
	q := stepOf(t, r, "quarantine")
	if q.Output != nil || q.Error != "" || len(q.Tasks) != 1 || q.Tasks[0].Status != qflow.StatusSkipped || q.Tasks[0].Attempts != 1 || q.FinishedAt == nil {
		t.Errorf("quarantine: %+v", q)
	}
	n := stepOf(t, r, "notify")
	if n.Output != nil || n.TaskCount != nil || len(n.Tasks) != 0 || n.StartedAt != nil || n.FinishedAt == nil {
		t.Errorf("notify (skipped with quarantine): %+v", n)
	}

	// A true condition: every step runs.
	out, err = runFlow(ctx, e, def, "win $$$ now")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"report": "reported", "archive": "archived"}` && string(out) != `{"archive": "archived", "report": "reported"}` {
		t.Errorf("output %s", out)
	}
	if got := c.input("report"); got != `{"classify": {"spam": true}, "quarantine": "quarantined"}` {
		t.Errorf("report's input %s", got)
	}
}

// TestSkipEvents: a false condition publishes step_skipped for the step
// (after its task_started, with no task_completed) and for each step
// skipped with it, and the run's workflow_completed.
func TestSkipEvents(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def := triage(t)
	e.startWorker(def, triageHandlers(newCalls()), &qflow.WorkerOptions{Concurrency: 1})
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, "hello", &qflow.StartOptions{Sequential: true})
	if err != nil {
		t.Fatal(err)
	}
	got, evs := collect(t, l, h.ID, 200*time.Millisecond)
	want := []string{
		"workflow_started started",
		"step_started classify started",
		"task_started classify[0] #1 started",
		"task_completed classify[0] #1 completed",
		"step_completed classify completed",
		"step_started quarantine started",
		"task_started quarantine[0] #1 started",
		"step_skipped quarantine skipped",
		"step_skipped notify skipped",
		"step_skipped archive skipped",
		"step_started report started",
		"task_started report[0] #1 started",
		"task_completed report[0] #1 completed",
		"step_completed report completed",
		"workflow_completed completed",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	for _, ev := range evs {
		if ev.Type == notify.StepSkipped && (ev.Error != "" || ev.TaskIndex != nil || ev.Level() != slog.LevelInfo) {
			t.Errorf("step_skipped of a false condition: %+v", ev)
		}
	}
}

// TestOptionalStep: an optional step that fails after its retries is
// skipped with its error; the run goes on: a dependent that takes its skip
// runs without its key, one that does not is skipped, and the run
// completes. The failure stays visible: the step's error, the task failed
// with its attempts, task_failed then step_skipped with the error.
func TestOptionalStep(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, err := qflow.NewFlow("enrich").
		Step("fetch", qflow.StepDef{TakesInput: true}).
		Step("geo", qflow.StepDef{DependsOn: []string{"fetch"}, Optional: true,
			Options: qflow.StepOptions{Retries: 1, BaseDelay: time.Millisecond}}).
		Step("tag", qflow.StepDef{DependsOn: []string{"geo"}}).
		Step("save", qflow.StepDef{DependsOn: []string{"fetch", "geo"}, AcceptsSkipped: []string{"geo"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	c := newCalls()
	var geoCalls atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{
		"fetch": c.handler("fetch", `{"id": 7}`),
		"geo": func(context.Context, *qflow.Task) (json.RawMessage, error) {
			geoCalls.Add(1)
			return nil, errors.New("geo service down")
		},
		"tag":  c.handler("tag", `"tagged"`),
		"save": c.handler("save", `"saved"`),
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("a failed optional step failed the run: %v", err)
	}
	if string(out) != `{"save": "saved"}` {
		t.Errorf("output %s", out)
	}
	if geoCalls.Load() != 2 || c.count("tag") != 0 || c.input("save") != `{"fetch": {"id": 7}}` {
		t.Errorf("geo tried %d times (want 2), tag ran %d times (want 0), save's input %s", geoCalls.Load(), c.count("tag"), c.input("save"))
	}
	r, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	geo := stepOf(t, r, "geo")
	if r.Status != qflow.StatusCompleted || r.Error != "" || geo.Status != qflow.StatusSkipped || geo.Error != "geo service down" ||
		len(geo.Tasks) != 1 || geo.Tasks[0].Status != qflow.StatusFailed || geo.Tasks[0].Attempts != 2 || geo.Tasks[0].Error != "geo service down" {
		t.Errorf("run %s %q; geo %+v", r.Status, r.Error, geo)
	}
	if s := stepOf(t, r, "tag"); s.Status != qflow.StatusSkipped || s.Error != "" {
		t.Errorf("tag: %+v", s)
	}
	got, evs := collect(t, l, h.ID, 200*time.Millisecond)
	var tail []string
	for i, g := range got {
		if strings.Contains(g, " geo") && !strings.HasPrefix(g, "task_started") && !strings.HasPrefix(g, "step_started") {
			tail = append(tail, g)
			if evs[i].Type == notify.StepSkipped && (evs[i].Error != "geo service down" || evs[i].Level() != slog.LevelWarn) {
				t.Errorf("step_skipped of the optional step: %+v", evs[i])
			}
		}
	}
	want := []string{"task_failed geo[0] #1 queued retry=true", "task_failed geo[0] #2 failed retry=false", "step_skipped geo skipped"}
	if diff := cmp.Diff(want, tail); diff != "" {
		t.Errorf("geo's events (-want +got):\n%s\nall: %q", diff, got)
	}
	for _, g := range got {
		if strings.HasPrefix(g, "step_failed") || strings.HasPrefix(g, "workflow_failed") {
			t.Errorf("event %q for a run that went on", g)
		}
	}
	if got[len(got)-1] != "workflow_completed completed" {
		t.Errorf("last event %q", got[len(got)-1])
	}

	// Without optional, the same failure fails the run (unchanged).
	strict, _ := qflow.NewFlow("strict").Step("geo", qflow.StepDef{Options: qflow.StepOptions{Retries: qflow.NoRetries}}).Build()
	e.startWorker(strict, map[string]qflow.Handler{"geo": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		return nil, errors.New("down")
	}}, nil)
	if _, err := runFlow(ctx, e, strict, nil); !errors.Is(err, qflow.ErrRunFailed) {
		t.Errorf("a failed step that is not optional: %v; want ErrRunFailed", err)
	}
}

// TestOptionalMapStep: when one task of an optional map step fails for
// good, its other tasks are cancelled (a running one's handler sees its
// context end), the step is skipped, and the run goes on.
func TestOptionalMapStep(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("opt_map").
		MapStep("each", "", qflow.StepOptions{Retries: qflow.NoRetries}).
		Step("sum", qflow.StepDef{DependsOn: []string{"each"}, AcceptsSkipped: []string{"each"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	def.Steps[0].Optional = true
	running, stopped := make(chan struct{}), make(chan struct{})
	e.startWorker(def, map[string]qflow.Handler{
		"each": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			switch string(t.Input) {
			case "0":
				<-running // fail once element 1 runs
				return nil, qflow.Permanent(errors.New("bad element"))
			case "1":
				close(running)
				<-ctx.Done() // cancelled with its step
				close(stopped)
				return nil, ctx.Err()
			}
			return t.Input, nil
		},
		"sum": func(_ context.Context, t *qflow.Task) (json.RawMessage, error) { return t.Input, nil },
	}, &qflow.WorkerOptions{Lease: 3 * time.Second})
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, []int{0, 1, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"sum": {}}` {
		t.Errorf("output %s; want sum run without each's output", out)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("the running task of the skipped map step was not stopped")
	}
	r, _ := e.client.GetRun(ctx, h.ID)
	each := stepOf(t, r, "each")
	var st []string
	for _, tk := range each.Tasks {
		st = append(st, tk.Status)
	}
	if each.Status != qflow.StatusSkipped || each.Error != "bad element" || st[0] != "failed" || st[1] != "cancelled" {
		t.Errorf("each: %s %q tasks %v", each.Status, each.Error, st)
	}
}

// TestSkipMapAndLeaves: a map step over a skipped step is skipped with it
// (it cannot take the skip); a run whose leaves were all skipped completes
// with an empty output; a root step can be conditional too.
func TestSkipMapAndLeaves(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("skip_map").
		Step("list", qflow.StepDef{TakesInput: true, When: qflow.WhenFunc(func(_ context.Context, in struct{ Run []int }) (bool, error) {
			return len(in.Run) > 0, nil
		})}).
		MapStep("each", "list", qflow.StepOptions{}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	c := newCalls()
	e.startWorker(def, map[string]qflow.Handler{
		"list": func(_ context.Context, t *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`[1, 2]`), nil },
		"each": c.handler("each", `true`),
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, []int{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{}` {
		t.Fatalf("all leaves skipped: %s, %v; want {}", out, err)
	}
	r, _ := e.client.GetRun(ctx, h.ID)
	if diff := cmp.Diff(map[string]string{"list": "skipped", "each": "skipped"}, stepStatuses(r)); diff != "" || c.count("each") != 0 {
		t.Errorf("steps (-want +got):\n%s; each ran %d times", diff, c.count("each"))
	}
	out, err = runFlow(ctx, e, def, []int{5})
	if err != nil || string(out) != `{"each": [true, true]}` {
		t.Errorf("condition true: %s, %v", out, err)
	}
}

// TestConditionErrors: a condition's error fails the attempt like a
// handler's (retried, then the run fails), and a condition that does not
// decode its input fails at once.
func TestConditionErrors(t *testing.T) {
	e := newEnv(t)
	var tries atomic.Int32
	def, err := qflow.NewFlow("cond_err").
		Step("a", qflow.StepDef{TakesInput: true, Options: qflow.StepOptions{Retries: 2, BaseDelay: time.Millisecond},
			When: func(_ context.Context, input json.RawMessage) (bool, error) {
				if tries.Add(1) < 3 {
					return false, errors.New("flaky condition")
				}
				return string(input) == `{"run": "go"}`, nil
			}}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}, TakesInput: true, When: qflow.WhenFunc(func(_ context.Context, in struct{ Run int }) (bool, error) {
			return true, nil
		})}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(def, map[string]qflow.Handler{"a": echo, "b": echo}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, "go", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Wait(ctx)
	var re *qflow.RunError
	if !errors.As(err, &re) || re.Step != "b" || !strings.Contains(re.Message, `condition of step "b": decode input`) {
		t.Fatalf("run: %v; want step b failed decoding its input", err)
	}
	r, _ := e.client.GetRun(ctx, h.ID)
	a := stepOf(t, r, "a")
	if a.Status != qflow.StatusCompleted || a.Tasks[0].Attempts != 3 || tries.Load() != 3 {
		t.Errorf("a: %s after %d attempts (condition called %d times); want completed after 3", a.Status, a.Tasks[0].Attempts, tries.Load())
	}
	if b := stepOf(t, r, "b"); b.Tasks[0].Attempts != 1 {
		t.Errorf("b: %d attempts; a permanent error takes one", b.Tasks[0].Attempts)
	}
}

// TestResumeKeepsSkips: resuming a failed run re-runs what failed and
// keeps what was skipped, by a false condition or an optional step's
// failure (whose failed task is not queued again).
func TestResumeKeepsSkips(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("resume_skip").
		Step("root", qflow.StepDef{TakesInput: true}).
		Step("maybe", qflow.StepDef{DependsOn: []string{"root"}, When: func(context.Context, json.RawMessage) (bool, error) { return false, nil }}).
		Step("after", qflow.StepDef{DependsOn: []string{"maybe"}}).
		Step("opt", qflow.StepDef{DependsOn: []string{"root"}, Optional: true, Options: qflow.StepOptions{Retries: qflow.NoRetries}}).
		Step("last", qflow.StepDef{DependsOn: []string{"root", "maybe", "opt"}, AcceptsSkipped: []string{"maybe", "opt"},
			Options: qflow.StepOptions{Retries: qflow.NoRetries}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	fail.Store(true)
	c := newCalls()
	var optCalls atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{
		"root":  c.handler("root", `1`),
		"maybe": c.handler("maybe", `2`),
		"after": c.handler("after", `3`),
		"opt": func(context.Context, *qflow.Task) (json.RawMessage, error) {
			optCalls.Add(1)
			return nil, errors.New("optional failure")
		},
		"last": func(_ context.Context, t *qflow.Task) (json.RawMessage, error) {
			if fail.Load() {
				return nil, errors.New("last failed")
			}
			return t.Input, nil
		},
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); !errors.Is(err, qflow.ErrRunFailed) {
		t.Fatalf("first run: %v; want failed at last", err)
	}
	fail.Store(false)
	if err := e.client.ResumeRun(ctx, h.ID, &qflow.ResumeOptions{Flow: &def}); err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{"last": {"root": 1}}` {
		t.Fatalf("resumed run: %s, %v", out, err)
	}
	r, _ := e.client.GetRun(ctx, h.ID)
	want := map[string]string{"root": "completed", "maybe": "skipped", "after": "skipped", "opt": "skipped", "last": "completed"}
	if diff := cmp.Diff(want, stepStatuses(r)); diff != "" || r.Resumes != 1 {
		t.Errorf("resumed %d times, steps (-want +got):\n%s", r.Resumes, diff)
	}
	if optCalls.Load() != 1 || c.count("maybe") != 0 || c.count("after") != 0 {
		t.Errorf("opt ran %d times, maybe %d, after %d; want 1, 0, 0", optCalls.Load(), c.count("maybe"), c.count("after"))
	}
	if o := stepOf(t, r, "opt"); o.Error != "optional failure" || o.Tasks[0].Status != qflow.StatusFailed {
		t.Errorf("opt after the resume: %+v", o)
	}

	// A definition that changes a kept skip's condition is fine to resume
	// with; one that changes an open step's skip rules is not.
	other := def
	other.Steps = append([]qflow.StepDef(nil), def.Steps...)
	other.Steps[4].AcceptsSkipped = []string{"opt"}
	fail.Store(true)
	h2, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Wait(ctx); !errors.Is(err, qflow.ErrRunFailed) {
		t.Fatal(err)
	}
	err = e.client.ResumeRun(ctx, h2.ID, &qflow.ResumeOptions{Flow: &other})
	if !errors.Is(err, qflow.ErrShapeMismatch) || !strings.Contains(err.Error(), `step "last" accepts the skip of [opt], accepted [maybe opt]`) {
		t.Errorf("resume with other skips taken: %v", err)
	}
}

// TestSequentialSkip: in a sequential run a skip passes the turn on.
func TestSequentialSkip(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("seq_skip").
		Step("a", qflow.StepDef{TakesInput: true, When: func(context.Context, json.RawMessage) (bool, error) { return false, nil }}).
		Step("b", qflow.StepDef{TakesInput: true, Optional: true, Options: qflow.StepOptions{Retries: qflow.NoRetries}}).
		Step("c", qflow.StepDef{TakesInput: true}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(def, map[string]qflow.Handler{
		"a": echo,
		"b": func(context.Context, *qflow.Task) (json.RawMessage, error) { return nil, errors.New("no") },
		"c": echo,
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, 1, &qflow.StartOptions{Sequential: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{"c": 1}` {
		t.Fatalf("sequential run: %s, %v", out, err)
	}
}

// TestSettleNullOutputWithoutCondition: settle records a NULL output as a
// skip only for a step with a condition; for any other step it is JSON
// null, as before conditions existed.
func TestSettleNullOutputWithoutCondition(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := qflow.NewFlow("null_out").Step("a", qflow.StepDef{}).Build()
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	worker := uuid.New()
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.claim($1, $2, 10, 60000)`, id, worker); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid], ARRAY[0]::smallint[], ARRAY[0],
		ARRAY[NULL]::jsonb[], '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', 0, 0, 1000)`, worker, h.ID); err != nil {
		t.Fatal(err)
	}
	r, _ := e.client.GetRun(ctx, h.ID)
	if r.Status != qflow.StatusCompleted || string(r.Output) != `{"a": null}` {
		t.Errorf("run %s output %s; want completed with a null", r.Status, r.Output)
	}
}
