package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// Run priorities: StartOptions.Priority puts a run's tasks ahead of those
// of lower-priority runs of the same flow. Here a backlog of ordinary
// reports is queued, then an urgent one; a worker with one slot takes the
// urgent report first, then the backlog in the order it was queued.
func ExampleStartOptions_priority() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("report").Step("render", runtime.StepDef{TakesInput: true}).Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	client := runtime.NewClient(pool, nil)
	defer client.Close()

	for _, name := range []string{"weekly", "monthly", "yearly"} {
		if _, err := client.StartFlow(ctx, def, name, nil); err != nil { // priority 0
			fmt.Println(err)
			return
		}
	}
	urgent, err := client.StartFlow(ctx, def, "incident", &runtime.StartOptions{Priority: 10})
	if err != nil {
		fmt.Println(err)
		return
	}

	rendered := make(chan string, 4)
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Concurrency: 1})
	err = w.Register(def, map[string]runtime.Handler{"render": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
		var in struct{ Run string }
		if err := json.Unmarshal(t.Input, &in); err != nil {
			return nil, err
		}
		rendered <- in.Run
		return json.RawMessage(`true`), nil
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	if _, err := urgent.Wait(wctx); err != nil {
		fmt.Println(err)
		return
	}
	for range 4 {
		fmt.Println(<-rendered)
	}
	stop()
	if err := <-stopped; err != nil {
		fmt.Println(err)
	}
	// Output:
	// incident
	// weekly
	// monthly
	// yearly
}
