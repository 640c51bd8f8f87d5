package flowview

import (
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
