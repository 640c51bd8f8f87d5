package goals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/quantumflow/qflow/runtime"
)

// Result is the outcome of a composed run.
type Result struct {
	Goal  Goal
	Plan  *Plan     // nil when decomposition failed
	RunID uuid.UUID // uuid.Nil when no run started
	// FlowVersion is the version of the plan's flow the run used: the same
	// plan (same shape hash) reuses its version.
	FlowVersion int
	// Outputs holds each completed task's output, by flattened task id.
	Outputs map[string]json.RawMessage
	// Final is the run's result: the output of its only final task, or,
	// when several tasks end the DAG, an object of their outputs by task id.
	Final    json.RawMessage
	Duration time.Duration // from start to end of the run
	// Hedges counts second copies started by the aggressive level.
	Hedges int
	// PrioritiesApplied reports whether the run used the advanced level's
	// claim priorities (Client.SetStepPriorities): true at LevelAdvanced
	// and above.
	PrioritiesApplied bool
	// Err is the goal's error in ComposeMany's results.
	Err error
}

// ComposeFromGoal decomposes goal with dec, validates the flattened DAG,
// registers it as a dynamic flow (versioned by its shape hash, so the same
// plan is registered once), runs it on a runtime.Worker with a handler per
// task wrapping its kind's handler, records the run's statistics and
// returns each task's output and the final result. Nothing is started when
// decomposition or validation fails. A failed or cancelled run returns the
// partial Result with a *runtime.RunError.
func ComposeFromGoal(ctx context.Context, client *runtime.Client, goal Goal, dec Decomposer, handlers Handlers, opts *Options) (*Result, error) {
	plan, err := PlanGoal(ctx, client, goal, dec, handlers, opts)
	if err != nil {
		return &Result{Goal: goal}, err
	}
	return RunPlan(ctx, client, plan, handlers, opts)
}

// ComposeMany runs several goals at once, each as ComposeFromGoal would,
// and returns their results in order (never nil; a goal's error is also in
// its Result.Err) with all errors joined. One goal failing does not stop
// the others unless opts.FailFast is set. Leave opts.Flow empty so each
// goal gets its own flow.
func ComposeMany(ctx context.Context, client *runtime.Client, goals []Goal, dec Decomposer, handlers Handlers, opts *Options) ([]*Result, error) {
	if opts == nil {
		opts = &Options{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]*Result, len(goals))
	var wg sync.WaitGroup
	for i, g := range goals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := ComposeFromGoal(ctx, client, g, dec, handlers, opts)
			if r == nil {
				r = &Result{Goal: g}
			}
			r.Err = err
			results[i] = r
			if err != nil && opts.FailFast {
				cancel()
			}
		}()
	}
	wg.Wait()
	var errs []error
	for i, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("goal %d (%q): %w", i, goals[i].ID, r.Err))
		}
	}
	return results, errors.Join(errs...)
}

// attemptLog counts what the step handlers saw, per run and step.
type attemptLog struct {
	mu       sync.Mutex
	timeouts map[uuid.UUID]map[string]int
	hedges   map[uuid.UUID]int
}

func newAttemptLog() *attemptLog {
	return &attemptLog{timeouts: map[uuid.UUID]map[string]int{}, hedges: map[uuid.UUID]int{}}
}

func (l *attemptLog) timeout(run uuid.UUID, step string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timeouts[run] == nil {
		l.timeouts[run] = map[string]int{}
	}
	l.timeouts[run][step]++
}

func (l *attemptLog) hedge(run uuid.UUID, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hedges[run]++
}

func (l *attemptLog) take(run uuid.UUID) (map[string]int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, h := l.timeouts[run], l.hedges[run]
	delete(l.timeouts, run)
	delete(l.hedges, run)
	return t, h
}

// RunPlan runs a plan made by PlanGoal, as ComposeFromGoal does after
// planning. Running the same plan again reuses its flow version.
func RunPlan(ctx context.Context, client *runtime.Client, plan *Plan, handlers Handlers, opts *Options) (*Result, error) {
	if opts == nil {
		opts = &Options{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	res := &Result{Goal: plan.Goal, Plan: plan}
	rec := newAttemptLog()
	hs, err := plan.stepHandlers(handlers, rec)
	if err != nil {
		return res, err
	}
	pool := client.Pool()
	flowID, err := client.DefineFlow(ctx, plan.Def)
	if err != nil {
		return res, err
	}
	info, err := client.GetFlowInfo(ctx, flowID)
	if err != nil {
		return res, err
	}
	res.FlowVersion = info.Version
	if err := client.SetStepPriorities(ctx, flowID, plan.stepPriorities()); err != nil {
		return res, fmt.Errorf("goals: %w", err)
	}
	res.PrioritiesApplied = plan.Level >= LevelAdvanced

	concurrency := opts.Concurrency
	if concurrency <= 0 {
		concurrency = 4
	}
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{
		Concurrency: concurrency, BatchSize: concurrency, Logger: log,
		PollInterval: 250 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
	})
	if err := w.Register(plan.Def, hs); err != nil {
		return res, err
	}

	var mon *monitor
	if opts.OnEvent != nil || opts.Events != nil {
		mon, err = startMonitor(ctx, pool, plan, func(mctx context.Context, ev Event) {
			if opts.OnEvent != nil {
				opts.OnEvent(ev)
			}
			if opts.Events != nil {
				select {
				case opts.Events <- ev:
				case <-mctx.Done():
				}
			}
		})
		if err != nil {
			return res, fmt.Errorf("goals: listen for events: %w", err)
		}
	}

	wctx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	werr := make(chan error, 1)
	go func() { werr <- w.Run(wctx) }()
	finish := func() {
		stopWorker()
		if err := <-werr; err != nil {
			log.Error("goals: worker", "flow", plan.Def.Slug, "error", err)
		}
	}

	began := time.Now()
	h, err := client.StartFlow(ctx, plan.Def, plan.runInput(), &runtime.StartOptions{Timeout: opts.Timeout})
	if err != nil {
		finish()
		if mon != nil {
			mon.stop(0)
		}
		return res, err
	}
	res.RunID = h.ID
	if mon != nil {
		mon.setRun(h.ID)
	}
	wait := ctx
	if opts.Timeout > 0 { // the engine cancels at the deadline; this bounds the wait if no worker expires it
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, opts.Timeout+5*time.Second)
		defer cancel()
	}
	_, runErr := h.Wait(wait)
	bg := context.WithoutCancel(ctx)
	if runErr != nil && wait.Err() != nil {
		if err := client.CancelRun(bg, h.ID); err != nil {
			log.Warn("goals: cancel run", "run_id", h.ID, "error", err)
		}
		runErr = fmt.Errorf("goals: run %s: %w", h.ID, runErr)
	}
	res.Duration = time.Since(began)
	finish()
	if mon != nil {
		mon.stop(time.Second)
	}

	timeouts, hedges := rec.take(h.ID)
	res.Hedges = hedges
	kinds := map[string]string{}
	for _, t := range plan.Tasks {
		kinds[t.Slug] = t.Kind
	}
	if _, err := client.RecordRunStats(bg, h.ID, &runtime.RecordStatsParams{Kinds: kinds, Timeouts: timeouts}); err != nil {
		log.Warn("goals: record statistics", "run_id", h.ID, "error", err)
	}

	run, err := client.GetRun(bg, h.ID)
	if err != nil {
		return res, errors.Join(runErr, err)
	}
	if run.FinishedAt != nil {
		res.Duration = run.FinishedAt.Sub(run.StartedAt)
	}
	res.Outputs = map[string]json.RawMessage{}
	for _, s := range run.Steps {
		if t := plan.bySlug[s.Step]; t != nil && s.Status == runtime.StatusCompleted {
			res.Outputs[t.ID] = s.Output
		}
	}
	if runErr == nil {
		leaves := plan.Def.Leaves()
		if len(leaves) == 1 {
			res.Final = res.Outputs[plan.bySlug[leaves[0]].ID]
		} else {
			m := map[string]json.RawMessage{}
			for _, l := range leaves {
				id := plan.bySlug[l].ID
				m[id] = res.Outputs[id]
			}
			res.Final, _ = json.Marshal(m)
		}
	}
	return res, runErr
}

// stepPriorities are the claim priorities to hand the engine for plan:
// its learned ones at LevelAdvanced and above, else 0 for every step, which
// clears those an earlier run of the same shape (the same flow version)
// set.
func (p *Plan) stepPriorities() map[string]int {
	out := make(map[string]int, len(p.Tasks))
	for _, t := range p.Tasks {
		out[t.Slug] = 0
	}
	slugs, prios := p.Priorities()
	for i, s := range slugs {
		out[s] = int(prios[i])
	}
	return out
}
