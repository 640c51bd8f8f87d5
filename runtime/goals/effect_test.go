package goals_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/goals"
)

// TestOptimisationEffect measures what each optimisation level changes
// (docs/benchmarks.md, section "Goals: optimisation levels"). It is a
// measurement, not a timed test: it runs only with QFLOW_GOALS_EFFECT=1 and
// takes about two minutes (one run waits out the default 60s timeout).
//
//	QFLOW_GOALS_EFFECT=1 go test -run TestOptimisationEffect -v -timeout 10m ./runtime/goals
func TestOptimisationEffect(t *testing.T) {
	if os.Getenv("QFLOW_GOALS_EFFECT") == "" {
		t.Skip("a measurement: set QFLOW_GOALS_EFFECT=1 to run it")
	}
	c := newClient(t) // one database: each scenario has its own flow
	t.Run("critical_path", func(t *testing.T) { effectCriticalPath(t, c) })
	t.Run("hang_recovery", func(t *testing.T) { effectHangRecovery(t, c) })
	t.Run("stragglers", func(t *testing.T) { effectStragglers(t, c) })
}

func sleepHandler(d time.Duration) goals.Handler {
	return func(ctx context.Context, _ *goals.TaskRun) (json.RawMessage, error) {
		select {
		case <-time.After(d):
			return json.RawMessage(`1`), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return fmt.Sprintf("mean %6d ms  median %6d ms  min %6d ms  max %6d ms  (n=%d)",
		(sum / time.Duration(len(s))).Milliseconds(), s[len(s)/2].Milliseconds(), s[0].Milliseconds(), s[len(s)-1].Milliseconds(), len(s))
}

// effectCriticalPath: 12 side tasks of 100 ms listed before a chain of 4
// tasks of 300 ms, then a 10 ms report after all of them; 2 worker slots.
func effectCriticalPath(t *testing.T, c *runtime.Client) {
	ctx := context.Background()
	var specs []goals.TaskSpec
	var all []string
	for i := 1; i <= 12; i++ {
		id := fmt.Sprintf("side%02d", i)
		specs = append(specs, goals.TaskSpec{ID: id, Kind: "side"})
		all = append(all, id)
	}
	for i := 1; i <= 4; i++ {
		s := goals.TaskSpec{ID: fmt.Sprintf("chain%d", i), Kind: "chain"}
		if i > 1 {
			s.DependsOn = []string{fmt.Sprintf("chain%d", i-1)}
		}
		specs = append(specs, s)
	}
	all = append(all, "chain4")
	specs = append(specs, goals.TaskSpec{ID: "report", Kind: "report", DependsOn: all})
	dec := table{"cp": specs}
	hs := goals.Handlers{"side": sleepHandler(100 * time.Millisecond), "chain": sleepHandler(300 * time.Millisecond), "report": sleepHandler(10 * time.Millisecond)}
	measure := func(level goals.Level, n int) []time.Duration {
		var out []time.Duration
		for range n {
			res, err := goals.ComposeFromGoal(ctx, c, goals.Goal{ID: "cp"}, dec, hs, &goals.Options{Logger: quiet(), Concurrency: 2, Level: level})
			if err != nil {
				t.Fatal(err)
			}
			if level >= goals.LevelAdvanced && !res.PrioritiesApplied {
				t.Fatal("the engine did not take the priorities")
			}
			out = append(out, res.Duration)
		}
		return out
	}
	off := measure(goals.LevelOff, 5) // also the learning runs
	basic := measure(goals.LevelBasic, 5)
	adv := measure(goals.LevelAdvanced, 5)
	aggr := measure(goals.LevelAggressive, 5)
	t.Logf("critical path, 2 slots, ideal makespan 1210 ms (chain + report), lower bound of work/2 = 1010 ms")
	t.Logf("  off        %s", summary(off))
	t.Logf("  basic      %s", summary(basic))
	t.Logf("  advanced   %s", summary(adv))
	t.Logf("  aggressive %s", summary(aggr))
}

// effectHangRecovery: a 50 ms step whose first attempt hangs in the
// measured run; recovery is the run's time beyond a normal run.
func effectHangRecovery(t *testing.T, c *runtime.Client) {
	ctx := context.Background()
	var hang sync.Map // run id → true: the first attempt of "fetch" hangs
	hs := goals.Handlers{
		"fetch": func(ctx context.Context, tr *goals.TaskRun) (json.RawMessage, error) {
			if _, ok := hang.Load(tr.RunID); ok && tr.Attempt == 1 {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return sleepHandler(50*time.Millisecond)(ctx, tr)
		},
		"use": sleepHandler(10 * time.Millisecond),
	}
	dec := table{"hang": {{ID: "fetch", Kind: "fetch"}, {ID: "use", Kind: "use", DependsOn: []string{"fetch"}}}}
	goal := goals.Goal{ID: "hang"}
	var normal []time.Duration
	for range 5 { // learning runs, level off
		res, err := goals.ComposeFromGoal(ctx, c, goal, dec, hs, &goals.Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		normal = append(normal, res.Duration)
	}
	hangingRun := func(level goals.Level) (time.Duration, *goals.Plan) {
		p, err := goals.PlanGoal(ctx, c, goal, dec, hs, &goals.Options{Level: level})
		if err != nil {
			t.Fatal(err)
		}
		// Mark the next run of this plan as hanging: its id is not known
		// before it starts, so the handler hangs on any run marked "next".
		var res *goals.Result
		done := make(chan struct{})
		marker := goals.Options{Logger: quiet(), Level: level, OnEvent: func(ev goals.Event) {
			if ev.Type == "workflow_started" {
				hang.Store(ev.RunID, true)
			}
		}}
		go func() {
			defer close(done)
			res, err = goals.RunPlan(ctx, c, p, hs, &marker)
		}()
		<-done
		if err != nil {
			t.Fatal(err)
		}
		return res.Duration, p
	}
	offHang, _ := hangingRun(goals.LevelOff)
	basicHang, p := hangingRun(goals.LevelBasic)
	t.Logf("hang recovery: normal run %s", summary(normal))
	t.Logf("  off   (default timeout %s): run with a hang %d ms", runtime.DefaultTimeout, offHang.Milliseconds())
	t.Logf("  basic (learned timeout %s, retries %d): run with a hang %d ms", p.Tuning["fetch"].Timeout, p.Def.Steps[0].Options.Retries, basicHang.Milliseconds())
}

// effectStragglers: 3 stages of 4 parallel idempotent calls (50 ms, but 1
// in 7 calls takes 1500 ms), 4 slots; advanced vs aggressive (hedging).
func effectStragglers(t *testing.T, c *runtime.Client) {
	ctx := context.Background()
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(7, 7))
	hs := goals.Handlers{"call": func(ctx context.Context, tr *goals.TaskRun) (json.RawMessage, error) {
		mu.Lock()
		d := 50 * time.Millisecond
		if rng.IntN(7) == 0 {
			d = 1500 * time.Millisecond
		}
		mu.Unlock()
		return sleepHandler(d)(ctx, tr)
	}}
	var specs []goals.TaskSpec
	for s := 1; s <= 3; s++ {
		for i := 1; i <= 4; i++ {
			spec := goals.TaskSpec{ID: fmt.Sprintf("s%d_%d", s, i), Kind: "call", Idempotent: true}
			if s > 1 {
				for j := 1; j <= 4; j++ {
					spec.DependsOn = append(spec.DependsOn, fmt.Sprintf("s%d_%d", s-1, j))
				}
			}
			specs = append(specs, spec)
		}
	}
	dec := table{"st": specs}
	measure := func(level goals.Level, n int) ([]time.Duration, int) {
		var out []time.Duration
		hedges := 0
		for range n {
			res, err := goals.ComposeFromGoal(ctx, c, goals.Goal{ID: "st"}, dec, hs, &goals.Options{Logger: quiet(), Concurrency: 4, Level: level})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, res.Duration)
			hedges += res.Hedges
		}
		return out, hedges
	}
	off, _ := measure(goals.LevelOff, 10)
	adv, _ := measure(goals.LevelAdvanced, 10)
	aggr, hedges := measure(goals.LevelAggressive, 10)
	t.Logf("stragglers, 4 slots, 3 stages × 4 idempotent calls, 1 in 7 calls slow (1500 ms instead of 50 ms)")
	t.Logf("  off        %s", summary(off))
	t.Logf("  advanced   %s", summary(adv))
	t.Logf("  aggressive %s  (%d hedges in %d tasks)", summary(aggr), hedges, 10*len(specs))
}
