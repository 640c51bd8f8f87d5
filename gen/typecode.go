package gen

import (
	"fmt"
	"go/types"
	"strconv"
	"strings"

	"github.com/dave/jennifer/jen"
)

// typeCode renders a go/types type as jennifer code, qualifying named types
// of other packages so that jennifer adds (and, when needed, aliases) their
// imports. Types of pkg itself are written unqualified.
func typeCode(t types.Type, pkg *types.Package) jen.Code {
	switch t := t.(type) {
	case *types.Alias:
		return namedCode(t.Obj(), t.TypeArgs(), pkg)
	case *types.Named:
		return namedCode(t.Obj(), t.TypeArgs(), pkg)
	case *types.Basic:
		if t.Kind() == types.UnsafePointer {
			return jen.Qual("unsafe", "Pointer")
		}
		return jen.Id(t.Name())
	case *types.Pointer:
		return jen.Op("*").Add(typeCode(t.Elem(), pkg))
	case *types.Slice:
		return jen.Index().Add(typeCode(t.Elem(), pkg))
	case *types.Array:
		return jen.Index(jen.Lit(int(t.Len()))).Add(typeCode(t.Elem(), pkg))
	case *types.Map:
		return jen.Map(typeCode(t.Key(), pkg)).Add(typeCode(t.Elem(), pkg))
	case *types.Chan:
		switch t.Dir() {
		case types.SendOnly:
			return jen.Chan().Op("<-").Add(typeCode(t.Elem(), pkg))
		case types.RecvOnly:
			return jen.Op("<-").Chan().Add(typeCode(t.Elem(), pkg))
		}
		return jen.Chan().Add(typeCode(t.Elem(), pkg))
	case *types.Signature:
		return jen.Func().Add(signatureCode(t, pkg))
	case *types.Struct:
		fields := make([]jen.Code, 0, t.NumFields())
		for i := range t.NumFields() {
			f := t.Field(i)
			var fc *jen.Statement
			if f.Embedded() {
				fc = jen.Add(typeCode(f.Type(), pkg))
			} else {
				fc = jen.Id(f.Name()).Add(typeCode(f.Type(), pkg))
			}
			if tag := t.Tag(i); tag != "" {
				if strings.Contains(tag, "`") {
					fc = fc.Op(strconv.Quote(tag))
				} else {
					fc = fc.Op("`" + tag + "`")
				}
			}
			fields = append(fields, fc)
		}
		return jen.Struct(fields...)
	case *types.Interface:
		if t.Empty() {
			return jen.Any()
		}
		var items []jen.Code
		for i := range t.NumEmbeddeds() {
			items = append(items, typeCode(t.EmbeddedType(i), pkg))
		}
		for i := range t.NumExplicitMethods() {
			m := t.ExplicitMethod(i)
			items = append(items, jen.Id(m.Name()).Add(signatureCode(m.Type().(*types.Signature), pkg)))
		}
		return jen.Interface(items...)
	case *types.TypeParam:
		return jen.Id(t.Obj().Name())
	case *types.Union:
		var terms []jen.Code
		for i := range t.Len() {
			term := t.Term(i)
			c := typeCode(term.Type(), pkg)
			if term.Tilde() {
				c = jen.Op("~").Add(c)
			}
			terms = append(terms, c)
		}
		return jen.Union(terms...)
	}
	panic(fmt.Sprintf("qflowgen: cannot render type %T %v", t, t))
}

func namedCode(obj *types.TypeName, args *types.TypeList, pkg *types.Package) jen.Code {
	var c *jen.Statement
	switch {
	case obj.Pkg() == nil || obj.Pkg() == pkg:
		c = jen.Id(obj.Name())
	default:
		c = jen.Qual(obj.Pkg().Path(), obj.Name())
	}
	if args.Len() > 0 {
		var as []jen.Code
		for i := range args.Len() {
			as = append(as, typeCode(args.At(i), pkg))
		}
		c = c.Types(as...)
	}
	return c
}

// signatureCode renders a signature's parameter and result lists (no names).
func signatureCode(sig *types.Signature, pkg *types.Package) *jen.Statement {
	var params, results []jen.Code
	for i := range sig.Params().Len() {
		t := sig.Params().At(i).Type()
		if sig.Variadic() && i == sig.Params().Len()-1 {
			params = append(params, jen.Op("...").Add(typeCode(t.(*types.Slice).Elem(), pkg)))
			continue
		}
		params = append(params, typeCode(t, pkg))
	}
	for i := range sig.Results().Len() {
		results = append(results, typeCode(sig.Results().At(i).Type(), pkg))
	}
	s := jen.Params(params...)
	switch len(results) {
	case 0:
	case 1:
		s = s.Add(results[0])
	default:
		s = s.Params(results...)
	}
	return s
}
