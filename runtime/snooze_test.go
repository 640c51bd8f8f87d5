package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// TestSnoozeThenSucceed: a handler that snoozes runs again after the
// snooze, with the same attempt; the task records one attempt and no
// error, and the events show the snooze between the two starts.
func TestSnoozeThenSucceed(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def := single("snooze_once", qflow.StepOptions{Retries: qflow.NoRetries})
	var mu sync.Mutex
	var runs []time.Time
	var attempts []int
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		mu.Lock()
		defer mu.Unlock()
		runs = append(runs, time.Now())
		attempts = append(attempts, task.Attempt)
		if len(runs) == 1 {
			return nil, qflow.Snooze(500 * time.Millisecond)
		}
		return json.RawMessage(`"done"`), nil
	}}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{"only": "done"}` {
		t.Fatalf("Wait: %s, %v", out, err)
	}
	mu.Lock()
	if len(runs) != 2 {
		t.Fatalf("handler ran %d times; want 2", len(runs))
	}
	if gap := runs[1].Sub(runs[0]); gap < 500*time.Millisecond {
		t.Errorf("ran again after %v; want at least the 500ms snooze", gap)
	}
	if diff := cmp.Diff([]int{1, 1}, attempts); diff != "" {
		t.Errorf("Task.Attempt of each run (-want +got):\n%s", diff)
	}
	mu.Unlock()
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1 AND error IS NULL`, 1)
	got, evs := collect(t, l, h.ID, 50*time.Millisecond)
	want := []string{
		"workflow_started started",
		"step_started only started",
		"task_started only[0] #1 started",
		"task_snoozed only[0] #1 queued",
		"task_started only[0] #1 started",
		"task_completed only[0] #1 completed",
		"step_completed only completed",
		"workflow_completed completed",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	snz := evs[3]
	if snz.Until.IsZero() || snz.Until.Sub(snz.Time) < 490*time.Millisecond || snz.Until.Sub(snz.Time) > 5*time.Second || snz.Error != "" {
		t.Errorf("task_snoozed: until %v at %v, error %q; want until 500ms after ts, no error", snz.Until, snz.Time, snz.Error)
	}
	if started := evs[4].Time; started.Before(snz.Until) {
		t.Errorf("task started again at %v, before the snooze ended at %v", started, snz.Until)
	}
}

// TestSnoozeUsesNoAttempt: a step with a single attempt snoozes more
// times than it has attempts (durations of zero and less: at once) and
// still succeeds.
func TestSnoozeUsesNoAttempt(t *testing.T) {
	e := newEnv(t)
	def := single("snooze_many", qflow.StepOptions{Retries: qflow.NoRetries})
	var n atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		if task.Attempt != 1 {
			return nil, qflow.Permanent(fmt.Errorf("attempt %d; want 1 every time", task.Attempt))
		}
		switch k := n.Add(1); {
		case k <= 3:
			return nil, qflow.Snooze(0)
		case k <= 5:
			return nil, fmt.Errorf("wrapped: %w", qflow.Snooze(-time.Hour))
		}
		return json.RawMessage(`1`), nil
	}}, nil)
	ctx := ctxT(t, 30*time.Second)
	began := time.Now()
	h, err := e.client.StartFlow(ctx, def, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 6 {
		t.Errorf("handler ran %d times; want 6", n.Load())
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("five snoozes of no time took %v", took)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 1)
	// Snoozes are not failures in the step statistics either.
	assertCount(t, e, `SELECT (coalesce((SELECT sum(failed_attempts) FROM qflow.step_stats_pending), 0)
		+ coalesce((SELECT sum(failed_attempts) FROM qflow.step_stats), 0))::int`, 0)
}

// TestSnoozeUntil: a handler that must not act before a time held in its
// input snoozes until then: a durable sleep.
func TestSnoozeUntil(t *testing.T) {
	e := newEnv(t)
	def := single("sleep_until", qflow.StepOptions{})
	var ran []time.Time
	var mu sync.Mutex
	e.startWorker(def, map[string]qflow.Handler{"only": qflow.HandlerFunc(func(ctx context.Context, in struct {
		Run time.Time `json:"run"`
	}) (string, error) {
		mu.Lock()
		ran = append(ran, time.Now())
		mu.Unlock()
		if time.Now().Before(in.Run) {
			return "", qflow.SnoozeUntil(in.Run)
		}
		return "woke", nil
	})}, nil)
	ctx := ctxT(t, 30*time.Second)
	at := time.Now().Add(700 * time.Millisecond)
	h, err := e.client.StartFlow(ctx, def, at, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{"only": "woke"}` {
		t.Fatalf("Wait: %s, %v", out, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != 2 || ran[1].Before(at) {
		t.Fatalf("handler ran at %v; want once before %v and once after", ran, at)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 1)
}

// TestSnoozeSurvivesWorkerRestart: the snooze lives in the database. The
// worker that recorded it stops, and one that was killed (no release, no
// heartbeat) is gone too; a new worker started while the task sleeps runs
// it no earlier than the snooze's end, and the task still has used one
// attempt.
func TestSnoozeSurvivesWorkerRestart(t *testing.T) {
	e := newEnv(t)
	def := single("sleep_restart", qflow.StepOptions{Retries: qflow.NoRetries})
	ctx := ctxT(t, 60*time.Second)
	snoozedAt := make(chan time.Time, 1)
	first := func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		snoozedAt <- time.Now()
		return nil, qflow.Snooze(2 * time.Second)
	}
	wctx, stop := context.WithCancel(context.Background())
	a := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 100 * time.Millisecond})
	if err := a.Register(def, map[string]qflow.Handler{"only": first}); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(wctx) }()
	// A second worker that dies while the task sleeps.
	b := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 100 * time.Millisecond})
	if err := b.Register(def, map[string]qflow.Handler{"only": first}); err != nil {
		t.Fatal(err)
	}
	bDone := make(chan error, 1)
	go func() { bDone <- b.Run(context.Background()) }()

	h, err := e.client.StartFlow(ctx, def, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	end := (<-snoozedAt).Add(2 * time.Second)
	// The snooze is recorded: the task is queued, held by no worker,
	// visible only at its end.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var queued bool
		if err := e.db.Pool.QueryRow(ctx, `SELECT status = 'queued' AND worker_id IS NULL AND attempts = 0
			AND vt > clock_timestamp() + interval '1 second'
			FROM qflow.step_tasks WHERE run_id = $1`, h.ID).Scan(&queued); err != nil {
			t.Fatal(err)
		}
		if queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the snooze was not recorded within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// GetRun shows when it wakes.
	r, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if wakes := r.Steps[0].Tasks[0].WakesAt; wakes == nil || wakes.Before(end.Add(-time.Second)) || wakes.After(end.Add(time.Second)) {
		t.Errorf("GetRun: task wakes at %v; want about %v", wakes, end)
	}
	stop()
	if err := <-aDone; err != nil {
		t.Fatalf("worker a: %v", err)
	}
	b.Abandon() // as if its process died
	<-bDone

	var ranAt time.Time
	var attempt int
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		ranAt, attempt = time.Now(), task.Attempt
		return json.RawMessage(`"awake"`), nil
	}}, &qflow.WorkerOptions{PollInterval: 100 * time.Millisecond})
	out, err := h.Wait(ctx)
	if err != nil || string(out) != `{"only": "awake"}` {
		t.Fatalf("Wait: %s, %v", out, err)
	}
	if ranAt.Before(end) {
		t.Errorf("ran again at %v, before the snooze's end %v", ranAt, end)
	}
	if late := ranAt.Sub(end); late > 3*time.Second {
		t.Errorf("ran again %v after the snooze's end", late)
	}
	if attempt != 1 {
		t.Errorf("Task.Attempt %d after the snooze; want 1", attempt)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 1)
}

// TestSnoozeInChain: a step run in process as part of a chain
// (WorkerOptions.ChainWindow) snoozes: the chain ends, the step's task is
// queued with the delay like any other, and runs again without using an
// attempt.
func TestSnoozeInChain(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, h := chain3(t, "snooze_chain")
	var bRuns atomic.Int32
	b := h["b"]
	h["b"] = func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		if bRuns.Add(1) == 1 {
			return nil, qflow.Snooze(300 * time.Millisecond)
		}
		return b(ctx, task)
	}
	w := e.startWorker(def, h, nil)
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 4}}` {
		t.Fatalf("Wait: %s, %v", out, err)
	}
	if w.Inlined() != 2 { // b's first run, and c after b's second
		t.Errorf("%d tasks ran inline; want 2 (b snoozing, then c)", w.Inlined())
	}
	if bRuns.Load() != 2 {
		t.Errorf("b ran %d times; want 2", bRuns.Load())
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 3)
	got, _ := collect(t, l, run.ID, 50*time.Millisecond)
	var snoozes []string
	for _, s := range got {
		if strings.HasPrefix(s, "task_snoozed") {
			snoozes = append(snoozes, s)
		}
	}
	if diff := cmp.Diff([]string{"task_snoozed b[0] #1 queued"}, snoozes); diff != "" {
		t.Errorf("snooze events (-want +got):\n%s\nall: %q", diff, got)
	}
}

// TestSnoozeUnderConcurrencyLimit: a snoozed task of a step limited to
// one task at a time gives its place back while it waits: the step's
// other task runs meanwhile, and the snoozed one runs after its snooze.
func TestSnoozeUnderConcurrencyLimit(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("snooze_limited").
		Step("root", qflow.StepDef{TakesInput: true}).
		MapStep("one", "root", qflow.StepOptions{Concurrency: 1, Retries: qflow.NoRetries}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log []string
	var snoozedOnce atomic.Bool
	e.startWorker(def, map[string]qflow.Handler{
		"root": qflow.HandlerFunc(func(_ context.Context, in struct {
			Run []int `json:"run"`
		}) ([]int, error) {
			return in.Run, nil
		}),
		"one": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			mu.Lock()
			defer mu.Unlock()
			if task.Index == 0 && snoozedOnce.CompareAndSwap(false, true) {
				log = append(log, "0 snoozes")
				return nil, qflow.Snooze(700 * time.Millisecond)
			}
			log = append(log, fmt.Sprintf("%d runs", task.Index))
			return json.RawMessage(`1`), nil
		},
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, []int{0, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Task 1 may run before task 0 first does; task 0 runs last.
	if len(log) != 3 || log[2] != "0 runs" || !slices.Contains(log, "0 snoozes") || !slices.Contains(log, "1 runs") {
		t.Fatalf("order %q; want task 1 to run while task 0 sleeps", log)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE step_idx = 1 AND status = 'completed' AND attempts = 1`, 2)
}

// TestSnoozePastDeadline: a snooze does not move the run's deadline: the
// run is cancelled when its deadline passes, and the task never runs again.
func TestSnoozePastDeadline(t *testing.T) {
	e := newEnv(t)
	def := single("snooze_deadline", qflow.StepOptions{})
	var n atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		n.Add(1)
		return nil, qflow.Snooze(time.Hour)
	}}, &qflow.WorkerOptions{PollInterval: 100 * time.Millisecond})
	ctx := ctxT(t, 30*time.Second)
	began := time.Now()
	h, err := e.client.StartFlow(ctx, def, "x", &qflow.StartOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Wait(ctx)
	var re *qflow.RunError
	if !errors.Is(err, qflow.ErrRunCancelled) || !errors.As(err, &re) || !strings.Contains(re.Message, "timed out") {
		t.Fatalf("Wait: %v; want the run cancelled by its timeout", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("the run ended after %v; want about its 1s timeout", took)
	}
	if n.Load() != 1 {
		t.Errorf("handler ran %d times; want 1", n.Load())
	}
}

// TestSnoozeBadDuration: a snooze longer than MaxSnooze, or until the
// zero time, is a permanent error that fails the task at once.
func TestSnoozeBadDuration(t *testing.T) {
	for _, err := range []error{
		qflow.Snooze(qflow.MaxSnooze + time.Second),
		qflow.SnoozeUntil(time.Now().Add(2 * qflow.MaxSnooze)),
		qflow.SnoozeUntil(time.Time{}),
	} {
		var s *qflow.SnoozeError
		if !qflow.IsPermanent(err) || errors.As(err, &s) {
			t.Errorf("%v: want a permanent error, not a snooze", err)
		}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{qflow.Snooze(time.Minute), "qflow: snoozed for 1m0s"},
		{qflow.Snooze(-time.Minute), "qflow: snoozed for 0s"},
		{&qflow.SnoozeError{Until: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}, "qflow: snoozed until 2030-01-02T03:04:05Z"},
		{qflow.Snooze(400 * 24 * time.Hour), "qflow: snooze for 9600h0m0s: over the limit of 8784h0m0s (runtime.MaxSnooze)"},
	} {
		if c.err.Error() != c.want {
			t.Errorf("got %q; want %q", c.err, c.want)
		}
	}

	e := newEnv(t)
	def := single("snooze_too_long", qflow.StepOptions{Retries: 3})
	var n atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		n.Add(1)
		return nil, qflow.Snooze(2 * qflow.MaxSnooze)
	}}, nil)
	re, _ := waitFailed(t, e, def, "x", nil)
	if !strings.Contains(re.Message, "over the limit") || re.Step != "only" {
		t.Errorf("run error %+v; want the snooze's", re)
	}
	if n.Load() != 1 {
		t.Errorf("handler ran %d times; want 1 (the error is permanent)", n.Load())
	}
}

// TestSnoozeEventParses: task_snoozed decodes with its until.
func TestSnoozeEventParses(t *testing.T) {
	e, err := notify.ParseEvent(`{"type":"task_snoozed","run_id":"11111111-2222-3333-4444-555555555555","flow":"etl","step":"load","task_index":0,"status":"queued","attempt":2,"duration_ms":3,"until":"2030-01-02T03:04:05.000000Z","ts":"2030-01-02T03:04:00.000000Z"}`)
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != notify.TaskSnoozed || !e.Until.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) || e.Attempt != 2 {
		t.Fatalf("%+v", e)
	}
	if got, want := e.String(), "task_snoozed etl/load[0] attempt 2 until 2030-01-02T03:04:05Z"; got != want {
		t.Errorf("String: %q; want %q", got, want)
	}
}
