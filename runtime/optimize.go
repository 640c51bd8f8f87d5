package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/quantumflow/qflow/flowdef"
)

// OptimizeLevel selects what a worker (WorkerOptions.Optimize) or a
// composed goal (runtime/goals) takes from the statistics the engine
// recorded for earlier runs of a flow (Client.StepStats). Each level
// includes the ones before it. Levels change only when and how patiently
// tasks run, never what they compute.
type OptimizeLevel int

// Optimisation levels.
const (
	// OptimizeOff runs every step with its own options.
	OptimizeOff OptimizeLevel = iota
	// OptimizeBasic sets each step's timeout from its learned durations
	// (the 99th percentile times LearnOptions.TimeoutFactor, at least
	// TimeoutFloor, rounded up to 1, 1.5, 2, 3, 5 or 7 × 10ⁿ ms) and raises
	// its retries where failures were transient (a retry or a timeout
	// recovered them): enough that all attempts failing has odds below
	// 1 in 1000 at the observed failure rate, at most
	// LearnOptions.MaxRetries.
	OptimizeBasic
	// OptimizeAdvanced also orders claims by the critical path: each
	// step's claim priority becomes the learned length, in milliseconds,
	// of the longest path from it to the end of the run (its median
	// duration plus its longest dependent's), so when slots are scarce the
	// tasks that hold up the run the longest are claimed first.
	OptimizeAdvanced
	// OptimizeAggressive also hedges stragglers of idempotent steps
	// (StepOptions.Idempotent): when an attempt has run HedgeFactor × the
	// step's median duration, a second copy of the handler starts in the
	// same slot, the first success wins and the other is cancelled.
	OptimizeAggressive
)

func (l OptimizeLevel) String() string {
	switch l {
	case OptimizeOff:
		return "off"
	case OptimizeBasic:
		return "basic"
	case OptimizeAdvanced:
		return "advanced"
	case OptimizeAggressive:
		return "aggressive"
	}
	return fmt.Sprintf("OptimizeLevel(%d)", int(l))
}

// ParseOptimizeLevel parses a level's name: off, basic, advanced or
// aggressive (as String returns them).
func ParseOptimizeLevel(s string) (OptimizeLevel, error) {
	for l := OptimizeOff; l <= OptimizeAggressive; l++ {
		if strings.EqualFold(s, l.String()) {
			return l, nil
		}
	}
	return 0, fmt.Errorf("qflow: optimisation level %q: want off, basic, advanced or aggressive", s)
}

func (l OptimizeLevel) check() error {
	if l < OptimizeOff || l > OptimizeAggressive {
		return fmt.Errorf("qflow: optimisation level %d: want OptimizeOff to OptimizeAggressive", int(l))
	}
	return nil
}

// LearnOptions tune how statistics become step options. Zero fields take
// the defaults shown.
type LearnOptions struct {
	// MinSamples is how many successful durations a step needs before its
	// timeout, priority or hedge is learned, and how many finished tasks
	// before its retries are (default 3).
	MinSamples int
	// TimeoutFactor multiplies the 99th percentile of successful durations
	// to give the timeout (default 3).
	TimeoutFactor float64
	// TimeoutFloor is the shortest learned timeout (default 1s).
	TimeoutFloor time.Duration
	// MaxRetries caps learned retries, the tries after the first
	// (default 7).
	MaxRetries int
	// HedgeFactor multiplies the median duration to give the hedging delay
	// (default 2).
	HedgeFactor float64
	// HedgeFloor is the shortest hedging delay (default 20ms).
	HedgeFloor time.Duration
	// Interval is how often a worker reads the statistics again and
	// re-tunes its flows (default 1 minute; WorkerOptions only). A worker
	// also tunes them when it starts.
	Interval time.Duration
}

// WithDefaults returns o with every zero field set to its default.
func (o LearnOptions) WithDefaults() LearnOptions {
	if o.MinSamples <= 0 {
		o.MinSamples = 3
	}
	if o.TimeoutFactor <= 0 {
		o.TimeoutFactor = 3
	}
	if o.TimeoutFloor <= 0 {
		o.TimeoutFloor = time.Second
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 7
	}
	if o.HedgeFactor <= 0 {
		o.HedgeFactor = 2
	}
	if o.HedgeFloor <= 0 {
		o.HedgeFloor = 20 * time.Millisecond
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	return o
}

// StepTuning is what an optimisation level sets for one step. Zero fields
// are left as the step has them.
type StepTuning struct {
	// Samples is the number of successful durations learned from.
	Samples int `json:"samples"`
	// EstimateMS is the learned typical (median) duration.
	EstimateMS float64       `json:"estimate_ms"`
	Timeout    time.Duration `json:"timeout,omitempty"` // basic
	// Retries is the learned number of retries after the first attempt
	// (basic), set only when it is more than the step's own.
	Retries int `json:"retries,omitempty"`
	// Priority is the claim priority (advanced): the learned duration of
	// the longest path from the step to the end of the run, in ms, plus 1.
	Priority int `json:"priority,omitempty"`
	// HedgeAfter is when a second copy starts (aggressive, idempotent
	// steps).
	HedgeAfter time.Duration `json:"hedge_after,omitempty"`
}

// TuneSteps computes what level takes from stats (by step slug, as
// Client.StepStats returns them) for the steps of def, by step slug. A
// step with too few statistics (LearnOptions.MinSamples) gets nothing
// learned, except at OptimizeAdvanced and above a priority, for which its
// duration is taken as the mean of the others' (or 1 ms). It reads no
// database: workers with WorkerOptions.Optimize, and runtime/goals, apply
// its result. lo may be nil.
func TuneSteps(def FlowDef, stats map[string]StepStats, level OptimizeLevel, lo *LearnOptions) map[string]StepTuning {
	var o LearnOptions
	if lo != nil {
		o = *lo
	}
	o = o.WithDefaults()
	out := map[string]StepTuning{}
	if level <= OptimizeOff {
		return out
	}
	maxAttempts := flowdef.Attempts(o.MaxRetries)
	for _, s := range def.Steps {
		st := stats[s.Slug]
		if st.Samples < o.MinSamples && st.Tasks < int64(o.MinSamples) {
			continue
		}
		own := def.Effective(s)
		tu := StepTuning{Samples: st.Samples, EstimateMS: st.P50MS}
		timeout := own.Timeout
		// basic: timeout from a high percentile of successful durations.
		if st.Samples >= o.MinSamples {
			d := time.Duration(st.P99MS * o.TimeoutFactor * float64(time.Millisecond))
			tu.Timeout = roundUp(max(d, o.TimeoutFloor))
			timeout = tu.Timeout
		}
		// basic: more attempts where failures were transient (a retry or a
		// timeout recovered them): enough that all failing has a chance
		// below 1 in 1000 at the observed failure rate.
		if st.FailedAttempts > 0 && (st.RetriedOK > 0 || st.Timeouts > 0) && st.Attempts > 0 {
			base := flowdef.Attempts(own.Retries)
			pf := float64(st.FailedAttempts) / float64(st.Attempts)
			n := maxAttempts
			if pf < 1 {
				n = int(math.Ceil(math.Log(1e-3) / math.Log(pf)))
			}
			if n = min(max(n, base), maxAttempts); n > base {
				tu.Retries = n - 1
			}
		}
		// aggressive: hedge idempotent stragglers.
		if level >= OptimizeAggressive && (s.Options.Idempotent || def.Options.Idempotent) && st.Samples >= o.MinSamples {
			h := max(time.Duration(st.P50MS*o.HedgeFactor*float64(time.Millisecond)), o.HedgeFloor)
			if h < timeout {
				tu.HedgeAfter = h
			}
		}
		out[s.Slug] = tu
	}
	if level >= OptimizeAdvanced {
		prioritise(def, out)
	}
	return out
}

// prioritise sets each step's priority to the learned length of the
// longest path from it to the end of the run (its bottom level), in ms,
// plus 1. Steps without statistics count as the mean of those with, or
// 1 ms.
func prioritise(def FlowDef, tu map[string]StepTuning) {
	var sum float64
	var n int
	for _, t := range tu {
		if t.EstimateMS > 0 {
			sum += t.EstimateMS
			n++
		}
	}
	fallback := 1.0
	if n > 0 {
		fallback = sum / float64(n)
	}
	dependents := map[string][]string{}
	for _, s := range def.Steps {
		for _, d := range s.DependsOn {
			dependents[d] = append(dependents[d], s.Slug)
		}
	}
	bottom := map[string]float64{}
	var walk func(slug string) float64 // the graph is acyclic (Validate)
	walk = func(slug string) float64 {
		if b, ok := bottom[slug]; ok {
			return b
		}
		est := tu[slug].EstimateMS
		if est <= 0 {
			est = fallback
		}
		longest := 0.0
		for _, d := range dependents[slug] {
			longest = max(longest, walk(d))
		}
		bottom[slug] = est + longest
		return bottom[slug]
	}
	for _, s := range def.Steps {
		t := tu[s.Slug]
		t.Priority = int(min(math.Round(walk(s.Slug)), 1<<30)) + 1
		tu[s.Slug] = t
	}
}

// roundUp rounds d up to 1, 1.5, 2, 3, 5 or 7 times a power of ten
// milliseconds, so small changes in the statistics change no option (and,
// for runtime/goals, make no new flow version).
func roundUp(d time.Duration) time.Duration {
	ms := float64(d) / float64(time.Millisecond)
	if ms <= 1 {
		return time.Millisecond
	}
	pow := math.Pow(10, math.Floor(math.Log10(ms)))
	for _, m := range []float64{1, 1.5, 2, 3, 5, 7, 10} {
		if v := m * pow; v >= ms-1e-9 {
			return time.Duration(v * float64(time.Millisecond))
		}
	}
	panic(fmt.Sprintf("roundUp(%s)", d)) // unreachable: 10·pow ≥ ms
}

// Hedge runs call and, when it has not returned after `after`, starts a
// second copy; it returns the first success or, when both fail, the first
// error, and cancels the other copy's context. onHedge, if not nil, is
// called when the second copy starts. A copy that panics fails with the
// panic as its error. Workers at OptimizeAggressive hedge idempotent steps
// with it; handlers that hedge by themselves (runtime/goals) may too.
func Hedge(ctx context.Context, after time.Duration, call func(context.Context) (json.RawMessage, error), onHedge func()) (json.RawMessage, error) {
	type res struct {
		out json.RawMessage
		err error
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan res, 2)
	run := func() {
		var r res
		defer func() {
			if p := recover(); p != nil {
				r = res{err: fmt.Errorf("panic: %v", p)}
			}
			ch <- r
		}()
		r.out, r.err = call(hctx)
	}
	go run()
	timer := time.NewTimer(after)
	defer timer.Stop()
	running := 1
	var firstErr error
	for {
		select {
		case <-timer.C:
			if running == 1 && firstErr == nil {
				running++
				if onHedge != nil {
					onHedge()
				}
				go run()
			}
		case r := <-ch:
			running--
			if r.err == nil {
				return r.out, nil
			}
			if firstErr == nil {
				firstErr = r.err
			}
			if running == 0 {
				return nil, firstErr
			}
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}
