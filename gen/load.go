package gen

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/tools/go/packages"
)

// GeneratedFile is the name of the Go file qflowgen writes in each package.
const GeneratedFile = "qflow_gen.go"

// loadMode is what qflowgen needs from go/packages: names, file lists,
// syntax with comments, and types for the packages named by the patterns
// (dependencies come from export data).
const loadMode = packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes

// load loads the packages matching patterns from wd. The previously
// generated file is parsed "package clause only", so a stale or broken
// qflow_gen.go cannot stop loading; references to what it declared become
// type errors that only matter when they touch a flow or a step.
func load(ctx context.Context, wd string, env []string, patterns []string, tags string) ([]*packages.Package, []Diagnostic) {
	if env == nil {
		env = os.Environ()
	}
	cfg := &packages.Config{
		Context: ctx,
		Mode:    loadMode,
		Dir:     wd,
		Env:     env,
		ParseFile: func(fset *token.FileSet, filename string, src []byte) (*ast.File, error) {
			mode := parser.ParseComments | parser.SkipObjectResolution | parser.AllErrors
			if filepath.Base(filename) == GeneratedFile {
				mode = parser.PackageClauseOnly
			}
			return parser.ParseFile(fset, filename, src, mode)
		},
	}
	if tags != "" {
		cfg.BuildFlags = []string{"-tags=" + tags}
	}
	if len(patterns) == 0 {
		patterns = []string{"."}
	}
	pkgs, err := packages.Load(cfg, patterns...)
	if err != nil {
		return nil, []Diagnostic{{Msg: "qflowgen: load packages: " + err.Error()}}
	}
	var diags []Diagnostic
	for _, p := range pkgs {
		for _, e := range p.Errors {
			if e.Kind == packages.TypeError {
				continue // judged later, only where they touch an annotation
			}
			if e.Kind == packages.ListError && strings.Contains(e.Msg, GeneratedFile) {
				continue // the compiler's view of a stale generated file
			}
			if e.Kind == packages.ListError && strings.HasPrefix(e.Msg, "# "+p.PkgPath+"\n") && hasTypeErrors(p) {
				// The compiler's view of the package's own type errors, such
				// as uses of what qflow_gen.go declares before its first
				// generation (a subflow step's <Child>Output): the same
				// errors come as type errors, judged later.
				continue
			}
			diags = append(diags, packageError(e))
		}
	}
	return pkgs, diags
}

// hasTypeErrors reports whether p has a type error.
func hasTypeErrors(p *packages.Package) bool {
	for _, e := range p.Errors {
		if e.Kind == packages.TypeError {
			return true
		}
	}
	return false
}

// packageError turns a go/packages error into a diagnostic.
func packageError(e packages.Error) Diagnostic {
	d := Diagnostic{Msg: e.Msg}
	if e.Pos == "" || e.Pos == "-" {
		return d
	}
	// Pos is file:line:col, file:line or file.
	p := token.Position{Filename: e.Pos}
	var nums []int
	for len(nums) < 2 {
		i := strings.LastIndexByte(p.Filename, ':')
		if i < 0 {
			break
		}
		n, err := strconv.ParseUint(p.Filename[i+1:], 10, 31)
		if err != nil {
			break
		}
		nums = append([]int{int(n)}, nums...)
		p.Filename = p.Filename[:i]
	}
	switch len(nums) {
	case 2:
		p.Line, p.Column = nums[0], nums[1]
	case 1:
		p.Line = nums[0]
	}
	d.Pos = p
	return d
}

// pkgDir returns the directory of a loaded package.
func pkgDir(p *packages.Package) string {
	if p.Dir != "" {
		return p.Dir
	}
	for _, f := range append(p.GoFiles, p.CompiledGoFiles...) {
		return filepath.Dir(f)
	}
	return ""
}
