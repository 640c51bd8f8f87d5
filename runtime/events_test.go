package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// listenEvents listens on the events channel until the test ends.
func listenEvents(t *testing.T, e *env) *notify.Listener {
	t.Helper()
	l, err := notify.Listen(context.Background(), e.db.Pool, &notify.ListenOptions{Logger: quiet()}, notify.EventsChannel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// describe is an event in the compact form the tests compare.
func describe(ev notify.Event) string {
	s := string(ev.Type)
	if ev.Step != "" {
		s += " " + ev.Step
	}
	if ev.TaskIndex != nil {
		s += fmt.Sprintf("[%d] #%d", *ev.TaskIndex, ev.Attempt)
	}
	s += " " + ev.Status
	if ev.Type == notify.TaskFailed {
		s += fmt.Sprintf(" retry=%v", ev.WillRetry)
	}
	return s
}

// collect gathers the events of run id until its terminal event, then
// waits quietly for settle to catch anything published after it.
func collect(t *testing.T, l *notify.Listener, id uuid.UUID, settle time.Duration) ([]string, []notify.Event) {
	t.Helper()
	var got []string
	var evs []notify.Event
	deadline := time.After(20 * time.Second)
	var quiet <-chan time.Time
	for {
		select {
		case m := <-l.C():
			if m.Gap {
				t.Fatalf("gap in the event stream: %+v", m)
			}
			if m.Event == nil || m.Event.RunID != id {
				continue
			}
			got = append(got, describe(*m.Event))
			evs = append(evs, *m.Event)
			if m.Event.Type.Terminal() {
				quiet = time.After(settle)
			}
		case <-quiet:
			return got, evs
		case <-deadline:
			t.Fatalf("no terminal event within 20s; got %q", got)
		}
	}
}

func echo(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`1`), nil }

func TestEventsDiamondExactSequence(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, _ := qflow.NewFlow("ev_diamond").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("d", qflow.StepDef{DependsOn: []string{"b", "c"}}).
		Build()
	e.startWorker(def, map[string]qflow.Handler{"a": echo, "b": echo, "c": echo, "d": echo}, &qflow.WorkerOptions{Concurrency: 1})
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	// Sequential: one task at a time, so the order of b and c is fixed.
	start := time.Now()
	id, err := e.client.StartRun(ctx, "ev_diamond", 1, &qflow.StartOptions{Sequential: true})
	if err != nil {
		t.Fatal(err)
	}
	got, evs := collect(t, l, id, 200*time.Millisecond)
	want := []string{
		"workflow_started started",
		"step_started a started",
		"task_started a[0] #1 started",
		"task_completed a[0] #1 completed",
		"step_completed a completed",
		"step_started b started",
		"step_started c started",
		"task_started b[0] #1 started",
		"task_completed b[0] #1 completed",
		"step_completed b completed",
		"task_started c[0] #1 started",
		"task_completed c[0] #1 completed",
		"step_completed c completed",
		"step_started d started",
		"task_started d[0] #1 started",
		"task_completed d[0] #1 completed",
		"step_completed d completed",
		"workflow_completed completed",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	for i, ev := range evs {
		if ev.Flow != "ev_diamond" {
			t.Fatalf("event %d: flow %q", i, ev.Flow)
		}
	}
	checkTimes(t, evs, start, time.Now())
}

// checkTimes fails unless the events' times (ts) are in order and between
// from and to (the server's clock is this machine's).
func checkTimes(t *testing.T, evs []notify.Event, from, to time.Time) {
	t.Helper()
	for i, ev := range evs {
		if ev.Time.Before(from.Add(-100*time.Millisecond)) || ev.Time.After(to.Add(100*time.Millisecond)) ||
			(i > 0 && ev.Time.Before(evs[i-1].Time)) {
			t.Fatalf("event %d (%s): time %v, previous %v, want in order within [%v, %v]",
				i, ev.Type, ev.Time, evs[max(i-1, 0)].Time, from, to)
		}
	}
}

// TestEventsDiamondParallelOrder checks, for a diamond run with parallel
// branches, every event exactly once and the causal order between them.
func TestEventsDiamondParallelOrder(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, _ := qflow.NewFlow("ev_par").
		Step("a", qflow.StepDef{}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("d", qflow.StepDef{DependsOn: []string{"b", "c"}}).
		Build()
	e.startWorker(def, map[string]qflow.Handler{"a": echo, "b": echo, "c": echo, "d": echo}, nil)
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	id, err := e.client.StartRun(ctx, "ev_par", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := collect(t, l, id, 200*time.Millisecond)
	pos := map[string]int{}
	for i, s := range got {
		if _, dup := pos[s]; dup {
			t.Fatalf("duplicate event %q in %q", s, got)
		}
		pos[s] = i
	}
	if len(got) != 18 || got[0] != "workflow_started started" || got[17] != "workflow_completed completed" {
		t.Fatalf("events: %q", got)
	}
	before := func(x, y string) {
		t.Helper()
		px, okx := pos[x]
		py, oky := pos[y]
		if !okx || !oky || px > py {
			t.Errorf("want %q before %q in %q", x, y, got)
		}
	}
	for _, s := range []string{"a", "b", "c", "d"} {
		before("step_started "+s+" started", "task_started "+s+"[0] #1 started")
		before("task_started "+s+"[0] #1 started", "task_completed "+s+"[0] #1 completed")
		before("task_completed "+s+"[0] #1 completed", "step_completed "+s+" completed")
	}
	before("step_completed a completed", "step_started b started")
	before("step_completed a completed", "step_started c started")
	before("step_completed b completed", "step_started d started")
	before("step_completed c completed", "step_started d started")
}

func TestEventsFailingFlow(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, _ := qflow.NewFlow("ev_fail").
		Step("ok", qflow.StepDef{}).
		Step("boom", qflow.StepDef{DependsOn: []string{"ok"}, Options: qflow.StepOptions{Retries: 1, BaseDelay: 10 * time.Millisecond}}).
		Step("never", qflow.StepDef{DependsOn: []string{"boom"}}).
		Build()
	var attempts atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{
		"ok": echo,
		"boom": func(context.Context, *qflow.Task) (json.RawMessage, error) {
			return nil, fmt.Errorf("boom %d", attempts.Add(1))
		},
		"never": echo,
	}, &qflow.WorkerOptions{PollInterval: 20 * time.Millisecond})
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	id, err := e.client.StartRun(ctx, "ev_fail", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, evs := collect(t, l, id, 300*time.Millisecond)
	want := []string{
		"workflow_started started",
		"step_started ok started",
		"task_started ok[0] #1 started",
		"task_completed ok[0] #1 completed",
		"step_completed ok completed",
		"step_started boom started",
		"task_started boom[0] #1 started",
		"task_failed boom[0] #1 queued retry=true",
		"task_started boom[0] #2 started",
		"task_failed boom[0] #2 failed retry=false",
		"step_failed boom failed",
		"workflow_failed boom failed",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if evs[7].Error != "boom 1" || evs[9].Error != "boom 2" || evs[10].Error != "boom 2" || evs[11].Error != "boom 2" {
		t.Fatalf("errors: %q %q %q %q", evs[7].Error, evs[9].Error, evs[10].Error, evs[11].Error)
	}
	if _, err := e.client.WaitRun(ctx, id); !errors.Is(err, qflow.ErrRunFailed) {
		t.Fatalf("WaitRun: %v", err)
	}
}

func TestEventsCancelledRun(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, _ := qflow.NewFlow("ev_cancel").
		Step("block", qflow.StepDef{}).
		Step("after", qflow.StepDef{DependsOn: []string{"block"}}).
		Build()
	started := make(chan struct{})
	ended := make(chan struct{})
	e.startWorker(def, map[string]qflow.Handler{
		"block": func(ctx context.Context, _ *qflow.Task) (json.RawMessage, error) {
			close(started)
			<-ctx.Done()
			defer close(ended)
			return nil, ctx.Err()
		},
		"after": echo,
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
	<-ended // the handler's failure after cancellation publishes nothing
	got, evs := collect(t, l, h.ID, 500*time.Millisecond)
	want := []string{
		"workflow_started started",
		"step_started block started",
		"task_started block[0] #1 started",
		"workflow_cancelled cancelled",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if evs[3].Error != "cancelled by request" {
		t.Fatalf("cancel reason %q", evs[3].Error)
	}
}

func TestEventsOversizedErrorIsTruncated(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	def, _ := qflow.NewFlow("ev_big").Step("s", qflow.StepDef{}).Build()
	// Control characters take 6 bytes in JSON, so 2,000 of them (2,000
	// bytes of text) would already break a naive 8000-byte limit.
	long := strings.Repeat("\x01", 2000) + strings.Repeat("€", 3000) + "end"
	e.startWorker(def, map[string]qflow.Handler{
		"s": func(context.Context, *qflow.Task) (json.RawMessage, error) {
			return nil, qflow.Permanent(errors.New(long))
		},
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	id, err := e.client.StartRun(ctx, "ev_big", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	var seen int
	for seen < 3 {
		select {
		case m := <-l.C():
			if m.Event == nil || m.Event.RunID != id || m.Event.Error == "" {
				continue
			}
			seen++
			// Events travel in batches: the notification must fit, and the
			// event alone must stay small.
			one, _ := json.Marshal(m.Event)
			if len(m.Payload) > notify.MaxPayloadBytes || len(one) > 4500 {
				t.Errorf("%s: payload of %d bytes, event of %d", m.Event.Type, len(m.Payload), len(one))
			}
			if !m.Event.ErrorTruncated || !strings.HasSuffix(m.Event.Error, " …[truncated]") ||
				!strings.HasPrefix(m.Event.Error, "\x01\x01") {
				t.Errorf("%s: error not marked as truncated: %q…", m.Event.Type, m.Event.Error[:20])
			}
		case <-deadline:
			t.Fatalf("saw %d of 3 failure events", seen)
		}
	}
	// The full error is stored.
	var stored string
	if err := e.db.Pool.QueryRow(ctx, `SELECT error FROM qflow.step_tasks WHERE run_id = $1`, id).Scan(&stored); err != nil || stored != long {
		t.Fatalf("stored error: %d bytes, %v", len(stored), err)
	}
}

// TestWaitRunWakesOnEvent: with the shared listener up, WaitRun returns
// right after the run completes, well before its 1s fallback re-check, and
// an idle worker (polling once a minute) picks the run up on NOTIFY.
func TestWaitRunWakesOnEvent(t *testing.T) {
	e := newEnv(t)
	def, _ := qflow.NewFlow("ev_wait").Step("s", qflow.StepDef{}).Build()
	release := make(chan struct{})
	var gate atomic.Bool
	e.startWorker(def, map[string]qflow.Handler{
		"s": func(ctx context.Context, _ *qflow.Task) (json.RawMessage, error) {
			if gate.Load() {
				<-release
			}
			return json.RawMessage(`"done"`), nil
		},
	}, &qflow.WorkerOptions{PollInterval: time.Minute})
	l := listenEvents(t, e)
	ctx := ctxT(t, 30*time.Second)
	// Warm up: starts the shared listener; the worker wakes on NOTIFY.
	began := time.Now()
	if _, err := startAndWait(ctx, e.client, def); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("first run took %s with a 1-minute poll interval: the worker did not wake on NOTIFY", d)
	}
	gate.Store(true)
	id, err := e.client.StartRun(ctx, "ev_wait", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		out  json.RawMessage
		err  error
		when time.Time
	}
	done := make(chan res, 1)
	go func() {
		out, err := e.client.WaitRun(ctx, id)
		done <- res{out, err, time.Now()}
	}()
	time.Sleep(1200 * time.Millisecond) // the waiter is now on its slow fallback timer
	released := time.Now()
	close(release)
	r := <-done
	if r.err != nil || string(r.out) != `{"s": "done"}` {
		t.Fatalf("WaitRun = %s, %v", r.out, r.err)
	}
	// Measure from the commit of the completion (the terminal event's
	// server time; same host, same clock), not from the handler: a loaded
	// machine can take a while to commit.
	_, evs := collect(t, l, id, 0)
	completed := evs[len(evs)-1].Time
	if d := r.when.Sub(completed); d > time.Second {
		t.Fatalf("WaitRun returned %s after the run completed; want under 1s", d)
	}
	t.Logf("WaitRun returned %s after the run completed (%s after the handler was released)", r.when.Sub(completed), r.when.Sub(released))
}

// TestWaitRunWithoutEvents: runs started with events off (client), worked
// by a worker with events off, still finish waiting, by the fallback.
func TestWaitRunWithoutEvents(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	quietClient := qflow.NewClient(e.db.Pool, &qflow.ClientOptions{Logger: quiet(), DisableEvents: true})
	t.Cleanup(quietClient.Close)
	def, _ := qflow.NewFlow("ev_off").Step("a", qflow.StepDef{}).Step("b", qflow.StepDef{DependsOn: []string{"a"}}).Build()
	e.startWorker(def, map[string]qflow.Handler{"a": echo, "b": echo}, &qflow.WorkerOptions{DisableEvents: true})
	ctx := ctxT(t, 30*time.Second)

	// Client off: nothing at all.
	h, err := quietClient.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := h.Wait(ctx); err != nil || string(out) != `{"b": 1}` {
		t.Fatalf("Wait = %s, %v", out, err)
	}
	// Client on, worker off: only what the client's own transaction publishes.
	id, err := e.client.StartRun(ctx, "ev_off", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.WaitRun(ctx, id); err != nil {
		t.Fatal(err)
	}
	var got []string
	timeout := time.After(300 * time.Millisecond)
loop:
	for {
		select {
		case m := <-l.C():
			if m.Event != nil {
				if m.Event.RunID == h.ID {
					t.Errorf("event for a run started with events off: %v", m.Event)
				}
				if m.Event.RunID == id {
					got = append(got, describe(*m.Event))
				}
			}
		case <-timeout:
			break loop
		}
	}
	if diff := cmp.Diff([]string{"workflow_started started", "step_started a started"}, got); diff != "" {
		t.Fatalf("events with the worker's events off (-want +got):\n%s", diff)
	}
}

// TestManyWaitersShareOneConnection: concurrent WaitRun calls use one
// listening connection between them.
func TestManyWaitersShareOneConnection(t *testing.T) {
	e := newEnv(t)
	def, _ := qflow.NewFlow("ev_many").Step("s", qflow.StepDef{}).Build()
	e.startWorker(def, map[string]qflow.Handler{"s": echo}, nil)
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	inputs := make([]any, 50)
	ids, err := e.client.StartRuns(ctx, "ev_many", inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, len(ids))
	for _, id := range ids {
		go func() { _, err := e.client.WaitRun(ctx, id); errs <- err }()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var listeners int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ~ '^LISTEN "qflow_events"'`).Scan(&listeners); err != nil {
		t.Fatal(err)
	}
	if listeners != 1 {
		t.Fatalf("%d connections listening for the client's waiters; want 1", listeners)
	}
}

// TestWorkerCoalescesWakeups: a burst of work notifications makes an idle
// worker claim far fewer times than it was notified.
func TestWorkerCoalescesWakeups(t *testing.T) {
	e := newEnv(t)
	def, _ := qflow.NewFlow("ev_burst").Step("s", qflow.StepDef{}).Build()
	var claims atomic.Int64
	cfg, err := pgxpool.ParseConfig(e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = claimCounter{&claims}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{PollInterval: time.Minute, Logger: quiet()})
	if err := w.Register(def, map[string]qflow.Handler{"s": echo}); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()
	// Wait until the worker is idle and listening.
	if _, err := startAndWait(ctx, e.client, def); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	before := claims.Load()
	const burst = 2000
	batch := &pgx.Batch{}
	for range burst {
		batch.Queue(`SELECT pg_notify('qflow_work', 'ev_burst_1')`)
	}
	// One pipelined round trip, each statement its own transaction: 2,000
	// notifications arrive back to back.
	if err := e.db.Pool.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	n := claims.Load() - before
	t.Logf("%d notifications → %d claims", burst, n)
	if n == 0 || n > burst/4 {
		t.Fatalf("%d notifications caused %d claims; want at least 1 and far fewer than the notifications", burst, n)
	}
}

type claimCounter struct{ n *atomic.Int64 }

func (c claimCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "FROM qflow.settle(") {
		c.n.Add(1)
	}
	return ctx
}

func (claimCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func startAndWait(ctx context.Context, c *qflow.Client, def qflow.FlowDef) (json.RawMessage, error) {
	h, err := c.StartFlow(ctx, def, nil, nil)
	if err != nil {
		return nil, err
	}
	return h.Wait(ctx)
}

// BenchmarkChainEvents is W1 (runs of a 3-step chain started in one batch,
// one worker with 8 slots) with events on, off for the runs (client), and
// off for the worker's transitions. Run it with -benchtime=2000x.
func BenchmarkChainEvents(b *testing.B) {
	for _, mode := range []string{"on", "client_off", "worker_off"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b)
			client := e.client
			if mode == "client_off" {
				client = qflow.NewClient(e.db.Pool, &qflow.ClientOptions{Logger: quiet(), DisableEvents: true})
				defer client.Close()
			}
			def, _ := qflow.NewFlow("bench_events").
				Step("a", qflow.StepDef{TakesInput: true}).
				Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
				Step("c", qflow.StepDef{DependsOn: []string{"b"}}).
				Build()
			w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Concurrency: 8, BatchSize: 32, Logger: quiet(), DisableEvents: mode == "worker_off"})
			_ = w.Register(def, map[string]qflow.Handler{"a": echo, "b": echo, "c": echo})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- w.Run(ctx) }()
			defer func() { cancel(); <-done }()
			if _, err := client.DefineFlow(ctx, def); err != nil {
				b.Fatal(err)
			}
			inputs := make([]any, b.N)
			for i := range inputs {
				inputs[i] = i
			}
			b.ResetTimer()
			began := time.Now()
			ids, err := client.StartRuns(ctx, "bench_events", inputs, nil)
			if err != nil {
				b.Fatal(err)
			}
			for _, id := range ids {
				if _, err := client.WaitRun(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(3*b.N)/time.Since(began).Seconds(), "tasks/s")
		})
	}
}

// TestEventsPerRun: StartOptions.Events overrides the client's setting for
// one run, both ways.
func TestEventsPerRun(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	quietClient := qflow.NewClient(e.db.Pool, &qflow.ClientOptions{Logger: quiet(), DisableEvents: true})
	t.Cleanup(quietClient.Close)
	def, _ := qflow.NewFlow("ev_per_run").Step("a", qflow.StepDef{}).Build()
	e.startWorker(def, map[string]qflow.Handler{"a": echo}, nil)
	ctx := ctxT(t, 30*time.Second)
	off, err := e.client.StartFlow(ctx, def, nil, &qflow.StartOptions{Events: qflow.EventsOff})
	if err != nil {
		t.Fatal(err)
	}
	on, err := quietClient.StartFlow(ctx, def, nil, &qflow.StartOptions{Events: qflow.EventsOn})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*qflow.RunHandle{off, on} {
		if _, err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	byRun := map[uuid.UUID][]string{}
	for quietFor := time.After(500 * time.Millisecond); ; {
		select {
		case m := <-l.C():
			if m.Event != nil {
				byRun[m.Event.RunID] = append(byRun[m.Event.RunID], string(m.Event.Type))
			}
			continue
		case <-quietFor:
		}
		break
	}
	if got := byRun[on.ID]; len(got) == 0 || got[len(got)-1] != "workflow_completed" {
		t.Errorf("events of the run started with EventsOn by a client with events off: %v", got)
	}
	if got := byRun[off.ID]; len(got) > 0 {
		t.Errorf("events of the run started with EventsOff: %v", got)
	}
}

// qflow.publish sends a transaction's events in order, as JSON arrays under
// 7,900 bytes, in as few notifications as the greedy cut gives: events
// added to a notification while the next fits, a new one started when it
// does not.
func TestPublishCutsEventsGreedily(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	conn, err := e.db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN qflow_events`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), `UNLISTEN *`)
	// event builds a JSON object of exactly n bytes.
	event := func(i, n int) string {
		head := fmt.Sprintf(`{"i":%d,"pad":"`, i)
		return head + strings.Repeat("x", n-len(head)-2) + `"}`
	}
	cases := map[string][]int{
		"one event":           {150},
		"fits exactly":        {3948, 3949}, // 1 + 3948 + 1 + 3949 + 1 = 7900
		"one byte over":       {3948, 3950},
		"many small":          sizes(500, 180, 260),
		"a few small":         sizes(40, 150, 190), // one notification, joined at once
		"64 that do not fit":  sizes(64, 126, 130),
		"large ones":          {7000, 200, 7800, 100, 100, 4000, 3890},
		"alone over the half": {5000, 5000, 5000},
	}
	for name, lens := range cases {
		t.Run(name, func(t *testing.T) {
			var events []string
			for i, n := range lens {
				events = append(events, event(i, n))
			}
			if _, err := conn.Exec(ctx, `SELECT qflow.publish($1::text[])`, events); err != nil {
				t.Fatal(err)
			}
			// The greedy cut.
			var want [][]string
			size := 0
			for _, ev := range events {
				if len(want) > 0 && size+len(ev)+2 <= 7900 {
					want[len(want)-1] = append(want[len(want)-1], ev)
					size += len(ev) + 1
					continue
				}
				want = append(want, []string{ev})
				size = len(ev)
			}
			var got [][]string
			for range want {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				n, err := conn.Conn().WaitForNotification(wctx)
				cancel()
				if err != nil {
					t.Fatalf("after %d notifications: %v", len(got), err)
				}
				if len(n.Payload) > 7901 {
					t.Errorf("a notification of %d bytes", len(n.Payload))
				}
				var raw []json.RawMessage
				if err := json.Unmarshal([]byte(n.Payload), &raw); err != nil {
					t.Fatalf("payload is not a JSON array: %v", err)
				}
				var part []string
				for _, r := range raw {
					part = append(part, string(r))
				}
				got = append(got, part)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("notifications (-want +got):\n%s", diff)
			}
			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			if n, err := conn.Conn().WaitForNotification(wctx); err == nil {
				t.Errorf("one more notification than the greedy cut: %d bytes", len(n.Payload))
			}
		})
	}
}

// sizes returns n lengths cycling from lo to hi in steps of 7.
func sizes(n, lo, hi int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = lo + (i*7)%(hi-lo)
	}
	return out
}

// A claim holding tasks of two steps (publish_started) and a finish_tasks
// completing tasks of two flows and two steps at once, as one settle does:
// every task_started, task_completed and step_completed names the task's own
// flow and step (the events of a batch read the slugs of its first task's
// step once and look up the others).
func TestEventsOfAMixedBatchNameTheirOwnStep(t *testing.T) {
	e := newEnv(t)
	l := listenEvents(t, e)
	ctx := ctxT(t, 30*time.Second)
	roots, err := qflow.NewFlow("ev_mixed_roots").Step("a", qflow.StepDef{}).Step("b", qflow.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	other, err := qflow.NewFlow("ev_mixed_other").Step("x", qflow.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	flowOf := map[uuid.UUID]string{}
	for _, def := range []qflow.FlowDef{roots, other} {
		if _, err := e.client.DefineFlow(ctx, def); err != nil {
			t.Fatal(err)
		}
		ids, err := e.client.StartRuns(ctx, def.Slug, make([]any, 3), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			flowOf[id] = def.Slug
		}
	}
	worker := uuid.New()
	var runs []uuid.UUID
	var steps []int16
	var tasks []int32
	var outs []string
	var want []string
	for _, slug := range []string{other.Slug, roots.Slug} {
		rows, err := e.db.Pool.Query(ctx, `SELECT c.run_id, c.step_idx, c.task_index, st.slug
			FROM qflow.claim((SELECT id FROM qflow.flows WHERE slug = $1), $2, 100, 30000) c
			JOIN qflow.steps st ON st.flow_id = c.flow_id AND st.idx = c.step_idx`, slug, worker)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var r uuid.UUID
			var s int16
			var k int32
			var step string
			if err := rows.Scan(&r, &s, &k, &step); err != nil {
				t.Fatal(err)
			}
			runs, steps, tasks, outs = append(runs, r), append(steps, s), append(tasks, k), append(outs, `1`)
			for _, typ := range []string{"task_started", "task_completed", "step_completed"} {
				want = append(want, fmt.Sprintf("%s %s %s/%s", r, typ, slug, step))
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if len(runs) != 9 {
		t.Fatalf("claimed %d tasks, want 9", len(runs))
	}
	if _, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.finish_tasks($1, $2::uuid[], $3::smallint[], $4::integer[], $5::jsonb[],
		NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`, worker, runs, steps, tasks, outs); err != nil {
		t.Fatal(err)
	}
	var got []string
	for quiet := time.After(2 * time.Second); len(got) < len(want); {
		select {
		case m := <-l.C():
			if m.Gap {
				t.Fatalf("gap in the event stream: %+v", m)
			}
			ev := m.Event
			if ev == nil || flowOf[ev.RunID] == "" {
				continue
			}
			switch ev.Type {
			case notify.TaskStarted, notify.TaskCompleted, notify.StepCompleted:
				got = append(got, fmt.Sprintf("%s %s %s/%s", ev.RunID, ev.Type, ev.Flow, ev.Step))
			}
		case <-quiet:
			t.Fatalf("%d of %d events arrived", len(got), len(want))
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
