package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// Watching a run through its events: every transition is published with
// NOTIFY on notify.EventsChannel when its transaction commits. Listen
// before starting the run so that no event is missed, and keep the run's
// events with notify.ForRun.
func Example_events() {
	pool, done := exampleDatabase()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	def, err := runtime.NewFlow("invoice").
		Step("draft", runtime.StepDef{}).
		Step("send", runtime.StepDef{DependsOn: []string{"draft"}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	ok := func(context.Context, *runtime.Task) (json.RawMessage, error) { return json.RawMessage(`true`), nil }
	handlers := map[string]runtime.Handler{"draft": ok, "send": ok}

	l, err := notify.Listen(ctx, pool, nil, notify.EventsChannel)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()

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

	h, err := client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	mine := notify.ForRun(h.ID)
	for m := range l.C() {
		if m.Gap {
			fmt.Println("missed events: re-read the run with GetRun")
			continue
		}
		if m.Event == nil || !mine(*m.Event) {
			continue
		}
		fmt.Println(m.Event)
		if m.Event.Type.Terminal() {
			break
		}
	}
	// Output:
	// workflow_started invoice
	// step_started invoice/draft
	// task_started invoice/draft[0] attempt 1
	// task_completed invoice/draft[0] attempt 1
	// step_completed invoice/draft
	// step_started invoice/send
	// task_started invoice/send[0] attempt 1
	// task_completed invoice/send[0] attempt 1
	// step_completed invoice/send
	// workflow_completed invoice
}
