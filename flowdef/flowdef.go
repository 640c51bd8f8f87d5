package flowdef

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// StepOptions tune how a step's tasks are retried and timed. A zero field
// inherits the flow's value; a zero flow value takes the default.
type StepOptions struct {
	// Retries is how many times a failed task is tried again after its
	// first attempt: 0 inherits (flow default DefaultRetries), NoRetries
	// means one attempt and no retry.
	Retries int `json:"retries,omitempty"`
	// BaseDelay is the first retry's delay; later retries double it (flow
	// default DefaultBaseDelay).
	BaseDelay time.Duration `json:"base_delay,omitempty"`
	// Timeout cancels a handler's context (flow default DefaultTimeout).
	Timeout time.Duration `json:"timeout,omitempty"`
	// StartDelay holds a step's tasks back after it becomes ready (default
	// 0; a flow's StartDelay is ignored).
	StartDelay time.Duration `json:"start_delay,omitempty"`
	// Priority is the step's claim priority (default 0; a flow's Priority
	// is ignored): among the ready tasks of a flow version, workers claim
	// those with the highest claim priority first, first queued first among
	// equals. A task's claim priority is its step's Priority plus its run's
	// StartOptions.Priority (see "Priorities" in the README). It must fit
	// in 32 bits. It is not part of the shape hash: a definition whose
	// only change is a priority keeps its flow version, and defining it
	// sets the version's step priorities when any step of it has a
	// non-zero Priority (one with none leaves them as they are, so
	// priorities set by Client.SetStepPriorities survive).
	Priority int `json:"priority,omitempty"`
	// Idempotent says the step's handler may safely run twice at once for
	// the same task: workers optimising at the aggressive level
	// (runtime.OptimizeAggressive) then hedge its stragglers by starting a
	// second copy. A flow's Idempotent makes every step idempotent. Like
	// Priority it is not part of the shape hash: it changes nothing the
	// engine does.
	Idempotent bool `json:"idempotent,omitempty"`
	// Concurrency caps how many of the step's tasks run at once across
	// every worker process (0: no cap; at most MaxConcurrency). On a
	// flow's Options it caps the tasks of the whole flow, all its steps
	// together, and is not a default for the steps. With Key, the cap holds
	// per key value. A task waiting for a place is not claimed, so it costs
	// no attempt. Like Priority, it is not part of the shape hash: defining
	// the flow sets its version's limits (see "Concurrency and rate
	// limits" in the README).
	Concurrency int `json:"concurrency,omitempty"`
	// Rate caps how fast the step's tasks start across every worker (the
	// zero Rate: no cap); with Key, per key value. Steps only: a flow's
	// Options may not set it. Not part of the shape hash.
	Rate Rate `json:"rate,omitzero"`
	// Key makes Concurrency and Rate hold per value of a string in each
	// task's input, named by a path into it: ".customer_id" for a map
	// step's element, ".run.customer_id" for a field of the flow input of
	// a step that takes it ("run" is InputKey), ".fetch.owner" for a field
	// of dependency fetch's output, "." for the whole input (a map over
	// strings). Object keys are JSON keys, and a number indexes an array.
	// A task whose key is absent, null or not a string is keyed by its JSON
	// text ("" when absent or null); keys over 255 bytes are keyed by their
	// hash. Steps only, and only with Concurrency or Rate. Not part of the
	// shape hash.
	Key string `json:"key,omitempty"`
}

// NoRetries as StepOptions.Retries asks for a single attempt, where 0 would
// inherit.
const NoRetries = -1

// Defaults applied when neither a step nor its flow sets an option.
const (
	DefaultRetries   = 2 // 3 attempts in all
	DefaultBaseDelay = time.Second
	DefaultTimeout   = 60 * time.Second
)

// MaxSteps is the most steps one flow may have (the engine indexes steps
// with a smallint).
const MaxSteps = 10000

// StepDef describes one step of a flow.
type StepDef struct {
	// Slug names the step within its flow (see ValidSlug); InputKey is
	// reserved.
	Slug string `json:"slug"`
	// DependsOn lists the slugs of the steps whose outputs this step takes,
	// in parameter order.
	DependsOn []string `json:"depends_on,omitempty"`
	// Map makes the step run once per element of its only dependency's
	// output (or of the flow input when it has no dependency).
	Map bool `json:"map,omitempty"`
	// TakesInput passes the flow input to the step's tasks under InputKey.
	TakesInput bool `json:"takes_input,omitempty"`
	// Options override the flow's options for this step.
	Options StepOptions `json:"options"`

	// When makes the step conditional: a worker calls it with the task's
	// input before the handler, and when it returns false the step is
	// skipped (it has no output and its handler never runs). An error fails
	// the attempt, as a handler's would. A map step cannot have one. See
	// Condition for what is stored of it.
	When Condition `json:"when,omitzero"`
	// Optional lets the run go on when the step fails: once its attempts
	// are used up (or an error is permanent) the step is skipped instead of
	// failing the run, with its error kept on the step and its tasks.
	Optional bool `json:"optional,omitempty"`
	// AcceptsSkipped lists the dependencies (slugs of DependsOn) whose
	// skip this step takes: when one of them is skipped the step still
	// runs, once its other dependencies are done, and its task input has no
	// key for the skipped one. A skipped dependency not listed skips this
	// step too, and so on down the graph. A map step cannot list any: it
	// runs once per element of its dependency's output, and is skipped
	// with it. Generated code lists the dependencies a step takes as a
	// pointer.
	AcceptsSkipped []string `json:"accepts_skipped,omitempty"`

	// Wait makes the step wait for the signal of this name (the same
	// rules as a slug; "" for none): once its dependencies are done, the
	// step starts only when its run has received the signal
	// (runtime.Client.Signal), and its task input carries the signal's
	// payload under SignalKey. A signal sent before the run reaches the
	// step is kept. A map step cannot wait, and a waiting step cannot
	// depend on a step named SignalKey.
	Wait string `json:"wait,omitempty"`
	// WaitTimeout bounds the wait (0: none): when the signal has not come
	// that long after the step began to wait, the step is skipped if it is
	// Optional and fails its run otherwise. Only with Wait.
	WaitTimeout time.Duration `json:"wait_timeout,omitempty"`
}

// SignalKey is the key of a waiting step's task input that holds the
// signal's payload (StepDef.Wait).
const SignalKey = "signal"

// Condition decides whether a conditional step runs (StepDef.When). input
// is the task's JSON input, as a handler receives it: an object with the
// flow input under InputKey (when the step takes it) and each dependency's
// output under its slug, without the dependencies that were skipped.
//
// Only whether a step has a condition is part of its definition: it is
// stored, and encoded as JSON, as "when": true. A definition decoded from
// JSON gets a condition that fails with ErrNoCondition, so it keeps its
// shape hash but cannot run the step by mistake; a worker needs the
// definition from the code.
type Condition func(ctx context.Context, input json.RawMessage) (bool, error)

// ErrNoCondition is the error of the condition a definition decoded from
// JSON has in place of its Go code (see Condition).
var ErrNoCondition = errors.New("flowdef: the step's condition is Go code, which a definition decoded from JSON does not carry: register the flow with its definition from the code")

// MarshalJSON encodes a condition as true: only its presence is stored.
func (c Condition) MarshalJSON() ([]byte, error) { return []byte("true"), nil }

// UnmarshalJSON decodes true as a condition that fails with ErrNoCondition
// (see Condition), and false or null as none.
func (c *Condition) UnmarshalJSON(b []byte) error {
	var set *bool
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("flowdef: when: want true or false: %w", err)
	}
	*c = nil
	if set != nil && *set {
		*c = noCondition
	}
	return nil
}

func noCondition(context.Context, json.RawMessage) (bool, error) { return false, ErrNoCondition }

// FlowDef describes a flow: its slug, default options and steps. Generated
// code and dynamic flows both describe their flows as a FlowDef.
type FlowDef struct {
	// Slug names the flow (the same rules as a step slug); it also names the
	// flow's queue.
	Slug string `json:"slug"`
	// Options are the defaults for every step (StartDelay is ignored here).
	Options StepOptions `json:"options"`
	// Steps may come in any order; Validate checks the graph.
	Steps []StepDef `json:"steps"`
}

// Leaves returns the slugs of the steps no other step depends on, in
// definition order: their outputs form the run's output.
func (f FlowDef) Leaves() []string {
	used := map[string]bool{}
	for _, s := range f.Steps {
		for _, d := range s.DependsOn {
			used[d] = true
		}
	}
	var out []string
	for _, s := range f.Steps {
		if !used[s.Slug] {
			out = append(out, s.Slug)
		}
	}
	return out
}
