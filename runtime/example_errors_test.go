package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// A flaky step: an error fails the attempt and the task is retried after a
// delay that doubles from BaseDelay (with jitter), up to Retries times after
// the first attempt (Retries 2: three attempts in all).
func Example_retries() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("flaky").
		Step("call", runtime.StepDef{Options: runtime.StepOptions{Retries: 2, BaseDelay: 10 * time.Millisecond}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	handlers := map[string]runtime.Handler{
		"call": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
			if t.Attempt < 3 {
				fmt.Printf("attempt %d: service unavailable\n", t.Attempt)
				return nil, errors.New("service unavailable")
			}
			fmt.Printf("attempt %d: ok\n", t.Attempt)
			return json.RawMessage(`"ok"`), nil
		},
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	opts := &runtime.WorkerOptions{PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	out, err := client.RunLocal(ctx, def, handlers, nil, opts)
	fmt.Println(string(out), err)
	// Output:
	// attempt 1: service unavailable
	// attempt 2: service unavailable
	// attempt 3: ok
	// {"call": "ok"} <nil>
}

// An error wrapped with Permanent is not retried: the task, its step and
// the run fail at once, and Wait returns a *RunError naming the step.
func ExamplePermanent() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("checkout").
		Step("charge", runtime.StepDef{TakesInput: true, Options: runtime.StepOptions{Retries: 4}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	handlers := map[string]runtime.Handler{
		"charge": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
			fmt.Println("charging, attempt", t.Attempt)
			return nil, runtime.Permanent(errors.New("card declined"))
		},
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	_, err = client.RunLocal(ctx, def, handlers, map[string]int{"cents": 1999}, &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	var re *runtime.RunError
	if errors.As(err, &re) {
		fmt.Printf("failed: %t, step %q: %s\n", errors.Is(err, runtime.ErrRunFailed), re.Step, re.Message)
	}
	// Output:
	// charging, attempt 1
	// failed: true, step "charge": card declined
}

// A step's Timeout cancels its handler's context; the attempt fails (and
// is retried while attempts are left). A handler should return when its
// context ends; one that does not is abandoned a second later.
func Example_timeout() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("report").
		Step("render", runtime.StepDef{Options: runtime.StepOptions{Timeout: 100 * time.Millisecond, Retries: runtime.NoRetries}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	handlers := map[string]runtime.Handler{
		"render": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
			select {
			case <-time.After(time.Minute): // the slow work
				return json.RawMessage(`"done"`), nil
			case <-ctx.Done():
				fmt.Println("handler:", context.Cause(ctx))
				return nil, ctx.Err()
			}
		},
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	_, err = client.RunLocal(ctx, def, handlers, nil, &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	var re *runtime.RunError
	if errors.As(err, &re) {
		fmt.Printf("run %s at step %q: %s\n", re.Status, re.Step, re.Message)
	}
	// Output:
	// handler: step "render" timed out after 100ms
	// run failed at step "render": step "render" timed out after 100ms
}
