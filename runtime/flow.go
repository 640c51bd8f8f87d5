package runtime

import "github.com/quantumflow/qflow/flowdef"

// The flow model lives in package flowdef, which imports only the standard
// library; these aliases keep it reachable under the runtime's names.

type (
	// StepOptions tune how a step's tasks are retried and timed; see
	// flowdef.StepOptions. Retries counts the tries after the first.
	StepOptions = flowdef.StepOptions
	// StepDef describes one step of a flow; see flowdef.StepDef.
	StepDef = flowdef.StepDef
	// FlowDef describes a flow: its slug, default options and steps; see
	// flowdef.FlowDef. Generated code and dynamic flows both register
	// their flows as a FlowDef.
	FlowDef = flowdef.FlowDef
	// Condition decides whether a conditional step runs (StepDef.When): a
	// worker calls it with the task's input before the handler, and a
	// false result skips the step. See flowdef.Condition and WhenFunc.
	Condition = flowdef.Condition
	// Rate caps how fast a step's tasks start across all workers
	// (StepOptions.Rate); see flowdef.Rate.
	Rate = flowdef.Rate
)

// ParseRate reads a rate as the //qflow:step annotation writes it: "50/s",
// "600/m", "1/h" or "5/10s" (see flowdef.ParseRate).
func ParseRate(s string) (Rate, error) { return flowdef.ParseRate(s) }

// Defaults applied when neither a step nor its flow sets an option (see
// package flowdef).
const (
	DefaultRetries   = flowdef.DefaultRetries // 3 attempts in all
	DefaultBaseDelay = flowdef.DefaultBaseDelay
	DefaultTimeout   = flowdef.DefaultTimeout
)

// NoRetries as StepOptions.Retries or StartOptions.Retries asks for a
// single attempt, where 0 would inherit.
const NoRetries = flowdef.NoRetries

// ValidSlug reports whether s may name a flow or a step: a lowercase letter,
// then lowercase letters, digits or underscores, at most 40 characters in all
// (see flowdef.SlugPattern).
func ValidSlug(s string) bool { return flowdef.ValidSlug(s) }

// ErrInvalidFlow wraps every error FlowDef.Validate returns (it is
// flowdef.ErrInvalid).
var ErrInvalidFlow = flowdef.ErrInvalid
