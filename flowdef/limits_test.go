package flowdef_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quantumflow/qflow/flowdef"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]flowdef.Rate{
		"50/s":    {N: 50, Per: time.Second},
		"600/m":   {N: 600, Per: time.Minute},
		"1/h":     {N: 1, Per: time.Hour},
		"5/10s":   {N: 5, Per: 10 * time.Second},
		"3/500ms": {N: 3, Per: 500 * time.Millisecond},
		"2/1h30m": {N: 2, Per: 90 * time.Minute},
	} {
		got, err := flowdef.ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if back, err := flowdef.ParseRate(got.String()); err != nil || back != got {
			t.Errorf("ParseRate(%q.String() = %q) = %+v, %v", in, got.String(), back, err)
		}
	}
	for _, in := range []string{"fast", "", "50", "/s", "0/s", "-1/s", "+1/s", "1.5/s", "50/d", "50/0s", "50/-1s", "1/500us", "2000000/s"} {
		if r, err := flowdef.ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", in, r)
		}
	}
	if s := (flowdef.Rate{N: 20, Per: time.Second, Burst: 5}).String(); s != "20/s burst=5" {
		t.Errorf("String = %q", s)
	}
	if r := (flowdef.Rate{N: 20, Per: time.Second}); r.Interval() != 50*time.Millisecond || r.Bursts() != 1 {
		t.Errorf("Interval %s, Bursts %d", r.Interval(), r.Bursts())
	}
}

func TestKeyPath(t *testing.T) {
	for in, want := range map[string][]string{
		".":                {},
		".customer_id":     {"customer_id"},
		".run.customer.id": {"run", "customer", "id"},
		".items.0":         {"items", "0"},
	} {
		got, ok := flowdef.KeyPath(in)
		if !ok || !slices.Equal(got, want) || got == nil {
			t.Errorf("KeyPath(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "customer_id", "..", ".a.", ".a..b", "a.b"} {
		if got, ok := flowdef.KeyPath(in); ok {
			t.Errorf("KeyPath(%q) = %q, want not a path", in, got)
		}
	}
}

// TestLimitsValidate: the rules of Concurrency, Rate and Key, each problem
// reported with its step.
func TestLimitsValidate(t *testing.T) {
	step := func(o flowdef.StepOptions) flowdef.FlowDef {
		return flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a", Options: o}}}
	}
	ok := []flowdef.FlowDef{
		step(flowdef.StepOptions{Concurrency: 2}),
		step(flowdef.StepOptions{Concurrency: flowdef.MaxConcurrency, Key: ".run.customer"}),
		step(flowdef.StepOptions{Rate: flowdef.Rate{N: 50, Per: time.Second, Burst: 10}, Key: "."}),
		{Slug: "f", Options: flowdef.StepOptions{Concurrency: 3}, Steps: []flowdef.StepDef{{Slug: "a"}}},
	}
	for _, d := range ok {
		if err := d.Validate(); err != nil {
			t.Errorf("%+v: %v", d, err)
		}
	}
	for _, tc := range []struct {
		def  flowdef.FlowDef
		want string
	}{
		{step(flowdef.StepOptions{Concurrency: -1}), `step "a": Concurrency -1: want 1 to 10000`},
		{step(flowdef.StepOptions{Concurrency: flowdef.MaxConcurrency + 1}), "Concurrency 10001"},
		{step(flowdef.StepOptions{Rate: flowdef.Rate{N: 5}}), "Per must be at least a millisecond"},
		{step(flowdef.StepOptions{Rate: flowdef.Rate{Per: time.Second}}), "N must be at least 1"},
		{step(flowdef.StepOptions{Rate: flowdef.Rate{Burst: 3}}), "a Burst (3) but no rate"},
		{step(flowdef.StepOptions{Rate: flowdef.Rate{N: 1, Per: time.Second, Burst: -1}}), "burst -1"},
		{step(flowdef.StepOptions{Rate: flowdef.Rate{N: 1 << 30, Per: time.Millisecond}}), "over 1000000 tasks a second"},
		{step(flowdef.StepOptions{Concurrency: 1, Key: "customer"}), `Key "customer": want a path`},
		{step(flowdef.StepOptions{Key: ".customer"}), `Key ".customer" limits nothing`},
		{flowdef.FlowDef{Slug: "f", Options: flowdef.StepOptions{Rate: flowdef.Rate{N: 1, Per: time.Second}}, Steps: []flowdef.StepDef{{Slug: "a"}}}, "flow options: Rate applies to steps"},
		{flowdef.FlowDef{Slug: "f", Options: flowdef.StepOptions{Concurrency: 1, Key: ".x"}, Steps: []flowdef.StepDef{{Slug: "a"}}}, "flow options: Key applies to steps"},
	} {
		err := tc.def.Validate()
		if !errors.Is(err, flowdef.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.def.Steps[0].Options, err, tc.want)
		}
	}
}

// TestLimitsNotInShape: limits are carried by the normalised form but
// leave the shape hash as it was; Limited tells which steps they hold.
func TestLimitsNotInShape(t *testing.T) {
	base := flowdef.FlowDef{Slug: "f", Steps: []flowdef.StepDef{{Slug: "a"}, {Slug: "b", DependsOn: []string{"a"}, Map: true}}}
	h := base.ShapeHash()
	d := base
	d.Steps = slices.Clone(base.Steps)
	d.Steps[1].Options = flowdef.StepOptions{Concurrency: 2, Rate: flowdef.Rate{N: 5, Per: 1500 * time.Microsecond}, Key: "."}
	norm, err := d.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if s := norm.Steps[1]; s.Concurrency != 2 || s.RateN != 5 || s.RatePerMS != 2 || s.Burst != 1 || s.Key != "." {
		t.Errorf("normalised limits %+v", s)
	}
	if norm.Steps[0].Concurrency != 0 || norm.Steps[0].Burst != 0 {
		t.Errorf("step a got limits: %+v", norm.Steps[0])
	}
	if d.ShapeHash() != h || norm.ShapeHash() != h {
		t.Error("limits changed the shape hash")
	}
	if norm.Steps[1].Key != "." {
		t.Error("hashing cleared the caller's limits")
	}
	d.Options.Concurrency = 4
	if d.ShapeHash() != h {
		t.Error("a flow's Concurrency changed the shape hash")
	}
	if !d.HasLimits() || base.HasLimits() {
		t.Error("HasLimits")
	}
	if !d.Limited("a") || base.Limited("b") {
		t.Error("Limited: a flow's Concurrency holds every step")
	}
	d.Options.Concurrency = 0
	if d.Limited("a") || !d.Limited("b") || d.Limited("zz") {
		t.Error("Limited: only b has a limit")
	}
}
