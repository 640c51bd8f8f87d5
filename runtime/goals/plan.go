package goals

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/quantumflow/qflow/flowdef"
	"github.com/quantumflow/qflow/runtime"
)

// Handler executes the tasks of one handler kind. It returns the task's
// JSON output; an error fails the attempt (runtime.Permanent skips the
// remaining attempts).
type Handler func(ctx context.Context, t *TaskRun) (json.RawMessage, error)

// Handlers maps handler kinds to their handlers.
type Handlers map[string]Handler

// HandlerFunc adapts a function returning any JSON-encodable value.
func HandlerFunc[Out any](fn func(ctx context.Context, t *TaskRun) (Out, error)) Handler {
	return func(ctx context.Context, t *TaskRun) (json.RawMessage, error) {
		out, err := fn(ctx, t)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, runtime.Permanent(fmt.Errorf("task %q: encode output: %w", t.Task.ID, err))
		}
		return b, nil
	}
}

// TaskRun is what a Handler receives: the task, its inputs and the outputs
// of the tasks it depends on.
type TaskRun struct {
	RunID   uuid.UUID
	Attempt int  // 1 for the first try
	Goal    Goal // the root goal, with its Input
	Task    Task
	// Input is the task's static input from its TaskSpec (nil when none).
	Input json.RawMessage
	// Deps holds the outputs of the tasks this one depends on, by
	// flattened task id. A dependency on a sub-goal is a dependency on each
	// of the sub-goal's final tasks.
	Deps map[string]json.RawMessage
}

// Level selects how much of what was learned is applied to later runs:
// runtime's optimisation levels, which any flow's workers may apply too
// (runtime.WorkerOptions.Optimize).
type Level = runtime.OptimizeLevel

// Optimisation levels; each includes the ones before it (see
// runtime.OptimizeLevel).
const (
	// LevelOff runs every step with the flow's configured options.
	LevelOff = runtime.OptimizeOff
	// LevelBasic sets each step's timeout and attempts from its statistics.
	LevelBasic = runtime.OptimizeBasic
	// LevelAdvanced also gives the steps on the longest remaining path (by
	// learned durations) a higher claim priority.
	LevelAdvanced = runtime.OptimizeAdvanced
	// LevelAggressive also hedges stragglers of idempotent tasks: a second
	// copy starts when the first runs well past its learned duration, and
	// the first to succeed wins.
	LevelAggressive = runtime.OptimizeAggressive
)

// Options configure planning and composition. A nil *Options means all
// defaults.
type Options struct {
	// Flow is the flow slug (default: "goal_" and the goal's ID, or its
	// description, made into a slug). Runs of the same slug share learned
	// statistics.
	Flow string
	// MaxDepth is the deepest sub-goal nesting allowed (default 3); 0
	// would allow none, so set NoSubGoals for that.
	MaxDepth int
	// NoSubGoals forbids sub-goals (MaxDepth 0).
	NoSubGoals bool
	// Level is the optimisation level (default LevelOff).
	Level Level
	// Learning tunes how statistics become step options.
	Learning LearnOptions
	// StepOptions are the flow's default step options (zero fields take the
	// runtime defaults: 3 attempts, 1s base delay, 60s timeout).
	StepOptions runtime.StepOptions
	// Timeout cancels the whole run when it has not finished in time (0: none).
	Timeout time.Duration
	// Concurrency is the number of task slots of the worker that runs the
	// goal (default 4).
	Concurrency int
	// OnEvent receives the run's events as they happen, in order, from one
	// goroutine.
	OnEvent func(Event)
	// Events receives the run's events as they happen. A send blocks the
	// delivery of later events (not the run) until received; the channel
	// is not closed.
	Events chan<- Event
	// FailFast makes ComposeMany cancel the other goals when one fails.
	FailFast bool
	// Logger receives the worker's and the composer's logs (default
	// slog.Default()).
	Logger *slog.Logger
}

func (o *Options) maxDepth() int {
	switch {
	case o.NoSubGoals:
		return 0
	case o.MaxDepth > 0:
		return o.MaxDepth
	}
	return 3
}

// Plan is a goal decomposed, flattened and validated: one DAG of tasks and
// the dynamic flow that runs it.
type Plan struct {
	Goal     Goal
	Tasks    []Task    // in a topological order
	SubGoals []SubGoal // the sub-goals that were expanded, outermost first
	// Def is the dynamic flow: one step per task, named by Task.Slug.
	Def runtime.FlowDef
	// Level is the optimisation level applied, and Tuning what it changed,
	// by task id (tasks without enough statistics are absent).
	Level  Level
	Tuning map[string]Tuning

	byID   map[string]*Task
	bySlug map[string]*Task
}

// Task returns the task with this flattened id, or nil.
func (p *Plan) Task(id string) *Task { return p.byID[id] }

// PlanGoal decomposes goal, flattens and validates the result, and returns
// the plan without running it: a dry run. handlers may be nil, in which
// case only the presence of a kind is checked, not that a handler exists.
// client may be nil; otherwise, with opts.Level above LevelOff, the plan's
// step options are tuned from the statistics recorded in its database.
func PlanGoal(ctx context.Context, client *runtime.Client, goal Goal, dec Decomposer, handlers Handlers, opts *Options) (*Plan, error) {
	if opts == nil {
		opts = &Options{}
	}
	if dec == nil {
		return nil, errors.New("goals: nil decomposer")
	}
	flow := opts.Flow
	if flow == "" {
		flow = flowSlug(goal)
	}
	if !runtime.ValidSlug(flow) {
		return nil, fmt.Errorf("goals: flow slug %q is not valid (see runtime.ValidSlug)", flow)
	}
	f := &flattener{dec: dec, maxDepth: opts.maxDepth()}
	if handlers != nil {
		f.kinds = func(k string) bool { return handlers[k] != nil }
	}
	if goal.ID == "" {
		goal.ID = flow
	}
	if _, err := f.expand(ctx, goal, "", 0, nil, []string{goal.ID}); err != nil {
		return nil, err
	}
	if len(f.problems) > 0 {
		return nil, errors.Join(f.problems...)
	}
	p := &Plan{Goal: goal, Tasks: f.tasks, SubGoals: f.subs, byID: map[string]*Task{}, bySlug: map[string]*Task{}}
	assignSlugs(p.Tasks)
	def := runtime.FlowDef{Slug: flow, Options: opts.StepOptions}
	for i := range p.Tasks {
		t := &p.Tasks[i]
		p.byID[t.ID] = t
		p.bySlug[t.Slug] = t
		s := runtime.StepDef{Slug: t.Slug, TakesInput: true, Options: runtime.StepOptions{Idempotent: t.Idempotent}}
		for _, d := range t.DependsOn {
			s.DependsOn = append(s.DependsOn, p.byID[d].Slug)
		}
		def.Steps = append(def.Steps, s)
	}
	if err := def.Validate(); err != nil {
		return nil, fmt.Errorf("goals: flattened plan: %w", err) // a bug: levels were validated
	}
	p.Def = def
	if opts.Level > LevelOff && client != nil {
		if err := p.tune(ctx, client, opts.Level, &opts.Learning); err != nil {
			return nil, err
		}
	}
	return p, nil
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// slugify makes s into slug material: lowercase, runs of other characters
// become one underscore.
func slugify(s string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(s), "_"), "_")
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// flowSlug derives a flow slug from a goal.
func flowSlug(g Goal) string {
	name := g.ID
	if name == "" {
		name = g.Description
	}
	s := "goal_" + slugify(name)
	if len(s) > flowdef.MaxSlugLen {
		s = s[:31] + "_" + shortHash(name)
	}
	return strings.TrimRight(s, "_")
}

// assignSlugs gives every task a step slug derived from its id: lowercase,
// other characters as underscores, "t_" in front when it does not start
// with a letter; when that is too long or already taken, it is cut and a
// hash of the id is appended. The result depends only on the ids in order.
func assignSlugs(tasks []Task) {
	taken := map[string]bool{flowdef.InputKey: true}
	for i := range tasks {
		id := tasks[i].ID
		s := slugify(id)
		if s == "" || s[0] < 'a' || s[0] > 'z' {
			s = "t_" + s
		}
		if len(s) > flowdef.MaxSlugLen || taken[s] {
			s = strings.TrimRight(s[:min(len(s), 31)], "_") + "_" + shortHash(id)
		}
		for n := 2; taken[s]; n++ { // a hash collision: practically never
			s = fmt.Sprintf("%s_%d", s[:min(len(s), 36)], n)
		}
		taken[s] = true
		tasks[i].Slug = s
	}
}

// runInput is a composed run's input: the root goal and each task's
// static input, by step slug.
type runInput struct {
	Goal   Goal                       `json:"goal"`
	Inputs map[string]json.RawMessage `json:"inputs,omitempty"`
}

func (p *Plan) runInput() runInput {
	in := runInput{Goal: p.Goal}
	for _, t := range p.Tasks {
		if len(t.Input) > 0 {
			if in.Inputs == nil {
				in.Inputs = map[string]json.RawMessage{}
			}
			in.Inputs[t.Slug] = t.Input
		}
	}
	return in
}

// StepHandlers returns a handler per step of p.Def, wrapping the handler
// of each task's kind, for registering the plan's flow with a
// runtime.Worker of your own:
//
//	hs, err := plan.StepHandlers(handlers)
//	err = worker.Register(plan.Def, hs)
func (p *Plan) StepHandlers(handlers Handlers) (map[string]runtime.Handler, error) {
	return p.stepHandlers(handlers, nil)
}

func (p *Plan) stepHandlers(handlers Handlers, rec *attemptLog) (map[string]runtime.Handler, error) {
	out := map[string]runtime.Handler{}
	var missing []string
	for i := range p.Tasks {
		t := p.Tasks[i]
		h := handlers[t.Kind]
		if h == nil {
			missing = append(missing, fmt.Sprintf("%s (task %q)", t.Kind, t.ID))
			continue
		}
		hedge := p.Tuning[t.ID].HedgeAfter
		out[t.Slug] = func(ctx context.Context, rt *runtime.Task) (json.RawMessage, error) {
			tr, err := p.taskRun(rt, &t)
			if err != nil {
				return nil, err
			}
			call := func(ctx context.Context) (json.RawMessage, error) { return h(ctx, tr) }
			if rec != nil {
				// A timeout is counted once: when the handler returns (so it is
				// counted before the worker records the attempt, and before the
				// run can end), or when the deadline passes, for a handler that
				// never returns.
				var once sync.Once
				count := func() {
					if errors.Is(ctx.Err(), context.DeadlineExceeded) {
						once.Do(func() { rec.timeout(rt.RunID, rt.Step) })
					}
				}
				stop := context.AfterFunc(ctx, count)
				defer func() { stop(); count() }()
			}
			if hedge > 0 && t.Idempotent {
				return runtime.Hedge(ctx, hedge, call, func() {
					if rec != nil {
						rec.hedge(rt.RunID, rt.Step)
					}
				})
			}
			return call(ctx)
		}
	}
	if len(missing) > 0 {
		return nil, &ValidationError{Kind: ErrMissingKind, Goal: p.Goal.ID, Detail: "no handler for " + strings.Join(missing, ", ")}
	}
	return out, nil
}

// taskRun decodes the engine's task input for task t.
func (p *Plan) taskRun(rt *runtime.Task, t *Task) (*TaskRun, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rt.Input, &raw); err != nil {
		return nil, runtime.Permanent(fmt.Errorf("task %q: decode input: %w", t.ID, err))
	}
	var in runInput
	if r, ok := raw[flowdef.InputKey]; ok {
		if err := json.Unmarshal(r, &in); err != nil {
			return nil, runtime.Permanent(fmt.Errorf("task %q: decode run input: %w", t.ID, err))
		}
	}
	tr := &TaskRun{RunID: rt.RunID, Attempt: rt.Attempt, Goal: in.Goal, Task: *t, Input: in.Inputs[t.Slug], Deps: map[string]json.RawMessage{}}
	for slug, v := range raw {
		if slug == flowdef.InputKey {
			continue
		}
		if d := p.bySlug[slug]; d != nil {
			tr.Deps[d.ID] = v
		}
	}
	return tr, nil
}

// Mermaid renders the plan as a Mermaid flowchart: a node per task (its
// id and kind), a subgraph per sub-goal, an edge per dependency.
func (p *Plan) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	children := map[string][]SubGoal{}
	for _, s := range p.SubGoals {
		children[s.Parent] = append(children[s.Parent], s)
	}
	tasksIn := map[string][]Task{}
	for _, t := range p.Tasks {
		tasksIn[t.Parent] = append(tasksIn[t.Parent], t)
	}
	var emit func(parent, indent string)
	emit = func(parent, indent string) {
		for _, t := range tasksIn[parent] {
			label := t.ID + "<br/>" + t.Kind
			if tu, ok := p.Tuning[t.ID]; ok && tu.Priority > 0 {
				label += fmt.Sprintf(" · prio %d", tu.Priority)
			}
			fmt.Fprintf(&b, "%s%s[\"%s\"]\n", indent, t.Slug, mermaidText(label))
		}
		for _, s := range children[parent] {
			label := s.ID
			if s.Description != "" {
				label += ": " + s.Description
			}
			fmt.Fprintf(&b, "%ssubgraph sg_%s[\"%s\"]\n", indent, slugify(s.ID)+"_"+shortHash(s.ID), mermaidText(label))
			emit(s.ID, indent+"  ")
			fmt.Fprintf(&b, "%send\n", indent)
		}
	}
	emit("", "  ")
	for _, t := range p.Tasks {
		deps := slices.Clone(t.DependsOn)
		for _, d := range deps {
			fmt.Fprintf(&b, "  %s --> %s\n", p.byID[d].Slug, t.Slug)
		}
	}
	return b.String()
}

func mermaidText(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "\n", " ").Replace(s)
}
