package gen

import (
	"cmp"
	"fmt"
	"go/token"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// A Diagnostic is one problem found while generating: a position (Filename
// absolute; zero when the problem has no place in the source), a one-line
// message, and optional notes, each with its own position, that explain it
// (the hops of a cycle, where the other side of a mismatch was declared).
type Diagnostic struct {
	Pos   token.Position
	Msg   string
	Notes []Note
}

// A Note is a continuation line of a Diagnostic.
type Note struct {
	Pos token.Position
	Msg string
}

// MaxDiagnostics is how many diagnostics Format prints before it stops with
// "too many errors", as the compiler does.
const MaxDiagnostics = 10

// Error formats d with absolute paths.
func (d Diagnostic) Error() string { return d.format("") }

func (d Diagnostic) format(wd string) string {
	var b strings.Builder
	b.WriteString(posString(d.Pos, wd))
	b.WriteString(d.Msg)
	for _, n := range d.Notes {
		b.WriteString("\n\t")
		b.WriteString(posString(n.Pos, wd))
		b.WriteString(n.Msg)
	}
	return b.String()
}

// posString renders "relpath:line:col: ", relative to wd when that is shorter.
func posString(p token.Position, wd string) string {
	if !p.IsValid() && p.Filename == "" {
		return ""
	}
	name := p.Filename
	if wd != "" && filepath.IsAbs(name) {
		if rel, err := filepath.Rel(wd, name); err == nil && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			name = rel
		}
	}
	if p.Line == 0 {
		return name + ": "
	}
	if p.Column == 0 {
		return fmt.Sprintf("%s:%d: ", name, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d: ", name, p.Line, p.Column)
}

// SortDiagnostics sorts by file, line, column and message, and drops exact
// duplicates.
func SortDiagnostics(ds []Diagnostic) []Diagnostic {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.Pos.Filename, b.Pos.Filename),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
	return slices.CompactFunc(ds, func(a, b Diagnostic) bool { return a.format("") == b.format("") })
}

// FormatDiagnostics writes ds, sorted, one per line as
// "relpath:line:col: message" with paths relative to wd and notes on
// tab-indented continuation lines. After MaxDiagnostics it writes
// "too many errors" and stops.
func FormatDiagnostics(w io.Writer, wd string, ds []Diagnostic) {
	ds = SortDiagnostics(slices.Clone(ds))
	for i, d := range ds {
		if i == MaxDiagnostics {
			fmt.Fprintln(w, "too many errors")
			return
		}
		fmt.Fprintln(w, d.format(wd))
	}
}
