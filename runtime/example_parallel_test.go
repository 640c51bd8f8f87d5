package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/quantumflow/qflow/runtime"
)

// A map step and parallel branches: "tax" runs once per element of the
// flow input (an array), its tasks in parallel; "total" and "largest" both
// depend on it, so they run in parallel once every element is done. A map
// step's output is the array of its tasks' outputs, in element order.
func Example_parallelAndMap() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("basket").
		MapStep("tax", "", runtime.StepOptions{}). // "": map over the flow input
		Step("total", runtime.StepDef{DependsOn: []string{"tax"}}).
		Step("largest", runtime.StepDef{DependsOn: []string{"tax"}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	type taxed struct {
		Tax []int `json:"tax"`
	}
	handlers := map[string]runtime.Handler{
		"tax": runtime.HandlerFunc(func(ctx context.Context, cents int) (int, error) {
			return cents * 120 / 100, nil
		}),
		"total": runtime.HandlerFunc(func(ctx context.Context, in taxed) (int, error) {
			sum := 0
			for _, c := range in.Tax {
				sum += c
			}
			return sum, nil
		}),
		"largest": runtime.HandlerFunc(func(ctx context.Context, in taxed) (int, error) {
			return slices.Max(in.Tax), nil
		}),
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	quiet := &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)}
	out, err := client.RunLocal(ctx, def, handlers, []int{1000, 250, 4000}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	var res struct{ Total, Largest int }
	if err := json.Unmarshal(out, &res); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("total %d, largest %d\n", res.Total, res.Largest)
	// Output: total 6300, largest 4800
}
