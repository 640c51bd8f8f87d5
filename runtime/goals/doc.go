// Package goals composes flows from goals (hierarchical task DAGs): a
// Decomposer turns a goal into tasks, sub-goals are decomposed again, and
// the result is flattened into one validated DAG that runs as a dynamic
// flow on ordinary runtime workers. Statistics learned from finished runs
// tune later runs at three optimisation levels.
//
// # Decomposition
//
// A Decomposer (or a DecomposerFunc) returns TaskSpecs: an id, a
// description, dependencies by id, the handler Kind that executes the
// task, optional static Input, or a SubGoal instead of a kind. Sub-goals
// are decomposed recursively up to Options.MaxDepth (default 3). The tree
// is flattened: a sub-goal's tasks get ids namespaced by the sub-goal's
// ("auth/login/form"), its root tasks inherit the sub-goal's
// dependencies, and the tasks that depended on the sub-goal wait for all
// of its final tasks. Validation reports every problem as a
// *ValidationError matching ErrInvalidPlan and one of ErrCycle (with the
// path), ErrUnknownDependency, ErrDuplicateID, ErrMissingKind,
// ErrDepthExceeded, ErrEmptyDecomposition or ErrBadTask; nothing is
// dropped silently. A decomposer error or a cancelled context ends
// planning at once (ErrDecomposerFailed wraps the cause) and nothing is
// started.
//
// # Composition
//
// PlanGoal is a dry run: it returns the Plan (tasks, sub-goals, the
// runtime.FlowDef with one step per task, what the optimiser tuned) and
// Plan.Mermaid renders it. ComposeFromGoal plans, defines the flow (the
// same plan has the same shape hash, hence the same version), runs it with
// a worker of Options.Concurrency slots, and returns each task's output
// and the final result; Options.Timeout bounds the whole run and
// Options.OnEvent or Options.Events receive its events live. ComposeMany
// runs several goals at once; one failing does not cancel the others
// unless Options.FailFast is set.
//
// Handlers are keyed by kind. A task's handler gets a TaskRun: the task,
// its static input, the root goal, and the outputs of the tasks it depends
// on by task id. Task ids are mapped to step slugs deterministically
// (Task.Slug). To run a plan's flow on workers of your own, register
// Plan.Def with Plan.StepHandlers.
//
// # Learning
//
// The engine records every composed run's step statistics as its tasks
// finish, as it does for every flow, in qflow.step_stats (by flow slug and
// step slug: carried over between runs and versions of the flow). After
// each composed run, runtime.Client.RecordRunStats also folds the run's
// tasks into qflow.kind_stats (by handler kind: carried over between
// plans) and labels the steps with their kinds. Both hold counts of tasks,
// attempts, failures, retries that recovered and timeouts, and a window of
// recent successful durations for percentiles; read them with
// Client.StepStats and Client.KindStats.
//
// # Optimisation levels
//
// Options.Level selects what later runs take from the statistics of a
// step, or of its kind when the step has fewer than
// LearnOptions.MinSamples. The levels and their rules are the runtime's
// (runtime.OptimizeLevel, runtime.TuneSteps), which workers of any flow
// apply with runtime.WorkerOptions.Optimize; a composed goal applies them
// to its plan:
//
//   - LevelOff: steps keep their configured options.
//   - LevelBasic: timeout = max(floor, p99 × factor), rounded up to 1, 1.5,
//     2, 3, 5 or 7 × 10ⁿ ms so the flow version stays stable; attempts
//     (retries) raised, where failures were transient, until all attempts failing
//     has odds below 1/1000 at the observed failure rate. New options
//     make a new flow version; runs keep the version they started on.
//   - LevelAdvanced: also critical-path-first scheduling: each step's
//     claim priority is the learned length of the longest path from it to
//     the end (runtime.Client.SetStepPriorities), so when workers are
//     scarce the tasks on that path are claimed first.
//   - LevelAggressive: also hedging of stragglers for tasks marked
//     Idempotent: when an attempt runs longer than HedgeFactor × its
//     median, a second copy starts in the same slot and the first success
//     wins; the other is cancelled.
//
// Priorities belong to a flow version, so two composes of the same plan at
// different levels at the same time share them.
package goals
