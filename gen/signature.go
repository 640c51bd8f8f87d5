package gen

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"strings"

	"github.com/quantumflow/qflow/flowdef"
)

// This file checks each step function's signature against its flow and
// dependencies, and records what emission needs (input, element and output
// types, parameter positions).

// results checks a step's results, (T, error) or error, and records its
// output type. It runs for every step before any parameter is checked.
func (c *checker) results(s *stepModel) {
	sig := s.Func.Type().(*types.Signature)
	fn := s.Decl
	var exprs []ast.Expr
	for _, field := range fn.Type.Params.List {
		for range max(len(field.Names), 1) {
			s.Params = append(s.Params, paramInfo{TypePos: field.Type.Pos()})
			exprs = append(exprs, field.Type)
		}
	}
	for i := range s.Params {
		s.Params[i].Type = c.standIns(exprs[i], sig.Params().At(i).Type())
		s.Params[i].Name = sig.Params().At(i).Name()
		s.StandIns = s.StandIns || s.Params[i].Type != sig.Params().At(i).Type()
	}
	res := sig.Results()
	resPos := fn.Name.Pos()
	if fn.Type.Results != nil {
		resPos = fn.Type.Results.Pos()
	}
	switch {
	case res.Len() == 1 && isError(res.At(0).Type()):
	case res.Len() == 2 && isError(res.At(1).Type()) && c.badSubflowOutput(s, res.At(0).Type()):
		// subflow= is reported: only keep the result's name from adding noise.
		s.StandIns = true
		s.Out = types.NewNamed(types.NewTypeName(s.outPos(), c.pkg.Types, s.Decl.Type.Results.List[0].Type.(*ast.Ident).Name, nil), types.NewStruct(nil, nil), nil)
	case res.Len() == 2 && isError(res.At(1).Type()) && !isError(res.At(0).Type()):
		s.Out = c.standIns(s.Decl.Type.Results.List[0].Type, res.At(0).Type())
		s.StandIns = s.StandIns || s.Out != res.At(0).Type()
		c.jsonCheck(s.outPos(), fmt.Sprintf("output type %s of step %s", typeString(s.Out, c.pkg.Types), s.goName()), s.Out)
	default:
		s.BadResults = true
		c.errorf(resPos, "step %s must return (T, error) or error, not %s", s.goName(), resultString(res, c.pkg.Types))
	}
}

// badSubflowOutput reports whether t, the first result of a step whose
// subflow= names no usable flow (reported), is an unresolved <Name>Output,
// taken as is so that it adds no type error to the report.
func (c *checker) badSubflowOutput(s *stepModel, t types.Type) bool {
	if s.Subflow == "" || s.Child != nil || !isInvalid(t) {
		return false
	}
	id, ok := s.Decl.Type.Results.List[0].Type.(*ast.Ident)
	return ok && strings.HasSuffix(id.Name, "Output")
}

// standIns returns t, the type of expr in a step's signature, with each
// unresolved <Flow>Output of a flow of this package (the loader reads the
// generated file package clause only, so a step that runs a subflow, or
// takes a subflow step's output, names it undefined) replaced by the flow's
// stand-in, written bare, behind * or in []: t itself when nothing changes.
func (c *checker) standIns(expr ast.Expr, t types.Type) types.Type {
	switch x := expr.(type) {
	case *ast.ParenExpr:
		return c.standIns(x.X, t)
	case *ast.Ident:
		if f := c.outputs[x.Name]; f != nil && isInvalid(t) {
			return f.outputStandIn(c.pkg.Types)
		}
	case *ast.StarExpr:
		if p, ok := t.(*types.Pointer); ok {
			if e := c.standIns(x.X, p.Elem()); e != p.Elem() {
				return types.NewPointer(e)
			}
		}
	case *ast.ArrayType:
		if sl, ok := t.(*types.Slice); ok && x.Len == nil {
			if e := c.standIns(x.Elt, sl.Elem()); e != sl.Elem() {
				return types.NewSlice(e)
			}
		}
	}
	return t
}

// isInvalid reports whether t is the invalid type (an unresolved name).
func isInvalid(t types.Type) bool {
	b, ok := t.(*types.Basic)
	return ok && b.Kind() == types.Invalid
}

// outputStandIn is a named type of pkg that stands for f's generated
// <Flow>Output in the model: it renders as its name, which the generated
// file declares. One per flow, so that its uses are identical types.
func (f *flowModel) outputStandIn(pkg *types.Package) types.Type {
	if f.standIn == nil {
		tn := types.NewTypeName(f.NamePos, pkg, f.GoName+"Output", nil)
		f.standIn = types.NewNamed(tn, types.NewStruct(nil, nil), nil)
	}
	return f.standIn
}

// outPos is the position of the output type in s's results.
func (s *stepModel) outPos() token.Pos { return s.Decl.Type.Results.List[0].Type.Pos() }

// signature checks a step's parameters against its dependencies and flow,
// and records what emission needs.
func (c *checker) signature(s *stepModel) {
	sig := s.Func.Type().(*types.Signature)
	name := s.goName()
	fn := s.Decl
	if sig.Variadic() {
		c.errorf(s.Params[len(s.Params)-1].TypePos, "step %s is variadic; a step takes ctx, optionally the flow input, then one parameter per dependency", name)
		return
	}
	if len(s.Params) == 0 || !isContext(s.Params[0].Type) {
		pos := fn.Type.Params.Pos()
		if len(s.Params) > 0 {
			pos = s.Params[0].TypePos
		}
		c.errorf(pos, "first parameter of step %s must be context.Context", name)
		return
	}
	if s.Flow == nil {
		return
	}
	for _, d := range s.Deps {
		if d.Step == nil || d.Step.BadResults {
			return // reported; counting parameters would only add noise
		}
	}
	if s.Map {
		if s.Wait != "" {
			c.errorf(s.WaitPos, "map step %s waits for signal %q; a map step's tasks each get one element (put wait= on the step whose output it maps over)", name, s.Wait)
			return
		}
		c.mapSignature(s)
		return
	}
	if s.Wait != "" {
		if len(s.Params) < 2 {
			c.errorf(fn.Name.Pos(), "step %s waits for signal %q but takes no payload; its last parameter is the signal's payload, of any JSON type", name, s.Wait)
			return
		}
		last := s.Params[len(s.Params)-1]
		s.Signal = last.Type
		c.jsonCheck(last.TypePos, fmt.Sprintf("payload type %s of signal %q of step %s", typeString(last.Type, c.pkg.Types), s.Wait, name), last.Type)
		for _, d := range s.Deps {
			if d.Step.Slug == flowdef.SignalKey {
				c.errorf(d.Pos, "step %s waits for a signal and depends on step %q, whose output would take the signal payload's key: rename the dependency (name=)", name, flowdef.SignalKey)
			}
		}
	}
	params := s.Params
	if s.Signal != nil {
		params = params[:len(params)-1]
	}

	// ctx [, in Input], one parameter per dependency that has an output.
	var want []string
	for _, d := range s.Deps {
		if t := d.Step.outputSeen(); t != nil {
			want = append(want, fmt.Sprintf("%s (from %s)", typeString(t, c.pkg.Types), d.Name))
		}
	}
	input := s.Flow.Input.Type()
	got := len(params) - 1
	switch got - len(want) {
	case 0:
	case 1:
		s.TakesInput = true
		p := params[1]
		if !types.Identical(p.Type, input) {
			d := c.errorf(p.TypePos, "parameter %s of step %s has type %s, but the input of flow %s is %s", paramName(p, 1), name, typeString(p.Type, c.pkg.Types), s.Flow.Name, typeString(input, c.pkg.Types))
			c.note(d, s.Flow.Input.Pos(), "flow %s input type %s declared here", s.Flow.Name, s.Flow.Input.Name())
		}
	default:
		deps := "no dependency outputs"
		if len(want) > 0 {
			deps = strings.Join(want, ", ")
		}
		extra, payload := 0, ""
		if s.Signal != nil {
			extra, payload = 1, fmt.Sprintf(", then the payload of signal %q", s.Wait)
		}
		c.errorf(fn.Name.Pos(), "step %s has %d parameters; want %d or %d: ctx context.Context, optionally the flow input %s, then %s%s",
			name, len(s.Params), 1+len(want)+extra, 2+len(want)+extra, typeString(input, c.pkg.Types), deps, payload)
		return
	}
	i := 1
	if s.TakesInput {
		i = 2
	}
	for _, dep := range s.Deps {
		t := dep.Step.outputSeen()
		if t == nil {
			continue
		}
		dep.Param = i
		p := params[i]
		// A pointer takes the dependency's skip: *T for an output T, or T
		// itself when it is a pointer (nil when skipped).
		dep.AbsentOK = types.Identical(p.Type, absentType(t))
		if !types.Identical(p.Type, t) && !dep.AbsentOK {
			how := ""
			if dep.Step.Map {
				how = fmt.Sprintf(" (%s is a map step: dependents receive a slice of its outputs)", dep.Name)
			}
			d := c.errorf(p.TypePos, "parameter %s of step %s has type %s, but dependency %s produces %s%s",
				paramName(p, i), name, typeString(p.Type, c.pkg.Types), dep.Name, typeString(t, c.pkg.Types), how)
			c.note(d, dep.Step.outPos(), "%s returns %s", dep.Name, typeString(dep.Step.Out, c.pkg.Types))
		}
		i++
	}
}

// mapSignature checks a map step: one dependency (or none: the flow input)
// whose output is a slice, and parameters (ctx, elem).
func (c *checker) mapSignature(s *stepModel) {
	name := s.goName()
	if len(s.Deps) > 1 {
		c.errorf(s.MapPos, "map step %s has %d dependencies; a map step maps over exactly one (or, with none, over the flow input)", name, len(s.Deps))
		return
	}
	var src types.Type
	var what string
	var srcPos token.Pos
	var srcNote string
	if len(s.Deps) == 1 {
		p := s.Deps[0].Step
		src = p.outputSeen()
		what = "the output of " + p.goName()
		if src == nil {
			c.errorf(s.Deps[0].Pos, "map step %s maps over %s, which returns only error", name, p.goName())
			return
		}
		srcPos = p.outPos()
		srcNote = fmt.Sprintf("%s returns %s", p.goName(), typeString(p.Out, c.pkg.Types))
	} else {
		src = s.Flow.Input.Type()
		what = "the input of flow " + s.Flow.Name
		srcPos = s.Flow.Input.Pos()
		srcNote = fmt.Sprintf("flow %s input type %s declared here", s.Flow.Name, s.Flow.Input.Name())
	}
	sl, ok := src.Underlying().(*types.Slice)
	if !ok || isByte(sl.Elem()) {
		why := "which is not a slice"
		if ok {
			why = "which JSON encodes as a string, not an array"
		}
		d := c.errorf(s.MapPos, "map step %s maps over %s, %s, %s", name, what, typeString(src, c.pkg.Types), why)
		c.note(d, srcPos, "%s", srcNote)
		return
	}
	s.Elem = sl.Elem()
	if len(s.Params) != 2 {
		c.errorf(s.Decl.Name.Pos(), "map step %s has %d parameters; want 2: ctx context.Context, then one element %s of %s",
			name, len(s.Params), typeString(s.Elem, c.pkg.Types), what)
		return
	}
	p := s.Params[1]
	if !types.Identical(p.Type, s.Elem) {
		if len(s.Deps) == 1 && types.Identical(p.Type, types.NewPointer(s.Elem)) {
			// Perhaps meant to take the dependency's skip, which a map
			// step cannot: absence says which, once skippability is known.
			s.ptrElem = true
		}
		s.mapMismatch = func() {
			d := c.errorf(p.TypePos, "parameter %s of map step %s has type %s, but the step maps over %s, %s: want %s",
				paramName(p, 1), name, typeString(p.Type, c.pkg.Types), what, typeString(src, c.pkg.Types), typeString(s.Elem, c.pkg.Types))
			c.note(d, srcPos, "%s", srcNote)
		}
		if !s.ptrElem {
			s.mapMismatch()
		}
	}
	if len(s.Deps) == 1 {
		s.Deps[0].Param = 1
	}
}
