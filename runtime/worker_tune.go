package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/quantumflow/qflow/flowdef"
)

// The tuner (WorkerOptions.Optimize): when the worker starts and every
// Learning.Interval, it reads each flow's step statistics, computes what
// the level takes from them (TuneSteps), keeps the timeouts and hedging
// delays for the handlers it runs (workerFlow.tuned, read by execute), and
// writes the retries and claim priorities to the flow version
// (qflow.tune_steps), where they apply to the tasks queued from then on.

// tuneAll tunes every registered flow, logging what fails: a worker runs
// untuned rather than not at all.
func (w *Worker) tuneAll(ctx context.Context) {
	for _, f := range w.flows {
		if err := w.tuneFlow(ctx, f); err != nil && ctx.Err() == nil {
			w.log.Warn("qflow: tune flow; running it as it was", "worker_id", w.id, "flow", f.def.Slug, "level", w.opts.Optimize, "error", err)
		}
	}
}

// retune tunes every flow again each Learning.Interval until ctx ends.
func (w *Worker) retune(ctx context.Context) {
	t := time.NewTicker(w.opts.Learning.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.abandon:
			return
		case <-t.C:
		}
		w.tuneAll(ctx)
	}
}

// tuneFlow applies the worker's level to f. At OptimizeOff it only puts
// back the version's own options if a tuning worker changed them.
func (w *Worker) tuneFlow(ctx context.Context, f *workerFlow) error {
	level := w.opts.Optimize
	if level <= OptimizeOff {
		if !f.tunedInDB {
			return nil
		}
		var n int
		if err := w.pool.QueryRow(ctx, sqlTuneSteps, f.id, int16(0), []string{}, []int32{}, []int32{}, []int64{}, []int64{}).Scan(&n); err != nil {
			return err
		}
		f.tunedInDB = false
		w.log.Info("qflow flow untuned: its own retries and priorities apply again", "worker_id", w.id, "flow", f.def.Slug, "steps_changed", n)
		return nil
	}
	stats, err := stepStats(ctx, w.pool, f.def.Slug)
	if err != nil {
		return err
	}
	by := make(map[string]StepStats, len(stats))
	for _, s := range stats {
		by[s.Step] = s
	}
	tuning := TuneSteps(f.def, by, level, &w.opts.Learning)

	local := make([]stepTune, len(f.steps))
	var (
		slugs              []string
		attempts, prios    []*int32
		timeouts, hedges   []*int64
		nTimeout, nRetries int
		nPrio, nHedge      int
	)
	for i, s := range f.steps {
		tu, ok := tuning[s.slug]
		if !ok {
			continue
		}
		local[i] = stepTune{timeout: tu.Timeout, hedge: tu.HedgeAfter}
		slugs = append(slugs, s.slug)
		attempts = append(attempts, nil)
		prios = append(prios, nil)
		timeouts = append(timeouts, nil)
		hedges = append(hedges, nil)
		last := len(slugs) - 1
		if tu.Retries > 0 {
			a := int32(flowdef.Attempts(tu.Retries))
			attempts[last] = &a
			nRetries++
		}
		if tu.Priority != 0 {
			p := int32(tu.Priority)
			prios[last] = &p
			nPrio++
		}
		if tu.Timeout > 0 {
			ms := ceilMS(tu.Timeout)
			timeouts[last] = &ms
			nTimeout++
		}
		if tu.HedgeAfter > 0 {
			ms := ceilMS(tu.HedgeAfter)
			hedges[last] = &ms
			nHedge++
		}
	}
	first := f.tuned.Swap(&local) == nil
	var changed int
	if err := w.pool.QueryRow(ctx, sqlTuneSteps, f.id, int16(level), slugs, attempts, prios, timeouts, hedges).Scan(&changed); err != nil {
		return fmt.Errorf("store the tuning: %w", err)
	}
	f.tunedInDB = true
	if nPrio > 0 {
		w.mu.Lock()
		w.prioritized = true // claim no tasks ahead of the slots: see reserve
		w.mu.Unlock()
	}
	log := w.log.Debug
	if first || changed > 0 {
		log = w.log.Info
	}
	log("qflow flow tuned", "worker_id", w.id, "flow", f.def.Slug, "level", level, "steps_learned", len(slugs),
		"timeouts", nTimeout, "retries", nRetries, "priorities", nPrio, "hedged", nHedge, "steps_changed", changed)
	return nil
}

func ceilMS(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
