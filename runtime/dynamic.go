package runtime

import (
	"context"
	"encoding/json"
	"fmt"
)

// FlowBuilder builds a flow definition at run time (a dynamic flow). It is
// stored in the same tables and run by the same engine as generated flows;
// register handlers keyed by step slug with Worker.Register.
//
//	def, err := runtime.NewFlow("report").
//		Step("fetch", runtime.StepDef{TakesInput: true}).
//		MapStep("score", "fetch", runtime.StepOptions{Timeout: 5 * time.Second}).
//		Step("total", runtime.StepDef{DependsOn: []string{"score"}}).
//		Build()
type FlowBuilder struct {
	def FlowDef
}

// NewFlow starts a dynamic flow definition with this slug.
func NewFlow(slug string) *FlowBuilder { return &FlowBuilder{def: FlowDef{Slug: slug}} }

// Options sets the flow's default step options.
func (b *FlowBuilder) Options(o StepOptions) *FlowBuilder {
	b.def.Options = o
	return b
}

// Step adds a step; s.Slug is set from slug.
func (b *FlowBuilder) Step(slug string, s StepDef) *FlowBuilder {
	s.Slug = slug
	b.def.Steps = append(b.def.Steps, s)
	return b
}

// MapStep adds a map step over the output of dep, or over the flow input
// when dep is empty.
func (b *FlowBuilder) MapStep(slug, dep string, o StepOptions) *FlowBuilder {
	s := StepDef{Slug: slug, Map: true, Options: o}
	if dep != "" {
		s.DependsOn = []string{dep}
	}
	b.def.Steps = append(b.def.Steps, s)
	return b
}

// Build validates the definition and returns it.
func (b *FlowBuilder) Build() (FlowDef, error) {
	if err := b.def.Validate(); err != nil {
		return FlowDef{}, err
	}
	return b.def, nil
}

// WhenFunc adapts a typed function to a Condition (StepDef.When), as
// HandlerFunc does handlers: the task input is decoded into In (an input
// that does not decode fails the attempt permanently). The input holds the
// flow input under "run" (when the step takes it) and each dependency's
// output under its slug, without the dependencies that were skipped (the
// step's AcceptsSkipped): decode those into pointers, nil when skipped.
func WhenFunc[In any](fn func(ctx context.Context, in In) (bool, error)) Condition {
	return func(ctx context.Context, input json.RawMessage) (bool, error) {
		var in In
		if err := json.Unmarshal(input, &in); err != nil {
			return false, Permanent(fmt.Errorf("decode input: %w", err))
		}
		return fn(ctx, in)
	}
}

// HandlerFunc adapts a typed function to a Handler: the task input is
// decoded into In (an input that does not decode fails the task
// permanently) and the result is encoded as JSON.
func HandlerFunc[In, Out any](fn func(ctx context.Context, in In) (Out, error)) Handler {
	return func(ctx context.Context, task *Task) (json.RawMessage, error) {
		var in In
		if err := DecodeTaskInput(task, &in); err != nil {
			return nil, err
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		return EncodeTaskOutput(task, out)
	}
}
