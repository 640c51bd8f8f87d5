package flowdef

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrInvalid wraps every error Validate and Normalize return.
var ErrInvalid = errors.New("invalid flow definition")

// Validate checks a definition: slugs, the number of steps, duplicate
// steps, unknown, repeated and self-dependencies, cycles, map steps with
// more than one dependency (or with the flow input and a dependency),
// conditions and AcceptsSkipped (a subset of DependsOn, neither on a map
// step), signal waits (a valid name, not on a map step, a wait timeout only
// with a wait), and options out of range (a priority must fit in 32 bits; see also
// the limits' rules on StepOptions.Concurrency, Rate and Key). All problems
// are reported together, each wrapping ErrInvalid.
func (f FlowDef) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: flow %q: %s", ErrInvalid, f.Slug, fmt.Sprintf(format, a...)))
	}
	if !ValidSlug(f.Slug) {
		bad("slug must match %s", SlugPattern)
	}
	if len(f.Steps) == 0 {
		bad("no steps")
	}
	if len(f.Steps) > MaxSteps {
		bad("%d steps; a flow may have at most %d (MaxFlowSteps)", len(f.Steps), MaxSteps)
	}
	checkOpts := func(where string, o StepOptions, step bool) {
		if o.Retries < NoRetries || o.BaseDelay < 0 || o.Timeout < 0 || o.StartDelay < 0 {
			bad("%s: options must not be negative (but Retries may be NoRetries)", where)
		}
		if o.Priority < math.MinInt32 || o.Priority > math.MaxInt32 {
			bad("%s: priority %d does not fit in 32 bits", where, o.Priority)
		}
		checkLimits(o, step, func(format string, a ...any) { bad("%s: %s", where, fmt.Sprintf(format, a...)) })
	}
	checkOpts("flow options", f.Options, false)
	index := make(map[string]int, len(f.Steps))
	for i, s := range f.Steps {
		if !ValidSlug(s.Slug) {
			bad("step %q: slug must match %s", s.Slug, SlugPattern)
		}
		if s.Slug == InputKey {
			bad("step %q: the name is reserved for the flow input", InputKey)
		}
		if _, dup := index[s.Slug]; dup {
			bad("step %q defined twice", s.Slug)
		}
		index[s.Slug] = i
		checkOpts(fmt.Sprintf("step %q", s.Slug), s.Options, true)
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
		if s.Map && s.When != nil {
			bad("map step %q has a condition; a condition decides for a whole step, and a map step's tasks each get one element (put the condition on the step whose output it maps over)", s.Slug)
		}
		if s.Map && len(s.AcceptsSkipped) > 0 {
			bad("map step %q accepts a skipped dependency; a map step runs once per element of its dependency's output, so it is skipped with it", s.Slug)
		}
		if s.Wait != "" {
			if !ValidSlug(s.Wait) {
				bad("step %q waits for signal %q; a signal name must match %s", s.Slug, s.Wait, SlugPattern)
			}
			if s.Map {
				bad("map step %q waits for a signal; a map step's tasks each get one element (put the wait on the step whose output it maps over)", s.Slug)
			}
			if seen[SignalKey] {
				bad("step %q waits for a signal and depends on step %q, whose output would take the key of the signal's payload", s.Slug, SignalKey)
			}
		}
		if s.WaitTimeout < 0 {
			bad("step %q: wait timeout must not be negative", s.Slug)
		}
		if s.WaitTimeout != 0 && s.Wait == "" {
			bad("step %q has a wait timeout but waits for no signal", s.Slug)
		}
		taken := map[string]bool{}
		for _, d := range s.AcceptsSkipped {
			switch {
			case taken[d]:
				bad("step %q lists %q twice in AcceptsSkipped", s.Slug, d)
			case !seen[d]:
				bad("step %q accepts the skip of %q, which is not one of its dependencies", s.Slug, d)
			}
			taken[d] = true
		}
	}
	if len(errs) == 0 {
		cycles := Cycles(len(f.Steps), func(i int) []int {
			deps := make([]int, len(f.Steps[i].DependsOn))
			for k, d := range f.Steps[i].DependsOn {
				deps[k] = index[d]
			}
			return deps
		})
		if len(cycles) > 0 {
			path := make([]string, 0, len(cycles[0])+1)
			for _, i := range cycles[0] {
				path = append(path, f.Steps[i].Slug)
			}
			bad("dependency cycle: %s", strings.Join(append(path, path[0]), " -> "))
		}
	}
	return errors.Join(errs...)
}
