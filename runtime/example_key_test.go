package runtime_test

import (
	"context"
	"fmt"

	"github.com/quantumflow/qflow/runtime"
)

// Idempotent starts: a start with StartOptions.Key returns the run that
// already holds the key instead of starting another, with a nil error, as
// a DBOS workflow ID or a River unique job would. A webhook retried by its
// sender therefore starts one run. RunHandle.Existing tells the two cases
// apart.
func ExampleStartOptions_key() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("payment").Step("charge", runtime.StepDef{TakesInput: true}).Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	client := runtime.NewClient(pool, nil)
	defer client.Close()

	opts := &runtime.StartOptions{Key: "stripe-evt-1042"} // the sender's delivery id
	first, err := client.StartFlow(ctx, def, map[string]int{"cents": 1999}, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	retry, err := client.StartFlow(ctx, def, map[string]int{"cents": 1999}, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("same run:", retry.ID == first.ID, "existing:", first.Existing, retry.Existing)

	// StartRuns: one key per input; a key repeated in the call gets the
	// run of its first input.
	ids, err := client.StartRuns(ctx, "payment", []any{1, 2, 3},
		&runtime.StartOptions{Keys: []string{"a", "b", "a"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("inputs 0 and 2 share a run:", ids[0] == ids[2], "input 1 has its own:", ids[1] != ids[0])
	// Output:
	// same run: true existing: false true
	// inputs 0 and 2 share a run: true input 1 has its own: true
}
