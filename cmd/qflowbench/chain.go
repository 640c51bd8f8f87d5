package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// The chain workloads (W1, W1b, W2 and the soak) run this 3-step flow.
const (
	chainSlug  = "bench_chain"
	chainSteps = 3
)

func chainFlow() (qflow.FlowDef, map[string]qflow.Handler) {
	def, h, err := limitedChain("none")
	if err != nil {
		panic(err)
	}
	return def, h
}

// limitedChain is the chain flow with a limit across workers (-limit):
//
//	none     no limit
//	step:N   step b: Concurrency N
//	key:N    step b: Concurrency N per run (Key ".a", a's output: the run's input)
//	flow:N   the flow: Concurrency N
//	rate:N   step b: Rate N/s, Burst N
func limitedChain(limit string) (qflow.FlowDef, map[string]qflow.Handler, error) {
	var flowOpts, bOpts qflow.StepOptions
	if limit != "none" {
		kind, num, _ := strings.Cut(limit, ":")
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 {
			return qflow.FlowDef{}, nil, fmt.Errorf("-limit %q: want none, step:N, key:N, flow:N or rate:N", limit)
		}
		switch kind {
		case "step":
			bOpts.Concurrency = n
		case "key":
			bOpts.Concurrency, bOpts.Key = n, ".a"
		case "flow":
			flowOpts.Concurrency = n
		case "rate":
			bOpts.Rate = qflow.Rate{N: n, Per: time.Second, Burst: n}
		default:
			return qflow.FlowDef{}, nil, fmt.Errorf("-limit %q: want none, step:N, key:N, flow:N or rate:N", limit)
		}
	}
	def, err := qflow.NewFlow(chainSlug).Options(flowOpts).
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}, Options: bOpts}).
		Step("c", qflow.StepDef{DependsOn: []string{"b"}}).
		Build()
	if err != nil {
		return qflow.FlowDef{}, nil, err
	}
	// a returns the run's input; b and c add one to their dependency's output.
	next := func(dep string) qflow.Handler {
		return func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			var in map[string]int
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, err
			}
			return json.RawMessage(strconv.Itoa(in[dep] + 1)), nil
		}
	}
	return def, map[string]qflow.Handler{"a": next("run"), "b": next("a"), "c": next("b")}, nil
}

// startWorker runs a worker on pool until the returned stop is called.
func startWorker(c config, pool *pgxpool.Pool, ev bool, def qflow.FlowDef, h map[string]qflow.Handler) (stop func(), err error) {
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{Concurrency: c.slots, BatchSize: c.batch, ChainWindow: c.chain, Logger: quiet, DisableEvents: !ev, TracerProvider: otelTP, MeterProvider: otelMP})
	if err := w.Register(def, h); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() { cancel(); <-done }, nil
}

// waitAll waits until no run of flow slug is started any more and checks
// that want runs completed in all (any number when want is negative). The poll goes through the runs_list
// index, so it stays cheap however many finished runs the tables hold.
func waitAll(ctx context.Context, pool *pgxpool.Pool, slug string, want int) error {
	for {
		var going bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM qflow.runs WHERE flow_slug = $1 AND status = 'started')`, slug).Scan(&going); err != nil {
			return err
		}
		if !going {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	var completed int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs WHERE flow_slug = $1 AND status = 'completed'`, slug).Scan(&completed); err != nil {
		return err
	}
	if want >= 0 && completed != want {
		return fmt.Errorf("%d runs completed, want %d", completed, want)
	}
	return nil
}

// chain is W1 (runs started one per call from 8 goroutines) and W1b (one
// StartRuns call), after p.history finished tasks, run by one in-process
// worker or by p.procs worker processes.
func chain(ctx context.Context, c config, p params, pool *pgxpool.Pool, ev, batch bool, log io.Writer) (map[string]float64, error) {
	def, h, err := limitedChain(p.limit)
	if err != nil {
		return nil, err
	}
	client := qflow.NewClient(pool, &qflow.ClientOptions{Logger: quiet, DisableEvents: !ev, TracerProvider: otelTP, MeterProvider: otelMP})
	defer client.Close()
	flowID, err := client.DefineFlow(ctx, def)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{"runs": float64(p.runs)}
	prefilled := 0
	if p.history > 0 {
		hm, err := prefill(ctx, pool, flowID, p.history, log)
		if err != nil {
			return nil, err
		}
		for k, v := range hm {
			m[k] = v
		}
		prefilled = int(hm["history_runs"])
	}
	var stop func()
	if p.procs > 0 {
		m["procs"] = float64(p.procs)
		stop, err = startChildren(ctx, c, pool, p.procs, ev, p.limit)
	} else {
		stop, err = startWorker(c, pool, ev, def, h)
	}
	if err != nil {
		return nil, err
	}
	defer stop()
	time.Sleep(200 * time.Millisecond) // the workers are listening
	began := time.Now()
	type pruned struct {
		res  qflow.PruneResult
		took time.Duration
		err  error
	}
	var pruning chan pruned
	if p.prune && prefilled > 0 {
		// The history finished over a minute ago: all of it goes.
		pruning = make(chan pruned, 1)
		go func() {
			res, err := client.Prune(ctx, qflow.PruneOptions{OlderThan: 30 * time.Second})
			pruning <- pruned{res, time.Since(began), err}
		}()
	}
	if batch {
		inputs := make([]any, p.runs)
		for i := range inputs {
			inputs[i] = i
		}
		if _, err := client.StartRuns(ctx, def.Slug, inputs, nil); err != nil {
			return nil, err
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(p.runs); i = next.Add(1) {
					if _, err := client.StartRun(ctx, def.Slug, i, nil); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	startedIn := time.Since(began)
	if err := waitAll(ctx, pool, def.Slug, -1); err != nil {
		return nil, err
	}
	d := time.Since(began).Seconds()
	left := prefilled
	if pruning != nil {
		pr := <-pruning
		if pr.err != nil {
			return nil, pr.err
		}
		left -= int(pr.res.Runs)
		m["pruned_tasks"] = float64(pr.res.Tasks)
		m["prune_seconds"] = pr.took.Seconds()
		m["prune_tasks_per_s"] = float64(pr.res.Tasks) / pr.took.Seconds()
	}
	if err := waitAll(ctx, pool, def.Slug, left+p.runs); err != nil {
		return nil, err
	}
	m["seconds"] = d
	m["runs_per_s"] = float64(p.runs) / d
	m["tasks_per_s"] = float64(chainSteps*p.runs) / d
	m["start_seconds"] = startedIn.Seconds()
	return m, nil
}

// sequential is W2: one run at a time, start to result.
func sequential(ctx context.Context, c config, pool *pgxpool.Pool, ev bool) (map[string]float64, error) {
	def, h := chainFlow()
	client := qflow.NewClient(pool, &qflow.ClientOptions{Logger: quiet, DisableEvents: !ev, TracerProvider: otelTP, MeterProvider: otelMP})
	defer client.Close()
	if _, err := client.DefineFlow(ctx, def); err != nil {
		return nil, err
	}
	stop, err := startWorker(c, pool, ev, def, h)
	if err != nil {
		return nil, err
	}
	defer stop()
	time.Sleep(200 * time.Millisecond)
	var lat []float64
	for i := range c.seqRuns + 5 {
		began := time.Now()
		id, err := client.StartRun(ctx, def.Slug, i, nil)
		if err != nil {
			return nil, err
		}
		if ev {
			_, err = client.WaitRun(ctx, id)
		} else {
			err = pollRun(ctx, pool, id) // WaitRun falls back to a slow timer without events
		}
		if err != nil {
			return nil, err
		}
		if i >= 5 {
			lat = append(lat, float64(time.Since(began).Microseconds())/1000)
		}
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return map[string]float64{"p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": lat[len(lat)-1]}, nil
}

func pollRun(ctx context.Context, pool *pgxpool.Pool, id uuid.UUID) error {
	for {
		var status string
		if err := pool.QueryRow(ctx, `SELECT status FROM qflow.runs WHERE id = $1`, id).Scan(&status); err != nil {
			return err
		}
		switch status {
		case "completed":
			return nil
		case "started":
			time.Sleep(500 * time.Microsecond)
		default:
			return fmt.Errorf("run %s %s", id, status)
		}
	}
}
