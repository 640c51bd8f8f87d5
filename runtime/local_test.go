package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// chain3 is a→b→c, each adding one to its input's v.
func chain3(t *testing.T, slug string) (qflow.FlowDef, map[string]qflow.Handler) {
	t.Helper()
	def, err := qflow.NewFlow(slug).
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{DependsOn: []string{"b"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	type v struct {
		V int `json:"v"`
	}
	h := map[string]qflow.Handler{
		"a": qflow.HandlerFunc(func(ctx context.Context, in struct {
			Run v `json:"run"`
		}) (v, error) {
			return v{in.Run.V + 1}, nil
		}),
		"b": qflow.HandlerFunc(func(ctx context.Context, in struct {
			A v `json:"a"`
		}) (v, error) {
			return v{in.A.V + 1}, nil
		}),
		"c": qflow.HandlerFunc(func(ctx context.Context, in struct {
			B v `json:"b"`
		}) (v, error) {
			return v{in.B.V + 1}, nil
		}),
	}
	return def, h
}

// workWakeUps counts the notifications on qflow_work while f runs (and a
// moment after).
func workWakeUps(t *testing.T, pool *pgxpool.Pool, f func()) int {
	t.Helper()
	l, err := notify.Listen(context.Background(), pool, &notify.ListenOptions{Logger: quiet()}, qflow.WorkChannel)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f()
	n := 0
	for {
		select {
		case m := <-l.C():
			if !m.Gap {
				n++
			}
		case <-time.After(300 * time.Millisecond):
			return n
		}
	}
}

// A client and a worker on the same pool: the start claims the run's first
// task for the worker in its own transaction, so no wake-up goes out, and
// every hop after it is claimed by the worker's settle. A client on
// another pool (as in another process) wakes the workers as before.
func TestLocalStartHandsFirstTaskToWorkerOfSamePool(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "local_chain")
	w := e.startWorker(def, h, nil)
	waitFor(t, w.Local)
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}

	var id [2]string
	n := workWakeUps(t, e.db.Pool, func() {
		run, err := e.client.StartRun(ctx, "local_chain", map[string]int{"v": 0}, nil)
		if err != nil {
			t.Fatal(err)
		}
		id[0] = run.String()
		var status, worker string
		if err := e.db.Pool.QueryRow(ctx, `SELECT status, coalesce(worker_id::text, 'nobody') FROM qflow.step_tasks WHERE run_id = $1 AND step_idx = 0`, run).Scan(&status, &worker); err != nil {
			t.Fatal(err)
		}
		if status == "queued" || worker != w.ID().String() {
			t.Errorf("right after StartRun the first task is %s by %s; want claimed by the local worker %s", status, worker, w.ID())
		}
		out, err := e.client.WaitRun(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != `{"c": {"v": 3}}` {
			t.Errorf("output %s", out)
		}
	})
	if n != 0 {
		t.Errorf("%d wake-ups on %s for a run started beside its worker; want 0", n, qflow.WorkChannel)
	}

	// Another pool is another process as far as the handoff knows.
	other, err := pgxpool.New(ctx, e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	remote := qflow.NewClient(other, &qflow.ClientOptions{Logger: quiet()})
	defer remote.Close()
	n = workWakeUps(t, e.db.Pool, func() {
		run, err := remote.StartRun(ctx, "local_chain", map[string]int{"v": 10}, nil)
		if err != nil {
			t.Fatal(err)
		}
		id[1] = run.String()
		out, err := remote.WaitRun(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != `{"c": {"v": 13}}` {
			t.Errorf("output %s", out)
		}
	})
	if n == 0 {
		t.Errorf("no wake-up for a run started from another pool")
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 6)
}

// WaitRun on a client of the worker's pool takes the run's output from the
// settle that completed it, without reading the run again.
func TestLocalWaitTakesOutputFromSettle(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "local_wait")
	waitFor(t, e.startWorker(def, h, nil).Local)
	ctx := ctxT(t, 30*time.Second)
	// Events off: without the handoff, WaitRun would find out by polling.
	c := qflow.NewClient(e.db.Pool, &qflow.ClientOptions{Logger: quiet(), DisableEvents: true})
	defer c.Close()
	if _, err := c.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	before := qflow.LocalOutputsTaken()
	for i := range 5 {
		run, err := c.StartRun(ctx, "local_wait", map[string]int{"v": i}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.WaitRun(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ C struct{ V int } }
		if err := json.Unmarshal(out, &got); err != nil || got.C.V != i+3 {
			t.Fatalf("output %s, want c.v = %d", out, i+3)
		}
	}
	if taken := qflow.LocalOutputsTaken() - before; taken == 0 {
		t.Errorf("no WaitRun took its output from the local settle")
	}
}

// Concurrent StartRun calls of one flow go to the server together: while
// the first is held up, the others queue, and one more round trip starts
// them all. A bad input in a batch fails only its own caller.
func TestConcurrentStartsShareRoundTrips(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("batched_starts").MapStep("m", "", qflow.StepOptions{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	flowID, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{-1, 7} {
		// Hold the first start: a run's insert waits for this lock on its flow.
		tx, err := e.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM qflow.flows WHERE id = $1 FOR UPDATE`, flowID); err != nil {
			t.Fatal(err)
		}
		before := qflow.StartRoundTrips()
		const n = 20
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var input any = []int{i}
				if i == bad {
					input = "not an array" // a map step at the root needs one
				}
				_, errs[i] = e.client.StartRun(ctx, "batched_starts", input, nil)
			}()
			if i == 0 { // the first is on its way (and held) before the others come
				waitFor(t, func() bool { return qflow.StartRoundTrips() > before })
			}
		}
		waitFor(t, func() bool { return e.client.QueuedStarts() == n-1 }) // the others queue behind the first
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i, err := range errs {
			if i == bad {
				if !errors.Is(err, qflow.ErrBadInput) {
					t.Errorf("start %d (not an array): %v; want ErrBadInput", i, err)
				}
			} else if err != nil {
				t.Errorf("start %d: %v", i, err)
			}
		}
		got := qflow.StartRoundTrips() - before
		switch {
		case bad < 0 && got != 2:
			// One round trip for the first, one for the 19 that queued.
			t.Errorf("%d round trips for %d starts; want 2", got, n)
		case bad >= 0 && got != 2+n-1:
			// The batch of 19 fails on one input, then each goes on its own.
			t.Errorf("%d round trips for %d starts with a bad one; want %d", got, n, 2+n-1)
		}
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 20+19)
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 10s")
}

// A retried task becomes visible after its delay; the settle that queued
// it tells the worker when, so the worker does not wait for its next poll.
func TestRetryIsClaimedWhenItsDelayEnds(t *testing.T) {
	e := newEnv(t)
	def := single("retry_soon", qflow.StepOptions{Retries: 1, BaseDelay: 50 * time.Millisecond})
	var calls sync.Map
	e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		if _, again := calls.LoadOrStore(task.RunID, true); !again {
			return nil, errors.New("first try fails")
		}
		return json.RawMessage(`"ok"`), nil
	}}, &qflow.WorkerOptions{PollInterval: time.Minute})
	ctx := ctxT(t, 30*time.Second)
	began := time.Now()
	h, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// Without the settle's word the retry would wait for the poll, a minute.
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("the retry after a 50ms delay came %v after the start", took)
	}
}

// A caller's context is honoured while its start waits for the round trip
// on its way (it is never sent) and while its own start is on its way (the
// call returns; the run may still start, as with any call cut off).
func TestBatchedStartHonoursContext(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("start_ctx").Step("a", qflow.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	flowID, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM qflow.flows WHERE id = $1 FOR UPDATE`, flowID); err != nil {
		t.Fatal(err)
	}
	before := qflow.StartRoundTrips()
	first := make(chan error, 1)
	go func() {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := e.client.StartRun(short, "start_ctx", nil, nil)
		first <- err
	}()
	waitFor(t, func() bool { return qflow.StartRoundTrips() > before })
	queued, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, err := e.client.StartRun(queued, "start_ctx", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a start queued behind a held one: %v; want the deadline", err)
	}
	if waited := time.Since(began); waited > 5*time.Second {
		t.Errorf("the queued start returned %v after its deadline", waited)
	}
	if err := <-first; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the start on its way: %v; want the deadline", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The first start was on its way and goes through; the queued one never left.
	waitFor(t, func() bool {
		var n int
		_ = e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs`).Scan(&n)
		return n == 1
	})
	time.Sleep(100 * time.Millisecond)
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 1)
}

// A start that claims for a local worker while that worker stops: the
// worker waits for the claim and releases the task with the rest, so it
// does not sit claimed by a stopped worker until its lease ends.
func TestLocalClaimForStoppingWorkerIsReleased(t *testing.T) {
	e := newEnv(t)
	def, h := chain3(t, "local_stop")
	ctx := ctxT(t, 30*time.Second)
	flowID, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), Lease: time.Minute, ShutdownTimeout: time.Second})
	if err := w.Register(def, h); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	waitFor(t, w.Local)

	// Hold the start in the server: a run's insert waits for this lock.
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM qflow.flows WHERE id = $1 FOR UPDATE`, flowID); err != nil {
		t.Fatal(err)
	}
	before := qflow.StartRoundTrips()
	started := make(chan error, 1)
	go func() {
		_, err := e.client.StartRun(ctx, "local_stop", map[string]int{"v": 1}, nil)
		started <- err
	}()
	waitFor(t, func() bool { return qflow.StartRoundTrips() > before })
	time.Sleep(50 * time.Millisecond) // the start has reserved the worker's room and is waiting
	stop()
	time.Sleep(100 * time.Millisecond) // the worker is stopping, waiting for the claim on its way
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var status string
	var worker *string
	if err := e.db.Pool.QueryRow(ctx, `SELECT status, worker_id::text FROM qflow.step_tasks WHERE step_idx = 0`).Scan(&status, &worker); err != nil {
		t.Fatal(err)
	}
	if status != "queued" || worker != nil {
		t.Fatalf("after the worker stopped its task is %s by %v; want released (queued, no worker)", status, worker)
	}
}

// A local start rides the worker's next round trip: a result waiting to be
// settled and a start waiting for the pump go in one transaction. When the
// server refuses one of the starts, the settle goes again at once and the
// other starts each on their own, so only the bad start fails.
func TestLocalStartRidesTheSettle(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	one, err := qflow.NewFlow("ride").Step("a", qflow.StepDef{TakesInput: true}).Build()
	if err != nil {
		t.Fatal(err)
	}
	mapped, err := qflow.NewFlow("ride_map").MapStep("m", "", qflow.StepOptions{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	type in struct {
		Run struct {
			V int `json:"v"`
		} `json:"run"`
	}
	entered := make(chan int, 300)
	release := map[int]chan struct{}{1: make(chan struct{}), 2: make(chan struct{}), 4: make(chan struct{})}
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: time.Hour, Concurrency: 4})
	if err := w.Register(one, map[string]qflow.Handler{"a": qflow.HandlerFunc(func(ctx context.Context, x in) (int, error) {
		entered <- x.Run.V
		if ch := release[x.Run.V]; ch != nil {
			<-ch
		}
		return x.Run.V, nil
	})}); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(mapped, map[string]qflow.Handler{"m": qflow.HandlerFunc(func(ctx context.Context, x int) (int, error) {
		return x, nil
	})}); err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	waitFor(t, w.Local)
	for _, def := range []qflow.FlowDef{one, mapped} {
		if _, err := e.client.DefineFlow(ctx, def); err != nil {
			t.Fatal(err)
		}
	}
	start := func(slug string, input any) chan error {
		ch := make(chan error, 1)
		go func() {
			id, err := e.client.StartRun(ctx, slug, input, nil)
			if err == nil {
				_, err = e.client.WaitRun(ctx, id)
			}
			ch <- err
		}()
		return ch
	}
	xmin := func(v int) string {
		var x string
		if err := e.db.Pool.QueryRow(ctx, `SELECT xmin::text FROM qflow.runs WHERE (input->>'v')::int = $1`, v).Scan(&x); err != nil {
			t.Fatal(err)
		}
		return x
	}

	// Run 1 finishes while the pump waits; run 2's start queues behind it.
	r1 := start("ride", map[string]int{"v": 1})
	if v := <-entered; v != 1 {
		t.Fatalf("handler entered for run %d", v)
	}
	resume := w.PausePump()
	defer resume()
	close(release[1])
	waitFor(t, func() bool { n, _ := w.Waiting(); return n == 1 })
	r2 := start("ride", map[string]int{"v": 2})
	waitFor(t, func() bool { _, n := w.Waiting(); return n == 1 })
	resume()
	if v := <-entered; v != 2 {
		t.Fatalf("handler entered for run %d", v)
	}
	if err := <-r1; err != nil {
		t.Fatal(err)
	}
	// Run 1's completion and run 2's start wrote in the same transaction
	// (run 2 has not finished: its handler waits).
	if x1, x2 := xmin(1), xmin(2); x1 != x2 {
		t.Errorf("run 1 completed in transaction %s, run 2 started in %s; want one transaction", x1, x2)
	}

	// Run 2 finishes while the pump waits; a start the server refuses (a
	// map step at the root needs an array) and a good one queue behind it.
	resume = w.PausePump()
	defer resume()
	close(release[2])
	waitFor(t, func() bool { n, _ := w.Waiting(); return n == 1 })
	bad := start("ride_map", "not an array")
	r3 := start("ride", map[string]int{"v": 3})
	waitFor(t, func() bool { _, n := w.Waiting(); return n == 2 })
	resume()
	if err := <-bad; !errors.Is(err, qflow.ErrBadInput) {
		t.Errorf("start with a bad input: %v; want ErrBadInput", err)
	}
	for i, ch := range []chan error{r2, r3} {
		if err := <-ch; err != nil {
			t.Errorf("run %d: %v", i+2, err)
		}
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs WHERE status = 'completed'`, 3)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 3)

	// A long start (more inputs than maxRideInputs) does not wait for the
	// pump: it goes on its own while the pump takes nothing.
	r4 := start("ride", map[string]int{"v": 4})
	for v := <-entered; v != 4; v = <-entered { // run 3 entered too
	}
	resume = w.PausePump()
	defer resume()
	close(release[4])
	waitFor(t, func() bool { n, _ := w.Waiting(); return n == 1 }) // run 4's result waits
	many := make([]any, 257)
	for i := range many {
		many[i] = map[string]int{"v": 100 + i}
	}
	var ids []uuid.UUID
	started := make(chan error, 1)
	go func() {
		var err error
		ids, err = e.client.StartRuns(ctx, "ride", many, nil)
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		resume()
		t.Fatalf("a start of %d runs waited for the paused pump", len(many))
	}
	if _, n := w.Waiting(); n != 0 {
		t.Errorf("%d starts waiting for the pump after a start of %d runs", n, len(many))
	}
	resume()
	for _, id := range ids {
		if _, err := e.client.WaitRun(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-r4; err != nil {
		t.Fatal(err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs WHERE status = 'completed'`, 4+len(many))
}
