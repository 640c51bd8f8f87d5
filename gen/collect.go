package gen

import (
	"go/ast"
	"go/token"
	"path/filepath"
)

// This file is the first phase of the check: it finds the //qflow:
// directives of a package and attaches each to its declaration.

// annotation is a directive attached to a declaration.
type annotation struct {
	d    *directive
	pos  token.Pos // Comment.Slash
	spec *ast.TypeSpec
	fn   *ast.FuncDecl
}

func (a *annotation) at(off int) token.Pos { return a.pos + token.Pos(off) }

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
