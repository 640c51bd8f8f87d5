package gen

import (
	"fmt"
	"go/types"
	"reflect"
	"strings"

	"github.com/quantumflow/qflow/flowdef"
)

// This file resolves a step's key= (the key of its limits across workers)
// into the JSON path the engine reads in each task's input
// (flowdef.StepOptions.Key).

// keyRoot is a parameter a key may start from: the flow input, a
// dependency's output or a map step's element, with the path of its value
// in the task's JSON input.
type keyRoot struct {
	param paramInfo
	index int
	path  string // ".run", ".<dep slug>", or "." for a map step's element
}

// keyRoots lists the parameters of s a key may name, in parameter order.
func (s *stepModel) keyRoots() []keyRoot {
	if s.Map {
		if s.Elem != nil && len(s.Params) == 2 {
			return []keyRoot{{s.Params[1], 1, "."}}
		}
		return nil
	}
	var out []keyRoot
	if s.TakesInput && len(s.Params) > 1 {
		out = append(out, keyRoot{s.Params[1], 1, "." + flowdef.InputKey})
	}
	for _, d := range s.Deps {
		if d.Param > 0 && d.Param < len(s.Params) && d.Step != nil {
			out = append(out, keyRoot{s.Params[d.Param], d.Param, "." + d.Step.Slug})
		}
	}
	return out
}

// limitKey resolves s.KeyName into s.Options.Key. The name is a field of
// the step's first parameter after ctx (key=CustomerID), a path of fields
// (key=Customer.ID), or starts with a parameter's name (key=order.Customer,
// key=id for a map step over strings). Each field must be one
// encoding/json writes, the last a string; methods cannot be keys, as the
// engine reads keys from the task's JSON input when it queues the task.
func (c *checker) limitKey(s *stepModel) {
	if s.KeyName == "" || s.Flow == nil || s.BadResults {
		return
	}
	roots := s.keyRoots()
	if len(roots) == 0 {
		c.errorf(s.KeyPos, "key=%s: step %s takes no input to key its limits by (only ctx)", s.KeyName, s.goName())
		return
	}
	segs := strings.Split(s.KeyName, ".")
	root := roots[0]
	named := false
	for _, r := range roots {
		if r.param.Name == segs[0] && r.param.Name != "_" {
			root, named, segs = r, true, segs[1:]
			break
		}
	}
	path := []string{}
	if root.path != "." {
		path = append(path, root.path[1:])
	}
	t := root.param.Type
	for _, seg := range segs {
		var step []string
		var msg string
		t, step, msg = c.keyField(t, seg)
		if msg != "" {
			c.errorf(s.KeyPos, "key=%s: %s", s.KeyName, msg)
			return
		}
		path = append(path, step...)
	}
	if !isStringish(t) {
		d := c.errorf(s.KeyPos, "key=%s names a value of type %s; a key must be a string", s.KeyName, typeString(t, c.pkg.Types))
		if !named && len(roots) > 1 {
			c.note(d, root.param.TypePos, "key=%s is looked up in the step's first input, %s; start it with a parameter's name to look elsewhere", s.KeyName, paramName(root.param, root.index))
		}
		return
	}
	key := "." + strings.Join(path, ".")
	if _, ok := flowdef.KeyPath(key); !ok {
		c.errorf(s.KeyPos, "key=%s: the JSON path %s has an empty name", s.KeyName, key)
		return
	}
	s.Options.Key = key
}

// keyField looks up field name in t (a struct or a pointer to one) as
// encoding/json sees it, and returns the field's type and the JSON names
// leading to it (more than one through an embedded struct with a JSON
// name), or a message saying why it cannot.
func (c *checker) keyField(t types.Type, name string) (types.Type, []string, string) {
	base := t
	if p, ok := base.Underlying().(*types.Pointer); ok {
		base = p.Elem()
	}
	if hasMethod(base, "MarshalJSON") || hasMethod(base, "MarshalText") {
		return t, nil, fmt.Sprintf("%s encodes itself as JSON (it has a MarshalJSON or MarshalText method), so the engine cannot find %s in it", typeString(base, c.pkg.Types), name)
	}
	st, ok := base.Underlying().(*types.Struct)
	if !ok {
		return t, nil, fmt.Sprintf("%s is not a struct, so it has no field %s", typeString(base, c.pkg.Types), name)
	}
	obj, index, _ := types.LookupFieldOrMethod(base, true, c.pkg.Types, name)
	switch obj.(type) {
	case nil:
		msg := fmt.Sprintf("%s has no field %s", typeString(base, c.pkg.Types), name)
		var names []string
		for i := range st.NumFields() {
			if st.Field(i).Exported() {
				names = append(names, st.Field(i).Name())
			}
		}
		if alt := suggest(name, names); alt != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", alt)
		}
		return t, nil, msg
	case *types.Func:
		return t, nil, fmt.Sprintf("%s is a method of %s, and key= names a field: the engine reads keys from the task's JSON input, where methods are not", name, typeString(base, c.pkg.Types))
	}
	// Follow the path of embedded fields to the field, as encoding/json
	// does: an embedded struct without a JSON name is flattened.
	var steps []string
	cur := base
	for k, i := range index {
		if p, ok := cur.Underlying().(*types.Pointer); ok {
			cur = p.Elem()
		}
		cs := cur.Underlying().(*types.Struct)
		f, tag := cs.Field(i), cs.Tag(i)
		jn := jsonName(tag)
		last := k == len(index)-1
		switch {
		case jn == "-" && strings.Contains(reflect.StructTag(tag).Get("json"), ","):
			jn = "-" // json:"-," names the field "-"
		case jn == "-":
			return t, nil, fmt.Sprintf("field %s is tagged json:\"-\", so it is not in the JSON the engine reads", f.Name())
		}
		embeddedStruct := false
		if f.Embedded() && jn == "" {
			e := f.Type()
			if p, ok := e.Underlying().(*types.Pointer); ok {
				e = p.Elem()
			}
			_, embeddedStruct = e.Underlying().(*types.Struct)
		}
		switch {
		case embeddedStruct && !last:
			// Flattened: its fields are the outer struct's.
		case !f.Exported() && !(f.Embedded() && !last):
			return t, nil, fmt.Sprintf("field %s is unexported, so it is not in the JSON the engine reads", f.Name())
		default:
			if jn == "" {
				jn = f.Name()
			}
			if strings.Contains(jn, ".") || jn == "" {
				return t, nil, fmt.Sprintf("field %s has the JSON name %q, which a key path cannot name (it holds a dot)", f.Name(), jn)
			}
			steps = append(steps, jn)
		}
		cur = f.Type()
	}
	return cur, steps, ""
}

// isStringish reports whether t (or what t points to) encodes as a JSON
// string: a string kind without its own JSON encoding.
func isStringish(t types.Type) bool {
	if p, ok := t.Underlying().(*types.Pointer); ok {
		t = p.Elem()
	}
	if hasMethod(t, "MarshalJSON") || hasMethod(t, "MarshalText") {
		return false
	}
	b, ok := t.Underlying().(*types.Basic)
	return ok && b.Info()&types.IsString != 0
}
