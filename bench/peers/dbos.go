package main

// DBOS Transact (github.com/dbos-inc/dbos-transact-golang), durable
// workflows: a chain is one workflow of three RunAsStep calls.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5/pgxpool"
)

type dbStepOut struct {
	Step string `json:"step"`
	Run  int    `json:"run"`
	V    int    `json:"v"`
}

type dbChainIn struct {
	Run int `json:"run"`
	X   int `json:"x"`
}

// dbosEnv is one repetition's DBOS context; its methods are the workflows.
type dbosEnv struct {
	dctx     dbos.Context
	pool     *pgxpool.Pool
	chainQ   dbos.Queue
	fanQ     dbos.Queue
	fanMode  string // W3: "queue" (child workflows on a queue) or "steps" (steps in the parent)
	poll     time.Duration
	runDone  atomic.Pointer[func()]
	settings string
}

func (e *dbosEnv) chain(ctx dbos.Context, in dbChainIn) (dbStepOut, error) {
	a, err := dbos.RunAsStep(ctx, func(context.Context) (dbStepOut, error) {
		return dbStepOut{Step: "a", Run: in.Run, V: 1}, nil
	}, dbos.WithStepName("a"))
	if err != nil {
		return dbStepOut{}, err
	}
	b, err := dbos.RunAsStep(ctx, func(context.Context) (dbStepOut, error) {
		return dbStepOut{Step: "b", Run: in.Run, V: a.V + 1}, nil
	}, dbos.WithStepName("b"))
	if err != nil {
		return dbStepOut{}, err
	}
	c, err := dbos.RunAsStep(ctx, func(context.Context) (dbStepOut, error) {
		return dbStepOut{Step: "c", Run: in.Run, V: b.V + 1}, nil
	}, dbos.WithStepName("c"))
	if err != nil {
		return dbStepOut{}, err
	}
	if f := e.runDone.Load(); f != nil {
		(*f)()
	}
	return c, nil
}

// fanChild is W3's map task as a workflow of its own: its output is its durable result.
func (e *dbosEnv) fanChild(ctx dbos.Context, item int) (int, error) {
	return item * 2, nil
}

func (e *dbosEnv) fanParent(ctx dbos.Context, n int) (int64, error) {
	items, err := dbos.RunAsStep(ctx, func(context.Context) ([]int, error) {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}, dbos.WithStepName("gen"))
	if err != nil {
		return 0, err
	}
	var sum int64
	switch e.fanMode {
	case "queue":
		handles := make([]dbos.WorkflowHandle[int], len(items))
		for i, it := range items {
			if handles[i], err = dbos.RunWorkflow(ctx, e.fanChild, it, dbos.WithQueue(e.fanQ)); err != nil {
				return 0, err
			}
		}
		for _, h := range handles {
			v, err := h.GetResult(dbos.WithHandlePollingInterval(e.poll))
			if err != nil {
				return 0, err
			}
			sum += int64(v)
		}
	case "steps":
		for _, it := range items {
			v, err := dbos.RunAsStep(ctx, func(context.Context) (int, error) { return it * 2, nil }, dbos.WithStepName("map"))
			if err != nil {
				return 0, err
			}
			sum += int64(v)
		}
	default:
		return 0, fmt.Errorf("dbos: unknown fan mode %q", e.fanMode)
	}
	return dbos.RunAsStep(ctx, func(context.Context) (int64, error) { return sum, nil }, dbos.WithStepName("agg"))
}

// withDBOS launches DBOS on a fresh database with two queues of -slots
// workers each and runs f; afterwards it checks that every workflow succeeded.
func withDBOS(ctx context.Context, c *config, f func(e *dbosEnv) error) error {
	return c.withDatabase(ctx, "dbos", func(pool *pgxpool.Pool) error {
		dctx, err := dbos.NewContext(ctx, dbos.Config{
			AppName:      "qflowpeers",
			SystemDBPool: pool,
			Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			return err
		}
		e := &dbosEnv{dctx: dctx, pool: pool, poll: c.poll}
		dbos.RegisterWorkflow(dctx, e.chain, dbos.WithWorkflowName("chain"))
		dbos.RegisterWorkflow(dctx, e.fanChild, dbos.WithWorkflowName("fanchild"))
		dbos.RegisterWorkflow(dctx, e.fanParent, dbos.WithWorkflowName("fanparent"))
		if e.chainQ, err = dbos.RegisterQueue(dctx, "chainq", dbos.WithWorkerConcurrency(c.slots), dbos.WithQueueBasePollingInterval(c.poll)); err != nil {
			return err
		}
		if e.fanQ, err = dbos.RegisterQueue(dctx, "fanq", dbos.WithWorkerConcurrency(c.slots), dbos.WithQueueBasePollingInterval(c.poll)); err != nil {
			return err
		}
		if err := dbos.Launch(dctx); err != nil {
			return err
		}
		e.settings = fmt.Sprintf("dbos-transact-golang v1.8.0; SystemDBPool pool_max_conns=%d; queues WorkerConcurrency=%d BasePollingInterval=%s (default 1s); queued GetResult polling %s (default 1s)",
			c.poolMax, c.slots, c.poll, c.poll)
		time.Sleep(200 * time.Millisecond)
		err = f(e)
		if err == nil {
			var succ, other int
			err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'SUCCESS'), count(*) FILTER (WHERE status <> 'SUCCESS') FROM dbos.workflow_status`).Scan(&succ, &other)
			if err == nil && other != 0 {
				err = fmt.Errorf("dbos: %d workflows succeeded, %d did not", succ, other)
			}
		}
		// Shutdown closes the pool too.
		if serr := dbos.Shutdown(dctx, 5*time.Second); serr != nil && err == nil {
			err = fmt.Errorf("dbos shutdown: %w", serr)
		}
		if err != nil {
			return err
		}
		return nil
	})
}

// dbosW1 is W1. Direct: -slots goroutines each run a workflow in-process and
// wait for its result (DBOS runs an unqueued workflow at once, so the callers
// are its slots). Queue: 8 goroutines enqueue every run on a queue of -slots
// workers; the clock stops when every workflow's status is SUCCESS.
func dbosW1(queued bool) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		r := Result{Runs: c.runs, Tasks: 3 * c.runs}
		err := withDBOS(ctx, c, func(e *dbosEnv) error {
			left := newCountdown(c.runs)
			dec := left.dec
			e.runDone.Store(&dec)
			m := startMeter()
			if !queued {
				var next atomic.Int64
				errs := make(chan error, c.slots)
				for range c.slots {
					go func() {
						for i := int(next.Add(1) - 1); i < c.runs && ctx.Err() == nil; i = int(next.Add(1) - 1) {
							h, err := dbos.RunWorkflow(e.dctx, e.chain, dbChainIn{Run: i, X: i})
							if err == nil {
								_, err = h.GetResult()
							}
							if err != nil {
								errs <- err
								return
							}
						}
						errs <- nil
					}()
				}
				for range c.slots {
					if err := <-errs; err != nil {
						return err
					}
				}
				r.Settings = e.settings + fmt.Sprintf("; W1 direct: %d goroutines RunWorkflow+GetResult in-process (no queue)", c.slots)
			} else {
				err := startAll(ctx, c.runs, func(ctx context.Context, i int) error {
					_, err := dbos.RunWorkflow(e.dctx, e.chain, dbChainIn{Run: i, X: i}, dbos.WithQueue(e.chainQ))
					return err
				})
				if err != nil {
					return err
				}
				if err := wait(ctx, left.done); err != nil {
					return err
				}
				// A workflow's status is written after its function returns.
				for {
					var n int
					if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'`).Scan(&n); err != nil {
						return err
					}
					if n >= c.runs {
						break
					}
					time.Sleep(time.Millisecond)
				}
				r.Settings = e.settings + fmt.Sprintf("; W1 queue: %d goroutines enqueue with RunWorkflow(WithQueue); done when all SUCCESS", starters)
			}
			m.finish(&r)
			return nil
		})
		return r, err
	}
}

// dbosW2 is W2: run one chain workflow (in-process or through the queue),
// wait for its result, next.
func dbosW2(queued bool) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		r := Result{Runs: c.seqRuns, Tasks: 3 * c.seqRuns}
		err := withDBOS(ctx, c, func(e *dbosEnv) error {
			one := func(i int) error {
				var opts []dbos.WorkflowOption
				var wait []dbos.GetResultOption
				if queued {
					opts = append(opts, dbos.WithQueue(e.chainQ))
					wait = append(wait, dbos.WithHandlePollingInterval(time.Millisecond))
				}
				h, err := dbos.RunWorkflow(e.dctx, e.chain, dbChainIn{Run: i, X: i}, opts...)
				if err != nil {
					return err
				}
				out, err := h.GetResult(wait...)
				if err != nil {
					return err
				}
				if out.V != 3 {
					return fmt.Errorf("dbos: chain %d returned %d, want 3", i, out.V)
				}
				return nil
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
			r.Settings = e.settings + "; W2: RunWorkflow then GetResult (queued: GetResult polling 1ms)"
			return nil
		})
		return r, err
	}
}

// dbosW3 is W3 as one parent workflow: a gen step, the map tasks (mode
// "queue": child workflows on a queue of -slots workers, awaited in order;
// mode "steps": sequential steps in the parent, so nothing is distributed),
// then an agg step.
func dbosW3(mode string) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		r := Result{Runs: 1, Tasks: c.fan + 2}
		err := withDBOS(ctx, c, func(e *dbosEnv) error {
			e.fanMode = mode
			m := startMeter()
			h, err := dbos.RunWorkflow(e.dctx, e.fanParent, c.fan)
			if err != nil {
				return err
			}
			sum, err := h.GetResult()
			if err != nil {
				return err
			}
			m.finish(&r)
			if want := int64(c.fan) * int64(c.fan-1); sum != want {
				return fmt.Errorf("dbos w3: sum %d, want %d", sum, want)
			}
			r.Settings = e.settings + map[string]string{
				"queue": "; W3 queue: parent workflow: gen step, child workflows enqueued on a queue from inside the workflow, GetResult on each, agg step",
				"steps": "; W3 steps: parent workflow runs the map tasks as sequential RunAsStep calls in-process (no distribution)",
			}[mode]
			return nil
		})
		return r, err
	}
}
