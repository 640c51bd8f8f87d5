package gen

import (
	"fmt"
	"go/token"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file owns every Go name qflowgen derives or generates: step slugs
// from function names, exported names from slugs, the package-level names
// emitted per flow and per step, the fields of the generated structs, and
// the check that none of them clashes with a declaration of the package.

// flowNames are the package-level names generated for a flow.
func flowNames(f *flowModel) []string {
	g := f.GoName
	return []string{g + "Flow", g + "ShapeHash", g + "Output", g + "Run", "Register" + g, "Start" + g, "Start" + g + "Tx", "Run" + g, "Run" + g + "Local", "qflow" + g + "Handlers",
		g + "RunByID", g + "RunView", g + "RunSteps", "Get" + g + "Run", "Resume" + g}
}

// guardName is the type whose declaration breaks the build when a step's
// signature drifts.
func guardName(s *stepModel) string { return "_qflowRerunGoGenerate_" + s.goName() }

// inputStructName is the type a step's task input decodes into, when the
// step needs one (see stepModel.InputFields).
func inputStructName(s *stepModel) string { return "qflow" + exportName(s.goName()) + "Input" }

// whenFuncName is the function that evaluates a conditional step's when=
// function on its task input.
// signalFuncName names the generated function that sends signal name to a
// run of f: Signal<Flow><Name>.
func signalFuncName(f *flowModel, name string) string { return "Signal" + f.GoName + exportName(name) }

func whenFuncName(s *stepModel) string { return "qflow" + exportName(s.goName()) + "When" }

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
		if s.InputFields != nil {
			claim(inputStructName(s), "step "+s.goName(), s.Decl.Name.Pos())
		}
		if s.When != nil {
			claim(whenFuncName(s), "step "+s.goName(), s.Decl.Name.Pos())
		}
	}
}

// fieldNamer hands out exported, distinct field names for JSON keys (slugs)
// within one generated struct: etl_v2 -> EtlV2, and EtlV22 when EtlV2 is
// taken.
type fieldNamer map[string]bool

func (used fieldNamer) name(slug string) string {
	name := exportName(slug)
	for i := 2; used[name]; i++ {
		name = fmt.Sprintf("%s%d", exportName(slug), i)
	}
	used[name] = true
	return name
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
