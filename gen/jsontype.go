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
