package gen

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/token"
	"go/types"
	"time"

	"github.com/quantumflow/qflow/flowdef"
)

// The model is plain data built by the checker (check.go and the files it
// calls: collect, resolve, signature, jsontype, names) from a loaded
// package, and read by emit.go. It holds go/types objects and token
// positions, nothing else.

// pkgModel is one Go package that holds qflow annotations.
type pkgModel struct {
	Path  string // import path
	Name  string // package name
	Dir   string // directory, where qflow_gen.go goes
	Types *types.Package
	Fset  *token.FileSet
	Flows []*flowModel // in source order
	Steps []*stepModel // every step of every flow, in source order
}

// flowModel is one //qflow:flow.
type flowModel struct {
	Name    string // the slug, from //qflow:flow NAME
	NamePos token.Pos
	GoName  string          // exported Go name derived from Name: etl_v2 -> EtlV2
	Input   *types.TypeName // the annotated type
	Options flowdef.StepOptions
	// Cron, TZ and Missed are the flow's schedule (cron=, tz=, missed=),
	// Cron empty for none.
	Cron, TZ, Missed string
	Steps            []*stepModel // in source order
	// OutputFields are the fields of <Flow>Output: one per leaf step with
	// an output, keyed by its slug (set by layout).
	OutputFields []field
	// StepFields are the fields of <Flow>RunSteps: one per step, in source
	// order, named after its slug (set by layout).
	StepFields []stepField
	// standIn stands for <Flow>Output in the signatures of subflow steps
	// that run this flow (see outputStandIn).
	standIn types.Type
}

// stepField is one field of <Flow>RunSteps.
type stepField struct {
	Name string
	Step *stepModel
}

// stepModel is one //qflow:step function.
type stepModel struct {
	Func     *types.Func
	Decl     *ast.FuncDecl
	Slug     string
	SlugPos  token.Pos // of name=VALUE, or of the function name
	Flow     *flowModel
	FlowName word // flow= as written
	FlowPos  token.Pos
	Map      bool
	MapPos   token.Pos
	Deps     []*depModel
	DepsPos  token.Pos // of "depends=", or of the directive when absent
	// Options are the step's options; Options.Key is set by limitKey
	// from KeyName, the key= of the annotation (at KeyPos).
	Options flowdef.StepOptions
	KeyName string
	KeyPos  token.Pos

	// Conditional and optional steps.
	WhenName    string      // when= as written, "" when absent
	WhenPos     token.Pos   // of the function name in when=
	When        *types.Func // the condition, once resolved (nil when unknown or absent)
	Optional    bool
	OptionalPos token.Pos

	// Signals: wait= (the signal's name, "" for none, its value at
	// WaitPos), wait_timeout=, and the payload's type, the step's last
	// parameter (set by signature).
	Wait        string
	WaitPos     token.Pos
	WaitTimeout time.Duration
	Signal      types.Type

	// Subflows: subflow= (the child flow's name, "" for none, its value
	// at SubflowPos) and the child, once resolved (nil when unknown).
	Subflow    string
	SubflowPos token.Pos
	Child      *flowModel
	// StandIns: the step's signature names a generated <Flow>Output,
	// which the loader does not see (the generated file is read package
	// clause only); Params and Out hold its stand-in (see checker.standIns).
	StandIns bool
	// Skippable: the step may be skipped (its condition, optional, or a
	// dependency it does not take the skip of may be), and why (set by
	// skippability).
	Skippable bool
	SkipWhy   string
	// ptrElem: a map step whose parameter is a pointer to its element,
	// reported once skippability is known (see absence); mapMismatch
	// reports it as a plain type mismatch.
	ptrElem     bool
	mapMismatch func()

	// Signature analysis.
	TakesInput bool        // the parameter after ctx is the flow input
	Elem       types.Type  // map steps: the element type (second parameter)
	Out        types.Type  // the first result; nil when the step returns only error
	BadResults bool        // the results are neither (T, error) nor error
	DirPos     token.Pos   // the //qflow:step comment
	Params     []paramInfo // every parameter, ctx included

	// InputFields are the fields of the struct a task's JSON input decodes
	// into, in parameter order: the flow input, then one per dependency
	// with an output. Nil when the input is not an object: a map step (its
	// input is the element) or a step that takes no parameter but ctx.
	// Set by layout.
	InputFields []field
}

// field is one field of a generated struct.
type field struct {
	Name string     // the Go field name
	Key  string     // the JSON key: a step slug, or flowdef.InputKey for the flow input
	Type types.Type // the field's type
}

// paramInfo is one parameter of a step function.
type paramInfo struct {
	Name    string
	Type    types.Type
	TypePos token.Pos // of the parameter's type expression
}

// depModel is one entry of depends=.
type depModel struct {
	Name  string // Go function name as written
	Pos   token.Pos
	Step  *stepModel // resolved; nil when unknown
	Param int        // index in stepModel.Params; -1 when the dependency has no output
	// AbsentOK: the parameter is a pointer (*T for an output T, or T when
	// T is a pointer), nil when the dependency is skipped, so the step
	// takes the dependency's skip (flowdef.StepDef.AcceptsSkipped).
	AbsentOK bool
}

// paramType is the type of the parameter by which s takes d: the output
// type it sees, or a pointer to it when it takes d's skip.
func (d *depModel) paramType() types.Type {
	if d.AbsentOK {
		return absentType(d.Step.outputSeen())
	}
	return d.Step.outputSeen()
}

// absentType is the type that holds t or its absence: t itself when it is
// a pointer, else *t.
func absentType(t types.Type) types.Type {
	if _, ok := t.Underlying().(*types.Pointer); ok {
		return t
	}
	return types.NewPointer(t)
}

// placeholderCondition stands for a step's condition in the definitions
// the generator builds (for the shape hash and the stored definition,
// which record only that there is one); the generated code has the real
// one.
func placeholderCondition(context.Context, json.RawMessage) (bool, error) { return true, nil }

// outputSeen is the type a dependent receives from s: its output, or a slice
// of it for a map step.
func (s *stepModel) outputSeen() types.Type {
	if s.Out == nil {
		return nil
	}
	if s.Map {
		return types.NewSlice(s.Out)
	}
	return s.Out
}

// sig is the step function's signature as the generated code sees it, with
// stand-ins for the generated <Flow>Output types it names (StandIns).
func (s *stepModel) sig() *types.Signature {
	sig := s.Func.Type().(*types.Signature)
	if !s.StandIns {
		return sig
	}
	var params []*types.Var
	for i, p := range s.Params {
		params = append(params, types.NewVar(sig.Params().At(i).Pos(), nil, "", p.Type))
	}
	res := sig.Results()
	if s.Out != nil {
		res = types.NewTuple(types.NewVar(res.At(0).Pos(), nil, "", s.Out), res.At(1))
	}
	return types.NewSignatureType(nil, nil, nil, types.NewTuple(params...), res, sig.Variadic())
}

// goName returns the function name.
func (s *stepModel) goName() string { return s.Func.Name() }

// def returns the runtime definition of f.
func (f *flowModel) def() flowdef.FlowDef {
	d := flowdef.FlowDef{Slug: f.Name, Options: f.Options}
	for _, s := range f.Steps {
		sd := flowdef.StepDef{Slug: s.Slug, Map: s.Map, TakesInput: s.TakesInput, Options: s.Options, Optional: s.Optional,
			Wait: s.Wait, WaitTimeout: s.WaitTimeout}
		if s.WhenName != "" {
			sd.When = placeholderCondition
		}
		for _, dep := range s.Deps {
			if dep.Step != nil {
				sd.DependsOn = append(sd.DependsOn, dep.Step.Slug)
				if dep.AbsentOK && dep.Step.Skippable {
					// Only a dependency that may be skipped: a pointer to
					// one that never is changes nothing, nor the shape.
					sd.AcceptsSkipped = append(sd.AcceptsSkipped, dep.Step.Slug)
				}
			}
		}
		d.Steps = append(d.Steps, sd)
	}
	return d
}

// signalSteps returns, for each signal a step of f waits for, the first
// such step (its Signal is the payload type), in source order.
func (f *flowModel) signalSteps() []*stepModel {
	seen := map[string]bool{}
	var out []*stepModel
	for _, s := range f.Steps {
		if s.Wait != "" && s.Signal != nil && !seen[s.Wait] {
			seen[s.Wait] = true
			out = append(out, s)
		}
	}
	return out
}

// leaves returns the steps of f no other step depends on, in source order.
func (f *flowModel) leaves() []*stepModel {
	used := map[*stepModel]bool{}
	for _, s := range f.Steps {
		for _, d := range s.Deps {
			used[d.Step] = true
		}
	}
	var out []*stepModel
	for _, s := range f.Steps {
		if !used[s] {
			out = append(out, s)
		}
	}
	return out
}

// layout names the fields of the structs generated for m: each flow's
// output and each step's task input. Each struct's names are chosen once,
// here, and emit reads them for both the declaration and the uses.
func (m *pkgModel) layout() {
	for _, f := range m.Flows {
		steps := fieldNamer{}
		f.StepFields = nil
		for _, s := range f.Steps {
			f.StepFields = append(f.StepFields, stepField{Name: steps.name(s.Slug), Step: s})
		}
		used := fieldNamer{}
		f.OutputFields = nil
		for _, s := range f.leaves() {
			if s.Out != nil {
				t := s.outputSeen()
				if s.Skippable {
					t = absentType(t) // nil when the leaf was skipped: the run's output has no key for it
				}
				f.OutputFields = append(f.OutputFields, field{Name: used.name(s.Slug), Key: s.Slug, Type: t})
			}
		}
	}
	for _, s := range m.Steps {
		s.InputFields = nil
		if s.Flow == nil || s.Map {
			continue
		}
		used := fieldNamer{}
		if s.TakesInput {
			s.InputFields = append(s.InputFields, field{Name: used.name(flowdef.InputKey), Key: flowdef.InputKey, Type: s.Flow.Input.Type()})
		}
		for _, d := range s.Deps {
			if d.Param >= 0 {
				s.InputFields = append(s.InputFields, field{Name: used.name(d.Step.Slug), Key: d.Step.Slug, Type: d.paramType()})
			}
		}
		if s.Signal != nil {
			s.InputFields = append(s.InputFields, field{Name: used.name(flowdef.SignalKey), Key: flowdef.SignalKey, Type: s.Signal})
		}
	}
}
