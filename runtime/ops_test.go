package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

// TestOpsQueuesWorkersOverview checks the operator's read queries against a
// real engine: a map run's tasks show as queued before any worker runs,
// then a worker shows as live holding tasks, and the overview counts the
// finished runs.
func TestOpsQueuesWorkersOverview(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	client := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: slog.New(slog.DiscardHandler)})
	defer client.Close()

	def, err := runtime.NewFlow("opsflow").
		Step("fan", runtime.StepDef{TakesInput: true}).
		MapStep("each", "fan", runtime.StepOptions{}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	h, err := client.StartFlow(ctx, def, []int{1, 2, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := client.ListQueues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0].Flow != "opsflow" || qs[0].Version != 1 || qs[0].Queued != 1 || qs[0].OldestQueuedAt == nil {
		t.Fatalf("queues before any worker: %+v; want opsflow v1 with 1 queued", qs)
	}
	if age := qs[0].OldestAge(time.Now().Add(time.Hour)); age < 59*time.Minute {
		t.Errorf("OldestAge an hour later = %v", age)
	}
	ws, err := client.ListWorkers(ctx, runtime.ListWorkersParams{})
	if err != nil || len(ws) != 0 {
		t.Fatalf("workers before any: %v, %v", ws, err)
	}

	release := make(chan struct{})
	held := make(chan struct{}, 3)
	handlers := map[string]runtime.Handler{
		"fan": func(ctx context.Context, task *runtime.Task) (json.RawMessage, error) {
			var in struct{ Run json.RawMessage }
			if err := json.Unmarshal(task.Input, &in); err != nil {
				return nil, err
			}
			return in.Run, nil
		},
		"each": func(ctx context.Context, task *runtime.Task) (json.RawMessage, error) {
			held <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if task.Index == 2 {
				return nil, runtime.Permanent(errors.New("element 2 is bad"))
			}
			return task.Input, nil
		},
	}
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err := w.Register(def, handlers); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- w.Run(wctx) }()
	for range 3 {
		<-held
	}
	ws, err = client.ListWorkers(ctx, runtime.ListWorkersParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].ID != w.ID() || !ws[0].Live || ws[0].HeldTasks != 3 || len(ws[0].Queues) != 1 {
		t.Fatalf("live workers while 3 tasks run: %+v", ws)
	}
	qs, _ = client.ListQueues(ctx)
	if qs[0].Queued != 0 || qs[0].Running != 3 || qs[0].OldestQueuedAt != nil {
		t.Errorf("queue while running: %+v", qs[0])
	}
	in, err := client.TaskInput(ctx, h.ID, "each", 1)
	if err != nil || string(in) != "2" {
		t.Errorf("TaskInput(each, 1) = %s, %v; want 2", in, err)
	}
	if in, err := client.TaskInput(ctx, h.ID, "fan", 0); err != nil || string(in) != `{"run": [1, 2, 3]}` {
		t.Errorf("TaskInput(fan, 0) = %s, %v; want the flow input under run", in, err)
	}
	if _, err := client.TaskInput(ctx, h.ID, "nope", 0); !errors.Is(err, runtime.ErrRunNotFound) {
		t.Errorf("TaskInput of an unknown step: %v; want ErrRunNotFound", err)
	}
	close(release)
	if _, err := h.Wait(ctx); !errors.Is(err, runtime.ErrRunFailed) {
		t.Fatalf("run: %v; want failed", err)
	}
	h2, err := client.StartFlow(ctx, def, []int{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	o, err := client.Overview(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if o.Window != time.Hour || o.Runs["failed"] != 1 || o.Runs["completed"] != 1 || o.Runs["started"] != 0 ||
		o.Started != 2 || o.Finished["failed"] != 1 || o.FailureRate != 0.5 || o.Queued != 0 || o.LiveWorkers != 0 {
		t.Errorf("overview: %+v", o)
	}
	if o.Throughput != 2.0/60 {
		t.Errorf("throughput %v; want 2 runs per hour", o.Throughput)
	}
	ws, _ = client.ListWorkers(ctx, runtime.ListWorkersParams{})
	all, _ := client.ListWorkers(ctx, runtime.ListWorkersParams{All: true})
	if len(ws) != 0 || len(all) != 1 || all[0].StoppedAt == nil || all[0].Live {
		t.Errorf("after stop: live %+v, all %+v", ws, all)
	}
}

func TestOpsGetFlowVersion(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	client := runtime.NewClient(db.Pool, nil)
	defer client.Close()
	v1, _ := runtime.NewFlow("versioned").Step("a", runtime.StepDef{}).Build()
	v2, _ := runtime.NewFlow("versioned").Step("a", runtime.StepDef{}).Step("b", runtime.StepDef{DependsOn: []string{"a"}}).Build()
	for _, d := range []runtime.FlowDef{v1, v2} {
		if _, err := client.DefineFlow(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for v, want := range map[int]int{0: 2, 1: 1, 2: 2} {
		d, err := client.GetFlowVersion(ctx, "versioned", v)
		if err != nil || len(d.Steps) != want {
			t.Errorf("version %d: %+v, %v; want %d steps", v, d, err, want)
		}
	}
	if _, err := client.GetFlowVersion(ctx, "versioned", 3); !errors.Is(err, runtime.ErrUnknownFlow) {
		t.Errorf("version 3: %v; want ErrUnknownFlow", err)
	}
}
