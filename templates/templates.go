package templates

import (
	"bytes"
	"embed"
	"fmt"
	"slices"
	"strings"
	"text/template"
)

// FS holds the templates: flow.mmd.tmpl (a Mermaid flowchart of a flow) and
// flow.sql.tmpl (a SQL migration that registers a flow's shape).
//
//go:embed *.tmpl
var FS embed.FS

// Flow is the data every template receives.
type Flow struct {
	Slug       string // flow slug
	ShapeHash  string // flowdef.FlowDef.ShapeHash of the definition
	Definition string // the flowdef.FlowDef as JSON
	StepsJSON  string // the steps of its flowdef.Normalized form as JSON (define_flow's p_steps)
	Steps      []Step // in definition order
}

// Step is one step of a Flow.
type Step struct {
	Slug       string
	DependsOn  []string // slugs, in parameter order
	Map        bool     // runs once per element
	TakesInput bool     // receives the flow input (for a map step without dependencies: maps over it)
	Options    string   // human-readable option overrides, "" when none
	// When, Optional and AcceptsSkipped are the step's flowdef.StepDef
	// fields (When: it has a condition).
	When           bool
	Optional       bool
	AcceptsSkipped []string
}

// label is a step's node text: its slug, then what kind of step it is
// ("parse (map)", "notify (when, optional)").
func label(s Step) string {
	var notes []string
	if s.Map {
		notes = append(notes, "map")
	}
	if s.When {
		notes = append(notes, "when")
	}
	if s.Optional {
		notes = append(notes, "optional")
	}
	if len(notes) == 0 {
		return s.Slug
	}
	return s.Slug + " (" + strings.Join(notes, ", ") + ")"
}

// takesSkip reports whether s runs even when dependency dep is skipped.
func takesSkip(s Step, dep string) bool { return slices.Contains(s.AcceptsSkipped, dep) }

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"sql":       sqlString,
	"label":     label,
	"takesSkip": takesSkip,
}).ParseFS(FS, "*.tmpl"))

// Mermaid renders a Mermaid flowchart of f: one node per step (map steps
// drawn as subroutines, conditional and optional steps marked "when" and
// "optional"), an edge per dependency ("or skipped" when the step runs
// even if the dependency is skipped), and dotted edges from the flow
// input to the steps that take it.
func Mermaid(f Flow) (string, error) { return render("flow.mmd.tmpl", f) }

// SQL renders a migration that registers f's shape by calling
// qflow.define_flow, the engine's own idempotent definition function:
// applying it twice, or after a client or worker has defined the same shape,
// changes nothing.
func SQL(f Flow) (string, error) { return render("flow.sql.tmpl", f) }

func render(name string, data any) (string, error) {
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, name, data); err != nil {
		return "", fmt.Errorf("templates: %s: %w", name, err)
	}
	return b.String(), nil
}

// sqlString quotes s as a standard SQL string literal.
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
