package gen

import (
	"fmt"
	"go/ast"
	"go/types"
	"strings"

	"github.com/quantumflow/qflow/flowdef"
)

// This file builds the model's flows and steps from the collected
// annotations and resolves depends= names into edges of the graph.

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
		if !flowdef.ValidSlug(a.d.Name.Text) {
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
			Options: flowdef.StepOptions{
				Retries:     a.d.Options.Retries,
				BaseDelay:   a.d.Options.Backoff,
				Timeout:     a.d.Options.Timeout,
				Idempotent:  a.d.Options.Idempotent,
				Concurrency: a.d.Options.Concurrency,
			},
			Cron:   a.d.Cron.Text,
			TZ:     a.d.TZ.Text,
			Missed: a.d.Missed.Text,
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
			Options: flowdef.StepOptions{
				Retries:     a.d.Options.Retries,
				BaseDelay:   a.d.Options.Backoff,
				Timeout:     a.d.Options.Timeout,
				StartDelay:  a.d.Options.Delay,
				Priority:    a.d.Options.Priority,
				Idempotent:  a.d.Options.Idempotent,
				Concurrency: a.d.Options.Concurrency,
				Rate:        a.d.Options.Rate,
			},
			KeyName: a.d.Options.Key.Text,
		}
		if s.KeyName != "" {
			s.KeyPos = a.at(a.d.Options.Key.Off)
		}
		if a.d.Map {
			s.MapPos = a.at(a.d.MapOff)
		}
		if a.d.WhenOff >= 0 {
			s.WhenName, s.WhenPos = a.d.When.Text, a.at(a.d.When.Off)
		}
		if a.d.Optional {
			s.Optional, s.OptionalPos = true, a.at(a.d.OptionalOff)
		}
		if a.d.Wait.Text != "" {
			s.Wait, s.WaitPos, s.WaitTimeout = a.d.Wait.Text, a.at(a.d.Wait.Off), a.d.WaitTimeout
		}
		if a.d.Subflow.Text != "" {
			s.Subflow, s.SubflowPos = a.d.Subflow.Text, a.at(a.d.Subflow.Off)
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
			if !flowdef.ValidSlug(s.Slug) {
				c.errorf(fn.Name.Pos(), "step name %q derived from %s is not a valid step name: set name=", s.Slug, fn.Name.Name)
			}
		}
		if s.Slug == flowdef.InputKey {
			c.errorf(s.SlugPos, "step name %q is reserved for the flow input: set name= on %s", flowdef.InputKey, fn.Name.Name)
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
		if s.Subflow != "" {
			c.resolveSubflow(s, byName, flowNames)
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
				if alt := c.depSuggestion(m, s, dep.Name, bySlug); alt != "" {
					msg += alt
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

// depSuggestion is the hint for an unknown depends= name: the step whose
// slug it is (depends= takes Go names), else the step of s's flow (of the
// package when s has none) whose Go name is a likely typo of it, else "".
func (c *checker) depSuggestion(m *pkgModel, s *stepModel, name string, bySlug map[string]*stepModel) string {
	if s.Flow != nil {
		if alt := bySlug[s.Flow.Name+"\x00"+name]; alt != nil {
			return fmt.Sprintf(" (depends= takes Go function names: did you mean %s?)", alt.goName())
		}
	}
	var names []string
	for _, o := range m.Steps {
		if o != s && (s.Flow == nil || o.Flow == s.Flow) {
			names = append(names, o.goName())
		}
	}
	if alt := suggest(name, names); alt != "" {
		return fmt.Sprintf(" (did you mean %s?)", alt)
	}
	return ""
}

// cycles reports every dependency cycle of f once, hop by hop, each
// hop at its depends= entry. The search is flowdef.Cycles, the one the
// runtime validates with.
func (c *checker) cycles(f *flowModel) {
	index := make(map[*stepModel]int, len(f.Steps))
	for i, s := range f.Steps {
		index[s] = i
	}
	found := flowdef.Cycles(len(f.Steps), func(i int) []int {
		var out []int
		for _, dep := range f.Steps[i].Deps {
			if dep.Step != nil {
				out = append(out, index[dep.Step])
			}
		}
		return out
	})
	for _, cyc := range found {
		steps := make([]*stepModel, len(cyc))
		for k, i := range cyc {
			steps[k] = f.Steps[i]
		}
		c.reportCycle(steps)
	}
}

// reportCycle reports the cycle steps[0] -> ... -> steps[0], rotated to
// start at its first step in source order, so the report is stable.
func (c *checker) reportCycle(steps []*stepModel) {
	n := len(steps)
	start := 0
	for i, s := range steps {
		if s.Decl.Pos() < steps[start].Decl.Pos() {
			start = i
		}
	}
	// edge returns the depends= entry by which steps[i] depends on the next.
	edge := func(i int) *depModel {
		next := steps[(i+1)%n]
		for _, dep := range steps[i].Deps {
			if dep.Step == next {
				return dep
			}
		}
		panic("qflowgen: a cycle hop without its dependency") // flowdef.Cycles follows Deps
	}
	names := make([]string, 0, n+1)
	for i := range n {
		names = append(names, steps[(start+i)%n].goName())
	}
	names = append(names, steps[start].goName())
	d := c.errorf(edge(start).Pos, "dependency cycle: %s", strings.Join(names, " -> "))
	for i := range n {
		s, e := steps[(start+i)%n], edge((start+i)%n)
		c.note(d, e.Pos, "%s depends on %s", s.goName(), e.Name)
	}
}

// resolveSubflow resolves the child flow of a step declared with
// subflow=: a flow of this package other than the step's own.
func (c *checker) resolveSubflow(s *stepModel, byName map[string]*flowModel, flowNames []string) {
	child := byName[s.Subflow]
	switch {
	case child == nil:
		msg := fmt.Sprintf("step %s runs unknown flow %q as a subflow: subflow= names a //qflow:flow of this package", s.goName(), s.Subflow)
		if alt := suggest(s.Subflow, flowNames); alt != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", alt)
		} else if len(flowNames) > 0 {
			msg += fmt.Sprintf(" (flows: %s)", strings.Join(flowNames, ", "))
		}
		c.errorf(s.SubflowPos, "%s", msg)
	case child == s.Flow:
		c.errorf(s.SubflowPos, "step %s of flow %s runs its own flow as a subflow: every run would start another without end", s.goName(), child.Name)
	default:
		s.Child = child
	}
}
