package goals

import (
	"context"

	"github.com/quantumflow/qflow/runtime"
)

// LearnOptions tune how statistics become step options (see
// runtime.LearnOptions; Interval does not apply here: a plan is tuned when
// it is made).
type LearnOptions = runtime.LearnOptions

// Tuning is what the optimiser set for one task's step (see
// runtime.StepTuning). Zero fields were left as configured.
type Tuning struct {
	// Source is where the statistics came from: "step" (this flow's step)
	// or "kind" (the handler kind, across plans); empty for a task tuned
	// only with a priority, for lack of statistics.
	Source string `json:"source,omitempty"`
	runtime.StepTuning
}

// tune applies level to the plan from the statistics in client's
// database: the step's own, or its handler kind's when the step has too
// few (runtime.TuneSteps computes the rest).
func (p *Plan) tune(ctx context.Context, client *runtime.Client, level Level, lo *LearnOptions) error {
	var o LearnOptions
	if lo != nil {
		o = *lo
	}
	o = o.WithDefaults()
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
	enough := func(s runtime.StepStats) bool {
		return s.Samples >= o.MinSamples || s.Tasks >= int64(o.MinSamples)
	}
	chosen := map[string]runtime.StepStats{}
	source := map[string]string{}
	for _, t := range p.Tasks {
		st, src := byStep[t.Slug], "step"
		if !enough(st) {
			st, src = byKind[t.Kind], "kind"
		}
		if enough(st) {
			chosen[t.Slug], source[t.Slug] = st, src
		}
	}
	tuning := runtime.TuneSteps(p.Def, chosen, level, &o)
	p.Level = level
	p.Tuning = map[string]Tuning{}
	for i, t := range p.Tasks {
		tu, ok := tuning[t.Slug]
		if !ok {
			continue
		}
		p.Tuning[t.ID] = Tuning{Source: source[t.Slug], StepTuning: tu}
		opt := &p.Def.Steps[i].Options
		if tu.Timeout > 0 {
			opt.Timeout = tu.Timeout
		}
		if tu.Retries > 0 {
			opt.Retries = tu.Retries
		}
	}
	return nil
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
