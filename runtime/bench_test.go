package runtime_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

// BenchmarkChainBatchStart measures tasks/s for runs of a 3-step chain
// a→b→c started with one StartRuns call and worked by one worker with 8
// slots (the W1b workload of docs/benchmarks.md).
func BenchmarkChainBatchStart(b *testing.B) {
	e := newEnv(b)
	def, _ := qflow.NewFlow("bench_chain").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{DependsOn: []string{"b"}}).
		Build()
	echo := func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`1`), nil }
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Concurrency: 8, BatchSize: 32, Logger: quiet()})
	_ = w.Register(def, map[string]qflow.Handler{"a": echo, "b": echo, "c": echo})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		b.Fatal(err)
	}
	inputs := make([]any, b.N)
	for i := range inputs {
		inputs[i] = i
	}
	b.ResetTimer()
	began := time.Now()
	ids, err := e.client.StartRuns(ctx, "bench_chain", inputs, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range ids {
		if _, err := e.client.WaitRun(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(3*b.N)/time.Since(began).Seconds(), "tasks/s")
}
