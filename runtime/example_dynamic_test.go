package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/quantumflow/qflow/runtime"
)

// A dynamic flow: its shape comes from data known only at run time (here a
// list of stages, as read from a configuration file). It is stored in the
// same tables and run by the same engine as a generated flow; its handlers
// are keyed by step slug and work on the tasks' JSON.
func ExampleNewFlow() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	stages := []string{"fetch", "resize", "watermark", "publish"}

	b := runtime.NewFlow("images").Options(runtime.StepOptions{Retries: 1})
	handlers := map[string]runtime.Handler{}
	prev := ""
	for _, stage := range stages {
		s := runtime.StepDef{TakesInput: prev == ""}
		if prev != "" {
			s.DependsOn = []string{prev}
		}
		b.Step(stage, s)
		// Each stage appends its name to the trail it was given: the flow
		// input ("run") for the first, the previous stage's output after.
		from := prev
		if from == "" {
			from = "run"
		}
		handlers[stage] = func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
			var in map[string][]string
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, runtime.Permanent(err)
			}
			return json.Marshal(append(in[from], t.Step))
		}
		prev = stage
	}
	def, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
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

	h, err := client.StartFlow(ctx, def, []string{"cat.jpg"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := h.Wait(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out))

	stored, err := client.GetFlow(ctx, "images")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("stored flow %q: %d steps, same shape: %t\n", stored.Slug, len(stored.Steps), stored.ShapeHash() == def.ShapeHash())
	// Output:
	// {"publish": ["cat.jpg", "fetch", "resize", "watermark", "publish"]}
	// stored flow "images": 4 steps, same shape: true
}
