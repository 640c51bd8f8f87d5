package templates

import (
	"bytes"
	"embed"
	"fmt"
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
}

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"sql": sqlString,
}).ParseFS(FS, "*.tmpl"))

// Mermaid renders a Mermaid flowchart of f: one node per step (map steps
// drawn as subroutines), an edge per dependency, and dotted edges from the
// flow input to the steps that take it.
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
