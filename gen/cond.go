package gen

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"strings"
)

// This file checks conditional and optional steps: each when= names a
// function of the package with the step's parameters after ctx, returning
// bool; which steps may be skipped (skippability); and the parameters by
// which a step takes a dependency that may be skipped (absence).

// conditions resolves each step's when= and checks the condition's
// signature against the step's. It runs after every step's signature.
func (c *checker) conditions(m *pkgModel) {
	for _, s := range m.Steps {
		if s.WhenName == "" {
			continue
		}
		name := s.goName()
		if s.Map {
			c.errorf(s.WhenPos, "map step %s cannot have a condition: a condition decides for the whole step, and a map step's tasks each get one element; put when= on the step whose output %s maps over", name, name)
			continue
		}
		obj := c.pkg.Types.Scope().Lookup(s.WhenName)
		fn, _ := obj.(*types.Func)
		switch {
		case obj == nil:
			var funcs []string
			for _, n := range c.pkg.Types.Scope().Names() {
				if _, ok := c.pkg.Types.Scope().Lookup(n).(*types.Func); ok {
					funcs = append(funcs, n)
				}
			}
			hint := ""
			if alt := suggest(s.WhenName, funcs); alt != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", alt)
			}
			c.errorf(s.WhenPos, "unknown condition %s of step %s: the package declares no function of that name%s", s.WhenName, name, hint)
			continue
		case fn == nil:
			d := c.errorf(s.WhenPos, "condition %s of step %s is a %s, not a function", s.WhenName, name, objectKind(obj))
			c.note(d, obj.Pos(), "%s declared here", s.WhenName)
			continue
		}
		decl := c.funcDecl(fn)
		if decl == nil {
			c.errorf(s.WhenPos, "condition %s of step %s must be a function declared in this package", s.WhenName, name)
			continue
		}
		if decl.Type.TypeParams != nil {
			d := c.errorf(decl.Name.Pos(), "condition %s of step %s is generic; a condition must be a concrete function", s.WhenName, name)
			c.note(d, s.WhenPos, "when=%s on step %s", s.WhenName, name)
			continue
		}
		if c.conditionSignature(s, fn, decl) {
			s.When = fn
		}
	}
}

// conditionSignature checks condition fn of step s: the step's parameters
// after ctx, in order and of identical types, and one bool result. It
// reports every mismatch and returns whether there was none.
func (c *checker) conditionSignature(s *stepModel, fn *types.Func, decl *ast.FuncDecl) bool {
	if len(s.Params) == 0 || !isContext(s.Params[0].Type) {
		return false // the step's own signature is reported
	}
	name, cond := s.goName(), fn.Name()
	sig := fn.Type().(*types.Signature)
	want := s.Params[1:]
	var wantTypes []string
	for _, p := range want {
		wantTypes = append(wantTypes, typeString(p.Type, c.pkg.Types))
	}
	wantSig := "func(" + strings.Join(wantTypes, ", ") + ") bool"
	ok := true
	at := func(pos token.Pos, format string, a ...any) {
		ok = false
		d := c.errorf(pos, format, a...)
		c.note(d, s.WhenPos, "when=%s on step %s, which takes (%s) after ctx", cond, name, strings.Join(wantTypes, ", "))
	}
	params := sig.Params()
	if sig.Variadic() || params.Len() != len(want) {
		got := types.TypeString(sig, func(p *types.Package) string {
			if p == c.pkg.Types {
				return ""
			}
			return p.Name()
		})
		why := ""
		if params.Len() == len(want)+1 && isContext(params.At(0).Type()) {
			why = ": a condition takes no context"
		}
		at(decl.Name.Pos(), "condition %s of step %s must be %s, the step's parameters after ctx returning bool; it is %s%s", cond, name, wantSig, got, why)
		return false
	}
	var paramPos []token.Pos
	for _, f := range decl.Type.Params.List {
		for range max(len(f.Names), 1) {
			paramPos = append(paramPos, f.Type.Pos())
		}
	}
	for i := range params.Len() {
		got, w := params.At(i).Type(), want[i]
		if types.Identical(got, w.Type) {
			continue
		}
		at(paramPos[i], "parameter %s of condition %s has type %s, but parameter %s of step %s has type %s: a condition takes the step's parameters after ctx",
			paramName(paramInfo{Name: params.At(i).Name()}, i), cond, typeString(got, c.pkg.Types), paramName(w, i+1), name, typeString(w.Type, c.pkg.Types))
	}
	res := sig.Results()
	if res.Len() != 1 || !types.Identical(res.At(0).Type(), types.Typ[types.Bool]) {
		pos := decl.Name.Pos()
		if decl.Type.Results != nil {
			pos = decl.Type.Results.Pos()
		}
		at(pos, "condition %s of step %s must return bool, not %s", cond, name, resultString(res, c.pkg.Types))
	}
	return ok
}

// funcDecl returns the declaration of fn in the package's syntax, or nil.
func (c *checker) funcDecl(fn *types.Func) *ast.FuncDecl {
	for _, f := range c.pkg.Syntax {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Pos() == fn.Pos() {
				return fd
			}
		}
	}
	return nil
}

// objectKind names what kind of declaration obj is.
func objectKind(obj types.Object) string {
	switch obj.(type) {
	case *types.Var:
		return "variable"
	case *types.Const:
		return "constant"
	case *types.TypeName:
		return "type"
	}
	return "declaration"
}

// skippability marks the steps of f that may be skipped: conditional and
// optional steps, and steps with a dependency that may be skipped and
// whose skip they do not take (a pointer parameter). Cycles are reported
// elsewhere; a step on one is not marked through it.
func skippability(f *flowModel) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[*stepModel]int{}
	var visit func(s *stepModel) bool
	visit = func(s *stepModel) bool {
		switch state[s] {
		case visiting:
			return false
		case done:
			return s.Skippable
		}
		state[s] = visiting
		why := ""
		switch {
		case s.WhenName != "":
			why = "when=" + s.WhenName
		case s.Optional:
			why = "optional"
		}
		for _, d := range s.Deps {
			if d.Step != nil && visit(d.Step) && !d.AbsentOK && why == "" {
				why = "skipped with " + d.Step.goName()
			}
		}
		state[s] = done
		s.Skippable, s.SkipWhy = why != "", why
		return s.Skippable
	}
	for _, s := range f.Steps {
		visit(s)
	}
}

// absence reports the map steps whose parameter is a pointer to their
// element: when the dependency may be skipped, as a map step that cannot
// take its skip; otherwise as the type mismatch it is.
func (c *checker) absence(m *pkgModel) {
	for _, s := range m.Steps {
		if !s.ptrElem {
			continue
		}
		dep := s.Deps[0]
		if dep.Step == nil || !dep.Step.Skippable {
			s.mapMismatch()
			continue
		}
		p := s.Params[1]
		d := c.errorf(p.TypePos, "map step %s cannot take the skip of %s: a map step runs once per element of %s's output and is skipped with it, so its parameter %s is the element, %s, not %s; to run without %s's output, take it as %s in a step that is not a map step",
			s.goName(), dep.Name, dep.Name, paramName(p, 1), typeString(s.Elem, c.pkg.Types), typeString(p.Type, c.pkg.Types), dep.Name,
			typeString(absentType(dep.Step.outputSeen()), c.pkg.Types))
		c.note(d, dep.Step.Decl.Name.Pos(), "%s may be skipped (%s)", dep.Name, dep.Step.SkipWhy)
	}
}
