package flowview

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

func TestCut(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{`{ "a": 1,
  "b": [1, 2] }`, 0, `{"a":1,"b":[1,2]}`},
		{`"ééééé"`, 4, `"é… (12 B)`},
		{`not json` + "\n" + `x`, 100, `not json x`},
		{``, 10, ``},
	} {
		if got := Cut(json.RawMessage(c.in), c.max); got != c.want {
			t.Errorf("Cut(%q, %d) = %q; want %q", c.in, c.max, got, c.want)
		}
	}
	long := strings.Repeat("x", 5000)
	if got := CutText(long, 100); len(got) > 120 || !strings.HasSuffix(got, "(4.9 KiB)") {
		t.Errorf("CutText(5000 x, 100) = %q", got)
	}
}

func TestLayersAndOptions(t *testing.T) {
	def, err := runtime.NewFlow("f").Options(runtime.StepOptions{Retries: 4}).
		Step("a", runtime.StepDef{TakesInput: true}).
		MapStep("b", "a", runtime.StepOptions{Timeout: 2 * time.Second}).
		Step("c", runtime.StepDef{DependsOn: []string{"a"}}).
		Step("d", runtime.StepDef{DependsOn: []string{"b", "c"}, Options: runtime.StepOptions{Retries: runtime.NoRetries}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	got := Layers(&def)
	if len(got) != 3 || strings.Join(got[1], ",") != "b,c" || got[2][0] != "d" {
		t.Errorf("Layers = %v", got)
	}
	o := Effective(&def, def.Steps[1])
	if o.MaxAttempts != 5 || o.Timeout != 2*time.Second || o.BaseDelay != runtime.DefaultBaseDelay {
		t.Errorf("Effective(b) = %+v", o)
	}
	if o := Effective(&def, def.Steps[3]); o.MaxAttempts != 1 {
		t.Errorf("Effective(d) = %+v", o)
	}
	if got := Overrides(def.Steps[3]); got != "retries=0" {
		t.Errorf("Overrides(d) = %q, want retries=0", got)
	}
	if got := Overrides(def.Steps[1]); got != "timeout=2s" {
		t.Errorf("Overrides(b) = %q, want timeout=2s", got)
	}
	m, err := Mermaid(&def)
	if err != nil || !strings.Contains(m, "s_a -- each --> s_b") || !strings.Contains(m, "s_c --> s_d") {
		t.Errorf("Mermaid = %q, %v", m, err)
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond: "850ms", 1200 * time.Millisecond: "1.2s",
		185 * time.Second: "3m05s", 130 * time.Minute: "2h10m",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q; want %q", d, got, want)
		}
	}
}

// TestSkips: kinds mark conditional and optional steps, dependency lists
// mark the skips a step takes, and SkipReason tells the three ways a step
// is skipped apart.
func TestSkips(t *testing.T) {
	cond := func(context.Context, json.RawMessage) (bool, error) { return false, nil }
	a := runtime.StepDef{Slug: "a", When: cond}
	b := runtime.StepDef{Slug: "b", DependsOn: []string{"a"}}
	c := runtime.StepDef{Slug: "c", Map: true, Optional: true}
	d := runtime.StepDef{Slug: "d", DependsOn: []string{"a", "c"}, AcceptsSkipped: []string{"c"}}
	for _, tc := range []struct {
		s          runtime.StepDef
		kind, deps string
	}{{a, "single, when", "-"}, {b, "single", "a"}, {c, "map, optional", "-"}, {d, "single", "a,c?"}} {
		if k, ds := Kind(tc.s), DependsOn(tc.s); k != tc.kind || ds != tc.deps {
			t.Errorf("%s: kind %q deps %q; want %q, %q", tc.s.Slug, k, ds, tc.kind, tc.deps)
		}
	}
	states := map[string]runtime.StepState{
		"a": {Step: "a", Status: runtime.StatusSkipped, Tasks: []runtime.TaskState{{Status: runtime.StatusSkipped}}},
		"b": {Step: "b", Status: runtime.StatusSkipped},
		"c": {Step: "c", Status: runtime.StatusSkipped, Error: "boom"},
		"d": {Step: "d", Status: runtime.StatusSkipped},
	}
	for s, want := range map[*runtime.StepDef]string{&a: "its condition was false", &b: "skipped with a", &c: "optional step failed", &d: "skipped with a"} {
		if got := SkipReason(*s, states); got != want {
			t.Errorf("SkipReason(%s) = %q; want %q", s.Slug, got, want)
		}
	}
	states["b"] = runtime.StepState{Step: "b", Status: runtime.StatusCompleted}
	if got := SkipReason(b, states); got != "" {
		t.Errorf("SkipReason of a completed step = %q", got)
	}
}
