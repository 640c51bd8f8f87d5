package runtime_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// settleTracer records qflow.settle statements sent with no arguments.
type settleTracer struct {
	mu   sync.Mutex
	bare []string
}

func (s *settleTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "qflow.settle(") && len(d.Args) == 0 {
		s.mu.Lock()
		s.bare = append(s.bare, d.SQL)
		s.mu.Unlock()
	}
	return ctx
}

func (s *settleTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A primary pump that stops with no local start waiting sends nothing
// more (once, it sent a settle with no arguments: a wasted round trip at
// every shutdown, which failed, and could hold a shutdown up to Lease
// while the database was out of reach).
func TestStoppingPumpSendsNoEmptySettle(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	cfg := e.db.Pool.Config()
	tr := &settleTracer{}
	cfg.ConnConfig.Tracer = tr
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	def, h := chain3(t, "stop_no_settle")
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{Logger: quiet()})
	if err := w.Register(def, h); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	waitFor(t, w.Local)
	time.Sleep(100 * time.Millisecond)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.bare) > 0 {
		t.Fatalf("the stopping pump sent qflow.settle with no arguments %d time(s)", len(tr.bare))
	}
}

// A local start that waits for a lock in the server holds up nothing but
// itself: the pump that sent it gives it back to its caller after
// rideLockTimeout, so other starts (of any flow), claims and settles go on,
// and the start itself goes through once the lock is released.
func TestBlockedStartHoldsUpOnlyItself(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	a, ha := chain3(t, "blocked_a")
	b, hb := chain3(t, "blocked_b")
	aID, err := e.client.DefineFlow(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DefineFlow(ctx, b); err != nil {
		t.Fatal(err)
	}
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 200 * time.Millisecond})
	if err := w.Register(a, ha); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(b, hb); err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	waitFor(t, w.Local)

	// Flow a's row is locked (as set_step_priorities does in a caller's
	// transaction): a start of a waits for it.
	tx := lockFlowRow(t, e, ctx, aID)
	var blocked atomic.Bool
	blocked.Store(true)
	blockedRun := make(chan error, 1)
	go func() {
		id, err := e.client.StartRun(ctx, "blocked_a", map[string]int{"v": 1}, nil)
		blocked.Store(false)
		if err == nil {
			_, err = e.client.WaitRun(ctx, id)
		}
		blockedRun <- err
	}()
	time.Sleep(300 * time.Millisecond) // a's start is in the server, waiting

	// An unrelated run of flow b must not wait for a's lock.
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	began := time.Now()
	id, err := e.client.StartRun(bctx, "blocked_b", map[string]int{"v": 1}, nil)
	if err == nil {
		_, err = e.client.WaitRun(bctx, id)
	}
	if err != nil {
		t.Fatalf("run of flow b (a's start still blocked: %v) after %v: %v", blocked.Load(), time.Since(began).Round(time.Millisecond), err)
	}
	if !blocked.Load() {
		t.Fatal("the start of flow a went through while its flow's row was locked")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-blockedRun; err != nil {
		t.Fatalf("the start that waited for the lock: %v", err)
	}
}

// A start riding a settle that waits for a lock costs the settle nothing:
// the transaction gives up on the lock after rideLockTimeout, the settle
// goes again at once on its own, and the start goes back to its caller.
// (Once, the round trip waited until its timeout, Lease, and the settle
// gave up: the task ran a second time after its lease.)
func TestBlockedRiderLeavesTheSettleAlone(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	one, err := qflow.NewFlow("rider_settle").Step("a", qflow.StepDef{TakesInput: true}).Build()
	if err != nil {
		t.Fatal(err)
	}
	lockedDef, hl := chain3(t, "rider_locked")
	var calls atomic.Int32
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 200 * time.Millisecond, Concurrency: 1, Lease: 2 * time.Second})
	if err := w.Register(one, map[string]qflow.Handler{"a": qflow.HandlerFunc(func(ctx context.Context, x struct{}) (int, error) {
		if calls.Add(1) == 1 {
			entered <- struct{}{}
			<-release
		}
		return 1, nil
	})}); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(lockedDef, hl); err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	waitFor(t, w.Local)
	if _, err := e.client.DefineFlow(ctx, one); err != nil {
		t.Fatal(err)
	}
	lockedID, err := e.client.DefineFlow(ctx, lockedDef)
	if err != nil {
		t.Fatal(err)
	}

	id, err := e.client.StartRun(ctx, "rider_settle", map[string]int{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	tx := lockFlowRow(t, e, ctx, lockedID)
	resume := w.PausePump()
	defer resume()
	close(release)
	waitFor(t, func() bool { n, _ := w.Waiting(); return n == 1 })
	lockedRun := make(chan error, 1)
	go func() {
		id, err := e.client.StartRun(ctx, "rider_locked", map[string]int{"v": 1}, nil)
		if err == nil {
			_, err = e.client.WaitRun(ctx, id)
		}
		lockedRun <- err
	}()
	waitFor(t, func() bool { _, n := w.Waiting(); return n == 1 })
	resume() // the settle and the start go together; the start waits on the lock
	// The run completes while the lock is still held, well within the
	// lease.
	wctx2, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = e.client.WaitRun(wctx2, id)
	if rerr := tx.Rollback(ctx); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		var status string
		var attempts int
		_ = e.db.Pool.QueryRow(ctx, `SELECT status, attempts FROM qflow.step_tasks WHERE run_id = $1`, id).Scan(&status, &attempts)
		t.Fatalf("run: %v (its task is %s after %d attempts; the handler ran %d times)", err, status, attempts, calls.Load())
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the handler ran %d times; want 1 (its result was dropped with the settle)", n)
	}
	if err := <-lockedRun; err != nil {
		t.Errorf("the start that waited for the lock: %v", err)
	}
}

// A pile of results waiting when the primary pump sets off to claim goes
// to the secondary pump, which settles it while the claim is on its way
// (once, the primary took the pile into its claim's round trip, so a big
// map's claims and settles never overlapped: W3 ran 0.70 s instead of
// 0.55 s in about half the runs).
func TestPileGoesToTheSecondaryWhileThePrimaryClaims(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def := single("pile", qflow.StepOptions{})
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var ran atomic.Int32
	w := e.startWorker(def, map[string]qflow.Handler{"only": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		if ran.Add(1) <= 8 {
			<-release
		}
		return json.RawMessage(`1`), nil
	}}, &qflow.WorkerOptions{Concurrency: 8})
	inputs := make([]any, 8)
	for i := range inputs {
		inputs[i] = i
	}
	first, err := e.client.StartRuns(ctx, def.Slug, inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ran.Load() == 8 }) // every slot busy
	// More work, which the worker has no room to claim yet.
	if _, err := e.client.StartRuns(ctx, def.Slug, inputs, nil); err != nil {
		t.Fatal(err)
	}
	resume := w.PausePump()
	defer resume()
	time.Sleep(50 * time.Millisecond) // the pump ends the round it is in (it pauses at its next)
	close(release)
	waitFor(t, func() bool { n, _ := w.Waiting(); return n == 8 })
	held := w.HoldClaims()
	defer held()
	resume()
	// The first runs complete while the primary's claim is held.
	waitFor(t, func() bool {
		var n int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs WHERE id = ANY ($1) AND status = 'completed'`,
			first).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == len(first)
	})
	held()
	waitFor(t, func() bool { return ran.Load() == 16 })
}
