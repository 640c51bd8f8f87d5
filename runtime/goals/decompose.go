package goals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/quantumflow/qflow/flowdef"
)

// Goal is something to achieve: a decomposer turns it into tasks.
type Goal struct {
	// ID names the goal. For the root goal it also names the flow (see
	// Options.Flow); for a sub-goal it is the task's ID.
	ID string `json:"id"`
	// Description says what to achieve, for the decomposer and for people.
	Description string `json:"description"`
	// Input is optional JSON handed to every task of the goal's run
	// (TaskRun.GoalInput).
	Input json.RawMessage `json:"input,omitempty"`
}

// TaskSpec is one task of a decomposition: a unit of work run by the
// handler of its Kind, or a sub-goal decomposed again.
type TaskSpec struct {
	// ID names the task within its decomposition: not empty, no "/" (the
	// separator of flattened ids).
	ID string `json:"id"`
	// Description says what the task does.
	Description string `json:"description,omitempty"`
	// DependsOn lists the IDs of tasks of the same decomposition that must
	// finish first; their outputs are handed to this task.
	DependsOn []string `json:"depends_on,omitempty"`
	// Kind names the handler that executes the task. Exactly one of Kind
	// and SubGoal is set.
	Kind string `json:"kind,omitempty"`
	// Input is optional static JSON input for the task (TaskRun.Input).
	Input json.RawMessage `json:"input,omitempty"`
	// SubGoal, when set, makes the task a goal of its own, decomposed
	// again; its Description defaults to the task's.
	SubGoal *Goal `json:"sub_goal,omitempty"`
	// Idempotent marks a task whose handler may safely run twice at once:
	// the aggressive level may hedge it.
	Idempotent bool `json:"idempotent,omitempty"`
}

// Decomposer turns a goal into tasks. depth is 0 for the root goal and
// grows by one per sub-goal level. It may be slow or fail (it may call a
// model or a service); it should honour ctx.
type Decomposer interface {
	Decompose(ctx context.Context, goal Goal, depth int) ([]TaskSpec, error)
}

// DecomposerFunc adapts a function to a Decomposer.
type DecomposerFunc func(ctx context.Context, goal Goal, depth int) ([]TaskSpec, error)

// Decompose calls f.
func (f DecomposerFunc) Decompose(ctx context.Context, goal Goal, depth int) ([]TaskSpec, error) {
	return f(ctx, goal, depth)
}

// Errors callers can test with errors.Is. Every validation problem is a
// *ValidationError that matches ErrInvalidPlan and one of the others.
var (
	ErrInvalidPlan        = errors.New("goals: invalid plan")
	ErrCycle              = errors.New("dependency cycle")
	ErrUnknownDependency  = errors.New("unknown dependency")
	ErrDuplicateID        = errors.New("duplicate task id")
	ErrMissingKind        = errors.New("missing handler kind")
	ErrDepthExceeded      = errors.New("depth limit exceeded")
	ErrEmptyDecomposition = errors.New("empty decomposition")
	ErrBadTask            = errors.New("bad task")
	ErrDecomposerFailed   = errors.New("goals: decomposer failed")
)

// ValidationError is one problem found in a decomposition.
type ValidationError struct {
	Kind error  // ErrCycle, ErrUnknownDependency, ...
	Goal string // the (flattened) id of the goal whose decomposition has the problem
	Task string // the flattened id of the task concerned, if any
	// Path is the cycle for ErrCycle (first id repeated at the end), the
	// chain of goals for ErrDepthExceeded.
	Path   []string
	Detail string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "goals: goal %q: %s", e.Goal, e.Kind)
	if e.Task != "" {
		fmt.Fprintf(&b, ": task %q", e.Task)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if len(e.Path) > 0 {
		b.WriteString(": " + strings.Join(e.Path, " -> "))
	}
	return b.String()
}

// Unwrap returns the problem's kind.
func (e *ValidationError) Unwrap() error { return e.Kind }

// Is makes every ValidationError match ErrInvalidPlan.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidPlan }

// Task is one task of a flattened plan.
type Task struct {
	// ID is the flattened id: the ids of the enclosing sub-goal tasks and
	// the task's own, joined by "/".
	ID          string          `json:"id"`
	Description string          `json:"description,omitempty"`
	Kind        string          `json:"kind"`
	DependsOn   []string        `json:"depends_on,omitempty"` // flattened ids
	Input       json.RawMessage `json:"input,omitempty"`
	Idempotent  bool            `json:"idempotent,omitempty"`
	// Parent is the flattened id of the enclosing sub-goal ("" at the top).
	Parent string `json:"parent,omitempty"`
	// Slug is the task's step slug in the flow.
	Slug string `json:"slug"`
}

// SubGoal is a sub-goal that was decomposed into tasks.
type SubGoal struct {
	ID          string `json:"id"` // flattened id; its tasks' ids start with ID + "/"
	Description string `json:"description,omitempty"`
	Parent      string `json:"parent,omitempty"`
	Depth       int    `json:"depth"`
}

// flattener decomposes a goal tree and flattens it into one DAG.
type flattener struct {
	dec      Decomposer
	maxDepth int
	kinds    func(string) bool // nil: any non-empty kind
	tasks    []Task
	subs     []SubGoal
	problems []error
}

// expand decomposes goal (at depth, with flattened id prefix) and appends
// its tasks. It returns the flattened ids of the decomposition's roots and
// sinks, expanded through sub-goals. outer are the flattened dependencies
// the roots inherit. A decomposer error ends everything at once.
func (f *flattener) expand(ctx context.Context, goal Goal, prefix string, depth int, outer []string, chain []string) (sinks []string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := prefix
	if name == "" {
		name = goal.ID
	}
	specs, err := f.dec.Decompose(ctx, goal, depth)
	if err == nil {
		err = ctx.Err() // a decomposer that ignored its context
	}
	if err != nil {
		return nil, fmt.Errorf("%w: goal %q: %w", ErrDecomposerFailed, name, err)
	}
	bad := func(kind error, task, detail string, path ...string) {
		f.problems = append(f.problems, &ValidationError{Kind: kind, Goal: name, Task: task, Detail: detail, Path: path})
	}
	full := func(id string) string {
		if prefix == "" {
			return id
		}
		return prefix + "/" + id
	}
	if len(specs) == 0 {
		bad(ErrEmptyDecomposition, "", "the decomposer returned no tasks")
		return nil, nil
	}

	// Local structure: ids, dependencies, kinds.
	index := map[string]int{}
	ok := true
	for i, s := range specs {
		switch {
		case s.ID == "":
			bad(ErrBadTask, "", fmt.Sprintf("task %d has no id", i))
			ok = false
			continue
		case strings.Contains(s.ID, "/"):
			bad(ErrBadTask, full(s.ID), `an id must not contain "/"`)
			ok = false
		}
		if _, dup := index[s.ID]; dup {
			bad(ErrDuplicateID, full(s.ID), "defined twice")
			ok = false
			continue
		}
		index[s.ID] = i
	}
	for _, s := range specs {
		if s.ID == "" {
			continue
		}
		seen := map[string]bool{}
		for _, d := range s.DependsOn {
			switch {
			case d == s.ID:
				bad(ErrCycle, full(s.ID), "depends on itself", full(s.ID), full(s.ID))
				ok = false
			case seen[d]:
				bad(ErrDuplicateID, full(s.ID), fmt.Sprintf("lists dependency %q twice", d))
				ok = false
			default:
				if _, known := index[d]; !known {
					bad(ErrUnknownDependency, full(s.ID), fmt.Sprintf("depends on %q, which this decomposition does not define", d))
					ok = false
				}
			}
			seen[d] = true
		}
		switch {
		case s.SubGoal != nil && s.Kind != "":
			bad(ErrBadTask, full(s.ID), fmt.Sprintf("has both handler kind %q and a sub-goal", s.Kind))
			ok = false
		case s.SubGoal == nil && s.Kind == "":
			bad(ErrMissingKind, full(s.ID), "has neither a handler kind nor a sub-goal")
			ok = false
		case s.SubGoal == nil && f.kinds != nil && !f.kinds(s.Kind):
			bad(ErrMissingKind, full(s.ID), fmt.Sprintf("no handler for kind %q", s.Kind))
			ok = false
		case s.SubGoal != nil && depth+1 > f.maxDepth:
			bad(ErrDepthExceeded, full(s.ID), fmt.Sprintf("sub-goal at depth %d, limit %d", depth+1, f.maxDepth),
				append(slices.Clone(chain), full(s.ID))...)
			ok = false
		}
	}
	if !ok {
		return nil, nil
	}
	if cyc := findCycle(specs, index); cyc != nil {
		for i := range cyc {
			cyc[i] = full(cyc[i])
		}
		bad(ErrCycle, "", "", cyc...)
		return nil, nil
	}

	// Expand in topological order so a task's dependencies' sinks are known.
	sinksOf := map[string][]string{}
	used := map[string]bool{}
	for _, s := range specs {
		for _, d := range s.DependsOn {
			used[d] = true
		}
	}
	for _, i := range topoOrder(specs, index) {
		s := specs[i]
		deps := slices.Clone(outer)
		if len(s.DependsOn) > 0 {
			deps = nil
			for _, d := range s.DependsOn {
				deps = append(deps, sinksOf[d]...)
			}
		}
		id := full(s.ID)
		if s.SubGoal == nil {
			f.tasks = append(f.tasks, Task{ID: id, Description: s.Description, Kind: s.Kind, DependsOn: dedupe(deps),
				Input: s.Input, Idempotent: s.Idempotent, Parent: prefix})
			sinksOf[s.ID] = []string{id}
			continue
		}
		sub := *s.SubGoal
		sub.ID = s.ID
		if sub.Description == "" {
			sub.Description = s.Description
		}
		f.subs = append(f.subs, SubGoal{ID: id, Description: sub.Description, Parent: prefix, Depth: depth + 1})
		subSinks, err := f.expand(ctx, sub, id, depth+1, dedupe(deps), append(slices.Clone(chain), id))
		if err != nil {
			return nil, err
		}
		sinksOf[s.ID] = subSinks
	}
	for _, s := range specs {
		if !used[s.ID] {
			sinks = append(sinks, sinksOf[s.ID]...)
		}
	}
	return sinks, nil
}

// topoOrder returns the indexes of specs with every task after its
// dependencies, keeping the decomposition's order where it can.
func topoOrder(specs []TaskSpec, index map[string]int) []int {
	done := make([]bool, len(specs))
	var out []int
	var visit func(i int)
	visit = func(i int) {
		if done[i] {
			return
		}
		done[i] = true
		for _, d := range specs[i].DependsOn {
			visit(index[d])
		}
		out = append(out, i)
	}
	for i := range specs {
		visit(i)
	}
	return out
}

// findCycle returns one dependency cycle as a path of ids (the first id
// repeated at the end), or nil. The search is flowdef.Cycles, the one flow
// definitions are validated with.
func findCycle(specs []TaskSpec, index map[string]int) []string {
	cycles := flowdef.Cycles(len(specs), func(i int) []int {
		deps := make([]int, len(specs[i].DependsOn))
		for k, d := range specs[i].DependsOn {
			deps[k] = index[d]
		}
		return deps
	})
	if len(cycles) == 0 {
		return nil
	}
	path := make([]string, 0, len(cycles[0])+1)
	for _, i := range cycles[0] {
		path = append(path, specs[i].ID)
	}
	return append(path, path[0])
}

func dedupe(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	seen := map[string]bool{}
	out := s[:0:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
