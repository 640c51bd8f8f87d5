package runtime_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// The worker makes its round trips on connections of its own: an
// application that holds every connection of the pool it gave the worker
// does not stop the worker's claims, settles or heartbeats.
func TestWorkerKeepsGoingWhileTheApplicationHoldsItsPool(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := qflow.NewFlow("busy_app").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Build()
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 3
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	step := func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`1`), nil }
	w := qflow.NewWorker(app, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 100 * time.Millisecond})
	if err := w.Register(def, map[string]qflow.Handler{"a": step, "b": step}); err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	// The client is on another pool (e.db.Pool), so its runs reach the
	// worker through the database, not in memory.
	run := func() {
		t.Helper()
		id, err := e.client.StartRun(ctx, def.Slug, map[string]int{"x": 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := e.client.WaitRun(wctx, id); err != nil {
			t.Fatalf("run %s: %v", id, err)
		}
	}
	run()
	var held []*pgxpool.Conn
	for range cfg.MaxConns {
		c, err := app.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	run()
}

// A handler that outlives Run (it ignores its context past
// ShutdownTimeout) and then looks at its subflow reads the worker's pool
// after Run has returned: it gets an error from the closed pool, and no
// data race with Run's shutdown (go test -race).
func TestSubflowOutlivingRunFindsThePoolClosed(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	child, _ := qflow.NewFlow("late_child").Step("c", qflow.StepDef{}).Build()
	parent, _ := qflow.NewFlow("late_parent").Step("p", qflow.StepDef{}).Build()
	sub := qflow.Subflow(child.Slug, nil)
	started, finished := make(chan struct{}), make(chan error, 1)
	var once sync.Once
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 50 * time.Millisecond,
		ShutdownTimeout: 50 * time.Millisecond})
	if err := w.Register(child, map[string]qflow.Handler{"c": func(context.Context, *qflow.Task) (json.RawMessage, error) {
		return json.RawMessage(`1`), nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(parent, map[string]qflow.Handler{"p": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
		first := false
		once.Do(func() { first = true; close(started) })
		if !first {
			return sub(ctx, task)
		}
		time.Sleep(700 * time.Millisecond) // past ShutdownTimeout, ignoring ctx
		out, err := sub(ctx, task)
		finished <- err
		return out, err
	}}); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	if _, err := e.client.StartFlow(ctx, parent, 1, nil); err != nil {
		t.Fatal(err)
	}
	<-started
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-finished; err == nil {
		t.Fatal("a subflow look after Run returned succeeded; want an error")
	}
}
