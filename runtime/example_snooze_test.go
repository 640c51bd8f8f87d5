package runtime_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// A step that polls for something not ready yet snoozes instead of failing:
// its task runs again after the delay without using an attempt, so a step
// with a single attempt may snooze as often as it needs. The delay is held
// in the database, not by a sleeping goroutine.
func ExampleSnooze() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("poll_report").
		Step("fetch", runtime.StepDef{TakesInput: true, Options: runtime.StepOptions{Retries: runtime.NoRetries}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	var polls atomic.Int32 // stands for a remote report that is ready at the third look
	handlers := map[string]runtime.Handler{
		"fetch": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Run string `json:"run"`
		}) (string, error) {
			if polls.Add(1) < 3 {
				return "", runtime.Snooze(50 * time.Millisecond) // not ready: look again later
			}
			return "report " + in.Run + " ready", nil
		}),
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	if err := client.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}
	quiet := &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)}
	out, err := client.RunLocal(ctx, def, handlers, "Q3", quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out), "after", polls.Load(), "looks")
	// Output: {"fetch": "report Q3 ready"} after 3 looks
}

// A durable sleep: a step that must not act before a time held in its input
// snoozes until that time. Stopping or restarting every worker meanwhile
// neither loses nor shortens the wait, which lives in the task's row.
func ExampleSnoozeUntil() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	type reminder struct {
		Text   string    `json:"text"`
		SendAt time.Time `json:"send_at"`
	}
	def, err := runtime.NewFlow("reminder").
		Step("send", runtime.StepDef{TakesInput: true}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	handlers := map[string]runtime.Handler{
		"send": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Run reminder `json:"run"`
		}) (string, error) {
			if time.Now().Before(in.Run.SendAt) {
				return "", runtime.SnoozeUntil(in.Run.SendAt)
			}
			return "sent: " + in.Run.Text, nil
		}),
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	if err := client.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}
	quiet := &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)}
	sendAt := time.Now().Add(200 * time.Millisecond)
	out, err := client.RunLocal(ctx, def, handlers, reminder{Text: "stand-up", SendAt: sendAt}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out), "on time:", !time.Now().Before(sendAt))
	// Output: {"send": "sent: stand-up"} on time: true
}
