package gen

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/tools/go/packages"

	"github.com/quantumflow/qflow/runtime"
)

// checker turns one loaded package into a pkgModel, collecting every
// diagnostic on the way. It keeps going after an error wherever the rest of
// the model can still be judged, so that one run reports everything.
type checker struct {
	pkg   *packages.Package
	fset  *token.FileSet
	diags []Diagnostic
}

func (c *checker) errorf(pos token.Pos, format string, a ...any) *Diagnostic {
	c.diags = append(c.diags, Diagnostic{Pos: c.fset.Position(pos), Msg: fmt.Sprintf(format, a...)})
	return &c.diags[len(c.diags)-1]
}

func (c *checker) note(d *Diagnostic, pos token.Pos, format string, a ...any) {
	d.Notes = append(d.Notes, Note{Pos: c.fset.Position(pos), Msg: fmt.Sprintf(format, a...)})
}

// annotation is a directive attached to a declaration.
type annotation struct {
	d    *directive
	pos  token.Pos // Comment.Slash
	spec *ast.TypeSpec
	fn   *ast.FuncDecl
}

func (a *annotation) at(off int) token.Pos { return a.pos + token.Pos(off) }

// analyze builds the model of p. It returns nil when p holds no annotation.
func analyze(p *packages.Package) (*pkgModel, []Diagnostic) {
	c := &checker{pkg: p, fset: p.Fset}
	anns := c.collect()
	if len(anns) == 0 && len(c.diags) == 0 {
		return nil, nil
	}
	m := &pkgModel{Path: p.PkgPath, Name: p.Name, Dir: pkgDir(p), Types: p.Types, Fset: p.Fset}
	c.flows(m, anns)
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
	c.typeErrors(m)
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

// collect finds every //qflow: comment in the package and attaches it to
// the declaration whose doc comment holds it.
func (c *checker) collect() []*annotation {
	var out []*annotation
	for _, f := range c.pkg.Syntax {
		if filepath.Base(c.fset.File(f.Pos()).Name()) == GeneratedFile {
			continue
		}
		owner := map[*ast.CommentGroup]any{}
		for _, decl := range f.Decls {
			switch decl := decl.(type) {
			case *ast.FuncDecl:
				if decl.Doc != nil {
					owner[decl.Doc] = decl
				}
			case *ast.GenDecl:
				if decl.Tok == token.TYPE && decl.Doc != nil && len(decl.Specs) == 1 {
					owner[decl.Doc] = decl.Specs[0]
				} else if decl.Doc != nil {
					owner[decl.Doc] = decl
				}
				for _, spec := range decl.Specs {
					if ts, ok := spec.(*ast.TypeSpec); ok && ts.Doc != nil {
						owner[ts.Doc] = ts
					}
				}
			}
		}
		for _, g := range f.Comments {
			for _, cm := range g.List {
				if !isDirective(cm.Text) {
					continue
				}
				d, errs := parseDirective(cm.Text)
				for _, e := range errs {
					c.errorf(cm.Slash+token.Pos(e.Off), "%s", e.Msg)
				}
				if d == nil {
					continue
				}
				a := &annotation{d: d, pos: cm.Slash}
				switch o := owner[g].(type) {
				case *ast.FuncDecl:
					a.fn = o
				case *ast.TypeSpec:
					a.spec = o
				}
				switch {
				case d.Kind.Text == "flow" && a.spec == nil:
					c.errorf(a.at(d.Kind.Off), "//qflow:flow must be in the doc comment of a type declaration (the flow's input type)")
					continue
				case d.Kind.Text == "step" && a.fn == nil:
					c.errorf(a.at(d.Kind.Off), "//qflow:step must be in the doc comment of a function")
					continue
				}
				out = append(out, a)
			}
		}
	}
	return out
}

// flows builds the flows from //qflow:flow annotations.
func (c *checker) flows(m *pkgModel, anns []*annotation) {
	byName := map[string]*flowModel{}
	seenSpec := map[*ast.TypeSpec]bool{}
	for _, a := range anns {
		if a.d.Kind.Text != "flow" {
			continue
		}
		if seenSpec[a.spec] {
			c.errorf(a.at(a.d.Kind.Off), "type %s has more than one //qflow:flow directive", a.spec.Name.Name)
			continue
		}
		seenSpec[a.spec] = true
		if !runtime.ValidSlug(a.d.Name.Text) {
			continue // reported by the parser
		}
		tn, _ := c.pkg.Types.Scope().Lookup(a.spec.Name.Name).(*types.TypeName)
		if tn == nil {
			c.errorf(a.spec.Name.Pos(), "flow input type %s must be declared at package level", a.spec.Name.Name)
			continue
		}
		if a.spec.TypeParams != nil {
			c.errorf(a.spec.Name.Pos(), "flow input type %s is generic; a flow input must be a concrete type", a.spec.Name.Name)
			continue
		}
		f := &flowModel{
			Name:    a.d.Name.Text,
			NamePos: a.at(a.d.Name.Off),
			GoName:  exportName(a.d.Name.Text),
			Input:   tn,
			Options: runtime.StepOptions{
				MaxAttempts: a.d.Options.Retries,
				BaseDelay:   a.d.Options.Backoff,
				Timeout:     a.d.Options.Timeout,
			},
		}
		if prev := byName[f.Name]; prev != nil {
			d := c.errorf(f.NamePos, "duplicate flow %s: also declared on type %s", f.Name, prev.Input.Name())
			c.note(d, prev.NamePos, "other declaration of flow %s", f.Name)
			continue
		}
		byName[f.Name] = f
		if !tn.Exported() && c.pkg.Name != "main" {
			c.errorf(a.spec.Name.Pos(), "flow input type %s is unexported, but Run%s and Start%s, which take it, are exported: export the type", tn.Name(), f.GoName, f.GoName)
		}
		c.jsonCheck(a.spec.Name.Pos(), fmt.Sprintf("input type %s of flow %s", tn.Name(), f.Name), tn.Type())
		m.Flows = append(m.Flows, f)
	}
}

// steps builds the steps from //qflow:step annotations and assigns them to
// flows.
func (c *checker) steps(m *pkgModel, anns []*annotation) {
	var flowNames []string
	byName := map[string]*flowModel{}
	for _, f := range m.Flows {
		flowNames = append(flowNames, f.Name)
		byName[f.Name] = f
	}
	seenFn := map[*ast.FuncDecl]bool{}
	for _, a := range anns {
		if a.d.Kind.Text != "step" {
			continue
		}
		fn := a.fn
		if seenFn[fn] {
			c.errorf(a.at(a.d.Kind.Off), "function %s has more than one //qflow:step directive", fn.Name.Name)
			continue
		}
		seenFn[fn] = true
		if fn.Recv != nil && len(fn.Recv.List) > 0 {
			c.errorf(fn.Name.Pos(), "step %s is a method; a step must be a package-level function", fn.Name.Name)
			continue
		}
		if fn.Type.TypeParams != nil {
			c.errorf(fn.Name.Pos(), "step %s is generic; a step must be a concrete function", fn.Name.Name)
			continue
		}
		obj, _ := c.pkg.Types.Scope().Lookup(fn.Name.Name).(*types.Func)
		if obj == nil || fn.Name.Name == "_" || fn.Name.Name == "init" {
			c.errorf(fn.Name.Pos(), "function %s cannot be a step", fn.Name.Name)
			continue
		}
		s := &stepModel{
			Func:     obj,
			Decl:     fn,
			DirPos:   a.pos,
			Map:      a.d.Map,
			FlowName: a.d.Flow,
			Options: runtime.StepOptions{
				MaxAttempts: a.d.Options.Retries,
				BaseDelay:   a.d.Options.Backoff,
				Timeout:     a.d.Options.Timeout,
				StartDelay:  a.d.Options.Delay,
			},
		}
		if a.d.Map {
			s.MapPos = a.at(a.d.MapOff)
		}
		s.DepsPos = a.at(a.d.Kind.Off)
		if a.d.DependsOff >= 0 {
			s.DepsPos = a.at(a.d.DependsOff)
		}
		for _, w := range a.d.Depends {
			s.Deps = append(s.Deps, &depModel{Name: w.Text, Pos: a.at(w.Off), Param: -1})
		}
		if a.d.Slug.Text != "" {
			s.Slug, s.SlugPos = a.d.Slug.Text, a.at(a.d.Slug.Off)
		} else {
			s.Slug, s.SlugPos = snakeCase(fn.Name.Name), fn.Name.Pos()
			if !runtime.ValidSlug(s.Slug) {
				c.errorf(fn.Name.Pos(), "step name %q derived from %s is not a valid step name: set name=", s.Slug, fn.Name.Name)
			}
		}
		if s.Slug == "run" {
			c.errorf(s.SlugPos, `step name "run" is reserved for the flow input: set name= on %s`, fn.Name.Name)
		}
		// The flow.
		switch {
		case a.d.Flow.Text != "":
			s.FlowPos = a.at(a.d.Flow.Off)
			s.Flow = byName[a.d.Flow.Text]
			if s.Flow == nil {
				if len(flowNames) == 0 {
					c.errorf(s.FlowPos, "step %s names unknown flow %q: the package declares no //qflow:flow type", fn.Name.Name, a.d.Flow.Text)
				} else {
					c.errorf(s.FlowPos, "step %s names unknown flow %q (flows: %s)", fn.Name.Name, a.d.Flow.Text, strings.Join(flowNames, ", "))
				}
			}
		case len(m.Flows) == 1:
			s.Flow = m.Flows[0]
		case len(m.Flows) == 0:
			c.errorf(fn.Name.Pos(), "step %s belongs to no flow: the package declares no //qflow:flow type", fn.Name.Name)
		default:
			c.errorf(a.at(a.d.Kind.Off), "step %s: ambiguous flow: the package declares flows %s; add flow=NAME", fn.Name.Name, strings.Join(flowNames, ", "))
		}
		m.Steps = append(m.Steps, s)
		if s.Flow != nil {
			s.Flow.Steps = append(s.Flow.Steps, s)
		}
	}
	for _, f := range m.Flows {
		if len(f.Steps) == 0 {
			c.errorf(f.NamePos, "flow %s has no steps: annotate its functions with //qflow:step", f.Name)
		}
		bySlug := map[string]*stepModel{}
		for _, s := range f.Steps {
			if prev := bySlug[s.Slug]; prev != nil {
				d := c.errorf(s.SlugPos, "duplicate step name %q in flow %s: %s and %s", s.Slug, f.Name, prev.goName(), s.goName())
				c.note(d, prev.SlugPos, "step %q of %s", prev.Slug, prev.goName())
				continue
			}
			bySlug[s.Slug] = s
		}
	}
}

// deps resolves depends= names.
func (c *checker) deps(m *pkgModel) {
	byGo := map[string]*stepModel{}
	bySlug := map[string]*stepModel{}
	for _, s := range m.Steps {
		byGo[s.goName()] = s
		if s.Flow != nil {
			bySlug[s.Flow.Name+"\x00"+s.Slug] = s
		}
	}
	for _, s := range m.Steps {
		seen := map[string]bool{}
		for _, dep := range s.Deps {
			if seen[dep.Name] {
				c.errorf(dep.Pos, "step %s lists dependency %s twice", s.goName(), dep.Name)
				continue
			}
			seen[dep.Name] = true
			if dep.Name == s.goName() {
				c.errorf(dep.Pos, "step %s depends on itself", s.goName())
				continue
			}
			d := byGo[dep.Name]
			if d == nil {
				msg := fmt.Sprintf("unknown dependency %s of step %s: no //qflow:step function has that name", dep.Name, s.goName())
				if s.Flow != nil {
					if alt := bySlug[s.Flow.Name+"\x00"+dep.Name]; alt != nil {
						msg += fmt.Sprintf(" (depends= takes Go function names: did you mean %s?)", alt.goName())
					}
				}
				c.errorf(dep.Pos, "%s", msg)
				continue
			}
			if s.Flow != nil && d.Flow != nil && d.Flow != s.Flow {
				e := c.errorf(dep.Pos, "step %s of flow %s depends on %s, which belongs to flow %s", s.goName(), s.Flow.Name, d.goName(), d.Flow.Name)
				c.note(e, d.Decl.Name.Pos(), "%s declared here", d.goName())
				continue
			}
			if s.Flow == nil || d.Flow == nil {
				continue
			}
			dep.Step = d
		}
	}
}

// cycles reports every dependency cycle of f once, hop by hop.
func (c *checker) cycles(f *flowModel) {
	const (
		white = iota
		grey
		black
	)
	color := map[*stepModel]int{}
	inCycle := map[*stepModel]bool{}
	var stack []*stepModel
	var edges []*depModel // edges[i] leads from stack[i] to stack[i+1]
	var visit func(s *stepModel)
	visit = func(s *stepModel) {
		color[s] = grey
		stack = append(stack, s)
		for _, dep := range s.Deps {
			d := dep.Step
			if d == nil {
				continue
			}
			edges = append(edges, dep)
			switch color[d] {
			case grey:
				i := slices.Index(stack, d)
				c.reportCycle(stack[i:], edges[i:], inCycle)
			case white:
				visit(d)
			}
			edges = edges[:len(edges)-1]
		}
		stack = stack[:len(stack)-1]
		color[s] = black
	}
	for _, s := range f.Steps {
		if color[s] == white {
			visit(s)
		}
	}
}

// reportCycle reports the cycle steps[0] -> ... -> steps[0] unless one of
// its steps was already reported in a cycle. The cycle is rotated to start
// at its first step in source order, so the report is stable.
func (c *checker) reportCycle(steps []*stepModel, edges []*depModel, done map[*stepModel]bool) {
	for _, s := range steps {
		if done[s] {
			return
		}
	}
	start := 0
	for i, s := range steps {
		if s.Decl.Pos() < steps[start].Decl.Pos() {
			start = i
		}
	}
	n := len(steps)
	names := make([]string, 0, n+1)
	for i := range n {
		names = append(names, steps[(start+i)%n].goName())
		done[steps[i]] = true
	}
	names = append(names, steps[start].goName())
	first := edges[start%n]
	d := c.errorf(first.Pos, "dependency cycle: %s", strings.Join(names, " -> "))
	for i := range n {
		s, e := steps[(start+i)%n], edges[(start+i)%n]
		c.note(d, e.Pos, "%s depends on %s", s.goName(), e.Name)
	}
}

// results checks a step's results, (T, error) or error, and records its
// output type. It runs for every step before any parameter is checked.
func (c *checker) results(s *stepModel) {
	sig := s.Func.Type().(*types.Signature)
	fn := s.Decl
	for _, field := range fn.Type.Params.List {
		for range max(len(field.Names), 1) {
			s.Params = append(s.Params, paramInfo{TypePos: field.Type.Pos()})
		}
	}
	for i := range s.Params {
		s.Params[i].Type = sig.Params().At(i).Type()
		s.Params[i].Name = sig.Params().At(i).Name()
	}
	res := sig.Results()
	resPos := fn.Name.Pos()
	if fn.Type.Results != nil {
		resPos = fn.Type.Results.Pos()
	}
	switch {
	case res.Len() == 1 && isError(res.At(0).Type()):
	case res.Len() == 2 && isError(res.At(1).Type()) && !isError(res.At(0).Type()):
		s.Out = res.At(0).Type()
		c.jsonCheck(s.outPos(), fmt.Sprintf("output type %s of step %s", typeString(s.Out, c.pkg.Types), s.goName()), s.Out)
	default:
		s.BadResults = true
		c.errorf(resPos, "step %s must return (T, error) or error, not %s", s.goName(), resultString(res, c.pkg.Types))
	}
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
		c.mapSignature(s)
		return
	}

	// ctx [, in Input], one parameter per dependency that has an output.
	var want []string
	for _, d := range s.Deps {
		if t := d.Step.outputSeen(); t != nil {
			want = append(want, fmt.Sprintf("%s (from %s)", typeString(t, c.pkg.Types), d.Name))
		}
	}
	input := s.Flow.Input.Type()
	got := len(s.Params) - 1
	switch got - len(want) {
	case 0:
	case 1:
		s.TakesInput = true
		p := s.Params[1]
		if !types.Identical(p.Type, input) {
			d := c.errorf(p.TypePos, "parameter %s of step %s has type %s, but the input of flow %s is %s", paramName(p, 1), name, typeString(p.Type, c.pkg.Types), s.Flow.Name, typeString(input, c.pkg.Types))
			c.note(d, s.Flow.Input.Pos(), "flow %s input type %s declared here", s.Flow.Name, s.Flow.Input.Name())
		}
	default:
		deps := "no dependency outputs"
		if len(want) > 0 {
			deps = strings.Join(want, ", ")
		}
		c.errorf(fn.Name.Pos(), "step %s has %d parameters; want %d or %d: ctx context.Context, optionally the flow input %s, then %s",
			name, len(s.Params), 1+len(want), 2+len(want), typeString(input, c.pkg.Types), deps)
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
		p := s.Params[i]
		if !types.Identical(p.Type, t) {
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
		d := c.errorf(p.TypePos, "parameter %s of map step %s has type %s, but the step maps over %s, %s: want %s",
			paramName(p, 1), name, typeString(p.Type, c.pkg.Types), what, typeString(src, c.pkg.Types), typeString(s.Elem, c.pkg.Types))
		c.note(d, srcPos, "%s", srcNote)
	}
	if len(s.Deps) == 1 {
		s.Deps[0].Param = 1
	}
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
		bad = bad || hasInvalid(s.Func.Type(), nil)
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

// names reports declarations that clash with names qflowgen generates.
func (c *checker) names(m *pkgModel) {
	scope := m.Types.Scope()
	owner := map[string]string{}
	claim := func(name, why string, pos token.Pos) {
		if prev, ok := owner[name]; ok {
			c.errorf(pos, "generated name %s for %s clashes with the one for %s", name, why, prev)
			return
		}
		owner[name] = why
		if obj := scope.Lookup(name); obj != nil && c.fset.Position(obj.Pos()).Filename != "" &&
			filepath.Base(c.fset.Position(obj.Pos()).Filename) != GeneratedFile {
			c.errorf(obj.Pos(), "%s clashes with the name qflowgen generates for %s: rename it", name, why)
		}
	}
	for _, f := range m.Flows {
		why := "flow " + f.Name
		for _, n := range flowNames(f) {
			claim(n, why, f.NamePos)
		}
	}
	for _, s := range m.Steps {
		if s.Flow == nil {
			continue
		}
		claim(guardName(s), "step "+s.goName(), s.Decl.Name.Pos())
		if needsInputStruct(s) {
			claim(inputStructName(s), "step "+s.goName(), s.Decl.Name.Pos())
		}
	}
}

// jsonCheck reports t when encoding/json cannot round-trip it.
func (c *checker) jsonCheck(pos token.Pos, what string, t types.Type) {
	if msg := jsonProblem(t, c.pkg.Types, map[types.Type]bool{}); msg != "" {
		c.errorf(pos, "%s cannot be JSON-encoded: %s", what, msg)
	}
}

// jsonProblem describes why t does not survive encoding/json, or returns "".
func jsonProblem(t types.Type, pkg *types.Package, seen map[types.Type]bool) string {
	if seen[t] {
		return ""
	}
	seen[t] = true
	if hasMethod(t, "MarshalJSON") || hasMethod(t, "MarshalText") {
		return ""
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		switch {
		case u.Info()&types.IsComplex != 0:
			return fmt.Sprintf("%s is a complex number", typeString(t, pkg))
		case u.Kind() == types.UnsafePointer:
			return fmt.Sprintf("%s is an unsafe.Pointer", typeString(t, pkg))
		case u.Kind() == types.Invalid:
			return ""
		}
	case *types.Chan:
		return fmt.Sprintf("%s is a channel", typeString(t, pkg))
	case *types.Signature:
		return fmt.Sprintf("%s is a function", typeString(t, pkg))
	case *types.Interface:
		if !u.Empty() {
			return fmt.Sprintf("%s is a non-empty interface, which cannot be decoded", typeString(t, pkg))
		}
	case *types.Pointer:
		return jsonProblem(u.Elem(), pkg, seen)
	case *types.Slice:
		return jsonProblem(u.Elem(), pkg, seen)
	case *types.Array:
		return jsonProblem(u.Elem(), pkg, seen)
	case *types.Map:
		k := u.Key()
		kb, isBasic := k.Underlying().(*types.Basic)
		if !hasMethod(k, "MarshalText") && !(isBasic && kb.Info()&(types.IsString|types.IsInteger) != 0) {
			return fmt.Sprintf("%s has key type %s (want a string, an integer or an encoding.TextMarshaler)", typeString(t, pkg), typeString(k, pkg))
		}
		return jsonProblem(u.Elem(), pkg, seen)
	case *types.Struct:
		visible := 0
		for i := range u.NumFields() {
			f := u.Field(i)
			tag := reflectTag(u.Tag(i), "json")
			if tag == "-" {
				continue
			}
			if !f.Exported() && !f.Embedded() {
				continue
			}
			visible++
			if msg := jsonProblem(f.Type(), pkg, seen); msg != "" {
				return fmt.Sprintf("field %s: %s", f.Name(), msg)
			}
		}
		if visible == 0 && u.NumFields() > 0 {
			return fmt.Sprintf("%s has no exported fields, so its contents would be lost", typeString(t, pkg))
		}
	}
	return ""
}

// reflectTag returns the name part of a struct tag key's value.
func reflectTag(tag, key string) string {
	v, _, _ := strings.Cut(reflectStructTag(tag).get(key), ",")
	return v
}

type reflectStructTag string

func (tag reflectStructTag) get(key string) string {
	// A copy of reflect.StructTag.Lookup's loop, kept small.
	for tag != "" {
		i := 0
		for i < len(tag) && tag[i] == ' ' {
			i++
		}
		tag = tag[i:]
		if tag == "" {
			break
		}
		i = 0
		for i < len(tag) && tag[i] > ' ' && tag[i] != ':' && tag[i] != '"' && tag[i] != 0x7f {
			i++
		}
		if i == 0 || i+1 >= len(tag) || tag[i] != ':' || tag[i+1] != '"' {
			break
		}
		name := string(tag[:i])
		tag = tag[i+1:]
		i = 1
		for i < len(tag) && tag[i] != '"' {
			if tag[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(tag) {
			break
		}
		qvalue := string(tag[:i+1])
		tag = tag[i+1:]
		if key == name {
			return strings.Trim(qvalue, `"`)
		}
	}
	return ""
}

// hasMethod reports whether t or *t has a method of this name.
func hasMethod(t types.Type, name string) bool {
	if _, ok := t.(*types.Pointer); !ok {
		if _, isIface := t.Underlying().(*types.Interface); !isIface {
			t = types.NewPointer(t)
		}
	}
	obj, _, _ := types.LookupFieldOrMethod(t, true, nil, name)
	_, ok := obj.(*types.Func)
	return ok
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

// snakeCase converts a Go name to a step slug: Extract -> extract,
// LoadRows -> load_rows, HTTPFetch -> http_fetch.
func snakeCase(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 {
				prev := rs[i-1]
				nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
				if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
					b.WriteByte('_')
				}
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// exportName converts a slug to an exported Go name: etl -> Etl,
// etl_v2 -> EtlV2.
func exportName(slug string) string {
	var b strings.Builder
	for _, part := range strings.Split(slug, "_") {
		if part == "" {
			continue
		}
		r, size := utf8.DecodeRuneInString(part)
		b.WriteRune(unicode.ToUpper(r))
		b.WriteString(part[size:])
	}
	if b.Len() == 0 {
		return "X"
	}
	return b.String()
}
