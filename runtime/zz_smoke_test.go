package runtime_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

func TestSmokeLimits(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("smoke").
		Step("root", qflow.StepDef{TakesInput: true}).
		MapStep("slow", "root", qflow.StepOptions{Concurrency: 2}).
		MapStep("fast", "root", qflow.StepOptions{}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var cur, peak atomic.Int64
	var mu sync.Mutex
	h := map[string]qflow.Handler{
		"root": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			return json.RawMessage(`[1,2,3,4,5,6,7,8,9,10,11,12]`), nil
		},
		"slow": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			n := cur.Add(1)
			mu.Lock()
			if n > peak.Load() {
				peak.Store(n)
			}
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
			cur.Add(-1)
			return json.RawMessage(`1`), nil
		},
		"fast": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			return json.RawMessage(`1`), nil
		},
	}
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 8})
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 8})
	start := time.Now()
	out, err := e.client.RunLocal(ctx, def, h, 1, &qflow.WorkerOptions{Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("out %s peak %d in %s", out, peak.Load(), time.Since(start))
	if peak.Load() > 2 {
		t.Fatalf("peak %d", peak.Load())
	}
}
