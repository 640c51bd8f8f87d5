package runtime_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// A step that waits for a person's approval: publish starts only once the
// run receives the signal "approval", and gets its payload under "signal"
// in its input. The wait is held in the database, so no worker needs to
// run meanwhile; a signal sent before the run reaches the step is kept.
func ExampleClient_Signal() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	type approval struct {
		By string `json:"by"`
		OK bool   `json:"ok"`
	}
	def, err := runtime.NewFlow("article").
		Step("draft", runtime.StepDef{TakesInput: true}).
		Step("publish", runtime.StepDef{DependsOn: []string{"draft"}, Wait: "approval", WaitTimeout: 72 * time.Hour}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	handlers := map[string]runtime.Handler{
		"draft": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Run string `json:"run"`
		}) (string, error) {
			return "draft of " + in.Run, nil
		}),
		"publish": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Draft  string   `json:"draft"`
			Signal approval `json:"signal"`
		}) (string, error) {
			if !in.Signal.OK {
				return "rejected by " + in.Signal.By, nil
			}
			return "published " + in.Draft + ", approved by " + in.Signal.By, nil
		}),
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	if err := client.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}
	worker := runtime.NewWorker(pool, &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err := worker.Register(def, handlers); err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go worker.Run(wctx)

	run, err := client.StartFlow(ctx, def, "the launch", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Later, perhaps from an HTTP handler in another process:
	if err := client.Signal(ctx, run.ID, "approval", approval{By: "ann", OK: true}); err != nil {
		fmt.Println(err)
		return
	}
	// A second approval is refused (ErrSignalSent, or ErrRunFinished once
	// the run has ended), never written over the first.
	err = client.Signal(ctx, run.ID, "approval", approval{By: "bob", OK: false})
	fmt.Println("second approval refused:", err != nil)
	out, err := run.Wait(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out))
	// Output:
	// second approval refused: true
	// {"publish": "published draft of the launch, approved by ann"}
}
