// Package flowdef is QuantumFlow's flow model: the types a flow definition
// is written in, the defaults its options take, the rules a valid
// definition follows, the form the engine stores, and the shape hash that
// tells two definitions apart.
//
// It imports only the standard library, so the code generator
// (cmd/qflowgen), the runtime, runtime/goals and tools that only read
// definitions share one model without linking the database driver. Package
// runtime re-exports its types under the same names (runtime.FlowDef is
// flowdef.FlowDef), so code written against runtime needs no change.
//
// # Where each rule lives
//
//   - Slugs: ValidSlug, SlugPattern, MaxSlugLen (slug.go). The engine's
//     tables repeat the pattern as CHECK constraints; a test keeps them equal.
//   - Task inputs: InputKey (slug.go). A step's task input is an object with
//     the flow input under InputKey and each dependency's output under that
//     dependency's slug; a map step's task input is its element.
//   - Defaults: DefaultRetries, DefaultBaseDelay, DefaultTimeout (flowdef.go).
//   - Validation: FlowDef.Validate, the only check of a definition's graph
//     (validate.go); its cycle search, Cycles, also serves qflowgen and
//     runtime/goals (graph.go).
//   - Storage: FlowDef.Normalize gives the Normalized form the engine's
//     define_flow stores: every option resolved, durations in milliseconds
//     (normalize.go). FlowDef.ShapeHash hashes that form, less step
//     priorities and limits.
//   - Conditional and optional steps: StepDef.When (a Condition, Go code
//     the worker runs; only its presence is stored and hashed, as
//     "when": true), StepDef.Optional and StepDef.AcceptsSkipped, the
//     dependencies whose skip a step takes (flowdef.go); Validate keeps
//     conditions and AcceptsSkipped off map steps and AcceptsSkipped within
//     DependsOn.
//   - Limits across workers: StepOptions.Concurrency, Rate and Key, their
//     rules (MaxConcurrency, ParseRate, KeyPath), and FlowDef.Limited, which
//     tells a worker which steps' tasks only the engine's claim may start
//     (limits.go).
//
// # Retries
//
// StepOptions.Retries counts the tries after the first: Retries 3 means up
// to 4 attempts. 0 inherits the flow's value (and the flow's 0 takes
// DefaultRetries, 2); NoRetries (-1) asks for a single attempt.
package flowdef
