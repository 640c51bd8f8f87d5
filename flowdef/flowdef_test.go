package flowdef_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quantumflow/qflow/flowdef"
)

func TestValidate(t *testing.T) {
	ok := flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "b", DependsOn: []string{"a"}}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid definition: %v", err)
	}
	many := flowdef.FlowDef{Slug: "f"}
	for i := range flowdef.MaxSteps + 1 {
		many.Steps = append(many.Steps, flowdef.StepDef{Slug: fmt.Sprintf("s%d", i)})
	}
	for _, tc := range []struct {
		name string
		def  flowdef.FlowDef
		want []string // substrings, one per reported problem
	}{
		{"bad slug", flowdef.FlowDef{Slug: "Bad", Steps: ok.Steps}, []string{`flow "Bad": slug must match ^[a-z][a-z0-9_]{0,39}$`}},
		{"slug too long", flowdef.FlowDef{Slug: strings.Repeat("a", 41), Steps: ok.Steps}, []string{"slug must match"}},
		{"no steps", flowdef.FlowDef{Slug: "f"}, []string{"no steps"}},
		{"too many", many, []string{"10001 steps; a flow may have at most 10000"}},
		{"reserved", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "run"}}}, []string{`step "run": the name is reserved for the flow input`}},
		{"duplicate", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "a"}}}, []string{`step "a" defined twice`}},
		{"self", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a", DependsOn: []string{"a"}}}}, []string{`step "a" depends on itself`}},
		{"twice", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "b", DependsOn: []string{"a", "a"}}}}, []string{`step "b" lists dependency "a" twice`}},
		{"unknown", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a", DependsOn: []string{"zz"}}}}, []string{`step "a" depends on unknown step "zz"`}},
		{"map two deps", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "b"}, {Slug: "m", Map: true, DependsOn: []string{"a", "b"}}}}, []string{`map step "m" has 2 dependencies`}},
		{"map input and dep", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "m", Map: true, TakesInput: true, DependsOn: []string{"a"}}}}, []string{`map step "m" takes the flow input and a dependency`}},
		{"negative", flowdef.FlowDef{Slug: "f", Options: flowdef.StepOptions{Timeout: -1}, Steps: []flowdef.StepDef{{Slug: "a", Options: flowdef.StepOptions{Retries: -2}}}},
			[]string{"flow options: options must not be negative", `step "a": options must not be negative`}},
		{"map condition", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "m", Map: true, DependsOn: []string{"a"}, When: yes}}},
			[]string{`map step "m" has a condition`}},
		{"map accepts skipped", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a", When: yes}, {Slug: "m", Map: true, DependsOn: []string{"a"}, AcceptsSkipped: []string{"a"}}}},
			[]string{`map step "m" accepts a skipped dependency`}},
		{"accepts skipped", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "x"}, {Slug: "b", DependsOn: []string{"a"}, AcceptsSkipped: []string{"a", "x", "a"}}}},
			[]string{`step "b" accepts the skip of "x", which is not one of its dependencies`, `step "b" lists "a" twice in AcceptsSkipped`}},
		{"wait", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "signal"}, {Slug: "a", Wait: "Bad Name"},
			{Slug: "m", Map: true, Wait: "go"}, {Slug: "b", DependsOn: []string{"signal"}, Wait: "go", WaitTimeout: -1},
			{Slug: "c", WaitTimeout: time.Second}}},
			[]string{`step "a" waits for signal "Bad Name"; a signal name must match`, `map step "m" waits for a signal`,
				`step "b" waits for a signal and depends on step "signal"`, `step "b": wait timeout must not be negative`,
				`step "c" has a wait timeout but waits for no signal`}},
		{"cycle", flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{
			{Slug: "a", DependsOn: []string{"c"}}, {Slug: "b", DependsOn: []string{"a"}}, {Slug: "c", DependsOn: []string{"b"}}, {Slug: "d"},
		}}, []string{"dependency cycle: a -> c -> b -> a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.def.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, flowdef.ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
	if err := (flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a", Options: flowdef.StepOptions{Retries: flowdef.NoRetries}}}}).Validate(); err != nil {
		t.Errorf("Retries: NoRetries rejected: %v", err)
	}
}

func TestCycles(t *testing.T) {
	graph := func(deps ...[]int) func(int) []int { return func(i int) []int { return deps[i] } }
	for _, tc := range []struct {
		name string
		deps [][]int
		want [][]int
	}{
		{"none", [][]int{{}, {0}, {0, 1}}, nil},
		{"self", [][]int{{0}}, [][]int{{0}}},
		{"entered where met", [][]int{{2}, {0}, {1}}, [][]int{{0, 2, 1}}},
		{"entered later", [][]int{{2}, {2}, {1}}, [][]int{{2, 1}}},
		{"two apart", [][]int{{1}, {0}, {3}, {2}}, [][]int{{0, 1}, {2, 3}}},
		{"overlapping reported once", [][]int{{1}, {0, 2}, {1}}, [][]int{{0, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := flowdef.Cycles(len(tc.deps), graph(tc.deps...))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	def := flowdef.FlowDef{
		Slug:    "f",
		Options: flowdef.StepOptions{Retries: 4, Timeout: 2 * time.Second},
		Steps: []flowdef.StepDef{
			{Slug: "a", TakesInput: true},
			{Slug: "b", DependsOn: []string{"a"}, Map: true, Options: flowdef.StepOptions{Retries: flowdef.NoRetries, BaseDelay: 1500 * time.Microsecond, StartDelay: time.Minute}},
			{Slug: "c", DependsOn: []string{"a", "b"}, Options: flowdef.StepOptions{Retries: 1, Timeout: time.Microsecond}},
		},
	}
	got, err := def.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := flowdef.Normalized{Slug: "f", Steps: []flowdef.NormalizedStep{
		{Slug: "a", DependsOn: []string{}, TakesInput: true, MaxAttempts: 5, BaseDelayMS: 1000, TimeoutMS: 2000},
		{Slug: "b", DependsOn: []string{"a"}, Map: true, MaxAttempts: 1, BaseDelayMS: 2, TimeoutMS: 2000, StartDelayMS: 60000},
		{Slug: "c", DependsOn: []string{"a", "b"}, MaxAttempts: 2, BaseDelayMS: 1000, TimeoutMS: 1},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	dflt, err := flowdef.FlowDef{Slug: "g", Steps: []flowdef.StepDef{{Slug: "a"}}}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if s := dflt.Steps[0]; s.MaxAttempts != flowdef.DefaultRetries+1 || s.BaseDelayMS != 1000 || s.TimeoutMS != 60000 || s.StartDelayMS != 0 {
		t.Errorf("defaults: %+v", s)
	}
	if _, err := (flowdef.FlowDef{Slug: "g"}).Normalize(); !errors.Is(err, flowdef.ErrInvalid) {
		t.Errorf("Normalize of an invalid definition: %v", err)
	}
}

func TestEffective(t *testing.T) {
	def := flowdef.FlowDef{Slug: "f", Options: flowdef.StepOptions{Retries: 5, Timeout: 2 * time.Second, StartDelay: time.Hour}}
	got := def.Effective(flowdef.StepDef{Slug: "a", Options: flowdef.StepOptions{BaseDelay: time.Minute}})
	want := flowdef.StepOptions{Retries: 5, BaseDelay: time.Minute, Timeout: 2 * time.Second}
	if got != want {
		t.Errorf("Effective = %+v, want %+v", got, want)
	}
	if got := (flowdef.FlowDef{}).Effective(flowdef.StepDef{Options: flowdef.StepOptions{Retries: flowdef.NoRetries}}); got.Retries != flowdef.NoRetries {
		t.Errorf("NoRetries became %d", got.Retries)
	}
	if got := (flowdef.FlowDef{}).Effective(flowdef.StepDef{}); got.Retries != flowdef.DefaultRetries || got.Timeout != flowdef.DefaultTimeout {
		t.Errorf("defaults: %+v", got)
	}
}

func TestAttempts(t *testing.T) {
	for retries, want := range map[int]int{flowdef.NoRetries: 1, 0: 1, 1: 2, 3: 4} {
		if got := flowdef.Attempts(retries); got != want {
			t.Errorf("Attempts(%d) = %d, want %d", retries, got, want)
		}
	}
}

func TestShapeHash(t *testing.T) {
	base := flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "b", DependsOn: []string{"a"}}}}
	h := base.ShapeHash()
	if len(h) != 32 || h != base.ShapeHash() {
		t.Fatalf("hash %q is not a stable 32-digit hex string", h)
	}
	if norm, err := base.Normalize(); err != nil || norm.ShapeHash() != h {
		t.Fatalf("the normalised form hashes to %q (%v), the definition to %q", norm.ShapeHash(), err, h)
	}
	// The same behaviour spelled differently: the same shape.
	same := base
	same.Options = flowdef.StepOptions{Retries: flowdef.DefaultRetries, Timeout: flowdef.DefaultTimeout}
	same.Steps = []flowdef.StepDef{{Slug: "a", Options: flowdef.StepOptions{BaseDelay: flowdef.DefaultBaseDelay}}, {Slug: "b", DependsOn: []string{"a"}}}
	if same.ShapeHash() != h {
		t.Error("defaults written out changed the hash")
	}
	// Idempotence changes what an optimising worker may do, not the shape.
	idem := base
	idem.Options.Idempotent = true
	idem.Steps = []flowdef.StepDef{{Slug: "a", Options: flowdef.StepOptions{Idempotent: true}}, {Slug: "b", DependsOn: []string{"a"}}}
	if idem.ShapeHash() != h {
		t.Error("Idempotent changed the hash")
	}
	for name, change := range map[string]func(*flowdef.FlowDef){
		"slug":     func(d *flowdef.FlowDef) { d.Slug = "g" },
		"retries":  func(d *flowdef.FlowDef) { d.Options.Retries = 1 },
		"map":      func(d *flowdef.FlowDef) { d.Steps[1].Map = true },
		"input":    func(d *flowdef.FlowDef) { d.Steps[0].TakesInput = true },
		"order":    func(d *flowdef.FlowDef) { d.Steps[0], d.Steps[1] = d.Steps[1], d.Steps[0] },
		"delay":    func(d *flowdef.FlowDef) { d.Steps[1].Options.StartDelay = time.Second },
		"when":     func(d *flowdef.FlowDef) { d.Steps[0].When = yes },
		"optional": func(d *flowdef.FlowDef) { d.Steps[0].Optional = true },
		"accepts":  func(d *flowdef.FlowDef) { d.Steps[1].AcceptsSkipped = []string{"a"} },
		"wait":     func(d *flowdef.FlowDef) { d.Steps[1].Wait = "go" },
		"wait timeout": func(d *flowdef.FlowDef) {
			d.Steps[1].Wait, d.Steps[1].WaitTimeout = "go", time.Hour
		},
	} {
		d := base
		d.Steps = slices.Clone(base.Steps)
		change(&d)
		if d.ShapeHash() == h {
			t.Errorf("changing the %s kept the hash", name)
		}
	}
}

// yes is a condition that always runs its step.
func yes(context.Context, json.RawMessage) (bool, error) { return true, nil }

// TestConditionJSON: a definition's JSON records whether a step has a
// condition (not the code), so a definition read back hashes as it was
// written, and its condition refuses to decide (ErrNoCondition) rather
// than run the step unconditionally. Definitions without the new fields
// encode and hash as before they existed.
func TestConditionJSON(t *testing.T) {
	def := flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{
		{Slug: "a", TakesInput: true},
		{Slug: "b", DependsOn: []string{"a"}, When: yes, Optional: true},
		{Slug: "c", DependsOn: []string{"a", "b"}, AcceptsSkipped: []string{"b"}},
	}}
	b, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"slug":"b","depends_on":["a"],"options":{},"when":true,"optional":true}`, `"accepts_skipped":["b"]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	if strings.Count(string(b), `"when"`) != 1 || strings.Count(string(b), `"optional"`) != 1 {
		t.Errorf("JSON %s: when/optional written for steps without them", b)
	}
	var back flowdef.FlowDef
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ShapeHash() != def.ShapeHash() {
		t.Errorf("read back, the definition hashes to %s, was %s", back.ShapeHash(), def.ShapeHash())
	}
	if back.Steps[0].When != nil || back.Steps[1].When == nil {
		t.Fatalf("conditions read back: %v, %v", back.Steps[0].When != nil, back.Steps[1].When != nil)
	}
	if ok, err := back.Steps[1].When(context.Background(), nil); ok || !errors.Is(err, flowdef.ErrNoCondition) {
		t.Errorf("read-back condition = %v, %v; want false, ErrNoCondition", ok, err)
	}
	var off flowdef.StepDef
	if err := json.Unmarshal([]byte(`{"slug":"x","when":false}`), &off); err != nil || off.When != nil {
		t.Errorf(`"when": false: %v, condition set %v`, err, off.When != nil)
	}
	if err := json.Unmarshal([]byte(`{"slug":"x","when":"yes"}`), &off); err == nil {
		t.Error(`"when": "yes" accepted`)
	}
	norm, err := def.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if s := norm.Steps[1]; !s.When || !s.Optional || norm.Steps[0].When || !slices.Equal(norm.Steps[2].AcceptsSkipped, []string{"b"}) {
		t.Errorf("normalised steps %+v", norm.Steps)
	}
	// A definition without them: the normalised JSON has none of the keys.
	plain, _ := flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}}}.Normalize()
	if b, _ := json.Marshal(plain); strings.Contains(string(b), "when") || strings.Contains(string(b), "optional") || strings.Contains(string(b), "accepts") {
		t.Errorf("normalised JSON of a plain definition: %s", b)
	}
}

// TestPriorityNotInShape: a step priority is carried by the normalised
// form (define_flow stores it) but leaves the shape hash as it was, so a
// new priority keeps the flow version; one that does not fit in 32 bits is
// invalid.
func TestPriorityNotInShape(t *testing.T) {
	base := flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "b", DependsOn: []string{"a"}}}}
	h := base.ShapeHash()
	d := base
	d.Steps = slices.Clone(base.Steps)
	d.Steps[1].Options.Priority = 7
	norm, err := d.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if norm.Steps[1].Priority != 7 || norm.Steps[0].Priority != 0 {
		t.Errorf("normalised priorities %d, %d; want 0, 7", norm.Steps[0].Priority, norm.Steps[1].Priority)
	}
	if d.ShapeHash() != h || norm.ShapeHash() != h {
		t.Errorf("a priority changed the hash: %s, %s; want %s", d.ShapeHash(), norm.ShapeHash(), h)
	}
	if norm.Steps[1].Priority != 7 {
		t.Error("hashing cleared the caller's priorities")
	}
	d.Steps[0].Options.Priority = 1 << 40
	if err := d.Validate(); !errors.Is(err, flowdef.ErrInvalid) || !strings.Contains(err.Error(), "32 bits") {
		t.Errorf("priority 1<<40: %v", err)
	}
}

func TestValidSlug(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "etl_v2": true, strings.Repeat("a", flowdef.MaxSlugLen): true,
		"": false, "A": false, "1a": false, "_a": false, "a-b": false, "é": false, strings.Repeat("a", flowdef.MaxSlugLen+1): false,
	} {
		if got := flowdef.ValidSlug(s); got != want {
			t.Errorf("ValidSlug(%q) = %v", s, got)
		}
	}
}

func TestLeaves(t *testing.T) {
	def := flowdef.FlowDef{Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "b", DependsOn: []string{"a"}}, {Slug: "c"}, {Slug: "d", DependsOn: []string{"a"}}}}
	if diff := cmp.Diff([]string{"b", "c", "d"}, def.Leaves()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

// TestStandardLibraryOnly keeps flowdef free of dependencies: the generator
// and other tools link it without the database driver.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); !slices.Equal(got, []string{"github.com/quantumflow/qflow/flowdef"}) {
		t.Errorf("flowdef depends on non-standard packages: %v", got)
	}
}
