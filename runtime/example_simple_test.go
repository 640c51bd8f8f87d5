package runtime_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/quantumflow/qflow/runtime"
)

// A simple flow of two steps, run to completion with in-process workers.
// Flows are usually declared with //qflow:step annotations and qflowgen
// (see examples/etl); this one is built at run time so the example stands
// alone. Each task's input is a JSON object holding the flow input under
// "run" (for steps that take it) and each dependency's output under its
// slug; the run's output holds the outputs of the leaf steps.
func ExampleClient_RunLocal() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("hello").
		Step("greet", runtime.StepDef{TakesInput: true}).
		Step("shout", runtime.StepDef{DependsOn: []string{"greet"}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	type person struct{ Name string }
	handlers := map[string]runtime.Handler{
		"greet": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Run person `json:"run"`
		}) (string, error) {
			return "hello, " + in.Run.Name, nil
		}),
		"shout": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Greet string `json:"greet"`
		}) (string, error) {
			return strings.ToUpper(in.Greet) + "!", nil
		}),
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	if err := client.Migrate(ctx); err != nil { // once, at deploy or start-up
		fmt.Println(err)
		return
	}
	quiet := &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)}
	out, err := client.RunLocal(ctx, def, handlers, person{Name: "Ada"}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out))
	// Output: {"shout": "HELLO, ADA!"}
}
