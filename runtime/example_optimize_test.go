package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// Learning for every flow: the engine records each step's statistics as
// its tasks finish, whatever the flow, and a worker with
// WorkerOptions.Optimize applies them. Here three runs teach the engine
// that "fetch" takes about 10ms; a worker at the basic level then gives it
// the learned timeout (1s, the floor) instead of the configured 30s, so an
// attempt that hangs is retried after a second.
func ExampleWorkerOptions_optimize() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()
	def, err := runtime.NewFlow("prices").
		Options(runtime.StepOptions{Timeout: 30 * time.Second, BaseDelay: 10 * time.Millisecond}).
		Step("fetch", runtime.StepDef{TakesInput: true}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	client := runtime.NewClient(pool, nil)
	defer client.Close()
	var hang atomic.Bool
	handlers := map[string]runtime.Handler{"fetch": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
		if hang.Load() && t.Attempt == 1 {
			<-ctx.Done() // a price service that never answers
			return nil, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
		return json.RawMessage(`42`), nil
	}}

	// Learning: every run of every flow, at any level.
	for i := range 3 {
		if _, err := client.RunLocal(ctx, def, handlers, i, nil); err != nil {
			fmt.Println(err)
			return
		}
	}
	stats, err := client.StepStats(ctx, "prices")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range stats {
		fmt.Printf("%s: %d runs, %d attempts, %d samples, median under a second: %v\n", s.Step, s.Runs, s.Attempts, s.Samples, s.P50MS < 1000)
	}

	// Applying: a worker at the basic level.
	hang.Store(true)
	began := time.Now()
	_, err = client.RunLocal(ctx, def, handlers, 9, &runtime.WorkerOptions{Optimize: runtime.OptimizeBasic})
	fmt.Println("error:", err)
	fmt.Println("the hanging attempt was retried within 5s:", time.Since(began) < 5*time.Second)
	// Output:
	// fetch: 3 runs, 3 attempts, 3 samples, median under a second: true
	// error: <nil>
	// the hanging attempt was retried within 5s: true
}
