package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// StepOptions tune how a step's tasks are retried and timed. A zero field
// inherits the flow's value; a zero flow value takes the documented default.
type StepOptions struct {
	// MaxAttempts counts the first try; 0 inherits (flow default 3).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// BaseDelay is the first retry's delay; later retries double it (flow default 1s).
	BaseDelay time.Duration `json:"base_delay,omitempty"`
	// Timeout cancels a handler's context (flow default 60s).
	Timeout time.Duration `json:"timeout,omitempty"`
	// StartDelay holds a step's tasks back after it becomes ready (default 0).
	StartDelay time.Duration `json:"start_delay,omitempty"`
}

// Defaults applied when neither a step nor its flow sets an option.
const (
	DefaultMaxAttempts = 3
	DefaultBaseDelay   = time.Second
	DefaultTimeout     = 60 * time.Second
)

// StepDef describes one step of a flow.
type StepDef struct {
	// Slug names the step within its flow: lowercase letters, digits and
	// underscores, starting with a letter, at most 40 characters.
	Slug string `json:"slug"`
	// DependsOn lists the slugs of the steps whose outputs this step takes,
	// in parameter order.
	DependsOn []string `json:"depends_on,omitempty"`
	// Map makes the step run once per element of its only dependency's
	// output (or of the flow input when it has no dependency).
	Map bool `json:"map,omitempty"`
	// TakesInput passes the flow input to the step's tasks under "run".
	TakesInput bool `json:"takes_input,omitempty"`
	// Options override the flow's options for this step.
	Options StepOptions `json:"options"`
}

// FlowDef describes a flow: its slug, default options and steps. Generated
// code and dynamic flows both register their flows as a FlowDef.
type FlowDef struct {
	// Slug names the flow (the same rules as a step slug); it also names the
	// flow's queue.
	Slug string `json:"slug"`
	// Options are the defaults for every step (StartDelay is ignored here).
	Options StepOptions `json:"options"`
	// Steps in a topological order is not required; Validate checks the graph.
	Steps []StepDef `json:"steps"`
}

var slugRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// ValidSlug reports whether s may name a flow or a step: a lowercase letter,
// then lowercase letters, digits or underscores, at most 40 characters in all
// (a flow's queue is named <slug>_<version>, and pgmq caps queue names at 47).
func ValidSlug(s string) bool { return slugRE.MatchString(s) }

// ErrInvalidFlow wraps every error Validate returns.
var ErrInvalidFlow = errors.New("invalid flow definition")

// Validate checks a definition: slugs, duplicate steps, unknown and
// self-dependencies, cycles, map steps with more than one dependency, and
// negative options. All problems are reported together.
func (f FlowDef) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: flow %q: %s", ErrInvalidFlow, f.Slug, fmt.Sprintf(format, a...)))
	}
	if !ValidSlug(f.Slug) {
		bad("slug must match %s", slugRE)
	}
	if len(f.Steps) == 0 {
		bad("no steps")
	}
	if len(f.Steps) > MaxFlowSteps {
		bad("%d steps; a flow may have at most %d (MaxFlowSteps)", len(f.Steps), MaxFlowSteps)
	}
	checkOpts := func(where string, o StepOptions) {
		if o.MaxAttempts < 0 || o.BaseDelay < 0 || o.Timeout < 0 || o.StartDelay < 0 {
			bad("%s: options must not be negative", where)
		}
	}
	checkOpts("flow options", f.Options)
	index := map[string]int{}
	for i, s := range f.Steps {
		if !ValidSlug(s.Slug) {
			bad("step %q: slug must match %s", s.Slug, slugRE)
		}
		if s.Slug == "run" {
			bad(`step "run": the name is reserved for the flow input`)
		}
		if _, dup := index[s.Slug]; dup {
			bad("step %q defined twice", s.Slug)
		}
		index[s.Slug] = i
		checkOpts(fmt.Sprintf("step %q", s.Slug), s.Options)
	}
	for _, s := range f.Steps {
		seen := map[string]bool{}
		for _, d := range s.DependsOn {
			switch {
			case d == s.Slug:
				bad("step %q depends on itself", s.Slug)
			case seen[d]:
				bad("step %q lists dependency %q twice", s.Slug, d)
			default:
				if _, ok := index[d]; !ok {
					bad("step %q depends on unknown step %q", s.Slug, d)
				}
			}
			seen[d] = true
		}
		if s.Map && len(s.DependsOn) > 1 {
			bad("map step %q has %d dependencies; a map step takes at most one", s.Slug, len(s.DependsOn))
		}
		if s.Map && s.TakesInput && len(s.DependsOn) > 0 {
			bad("map step %q takes the flow input and a dependency; a map task receives only its element", s.Slug)
		}
	}
	if len(errs) == 0 {
		if cyc := f.cycle(index); cyc != nil {
			bad("dependency cycle: %s", strings.Join(cyc, " -> "))
		}
	}
	return errors.Join(errs...)
}

// cycle returns one dependency cycle as a path of slugs, or nil.
func (f FlowDef) cycle(index map[string]int) []string {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(f.Steps))
	var stack []string
	var found []string
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, f.Steps[i].Slug)
		for _, d := range f.Steps[i].DependsOn {
			j := index[d]
			if color[j] == grey {
				start := 0
				for k, s := range stack {
					if s == d {
						start = k
					}
				}
				found = append(append([]string{}, stack[start:]...), d)
				return true
			}
			if color[j] == white && visit(j) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return false
	}
	for i := range f.Steps {
		if color[i] == white && visit(i) {
			return found
		}
	}
	return nil
}

// ShapeHash returns a stable hash of everything that affects how runs of the
// flow execute: step slugs, order, dependencies, map and input flags and
// options. Two definitions with the same hash are interchangeable.
func (f FlowDef) ShapeHash() string {
	b, err := json.Marshal(f)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
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
