package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/quantumflow/qflow/runtime"
)

// Resuming a failed run: once the cause is fixed, ResumeRun queues again
// only what did not complete (here one element of a map step and the step
// after it) under the same run id; completed work is reused, not redone.
func ExampleClient_ResumeRun() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("invoices").
		Step("list", runtime.StepDef{TakesInput: true}).
		MapStep("send", "list", runtime.StepOptions{}).
		Step("report", runtime.StepDef{DependsOn: []string{"send"}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	var mailerDown atomic.Bool
	mailerDown.Store(true)
	var sent [3]atomic.Int32
	handlers := map[string]runtime.Handler{
		"list": runtime.HandlerFunc(func(ctx context.Context, in struct{ Run []string }) ([]string, error) {
			return in.Run, nil
		}),
		"send": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
			sent[t.Index].Add(1)
			if t.Index == 2 && mailerDown.Load() {
				return nil, runtime.Permanent(errors.New("mailer: connection refused"))
			}
			return json.RawMessage(`"sent"`), nil
		},
		"report": runtime.HandlerFunc(func(ctx context.Context, in struct{ Send []string }) (int, error) {
			return len(in.Send), nil
		}),
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler), Concurrency: 1})
	if err := w.Register(def, handlers); err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go w.Run(wctx)

	h, err := client.StartFlow(ctx, def, []string{"ann", "bob", "cyd"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = h.Wait(ctx)
	var re *runtime.RunError
	if errors.As(err, &re) {
		fmt.Printf("first try: %s at step %q: %s\n", re.Status, re.Step, re.Message)
	}

	mailerDown.Store(false) // the cause is fixed
	if err := client.ResumeRun(ctx, h.ID, &runtime.ResumeOptions{Flow: &def}); err != nil {
		fmt.Println(err)
		return
	}
	out, err := h.Wait(ctx)
	fmt.Println("after resume:", string(out), err)
	fmt.Println("sends per invoice:", sent[0].Load(), sent[1].Load(), sent[2].Load())

	r, _ := client.GetRun(ctx, h.ID)
	fmt.Println("same run:", r.ID == h.ID, "resumes:", r.Resumes)

	err = client.ResumeRun(ctx, h.ID, nil)
	fmt.Println("resume a completed run:", errors.Is(err, runtime.ErrRunNotResumable))
	// Output:
	// first try: failed at step "send": mailer: connection refused
	// after resume: {"report": 3} <nil>
	// sends per invoice: 1 1 2
	// same run: true resumes: 1
	// resume a completed run: true
}
