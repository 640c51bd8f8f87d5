package gen

import (
	"fmt"
	"go/types"
	"strings"
)

// This file checks steps declared with subflow=CHILD: the step's one data
// parameter is the child flow's input, and its result the child's output,
// <Child>Output or a struct with the same JSON fields. Such a step's
// function is a typed declaration: the generated handler is
// runtime.Subflow, which runs the child and never calls it.

// subflowSignatures checks the parameters and the presence of a result of
// each subflow step. It runs once skippability is known.
func (c *checker) subflowSignatures(m *pkgModel) {
	for _, s := range m.Steps {
		if s.Child == nil || s.Flow == nil {
			continue
		}
		if path := subflowPath(s.Child, s.Flow); path != nil {
			names := []string{s.Flow.Name}
			for _, f := range path {
				names = append(names, f.Name)
			}
			c.errorf(s.SubflowPos, "step %s of flow %s runs flow %s, which runs flow %s again (%s): every run would start another without end",
				s.goName(), s.Flow.Name, s.Child.Name, s.Flow.Name, strings.Join(names, " -> "))
			continue
		}
		c.subflowSignature(s)
	}
}

// subflowPath returns the flows from "from" to "to" by subflow steps,
// both included, or nil when to cannot be reached.
func subflowPath(from, to *flowModel) []*flowModel {
	prev := map[*flowModel]*flowModel{from: nil}
	queue := []*flowModel{from}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if f == to {
			var path []*flowModel
			for ; f != nil; f = prev[f] {
				path = append([]*flowModel{f}, path...)
			}
			return path
		}
		for _, s := range f.Steps {
			if s.Child == nil {
				continue
			}
			if _, seen := prev[s.Child]; !seen {
				prev[s.Child] = f
				queue = append(queue, s.Child)
			}
		}
	}
	return nil
}

func (c *checker) subflowSignature(s *stepModel) {
	name, child := s.goName(), s.Child
	for _, d := range s.Deps {
		if d.Step == nil || d.Step.BadResults {
			return // reported
		}
	}
	if s.Wait != "" {
		c.errorf(s.WaitPos, "subflow step %s waits for signal %q; a subflow step's one input is its child's: put wait= on a step it depends on, or on a step of flow %s", name, s.Wait, child.Name)
		return
	}
	if !s.BadResults && s.Out == nil {
		c.errorf(s.Decl.Name.Pos(), "subflow step %s returns only error; want (%sOutput, error), the output of flow %s", name, child.GoName, child.Name)
	}
	if len(s.Params) == 0 || !isContext(s.Params[0].Type) {
		return // reported by signature
	}
	if s.Map {
		if s.Elem == nil || len(s.Params) != 2 {
			return // reported by mapSignature
		}
	} else {
		if len(s.Deps) > 1 {
			c.errorf(s.DepsPos, "subflow step %s has %d dependencies; the input of its child flow %s is its one parameter: the flow input (with no dependency) or its one dependency's output", name, len(s.Deps), child.Name)
			return
		}
		if len(s.Params) != 2 {
			c.errorf(s.Decl.Name.Pos(), "subflow step %s has %d parameters; want 2: ctx context.Context, then the input of flow %s, %s (the flow input, or its one dependency's output)",
				name, len(s.Params), child.Name, typeString(child.Input.Type(), c.pkg.Types))
			return
		}
		if len(s.Deps) == 1 {
			d := s.Deps[0]
			if d.Param != 1 {
				c.errorf(s.Params[1].TypePos, "subflow step %s takes the input of flow %s, but it depends on %s, whose output would be its child's input, and %s returns only error: drop the dependency or take its output", name, s.Flow.Name, d.Name, d.Name)
				return
			}
			if d.AbsentOK && d.Step.Skippable {
				c.errorf(s.Params[1].TypePos, "subflow step %s takes the skip of %s (%s); a child run needs an input: take %s", name, d.Name, d.Step.SkipWhy, typeString(d.Step.outputSeen(), c.pkg.Types))
				return
			}
		}
	}
	p := s.Params[1]
	if !types.Identical(p.Type, child.Input.Type()) {
		d := c.errorf(p.TypePos, "parameter %s of subflow step %s has type %s, but its child flow %s takes %s", paramName(p, 1), name, typeString(p.Type, c.pkg.Types), child.Name, typeString(child.Input.Type(), c.pkg.Types))
		c.note(d, child.Input.Pos(), "flow %s input type %s declared here", child.Name, child.Input.Name())
	}
}

// subflowOutputs checks that a subflow step that does not return the
// child's generated <Child>Output returns a struct with the same JSON
// fields. It runs after layout, which sets the child's OutputFields.
func (c *checker) subflowOutputs(m *pkgModel) {
	for _, s := range m.Steps {
		if s.Child == nil || s.Flow == nil || s.Out == nil || s.Out == s.Child.standIn || s.Wait != "" {
			continue
		}
		child := s.Child
		if sameJSONFields(s.Out, child.OutputFields) {
			continue
		}
		var want []string
		for _, f := range child.OutputFields {
			want = append(want, fmt.Sprintf("%q %s", f.Key, typeString(f.Type, c.pkg.Types)))
		}
		d := c.errorf(s.outPos(), "subflow step %s returns %s, but its child flow %s outputs {%s}: return %sOutput, which qflowgen generates, or a struct with these JSON fields",
			s.goName(), typeString(s.Out, c.pkg.Types), child.Name, strings.Join(want, ", "), child.GoName)
		c.note(d, child.NamePos, "flow %s declared here", child.Name)
	}
}

// sameJSONFields reports whether t is a struct whose encoding/json fields
// are exactly fields: the same keys with identical types. Embedded fields
// are not followed: such a struct does not match.
func sameJSONFields(t types.Type, fields []field) bool {
	st, ok := t.Underlying().(*types.Struct)
	if !ok {
		return false
	}
	want := map[string]types.Type{}
	for _, f := range fields {
		want[f.Key] = f.Type
	}
	seen := 0
	for i := range st.NumFields() {
		f := st.Field(i)
		key := jsonName(st.Tag(i))
		switch {
		case key == "-":
			continue
		case f.Embedded():
			return false
		case !f.Exported():
			continue
		}
		if key == "" {
			key = f.Name()
		}
		wt, ok := want[key]
		if !ok || !types.Identical(wt, f.Type()) {
			return false
		}
		seen++
	}
	return seen == len(want)
}
