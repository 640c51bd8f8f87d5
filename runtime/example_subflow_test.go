package runtime_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// A step may run another flow as a child run: runtime.Subflow is its
// handler. The child takes the step's input (here the output of "order")
// and the step's output is the child's run output (its leaf steps'
// outputs). The child records its parent, and GetRun shows the tree.
func ExampleSubflow() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	charge, err := runtime.NewFlow("charge").
		Step("pay", runtime.StepDef{TakesInput: true}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	checkout, err := runtime.NewFlow("checkout").
		Step("order", runtime.StepDef{TakesInput: true}).
		Step("charge", runtime.StepDef{DependsOn: []string{"order"}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler), PollInterval: 50 * time.Millisecond})
	if err := w.Register(charge, map[string]runtime.Handler{
		"pay": runtime.HandlerFunc(func(_ context.Context, in struct {
			Run int `json:"run"`
		}) (string, error) {
			return fmt.Sprintf("paid %d cents", in.Run), nil
		}),
	}); err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Register(checkout, map[string]runtime.Handler{
		"order": runtime.HandlerFunc(func(_ context.Context, in struct {
			Run int `json:"run"`
		}) (int, error) {
			return in.Run * 100, nil // dollars to cents
		}),
		"charge": runtime.Subflow("charge", &runtime.SubflowOptions{Poll: 20 * time.Millisecond}),
	}); err != nil {
		fmt.Println(err)
		return
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	if err := client.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}
	for _, def := range []runtime.FlowDef{charge, checkout} {
		if _, err := client.DefineFlow(ctx, def); err != nil {
			fmt.Println(err)
			return
		}
	}
	wctx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	defer func() { stop(); <-stopped }()

	h, err := client.StartRun(ctx, "checkout", 12, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := client.WaitRun(ctx, h)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out))
	run, err := client.GetRun(ctx, h)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range run.Children {
		child, err := client.GetRun(ctx, c.ID)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("step %s ran %s (%s), whose parent is the checkout: %t\n",
			c.Step, c.Flow, c.Status, child.ParentRunID != nil && *child.ParentRunID == h)
	}
	// Output:
	// {"charge": {"pay": "paid 1200 cents"}}
	// step charge ran charge (completed), whose parent is the checkout: true
}
