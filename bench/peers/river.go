package main

// River (github.com/riverqueue/river), a job queue: a chain is three job
// kinds, each job inserting the next in the transaction that completes it.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

type rvA struct {
	Run   int            `json:"run"`
	Input map[string]any `json:"input"`
}

func (rvA) Kind() string { return "chain_a" }

type rvB struct {
	Run  int            `json:"run"`
	Prev map[string]any `json:"prev"`
}

func (rvB) Kind() string { return "chain_b" }

type rvC struct {
	Run  int            `json:"run"`
	Prev map[string]any `json:"prev"`
}

func (rvC) Kind() string { return "chain_c" }

type rvGen struct {
	Fan int `json:"fan"`
	N   int `json:"n"`
}

func (rvGen) Kind() string { return "fan_gen" }

type rvMap struct {
	Fan  int `json:"fan"`
	Idx  int `json:"idx"`
	Item int `json:"item"`
}

func (rvMap) Kind() string { return "fan_map" }

type rvAgg struct {
	Fan int `json:"fan"`
}

func (rvAgg) Kind() string { return "fan_agg" }

// riverEnv is one repetition's state, shared by its workers.
type riverEnv struct {
	pool     *pgxpool.Pool
	runDone  func(run int) // called once c's transaction committed
	fanAsync bool          // W3: map jobs complete through River's batched async completer
	fanDone  chan struct{}
	aggSum   atomic.Int64
	aggN     atomic.Int64
}

// complete records out (when not nil), runs extra and completes job, all in one transaction.
func complete[T river.JobArgs](ctx context.Context, e *riverEnv, job *river.Job[T], out map[string]any, extra func(tx pgx.Tx) error) error {
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if out != nil {
		if err := river.RecordOutput(ctx, out); err != nil {
			return err
		}
	}
	if extra != nil {
		if err := extra(tx); err != nil {
			return err
		}
	}
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

type rvAWorker struct {
	river.WorkerDefaults[rvA]
	e *riverEnv
}

func (w *rvAWorker) Work(ctx context.Context, job *river.Job[rvA]) error {
	out := map[string]any{"step": "a", "run": job.Args.Run, "v": 1}
	client := river.ClientFromContext[pgx.Tx](ctx)
	return complete(ctx, w.e, job, out, func(tx pgx.Tx) error {
		_, err := client.InsertTx(ctx, tx, rvB{Run: job.Args.Run, Prev: out}, nil)
		return err
	})
}

type rvBWorker struct {
	river.WorkerDefaults[rvB]
	e *riverEnv
}

func (w *rvBWorker) Work(ctx context.Context, job *river.Job[rvB]) error {
	out := map[string]any{"step": "b", "run": job.Args.Run, "v": toInt(job.Args.Prev["v"]) + 1}
	client := river.ClientFromContext[pgx.Tx](ctx)
	return complete(ctx, w.e, job, out, func(tx pgx.Tx) error {
		_, err := client.InsertTx(ctx, tx, rvC{Run: job.Args.Run, Prev: out}, nil)
		return err
	})
}

type rvCWorker struct {
	river.WorkerDefaults[rvC]
	e *riverEnv
}

func (w *rvCWorker) Work(ctx context.Context, job *river.Job[rvC]) error {
	v := toInt(job.Args.Prev["v"]) + 1
	if v != 3 {
		return river.JobCancel(fmt.Errorf("river chain %d: c computed %d, want 3", job.Args.Run, v))
	}
	if err := complete(ctx, w.e, job, map[string]any{"step": "c", "run": job.Args.Run, "v": v}, nil); err != nil {
		return err
	}
	w.e.runDone(job.Args.Run)
	return nil
}

type rvGenWorker struct {
	river.WorkerDefaults[rvGen]
	e *riverEnv
}

func (w *rvGenWorker) Work(ctx context.Context, job *river.Job[rvGen]) error {
	client := river.ClientFromContext[pgx.Tx](ctx)
	items := make([]int, job.Args.N)
	params := make([]river.InsertManyParams, job.Args.N)
	for i := range items {
		items[i] = i
		params[i] = river.InsertManyParams{Args: rvMap{Fan: job.Args.Fan, Idx: i, Item: i}}
	}
	return complete(ctx, w.e, job, map[string]any{"items": items}, func(tx pgx.Tx) error {
		if !w.e.fanAsync {
			if _, err := tx.Exec(ctx, `INSERT INTO bench_fanout(fan, remaining) VALUES ($1, $2)`, job.Args.Fan, job.Args.N); err != nil {
				return err
			}
		}
		_, err := client.InsertManyFastTx(ctx, tx, params)
		return err
	})
}

type rvMapWorker struct {
	river.WorkerDefaults[rvMap]
	e *riverEnv
}

func (w *rvMapWorker) Work(ctx context.Context, job *river.Job[rvMap]) error {
	out := map[string]any{"idx": job.Args.Idx, "v": job.Args.Item * 2}
	if w.e.fanAsync {
		// River's fast path: the output goes to the job's metadata and
		// River's completer marks the job done in a later batch.
		return river.RecordOutput(ctx, out)
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	return complete(ctx, w.e, job, out, func(tx pgx.Tx) error {
		var remaining int
		if err := tx.QueryRow(ctx, `UPDATE bench_fanout SET remaining = remaining - 1 WHERE fan = $1 RETURNING remaining`, job.Args.Fan).Scan(&remaining); err != nil {
			return err
		}
		if remaining == 0 {
			_, err := client.InsertTx(ctx, tx, rvAgg{Fan: job.Args.Fan}, nil)
			return err
		}
		return nil
	})
}

type rvAggWorker struct {
	river.WorkerDefaults[rvAgg]
	e *riverEnv
}

func (w *rvAggWorker) Work(ctx context.Context, job *river.Job[rvAgg]) error {
	var sum, n int64
	err := complete(ctx, w.e, job, nil, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT coalesce(sum((metadata->'output'->>'v')::bigint), 0), count(*) FROM river_job WHERE kind = 'fan_map' AND state = 'completed' AND (args->>'fan')::int = $1`, job.Args.Fan).Scan(&sum, &n)
	})
	if err != nil {
		return err
	}
	w.e.aggSum.Store(sum)
	w.e.aggN.Store(n)
	close(w.e.fanDone)
	return nil
}

func toInt(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case int:
		return x
	case int64:
		return int(x)
	}
	return 0
}

// withRiver migrates a fresh database, builds a client with -slots workers
// and runs f; f starts the client. Afterwards it checks that every job completed.
func withRiver(ctx context.Context, c *config, f func(e *riverEnv, client *river.Client[pgx.Tx], settings string) error) error {
	return c.withDatabase(ctx, "river", func(pool *pgxpool.Pool) error {
		migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
		if err != nil {
			return err
		}
		if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, `CREATE TABLE bench_fanout(fan int PRIMARY KEY, remaining int NOT NULL)`); err != nil {
			return err
		}
		e := &riverEnv{pool: pool, runDone: func(int) {}}
		workers := river.NewWorkers()
		river.AddWorker(workers, &rvAWorker{e: e})
		river.AddWorker(workers, &rvBWorker{e: e})
		river.AddWorker(workers, &rvCWorker{e: e})
		river.AddWorker(workers, &rvGenWorker{e: e})
		river.AddWorker(workers, &rvMapWorker{e: e})
		river.AddWorker(workers, &rvAggWorker{e: e})
		cfg := &river.Config{
			Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: c.slots}},
			Workers:           workers,
			FetchCooldown:     time.Millisecond,
			FetchPollInterval: c.poll,
			Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		}
		client, err := river.NewClient(riverpgxv5.New(pool), cfg)
		if err != nil {
			return err
		}
		settings := fmt.Sprintf("river v0.51.2 riverpgxv5; MaxWorkers=%d FetchCooldown=1ms FetchPollInterval=%s pool_max_conns=%d; LISTEN/NOTIFY on; each step completes with RecordOutput+JobCompleteTx in the transaction that inserts the next",
			c.slots, c.poll, c.poolMax)
		ferr := f(e, client, settings)
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Stop(stopCtx); err != nil && ferr == nil {
			ferr = fmt.Errorf("river stop: %w", err)
		}
		if ferr != nil {
			return ferr
		}
		var completed, other int
		if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state <> 'completed') FROM river_job`).Scan(&completed, &other); err != nil {
			return err
		}
		if other != 0 {
			return fmt.Errorf("river: %d jobs completed, %d not", completed, other)
		}
		return nil
	})
}

// riverStart starts the client and lets leader election and the notifier settle.
func riverStart(ctx context.Context, client *river.Client[pgx.Tx]) error {
	if err := client.Start(ctx); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	return nil
}

// riverW1 is W1 (batch false: one Insert per call from 8 goroutines) and W1b
// (batch true: one InsertMany); the clock stops when the last chain's c committed.
func riverW1(batch bool) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		r := Result{Runs: c.runs, Tasks: 3 * c.runs}
		err := withRiver(ctx, c, func(e *riverEnv, client *river.Client[pgx.Tx], settings string) error {
			left := newCountdown(c.runs)
			e.runDone = func(int) { left.dec() }
			if err := riverStart(ctx, client); err != nil {
				return err
			}
			m := startMeter()
			if batch {
				params := make([]river.InsertManyParams, c.runs)
				for i := range params {
					params[i] = river.InsertManyParams{Args: rvA{Run: i, Input: map[string]any{"x": i}}}
				}
				if _, err := client.InsertMany(ctx, params); err != nil {
					return err
				}
				r.Settings = settings + "; W1b: roots inserted with one InsertMany"
			} else {
				err := startAll(ctx, c.runs, func(ctx context.Context, i int) error {
					_, err := client.Insert(ctx, rvA{Run: i, Input: map[string]any{"x": i}}, nil)
					return err
				})
				if err != nil {
					return err
				}
				r.Settings = settings + fmt.Sprintf("; W1: %d goroutines Insert the roots", starters)
			}
			if err := wait(ctx, left.done); err != nil {
				return err
			}
			m.finish(&r)
			return nil
		})
		return r, err
	}
}

// riverW2 is W2: Insert a chain's root, wait for its c, next.
func riverW2(ctx context.Context, c *config, rep int) (Result, error) {
	r := Result{Runs: c.seqRuns, Tasks: 3 * c.seqRuns}
	err := withRiver(ctx, c, func(e *riverEnv, client *river.Client[pgx.Tx], settings string) error {
		done := make(chan int, 1)
		e.runDone = func(run int) { done <- run }
		if err := riverStart(ctx, client); err != nil {
			return err
		}
		one := func(i int) error {
			if _, err := client.Insert(ctx, rvA{Run: i, Input: map[string]any{"x": i}}, nil); err != nil {
				return err
			}
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
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
		r.Settings = settings + "; W2: Insert the root, wait in-process for c's commit"
		return nil
	})
	return r, err
}

// riverW3 is W3: a gen job inserts the map jobs with InsertManyFastTx; the
// aggregate job sums their outputs from river_job. With async false the map
// jobs count down a row in their completing transaction and the last inserts
// the aggregate; with async true they complete through River's batched
// completer and an in-process coordinator inserts the aggregate once it has
// seen every completion event.
func riverW3(async bool) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		r := Result{Runs: 1, Tasks: c.fan + 2}
		err := withRiver(ctx, c, func(e *riverEnv, client *river.Client[pgx.Tx], settings string) error {
			e.fanAsync = async
			e.fanDone = make(chan struct{})
			var sub <-chan *river.Event
			if async {
				var cancel func()
				sub, cancel = client.SubscribeConfig(&river.SubscribeConfig{Kinds: []river.EventKind{river.EventKindJobCompleted}, ChanSize: 2*c.fan + 16})
				defer cancel()
			}
			if err := riverStart(ctx, client); err != nil {
				return err
			}
			m := startMeter()
			if _, err := client.Insert(ctx, rvGen{Fan: 1, N: c.fan}, nil); err != nil {
				return err
			}
			if async {
				for seen := 0; seen < c.fan; {
					select {
					case ev := <-sub:
						if ev.Job.Kind == (rvMap{}).Kind() {
							seen++
						}
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if _, err := client.Insert(ctx, rvAgg{Fan: 1}, nil); err != nil {
					return err
				}
			}
			if err := wait(ctx, e.fanDone); err != nil {
				return err
			}
			m.finish(&r)
			if want := int64(c.fan) * int64(c.fan-1); e.aggSum.Load() != want || e.aggN.Load() != int64(c.fan) {
				return fmt.Errorf("river w3: agg summed %d over %d outputs, want %d over %d", e.aggSum.Load(), e.aggN.Load(), want, c.fan)
			}
			if async {
				r.Settings = settings + "; W3 asynccompleter: map jobs RecordOutput and return (River's batched completer); a coordinator counts JobCompleted events and inserts agg"
			} else {
				r.Settings = settings + "; W3 txcounter: gen InsertManyFastTx the map jobs; each map job's transaction: RecordOutput, UPDATE a counter row, JobCompleteTx; the last inserts agg"
			}
			return nil
		})
		return r, err
	}
}
