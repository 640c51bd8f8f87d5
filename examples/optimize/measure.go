package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/examples/optimize/flows"
	"github.com/quantumflow/qflow/runtime"
)

// scenario is one generated flow, run at several optimisation levels.
type scenario struct {
	name   string
	about  string
	slots  int // the worker's Concurrency
	learn  int // runs at level off before the first measured run
	levels []runtime.OptimizeLevel
	// register registers the flow with a worker.
	register func(*runtime.Worker) error
	// start starts run i: a learning run, or a measured one.
	start func(ctx context.Context, c *runtime.Client, i int, measured bool) (uuid.UUID, error)
}

// scenarios returns the three scenarios with their durations multiplied
// by scale (each at least 1 ms). The hang's cost at level off is the
// flow's configured timeout, 10s, whatever the scale.
func scenarios(scale float64) []scenario {
	sc := func(n int) int { return max(1, int(float64(n)*scale+0.5)) }
	all := []runtime.OptimizeLevel{runtime.OptimizeOff, runtime.OptimizeBasic, runtime.OptimizeAdvanced, runtime.OptimizeAggressive}
	return []scenario{{
		name: "critical",
		about: fmt.Sprintf("12 side tasks of %d ms queued before a chain of 4 × %d ms, then %d ms; 2 slots; ideal %d ms",
			sc(100), sc(300), sc(10), 4*sc(300)+sc(10)),
		slots: 2, learn: 5, levels: all,
		register: flows.RegisterCritical,
		start: func(ctx context.Context, c *runtime.Client, _ int, _ bool) (uuid.UUID, error) {
			r, err := flows.StartCritical(ctx, c, flows.Critical{Sides: 12, SideMS: sc(100), ChainMS: sc(300), ReportMS: sc(10)})
			if err != nil {
				return uuid.Nil, err
			}
			return r.ID, nil
		},
	}, {
		name:  "hang",
		about: fmt.Sprintf("fetch (%d ms, configured timeout 10s) whose first attempt hangs in each measured run, then 10 ms", sc(50)),
		slots: 4, learn: 5, levels: all[:2],
		register: flows.RegisterHang,
		start: func(ctx context.Context, c *runtime.Client, i int, measured bool) (uuid.UUID, error) {
			r, err := flows.StartHang(ctx, c, flows.Hang{FetchMS: sc(50), Hang: measured, Token: uuid.NewString()})
			if err != nil {
				return uuid.Nil, err
			}
			return r.ID, nil
		},
	}, {
		name: "stragglers",
		about: fmt.Sprintf("3 stages × 4 idempotent calls of %d ms, 1 in 7 takes %d ms; 4 slots",
			sc(50), sc(1500)),
		slots: 4, learn: 10, levels: all,
		register: flows.RegisterStragglers,
		start: func(ctx context.Context, c *runtime.Client, _ int, _ bool) (uuid.UUID, error) {
			r, err := flows.StartStragglers(ctx, c, flows.Stragglers{Width: 4, CallMS: sc(50), SlowMS: sc(1500), SlowOneIn: 7})
			if err != nil {
				return uuid.Nil, err
			}
			return r.ID, nil
		},
	}}
}

// lab runs scenarios on one database.
type lab struct {
	pool    *pgxpool.Pool
	client  *runtime.Client
	log     *slog.Logger
	learned map[string]int // scenario → learning runs done
	runs    int            // runs started, for unique inputs
}

func newLab(pool *pgxpool.Pool, log *slog.Logger) *lab {
	return &lab{pool: pool, client: runtime.NewClient(pool, &runtime.ClientOptions{Logger: log}), log: log, learned: map[string]int{}}
}

func (l *lab) close() { l.client.Close() }

// withWorker runs fn while a worker at level serves sc's flow. The worker
// has tuned the flow (and registered itself) before fn is called.
func (l *lab) withWorker(ctx context.Context, sc scenario, level runtime.OptimizeLevel, fn func() error) error {
	w := runtime.NewWorker(l.pool, &runtime.WorkerOptions{
		Concurrency: sc.slots, BatchSize: sc.slots, PollInterval: 100 * time.Millisecond, Logger: l.log,
		ShutdownTimeout: 5 * time.Second, Optimize: level,
	})
	if err := sc.register(w); err != nil {
		return err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()
	for { // a worker registers itself once it has tuned its flows
		var n int
		if err := l.pool.QueryRow(ctx, `SELECT count(*) FROM qflow.workers WHERE id = $1::uuid`, w.ID()).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			break
		}
		select {
		case err := <-done:
			return fmt.Errorf("worker stopped: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fn()
}

// runOne starts one run of sc, waits for it and returns its duration as
// the engine recorded it (finished_at − started_at).
func (l *lab) runOne(ctx context.Context, sc scenario, measured bool) (time.Duration, error) {
	l.runs++
	id, err := sc.start(ctx, l.client, l.runs, measured)
	if err != nil {
		return 0, err
	}
	if _, err := l.client.WaitRun(ctx, id); err != nil {
		return 0, err
	}
	run, err := l.client.GetRun(ctx, id)
	if err != nil {
		return 0, err
	}
	if run.FinishedAt == nil {
		return 0, fmt.Errorf("run %s has not finished", id)
	}
	return run.FinishedAt.Sub(run.StartedAt), nil
}

// ensureLearned runs sc at level off until it has had sc.learn learning runs.
func (l *lab) ensureLearned(ctx context.Context, sc scenario) error {
	if l.learned[sc.name] >= sc.learn {
		return nil
	}
	return l.withWorker(ctx, sc, runtime.OptimizeOff, func() error {
		for l.learned[sc.name] < sc.learn {
			if _, err := l.runOne(ctx, sc, false); err != nil {
				return err
			}
			l.learned[sc.name]++
		}
		return nil
	})
}

// measurement is n measured runs of a scenario at one level.
type measurement struct {
	level     runtime.OptimizeLevel
	durations []time.Duration
	calls     int64 // stragglers: handler calls, hedges included
}

// measure runs sc n times at level, after the learning runs.
func (l *lab) measure(ctx context.Context, sc scenario, level runtime.OptimizeLevel, n int) (measurement, error) {
	m := measurement{level: level}
	if err := l.ensureLearned(ctx, sc); err != nil {
		return m, err
	}
	flows.Seed(7)
	calls := flows.Calls.Load()
	err := l.withWorker(ctx, sc, level, func() error {
		for range n {
			d, err := l.runOne(ctx, sc, true)
			if err != nil {
				return err
			}
			m.durations = append(m.durations, d)
		}
		return nil
	})
	m.calls = flows.Calls.Load() - calls
	return m, err
}

// stats are a measurement's median, mean, min and max, in ms.
func (m measurement) stats() (median, mean, lo, hi float64) {
	s := slices.Clone(m.durations)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return msf(s[len(s)/2]), msf(sum / time.Duration(len(s))), msf(s[0]), msf(s[len(s)-1])
}

// report prints a scenario's measurements as a table.
func report(out io.Writer, sc scenario, ms []measurement) {
	fmt.Fprintf(out, "%s: %s\n", sc.name, sc.about)
	fmt.Fprintf(out, "  %-10s %8s %8s %8s %8s  %s\n", "level", "median", "mean", "min", "max", "runs")
	for _, m := range ms {
		med, mean, lo, hi := m.stats()
		extra := ""
		if sc.name == "stragglers" {
			extra = fmt.Sprintf("  (%d hedges in %d calls)", m.calls-int64(12*len(m.durations)), m.calls)
		}
		fmt.Fprintf(out, "  %-10s %6.0fms %6.0fms %6.0fms %6.0fms  %d%s\n", m.level, med, mean, lo, hi, len(m.durations), extra)
	}
}

// config selects what run measures.
type config struct {
	scale     float64
	runs      int
	scenarios []string // names; empty: all
	levels    []runtime.OptimizeLevel
}

func parseLevels(s string) ([]runtime.OptimizeLevel, error) {
	var out []runtime.OptimizeLevel
	for _, f := range strings.Split(s, ",") {
		l, err := runtime.ParseOptimizeLevel(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// run measures the selected scenarios at the selected levels on pool,
// which should hold a fresh database (statistics carry over between
// invocations otherwise), and prints a table per scenario.
func run(ctx context.Context, pool *pgxpool.Pool, out io.Writer, cfg config) error {
	l := newLab(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer l.close()
	found := false
	for _, sc := range scenarios(cfg.scale) {
		if len(cfg.scenarios) > 0 && !slices.Contains(cfg.scenarios, sc.name) {
			continue
		}
		found = true
		var ms []measurement
		for _, level := range sc.levels {
			if len(cfg.levels) > 0 && !slices.Contains(cfg.levels, level) {
				continue
			}
			m, err := l.measure(ctx, sc, level, cfg.runs)
			if err != nil {
				return fmt.Errorf("%s at %s: %w", sc.name, level, err)
			}
			ms = append(ms, m)
		}
		if len(ms) > 0 {
			report(out, sc, ms)
		}
	}
	if !found {
		return fmt.Errorf("no scenario named %v (want critical, hang, stragglers)", cfg.scenarios)
	}
	return nil
}
