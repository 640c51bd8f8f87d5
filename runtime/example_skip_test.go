package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// A conditional step in a dynamic flow: StepDef.When is a predicate on the
// task's input (WhenFunc decodes it, as HandlerFunc does for handlers). An
// order under 100 skips "review" without running its handler; "ship",
// which lists review in AcceptsSkipped, runs without review's output (a
// pointer in its input, nil), and "audit", which needs review's output, is
// skipped with it. The run completes; its output has no key for the
// skipped leaf.
func ExampleWhenFunc() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	type order struct{ Total int }
	def, err := runtime.NewFlow("orders").
		Step("review", runtime.StepDef{TakesInput: true,
			When: runtime.WhenFunc(func(_ context.Context, in struct{ Run order }) (bool, error) {
				return in.Run.Total >= 100, nil
			})}).
		Step("audit", runtime.StepDef{DependsOn: []string{"review"}}).
		Step("ship", runtime.StepDef{TakesInput: true, DependsOn: []string{"review"}, AcceptsSkipped: []string{"review"}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	w := runtime.NewWorker(pool, nil)
	err = w.Register(def, map[string]runtime.Handler{
		"review": runtime.HandlerFunc(func(context.Context, struct{ Run order }) (string, error) { return "approved", nil }),
		"audit":  runtime.HandlerFunc(func(context.Context, struct{ Review string }) (string, error) { return "audited", nil }),
		"ship": runtime.HandlerFunc(func(_ context.Context, in struct {
			Run    order
			Review *string // nil when review was skipped
		}) (string, error) {
			if in.Review == nil {
				return fmt.Sprintf("shipped %d unreviewed", in.Run.Total), nil
			}
			return fmt.Sprintf("shipped %d, %s", in.Run.Total, *in.Review), nil
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	defer func() { stop(); <-stopped }()

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	for _, total := range []int{40, 250} {
		h, err := client.StartFlow(wctx, def, order{Total: total}, nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		out, err := h.Wait(wctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		run, err := client.GetRun(wctx, h.ID)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s:", out)
		for _, s := range run.Steps {
			fmt.Printf(" %s %s;", s.Step, s.Status)
		}
		fmt.Println()
	}
	// Output:
	// {"ship": "shipped 40 unreviewed"}: review skipped; audit skipped; ship completed;
	// {"ship": "shipped 250, approved", "audit": "audited"}: review completed; audit completed; ship completed;
}

// An optional step: when it fails after its retries, the run goes on as if
// it had been skipped, and its failure stays on the step for anyone to see.
func ExampleStepDef_optional() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("signup").
		Step("create", runtime.StepDef{TakesInput: true}).
		Step("newsletter", runtime.StepDef{DependsOn: []string{"create"}, Optional: true,
			Options: runtime.StepOptions{Retries: 1, BaseDelay: time.Millisecond}}).
		Step("welcome", runtime.StepDef{DependsOn: []string{"create", "newsletter"}, AcceptsSkipped: []string{"newsletter"}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	w := runtime.NewWorker(pool, nil)
	err = w.Register(def, map[string]runtime.Handler{
		"create": func(_ context.Context, t *runtime.Task) (json.RawMessage, error) {
			return json.RawMessage(`"user-1"`), nil
		},
		"newsletter": func(context.Context, *runtime.Task) (json.RawMessage, error) {
			return nil, errors.New("mailing list service unavailable")
		},
		"welcome": func(_ context.Context, t *runtime.Task) (json.RawMessage, error) { return t.Input, nil },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	defer func() { stop(); <-stopped }()

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	h, err := client.StartFlow(wctx, def, "ada@example.com", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := h.Wait(wctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("output:", string(out))
	run, err := client.GetRun(wctx, h.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("run:", run.Status)
	for _, s := range run.Steps {
		if s.Step == "newsletter" {
			fmt.Printf("newsletter: %s, task %s after %d attempts: %s\n", s.Status, s.Tasks[0].Status, s.Tasks[0].Attempts, s.Error)
		}
	}
	// Output:
	// output: {"welcome": {"create": "user-1"}}
	// run: completed
	// newsletter: skipped, task failed after 2 attempts: mailing list service unavailable
}
