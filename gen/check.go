package gen

import (
	"fmt"
	"go/token"
	"go/types"
	"strings"

	"golang.org/x/tools/go/packages"
)

// checker turns one loaded package into a pkgModel, collecting every
// diagnostic on the way. It keeps going after an error wherever the rest of
// the model can still be judged, so that one run reports everything.
type checker struct {
	pkg   *packages.Package
	fset  *token.FileSet
	diags []Diagnostic
	lost  map[*types.Var]bool // unexported fields reported by lostFields
	// outputs maps <Flow>Output, the generated output type's name, to its
	// flow (see standIns).
	outputs map[string]*flowModel
}

func (c *checker) errorf(pos token.Pos, format string, a ...any) *Diagnostic {
	c.diags = append(c.diags, Diagnostic{Pos: c.fset.Position(pos), Msg: fmt.Sprintf(format, a...)})
	return &c.diags[len(c.diags)-1]
}

func (c *checker) note(d *Diagnostic, pos token.Pos, format string, a ...any) {
	d.Notes = append(d.Notes, Note{Pos: c.fset.Position(pos), Msg: fmt.Sprintf(format, a...)})
}

// analyze builds the model of p. It returns nil when p holds no annotation.
func analyze(p *packages.Package) (*pkgModel, []Diagnostic) {
	c := &checker{pkg: p, fset: p.Fset}
	anns := c.collect()
	if len(anns) == 0 && len(c.diags) == 0 {
		return nil, nil
	}
	m := &pkgModel{Path: p.PkgPath, Name: p.Name, Dir: pkgDir(p), Types: p.Types, Fset: p.Fset}
	c.retriesMeaning(anns, m.Dir)
	c.flows(m, anns)
	c.outputs = map[string]*flowModel{}
	for _, f := range m.Flows {
		c.outputs[f.GoName+"Output"] = f
	}
	c.steps(m, anns)
	c.deps(m)
	for _, f := range m.Flows {
		c.cycles(f)
	}
	for _, s := range m.Steps {
		c.results(s)
	}
	for _, s := range m.Steps {
		c.signature(s)
	}
	c.signals(m)
	c.conditions(m)
	for _, f := range m.Flows {
		skippability(f)
	}
	c.absence(m)
	c.subflowSignatures(m)
	for _, s := range m.Steps {
		c.limitKey(s)
	}
	c.typeErrors(m)
	m.layout()
	c.subflowOutputs(m)
	c.names(m)
	if len(c.diags) == 0 {
		for _, f := range m.Flows {
			if err := f.def().Validate(); err != nil {
				c.errorf(f.NamePos, "internal error: generated definition is invalid: %v", err)
			}
		}
	}
	return m, c.diags
}

// typeErrors reports the package's type errors when a flow or step touches
// an invalid type; other type errors (for example uses of names the stale
// generated file used to declare) do not stop generation.
func (c *checker) typeErrors(m *pkgModel) {
	bad := false
	for _, f := range m.Flows {
		bad = bad || hasInvalid(f.Input.Type(), nil)
	}
	for _, s := range m.Steps {
		bad = bad || hasInvalid(s.sig(), nil)
	}
	if !bad {
		return
	}
	for _, e := range c.pkg.Errors {
		if e.Kind == packages.TypeError {
			c.diags = append(c.diags, packageError(e))
		}
	}
}

// hasInvalid reports whether t mentions an invalid type.
func hasInvalid(t types.Type, seen map[types.Type]bool) bool {
	if seen == nil {
		seen = map[types.Type]bool{}
	}
	if t == nil || seen[t] {
		return false
	}
	seen[t] = true
	switch t := t.(type) {
	case *types.Basic:
		return t.Kind() == types.Invalid
	case *types.Named:
		return hasInvalid(t.Underlying(), seen)
	case *types.Alias:
		return hasInvalid(types.Unalias(t), seen)
	case *types.Pointer:
		return hasInvalid(t.Elem(), seen)
	case *types.Slice:
		return hasInvalid(t.Elem(), seen)
	case *types.Array:
		return hasInvalid(t.Elem(), seen)
	case *types.Map:
		return hasInvalid(t.Key(), seen) || hasInvalid(t.Elem(), seen)
	case *types.Chan:
		return hasInvalid(t.Elem(), seen)
	case *types.Signature:
		return hasInvalid(t.Params(), seen) || hasInvalid(t.Results(), seen)
	case *types.Tuple:
		for i := range t.Len() {
			if hasInvalid(t.At(i).Type(), seen) {
				return true
			}
		}
	case *types.Struct:
		for i := range t.NumFields() {
			if hasInvalid(t.Field(i).Type(), seen) {
				return true
			}
		}
	}
	return false
}

func isError(t types.Type) bool { return types.Identical(t, types.Universe.Lookup("error").Type()) }

func isByte(t types.Type) bool {
	b, ok := t.Underlying().(*types.Basic)
	return ok && b.Kind() == types.Byte
}

func isContext(t types.Type) bool {
	n, ok := types.Unalias(t).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "context" && n.Obj().Name() == "Context"
}

func paramName(p paramInfo, i int) string {
	if p.Name == "" || p.Name == "_" {
		return fmt.Sprintf("#%d", i+1)
	}
	return p.Name
}

// typeString renders t qualified by package name, except for pkg's own types.
func typeString(t types.Type, pkg *types.Package) string {
	return types.TypeString(t, func(p *types.Package) string {
		if p == pkg {
			return ""
		}
		return p.Name()
	})
}

func resultString(res *types.Tuple, pkg *types.Package) string {
	switch res.Len() {
	case 0:
		return "nothing"
	case 1:
		return typeString(res.At(0).Type(), pkg)
	}
	var parts []string
	for i := range res.Len() {
		parts = append(parts, typeString(res.At(i).Type(), pkg))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// signals checks that the steps of a flow that wait for the same signal
// take the same payload type (one Signal<Flow><Name> sends it to all).
func (c *checker) signals(m *pkgModel) {
	for _, f := range m.Flows {
		first := map[string]*stepModel{}
		for _, s := range f.Steps {
			if s.Signal == nil {
				continue
			}
			p, ok := first[s.Wait]
			if !ok {
				first[s.Wait] = s
				continue
			}
			if !types.Identical(p.Signal, s.Signal) {
				d := c.errorf(s.Params[len(s.Params)-1].TypePos, "step %s takes signal %q as %s, but step %s takes it as %s: one signal has one payload type",
					s.goName(), s.Wait, typeString(s.Signal, c.pkg.Types), p.goName(), typeString(p.Signal, c.pkg.Types))
				c.note(d, p.Params[len(p.Params)-1].TypePos, "%s takes it here", p.goName())
			}
		}
	}
}
