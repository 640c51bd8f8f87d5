package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// Concurrency limits across workers: step "sync" calls a partner API that
// allows one sync per customer at a time. StepOptions.Concurrency 1 with
// Key ".customer" (a path into each task's input: here a field of the map
// step's element) holds at every instant, whichever worker process runs
// the task: two workers of four slots each run the twelve syncs, never two
// of one customer at once, while syncs of different customers run side by
// side. A task waiting for its customer's place is not claimed, so it
// costs no attempt. The annotation spells it //qflow:step concurrency=1
// key=Customer.
func ExampleStepOptions_concurrency() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("sync_customers").
		MapStep("sync", "", runtime.StepOptions{Concurrency: 1, Key: ".customer"}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	var mu sync.Mutex
	running := map[string]int{} // syncs running now, by customer
	most := 0                   // the most syncs of one customer at once
	syncOne := func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
		var job struct{ Customer string }
		if err := json.Unmarshal(t.Input, &job); err != nil {
			return nil, runtime.Permanent(err)
		}
		mu.Lock()
		running[job.Customer]++
		most = max(most, running[job.Customer])
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // the partner API
		mu.Lock()
		running[job.Customer]--
		mu.Unlock()
		return json.RawMessage(`"ok"`), nil
	}

	wctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	var workers sync.WaitGroup
	for range 2 { // two workers: in real life, two processes on two machines
		w := runtime.NewWorker(pool, &runtime.WorkerOptions{Concurrency: 4})
		if err := w.Register(def, map[string]runtime.Handler{"sync": syncOne}); err != nil {
			fmt.Println(err)
			return
		}
		workers.Add(1)
		go func() { defer workers.Done(); _ = w.Run(wctx) }()
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	var jobs []map[string]string
	for i := range 12 {
		jobs = append(jobs, map[string]string{"customer": fmt.Sprintf("c%d", i%3)})
	}
	run, err := client.StartFlow(wctx, def, jobs, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := run.Wait(wctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	var synced map[string][]string
	if err := json.Unmarshal(out, &synced); err != nil {
		fmt.Println(err)
		return
	}
	stop()
	workers.Wait()
	fmt.Println("syncs:", len(synced["sync"]))
	fmt.Println("most syncs of one customer at once:", most)
	// Output:
	// syncs: 12
	// most syncs of one customer at once: 1
}

// Rate limits across workers: step "call" starts at most 10 tasks a
// second, 2 at once after a pause (Burst), however many workers run it:
// in any second at most 10 + 2 calls start. Held-back tasks wait in the
// queue, costing no attempt, and workers are told when the next start is
// allowed instead of polling for it. The annotation spells it
// //qflow:step rate=10/s burst=2.
func ExampleRate() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("paced").
		MapStep("call", "", runtime.StepOptions{Rate: runtime.Rate{N: 10, Per: time.Second, Burst: 2}}).
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	var mu sync.Mutex
	var starts []time.Time
	call := func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return json.RawMessage(`1`), nil
	}
	client := runtime.NewClient(pool, nil)
	defer client.Close()
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Concurrency: 8})
	if err := w.Register(def, map[string]runtime.Handler{"call": call}); err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()

	run, err := client.StartFlow(wctx, def, make([]int, 15), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := run.Wait(wctx); err != nil {
		fmt.Println(err)
		return
	}
	stop()
	if err := <-stopped; err != nil {
		fmt.Println(err)
	}
	// The most calls that started within one second of each other.
	most := 0
	for i := range starts {
		n := 0
		for _, s := range starts[i:] {
			if s.Sub(starts[i]) < time.Second {
				n++
			}
		}
		most = max(most, n)
	}
	fmt.Println("calls:", len(starts))
	fmt.Println("at most 12 in any second:", most <= 12)
	// Output:
	// calls: 15
	// at most 12 in any second: true
}
