package goals

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/quantumflow/qflow/flowdef"
	"github.com/quantumflow/qflow/runtime"
)

// LearnOptions tune how statistics become step options. Zero fields take
// the defaults shown.
type LearnOptions struct {
	// MinSamples is how many successful durations a step (or, failing
	// that, its handler kind) needs before its timeout, priority or hedge
	// is learned (default 3).
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
}

func (o LearnOptions) withDefaults() LearnOptions {
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
	return o
}

// Tuning is what the optimiser set for one task's step. Zero fields were
// left as configured.
type Tuning struct {
	// Source is where the statistics came from: "step" (this flow's step)
	// or "kind" (the handler kind, across plans).
	Source  string `json:"source"`
	Samples int    `json:"samples"`
	// EstimateMS is the learned typical (median) duration.
	EstimateMS float64       `json:"estimate_ms"`
	Timeout    time.Duration `json:"timeout,omitempty"` // basic
	// Retries is the learned number of retries after the first attempt
	// (basic), set only when it is more than the plan's own.
	Retries int `json:"retries,omitempty"`
	// Priority is the claim priority (advanced): the learned duration of
	// the longest path from the task to the end of the run, in ms, plus 1.
	Priority int `json:"priority,omitempty"`
	// HedgeAfter is when a second copy starts (aggressive, idempotent tasks).
	HedgeAfter time.Duration `json:"hedge_after,omitempty"`
}

// tune applies level to the plan from the statistics in client's database.
func (p *Plan) tune(ctx context.Context, client *runtime.Client, level Level, lo *LearnOptions) error {
	o := lo.withDefaults()
	steps, err := client.StepStats(ctx, p.Def.Slug)
	if err != nil {
		return err
	}
	byStep := map[string]runtime.StepStats{}
	for _, s := range steps {
		byStep[s.Step] = s
	}
	var kinds []string
	for _, t := range p.Tasks {
		kinds = append(kinds, t.Kind)
	}
	ks, err := client.KindStats(ctx, dedupe(kinds)...)
	if err != nil {
		return err
	}
	byKind := map[string]runtime.StepStats{}
	for _, s := range ks {
		byKind[s.Kind] = s
	}
	p.Level = level
	p.Tuning = map[string]Tuning{}
	baseAttempts := flowdef.Attempts(p.Def.Effective(runtime.StepDef{}).Retries)
	maxAttempts := flowdef.Attempts(o.MaxRetries)
	for i, t := range p.Tasks {
		st, src := byStep[t.Slug], "step"
		if st.Samples < o.MinSamples && st.Tasks < int64(o.MinSamples) {
			st, src = byKind[t.Kind], "kind"
		}
		if st.Samples < o.MinSamples && st.Tasks < int64(o.MinSamples) {
			continue
		}
		tu := Tuning{Source: src, Samples: st.Samples, EstimateMS: st.P50MS}
		opt := &p.Def.Steps[i].Options
		// basic: timeout from a high percentile of successful durations.
		if st.Samples >= o.MinSamples {
			d := time.Duration(st.P99MS * o.TimeoutFactor * float64(time.Millisecond))
			tu.Timeout = roundUp(max(d, o.TimeoutFloor))
			opt.Timeout = tu.Timeout
		}
		// basic: more attempts where failures were transient (a retry or a
		// timeout recovered them): enough that all failing has a chance
		// below 1 in 1000 at the observed failure rate.
		if st.FailedAttempts > 0 && (st.RetriedOK > 0 || st.Timeouts > 0) && st.Attempts > 0 {
			pf := float64(st.FailedAttempts) / float64(st.Attempts)
			n := maxAttempts
			if pf < 1 {
				n = int(math.Ceil(math.Log(1e-3) / math.Log(pf)))
			}
			n = min(max(n, baseAttempts), maxAttempts)
			if n > baseAttempts {
				tu.Retries = n - 1
				opt.Retries = n - 1
			}
		}
		// aggressive: hedge idempotent stragglers.
		if level >= LevelAggressive && t.Idempotent && st.Samples >= o.MinSamples {
			h := max(time.Duration(st.P50MS*o.HedgeFactor*float64(time.Millisecond)), o.HedgeFloor)
			timeout := opt.Timeout
			if timeout == 0 {
				timeout = runtime.DefaultTimeout
			}
			if h < timeout {
				tu.HedgeAfter = h
			}
		}
		p.Tuning[t.ID] = tu
	}
	if level >= LevelAdvanced {
		p.prioritise()
	}
	return nil
}

// prioritise sets each task's priority to the learned length of the
// longest path from it to the end of the run (its bottom level). Tasks
// without statistics count as the mean of those with, or 1 ms.
func (p *Plan) prioritise() {
	var sum float64
	var n int
	for _, tu := range p.Tuning {
		if tu.EstimateMS > 0 {
			sum += tu.EstimateMS
			n++
		}
	}
	fallback := 1.0
	if n > 0 {
		fallback = sum / float64(n)
	}
	dependents := map[string][]string{}
	for _, t := range p.Tasks {
		for _, d := range t.DependsOn {
			dependents[d] = append(dependents[d], t.ID)
		}
	}
	bottom := map[string]float64{}
	for i := len(p.Tasks) - 1; i >= 0; i-- { // Tasks are in topological order
		t := p.Tasks[i]
		est := p.Tuning[t.ID].EstimateMS
		if est <= 0 {
			est = fallback
		}
		longest := 0.0
		for _, d := range dependents[t.ID] {
			longest = max(longest, bottom[d])
		}
		bottom[t.ID] = est + longest
		tu := p.Tuning[t.ID]
		tu.Priority = int(min(math.Round(bottom[t.ID]), 1<<30)) + 1
		p.Tuning[t.ID] = tu
	}
}

// Priorities returns the plan's step slugs and their claim priorities, for
// runtime.Client.SetStepPriorities; both are empty below LevelAdvanced.
func (p *Plan) Priorities() (slugs []string, prios []int32) {
	if p.Level < LevelAdvanced {
		return nil, nil
	}
	for _, t := range p.Tasks {
		if pr := p.Tuning[t.ID].Priority; pr > 0 {
			slugs = append(slugs, t.Slug)
			prios = append(prios, int32(pr))
		}
	}
	return slugs, prios
}

// roundUp rounds d up to 1, 1.5, 2, 3, 5 or 7 times a power of ten
// milliseconds, so small changes in the statistics do not make a new flow
// version on every run.
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
