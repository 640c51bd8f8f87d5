package main

// QuantumFlow, the project under test (replaced by this checkout in go.mod),
// driven through its public runtime API only: a flow built with NewFlow, one
// in-process Worker with -slots handlers, and a Client.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	qf "github.com/quantumflow/qflow/runtime"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type qfV struct {
	V int `json:"v"`
}

// qflowChain is W1's and W2's flow: a takes the run's input, b takes a's
// output, c takes b's; c's output is 3.
func qflowChain() (qf.FlowDef, map[string]qf.Handler, error) {
	def, err := qf.NewFlow("chain").
		Step("a", qf.StepDef{TakesInput: true}).
		Step("b", qf.StepDef{DependsOn: []string{"a"}}).
		Step("c", qf.StepDef{DependsOn: []string{"b"}}).
		Build()
	h := map[string]qf.Handler{
		"a": qf.HandlerFunc(func(ctx context.Context, in struct {
			Run struct{ X int } `json:"run"`
		}) (qfV, error) {
			return qfV{V: 1}, nil
		}),
		"b": qf.HandlerFunc(func(ctx context.Context, in struct {
			A qfV `json:"a"`
		}) (qfV, error) {
			return qfV{V: in.A.V + 1}, nil
		}),
		"c": qf.HandlerFunc(func(ctx context.Context, in struct {
			B qfV `json:"b"`
		}) (qfV, error) {
			return qfV{V: in.B.V + 1}, nil
		}),
	}
	return def, h, err
}

func checkChain(out json.RawMessage) error {
	var o map[string]qfV
	if err := json.Unmarshal(out, &o); err != nil || o["c"].V != 3 {
		return fmt.Errorf("qflow: chain output %s, want c = 3", out)
	}
	return nil
}

// qflowFan is W3's flow: gen returns n integers, m doubles each, agg sums them.
func qflowFan() (qf.FlowDef, map[string]qf.Handler, error) {
	def, err := qf.NewFlow("fan").
		Step("gen", qf.StepDef{TakesInput: true}).
		MapStep("m", "gen", qf.StepOptions{}).
		Step("agg", qf.StepDef{DependsOn: []string{"m"}}).
		Build()
	h := map[string]qf.Handler{
		"gen": qf.HandlerFunc(func(ctx context.Context, in struct {
			Run struct{ N int } `json:"run"`
		}) ([]int, error) {
			items := make([]int, in.Run.N)
			for i := range items {
				items[i] = i
			}
			return items, nil
		}),
		"m": qf.HandlerFunc(func(ctx context.Context, item int) (int, error) { return item * 2, nil }),
		"agg": qf.HandlerFunc(func(ctx context.Context, in struct {
			M []int `json:"m"`
		}) (int64, error) {
			var s int64
			for _, v := range in.M {
				s += int64(v)
			}
			return s, nil
		}),
	}
	return def, h, err
}

// qflowEnv is one repetition's database, client and running worker.
type qflowEnv struct {
	client   *qf.Client
	settings string
}

// withQflow migrates a fresh database, defines the flow, starts a worker with
// -slots handlers and runs f.
func withQflow(ctx context.Context, c *config, events bool, flow func() (qf.FlowDef, map[string]qf.Handler, error), f func(e *qflowEnv, def qf.FlowDef) error) error {
	def, h, err := flow()
	if err != nil {
		return err
	}
	return c.withDatabase(ctx, "qflow", func(pool *pgxpool.Pool) error {
		client := qf.NewClient(pool, &qf.ClientOptions{Logger: quiet, DisableEvents: !events})
		defer client.Close()
		if err := client.Migrate(ctx); err != nil {
			return err
		}
		if _, err := client.DefineFlow(ctx, def); err != nil {
			return err
		}
		w := qf.NewWorker(pool, &qf.WorkerOptions{Concurrency: c.slots, Logger: quiet, DisableEvents: !events})
		if err := w.Register(def, h); err != nil {
			return err
		}
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var werr error
		wg.Go(func() { werr = w.Run(wctx) })
		time.Sleep(200 * time.Millisecond) // the worker is listening
		e := &qflowEnv{client: client, settings: fmt.Sprintf("qflow (this checkout); one Worker Concurrency=%d, other options default; events %s; pool_max_conns=%d",
			c.slots, map[bool]string{true: "on", false: "off"}[events], c.poolMax)}
		err := f(e, def)
		stop()
		wg.Wait()
		if err == nil && werr != nil && ctx.Err() == nil {
			err = fmt.Errorf("qflow worker: %w", werr)
		}
		return err
	})
}

// waitIdle polls ListRuns every 2 ms until no run of flow is started (runs
// are started, completed, failed or cancelled).
func (e *qflowEnv) waitIdle(ctx context.Context, flow string) error {
	for {
		rs, err := e.client.ListRuns(ctx, qf.ListRunsParams{Flow: flow, Status: qf.StatusStarted, Limit: 1})
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// checkCompleted checks that want runs of flow completed.
func (e *qflowEnv) checkCompleted(ctx context.Context, flow string, want int) error {
	n := 0
	var after uuid.UUID
	for {
		rs, err := e.client.ListRuns(ctx, qf.ListRunsParams{Flow: flow, Status: qf.StatusCompleted, Limit: 1000, After: after})
		if err != nil {
			return err
		}
		n += len(rs)
		if len(rs) < 1000 {
			break
		}
		after = rs[len(rs)-1].ID
	}
	if n != want {
		return fmt.Errorf("qflow: %d runs of %s completed, want %d", n, flow, want)
	}
	return nil
}

// qflowW1 is W1 (batch false: 8 goroutines, each starting a run and waiting
// for it before the next, as the W1 and DBOS's direct variant do) and
// W1b (batch true: one StartRuns call, then the clock stops when no run is in
// progress).
func qflowW1(batch, events bool) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		r := Result{Runs: c.runs, Tasks: 3 * c.runs}
		err := withQflow(ctx, c, events, qflowChain, func(e *qflowEnv, def qf.FlowDef) error {
			m := startMeter()
			if batch {
				inputs := make([]any, c.runs)
				for i := range inputs {
					inputs[i] = map[string]int{"x": i}
				}
				if _, err := e.client.StartRuns(ctx, def.Slug, inputs, nil); err != nil {
					return err
				}
				r.Settings = e.settings + "; W1b: one StartRuns of all runs, then ListRuns polled every 2 ms until none is in progress"
			} else {
				err := startAll(ctx, c.runs, func(ctx context.Context, i int) error {
					id, err := e.client.StartRun(ctx, def.Slug, map[string]int{"x": i}, nil)
					if err != nil {
						return err
					}
					out, err := e.client.WaitRun(ctx, id)
					if err != nil {
						return err
					}
					return checkChain(out)
				})
				if err != nil {
					return err
				}
				r.Settings = e.settings + fmt.Sprintf("; W1: %d goroutines, each StartRun then WaitRun", starters)
			}
			if err := e.waitIdle(ctx, def.Slug); err != nil {
				return err
			}
			m.finish(&r)
			return e.checkCompleted(ctx, def.Slug, c.runs)
		})
		return r, err
	}
}

// qflowW2 is W2: StartRun then wait, one run at a time.
func qflowW2(events bool) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		r := Result{Runs: c.seqRuns, Tasks: 3 * c.seqRuns}
		err := withQflow(ctx, c, events, qflowChain, func(e *qflowEnv, def qf.FlowDef) error {
			one := func(i int) error {
				id, err := e.client.StartRun(ctx, def.Slug, map[string]int{"x": i}, nil)
				if err != nil {
					return err
				}
				out, err := e.client.WaitRun(ctx, id)
				if err != nil {
					return err
				}
				return checkChain(out)
			}
			for i := range 5 {
				if err := one(-1 - i); err != nil {
					return err
				}
			}
			lats := make([]time.Duration, 0, c.seqRuns)
			m := startMeter()
			for i := range c.seqRuns {
				t0 := time.Now()
				if err := one(i); err != nil {
					return err
				}
				lats = append(lats, time.Since(t0))
			}
			m.finish(&r)
			latencies(&r, lats)
			r.Settings = e.settings + "; W2: StartRun then WaitRun (with events off it polls adaptively from 1 ms)"
			return nil
		})
		return r, err
	}
}

// qflowW3 is W3: one run of gen → map m → agg; the sum is checked.
func qflowW3(events bool) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		r := Result{Runs: 1, Tasks: c.fan + 2}
		err := withQflow(ctx, c, events, qflowFan, func(e *qflowEnv, def qf.FlowDef) error {
			m := startMeter()
			id, err := e.client.StartRun(ctx, def.Slug, map[string]int{"n": c.fan}, nil)
			if err != nil {
				return err
			}
			var out json.RawMessage
			if events {
				if out, err = e.client.WaitRun(ctx, id); err != nil {
					return err
				}
				m.finish(&r)
			} else {
				if err := e.waitIdle(ctx, def.Slug); err != nil {
					return err
				}
				m.finish(&r)
				run, err := e.client.GetRun(ctx, id)
				if err != nil {
					return err
				}
				out = run.Output
			}
			var o map[string]int64
			if err := json.Unmarshal(out, &o); err != nil || o["agg"] != int64(c.fan)*int64(c.fan-1) {
				return fmt.Errorf("qflow w3: output %s, want agg %d", out, int64(c.fan)*int64(c.fan-1))
			}
			r.Settings = e.settings + "; W3: gen → MapStep m → agg, WaitRun (events on) or ListRuns polled every 2 ms (events off)"
			return nil
		})
		return r, err
	}
}
