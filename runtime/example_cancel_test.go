package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/quantumflow/qflow/runtime"
)

// Cancelling a run: the run and its unfinished steps and tasks become
// cancelled at once, queued tasks are removed, and the contexts of handlers
// running anywhere are cancelled at their worker's next heartbeat (within
// about a second).
func ExampleClient_CancelRun() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("export").
		Step("dump", runtime.StepDef{}).
		Step("upload", runtime.StepDef{DependsOn: []string{"dump"}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	started, stopped := make(chan struct{}), make(chan struct{})
	handlers := map[string]runtime.Handler{
		"dump": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
			close(started)
			<-ctx.Done() // a long job that honours its context
			fmt.Println("dump handler:", ctx.Err())
			close(stopped)
			return nil, ctx.Err()
		},
		"upload": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
			return json.RawMessage(`"uploaded"`), nil
		},
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err := w.Register(def, handlers); err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go w.Run(wctx)

	h, err := client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	<-started
	if err := client.CancelRun(ctx, h.ID); err != nil {
		fmt.Println(err)
		return
	}
	_, err = h.Wait(ctx)
	fmt.Println("cancelled:", errors.Is(err, runtime.ErrRunCancelled))
	<-stopped

	r, err := client.GetRun(ctx, h.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("run", r.Status)
	for _, s := range r.Steps {
		fmt.Println("step", s.Step, s.Status)
	}
	// Output:
	// cancelled: true
	// dump handler: context canceled
	// run cancelled
	// step dump cancelled
	// step upload cancelled
}
