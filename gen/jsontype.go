package gen

import (
	"fmt"
	"go/token"
	"go/types"
	"reflect"
	"strings"
)

// This file checks that the types which travel between steps survive
// encoding/json.

// jsonCheck reports t, used at pos as what, when encoding/json cannot
// round-trip it; else it reports each unexported field of the package's
// struct types in t, whose value would be silently lost.
func (c *checker) jsonCheck(pos token.Pos, what string, t types.Type) {
	if msg := jsonProblem(t, c.pkg.Types, map[types.Type]bool{}); msg != "" {
		c.errorf(pos, "%s cannot be JSON-encoded: %s", what, msg)
		return
	}
	c.lostFields(pos, what, t, map[types.Type]bool{})
}

// lostFields reports, once each, the unexported fields of struct types
// declared in the package being generated that encoding/json would leave
// out of t: their values would vanish between steps. A field tagged
// `json:"-"` is left out on purpose and not reported; types with their own
// MarshalJSON or MarshalText are trusted. Fields of other packages' types
// are not reported (they cannot be changed here).
func (c *checker) lostFields(pos token.Pos, what string, t types.Type, seen map[types.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	if hasMethod(t, "MarshalJSON") || hasMethod(t, "MarshalText") {
		return
	}
	switch u := t.Underlying().(type) {
	case *types.Pointer:
		c.lostFields(pos, what, u.Elem(), seen)
	case *types.Slice:
		c.lostFields(pos, what, u.Elem(), seen)
	case *types.Array:
		c.lostFields(pos, what, u.Elem(), seen)
	case *types.Map:
		c.lostFields(pos, what, u.Elem(), seen)
	case *types.Struct:
		for i := range u.NumFields() {
			f := u.Field(i)
			switch {
			case jsonName(u.Tag(i)) == "-":
			case f.Exported() || f.Embedded():
				c.lostFields(pos, what, f.Type(), seen)
			case f.Pkg() == c.pkg.Types && !c.lost[f]:
				if c.lost == nil {
					c.lost = map[*types.Var]bool{}
				}
				c.lost[f] = true
				d := c.errorf(f.Pos(), "field %s of %s is unexported, so encoding/json leaves it out and its value is lost between steps: export it, or tag it `json:\"-\"` to leave it out on purpose",
					f.Name(), typeString(t, c.pkg.Types))
				c.note(d, pos, "%s travels as JSON here", what)
			}
		}
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
			if jsonName(u.Tag(i)) == "-" {
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

// jsonName is the name part of a struct tag's json key ("-" leaves the
// field out).
func jsonName(tag string) string {
	name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
	return name
}
