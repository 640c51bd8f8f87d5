package gen

import (
	"bytes"
	"go/ast"
	"go/token"
	"os"
	"path/filepath"

	"github.com/quantumflow/qflow/flowdef"
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
					if fixed := nearMiss(cm.Text); fixed != "" {
						c.errorf(cm.Slash, "comment %q is not a directive, so it does nothing: a directive starts with exactly //qflow: (no space, lowercase); did you mean %s?", cm.Text, fixed)
					}
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

// retriesMeaning reports each retries= option of a package whose
// qflow_gen.go was written by a qflowgen that read retries=N as N attempts
// in all (it wrote StepOptions{MaxAttempts: N}). retries=N now counts the
// tries after the first, so regenerating would quietly add an attempt;
// the user chooses instead, with attempts=N (the old meaning) or
// attempts=N+1. A package generated since, or never, is not affected.
func (c *checker) retriesMeaning(anns []*annotation, dir string) {
	old, err := os.ReadFile(filepath.Join(dir, GeneratedFile))
	if err != nil || !bytes.Contains(old, []byte("StepOptions{MaxAttempts: ")) {
		return
	}
	for _, a := range anns {
		o := a.d.Options
		if o.RetriesOff < 0 || o.Retries == flowdef.NoRetries {
			continue // retries=0 was refused before: it has no old meaning
		}
		n := o.Retries
		c.errorf(a.at(o.RetriesOff), "retries=%d now means %d retries after the first attempt (%d attempts in all); %s was generated when it meant %d attempts in all: write attempts=%d to keep that, or attempts=%d to take the new meaning",
			n, n, n+1, GeneratedFile, n, n, n+1)
	}
}
