// Package flowview turns stored flow definitions and run values into what
// the operator's tools show: effective step options, a Mermaid diagram, a
// layered layout for drawing the DAG, and JSON values cut to a readable
// size. It is shared by cmd/qflow and the dashboard.
package flowview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quantumflow/qflow/flowdef"
	"github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/templates"
)

// Options are a step's options after inheriting from its flow and the
// engine's defaults, as the engine applies them: MaxAttempts counts the
// first try (retries + 1).
type Options struct {
	MaxAttempts int           `json:"max_attempts"`
	BaseDelay   time.Duration `json:"base_delay"`
	Timeout     time.Duration `json:"timeout"`
	StartDelay  time.Duration `json:"start_delay"`
}

// Effective returns the options the engine applies to step s of def
// (flowdef.FlowDef.Effective, with retries as attempts in all).
func Effective(def *runtime.FlowDef, s runtime.StepDef) Options {
	o := def.Effective(s)
	return Options{MaxAttempts: flowdef.Attempts(o.Retries), BaseDelay: o.BaseDelay, Timeout: o.Timeout, StartDelay: o.StartDelay}
}

// Overrides renders the options a step sets itself, as annotation options
// ("retries=5 timeout=30s"); "" when it sets none.
func Overrides(s runtime.StepDef) string {
	var parts []string
	switch r := s.Options.Retries; {
	case r == runtime.NoRetries:
		parts = append(parts, "retries=0")
	case r != 0:
		parts = append(parts, fmt.Sprintf("retries=%d", r))
	}
	if s.Options.BaseDelay != 0 {
		parts = append(parts, "backoff="+s.Options.BaseDelay.String())
	}
	if s.Options.Timeout != 0 {
		parts = append(parts, "timeout="+s.Options.Timeout.String())
	}
	if s.Options.StartDelay != 0 {
		parts = append(parts, "delay="+s.Options.StartDelay.String())
	}
	return strings.Join(parts, " ")
}

// Kind names what kind of step s is: "single" or "map", followed by
// ", when" for a conditional step and ", optional" for an optional one.
func Kind(s runtime.StepDef) string {
	k := "single"
	if s.Map {
		k = "map"
	}
	if s.When != nil {
		k += ", when"
	}
	if s.Optional {
		k += ", optional"
	}
	return k
}

// DependsOn lists s's dependencies, comma-separated, those whose skip it
// takes followed by "?" ("classify,quarantine?"); "-" for none.
func DependsOn(s runtime.StepDef) string {
	if len(s.DependsOn) == 0 {
		return "-"
	}
	parts := make([]string, len(s.DependsOn))
	for i, d := range s.DependsOn {
		parts[i] = d
		if slices.Contains(s.AcceptsSkipped, d) {
			parts[i] += "?"
		}
	}
	return strings.Join(parts, ",")
}

// SkipReason says why step sd of a run was skipped, given the run's step
// states by slug: "its condition was false", "skipped with <dependency>",
// or, for an optional step that failed, "optional step failed" (its error
// is on the step). "" when the step is not skipped.
func SkipReason(sd runtime.StepDef, states map[string]runtime.StepState) string {
	st := states[sd.Slug]
	if st.Status != runtime.StatusSkipped {
		return ""
	}
	if st.Error != "" {
		return "optional step failed"
	}
	for _, t := range st.Tasks {
		if t.Status == runtime.StatusSkipped {
			return "its condition was false"
		}
	}
	for _, d := range sd.DependsOn {
		if states[d].Status == runtime.StatusSkipped && !slices.Contains(sd.AcceptsSkipped, d) {
			return "skipped with " + d
		}
	}
	return "skipped"
}

// Mermaid renders def as a Mermaid flowchart, the same diagram qflowgen
// writes with -mermaid.
func Mermaid(def *runtime.FlowDef) (string, error) {
	f := templates.Flow{Slug: def.Slug, ShapeHash: def.ShapeHash()}
	for _, s := range def.Steps {
		f.Steps = append(f.Steps, templates.Step{Slug: s.Slug, DependsOn: s.DependsOn, Map: s.Map, TakesInput: s.TakesInput, Options: Overrides(s),
			When: s.When != nil, Optional: s.Optional, AcceptsSkipped: s.AcceptsSkipped})
	}
	return templates.Mermaid(f)
}

// Layers assigns each step of def to a layer: 0 for steps with no
// dependency, else one more than the deepest dependency. It returns the
// layers, each holding step slugs in definition order. Steps whose
// dependencies are unknown or cyclic (a definition Validate rejects) are put
// in the last layer rather than lost.
func Layers(def *runtime.FlowDef) [][]string {
	byName := map[string]runtime.StepDef{}
	for _, s := range def.Steps {
		byName[s.Slug] = s
	}
	depth := map[string]int{}
	visiting := map[string]bool{}
	var walk func(string) int
	walk = func(slug string) int {
		if d, ok := depth[slug]; ok {
			return d
		}
		s, ok := byName[slug]
		if !ok || visiting[slug] {
			return len(def.Steps)
		}
		visiting[slug] = true
		d := 0
		for _, dep := range s.DependsOn {
			d = max(d, walk(dep)+1)
		}
		visiting[slug] = false
		d = min(d, len(def.Steps))
		depth[slug] = d
		return d
	}
	maxD := 0
	for _, s := range def.Steps {
		maxD = max(maxD, walk(s.Slug))
	}
	layers := make([][]string, maxD+1)
	for _, s := range def.Steps {
		layers[depth[s.Slug]] = append(layers[depth[s.Slug]], s.Slug)
	}
	out := layers[:0]
	for _, l := range layers {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// Cut renders a JSON value compactly on one line, cut to at most max
// bytes (on a rune boundary) with a note of the full size: a value an
// operator can read in a terminal or a table cell. Invalid JSON is shown as
// text. max <= 0 means no cut.
func Cut(raw json.RawMessage, max int) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	s := string(raw)
	if err := json.Compact(&b, raw); err == nil {
		s = b.String()
	}
	return CutText(s, max)
}

// CutText cuts s to at most max bytes on a rune boundary, noting the full
// size, and replaces newlines with spaces. max <= 0 means no cut.
func CutText(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if max <= 0 || len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s… (%s)", s[:n], Bytes(len(s)))
}

// Bytes formats a size: "512 B", "4.0 KiB", "3.2 MiB".
func Bytes(n int) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

// Duration formats d for people: "850ms", "1.2s", "3m05s", "2h10m".
func Duration(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// Span is the duration between two optional times, taking now for a
// missing end; ok is false when start is nil.
func Span(start, end *time.Time, now time.Time) (time.Duration, bool) {
	if start == nil {
		return 0, false
	}
	if end == nil {
		return now.Sub(*start), true
	}
	return end.Sub(*start), true
}
