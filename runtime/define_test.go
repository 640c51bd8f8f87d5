package runtime_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/quantumflow/qflow/flowdef"
	qflow "github.com/quantumflow/qflow/runtime"
)

// TestDefineFlowStoresNormalized: the engine's step rows hold what Go
// resolved (flowdef.Normalize): retries as attempts in all, inherited and
// default options filled in, durations in milliseconds.
func TestDefineFlowStoresNormalized(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, err := qflow.NewFlow("norm").Options(qflow.StepOptions{Retries: 4, Timeout: 1500 * time.Millisecond}).
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}, Options: qflow.StepOptions{Retries: qflow.NoRetries, BaseDelay: 250 * time.Millisecond, StartDelay: time.Minute}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		slug                       string
		attempts                   int
		delay, timeout, startDelay int64
		depCount                   int
		leaf                       bool
	}
	rows, err := e.db.Pool.Query(ctx, `SELECT slug, max_attempts, base_delay_ms, timeout_ms, start_delay_ms, dep_count, is_leaf
		FROM qflow.steps WHERE flow_id = $1 ORDER BY idx`, id)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.slug, &r.attempts, &r.delay, &r.timeout, &r.startDelay, &r.depCount, &r.leaf); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"a", 5, 1000, 1500, 0, 0, false},
		{"b", 1, 250, 1500, 60000, 1, true},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("steps %+v, want %+v", got, want)
	}
	stored, err := e.client.GetFlow(ctx, "norm")
	if err != nil {
		t.Fatal(err)
	}
	if stored.ShapeHash() != def.ShapeHash() || stored.Options.Retries != 4 || stored.Steps[1].Options.Retries != qflow.NoRetries {
		t.Errorf("GetFlow returned %+v, not the definition as written", stored)
	}
}

// TestDefineFlowIntegrity: define_flow applies no rule of its own, but the
// tables' constraints still refuse a definition that bypassed Go and names
// an unknown dependency or an invalid slug.
func TestDefineFlowIntegrity(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	step := func(slug string, deps ...string) map[string]any {
		if deps == nil {
			deps = []string{}
		}
		return map[string]any{"slug": slug, "depends_on": deps, "map": false, "takes_input": false,
			"max_attempts": 1, "base_delay_ms": 0, "timeout_ms": 1000, "start_delay_ms": 0}
	}
	define := func(slug string, steps ...map[string]any) error {
		b, _ := json.Marshal(steps)
		_, err := e.db.Pool.Exec(ctx, `SELECT qflow.define_flow($1, $2, '{}', $3)`, slug, slug+"_hash", b)
		return err
	}
	if err := define("fine", step("a"), step("b", "a")); err != nil {
		t.Fatalf("a valid normalised definition: %v", err)
	}
	if err := define("unknown_dep", step("a", "zz")); err == nil {
		t.Error("a step naming an unknown dependency was stored")
	}
	if err := define("bad_step", step("Bad")); err == nil {
		t.Error("an invalid step slug was stored")
	}
	if err := define("Bad", step("a")); err == nil {
		t.Error("an invalid flow slug was stored")
	}
	if err := define("none"); err == nil {
		t.Error("a flow without steps was stored")
	}
}

// TestSlugRuleInSQL: the tables check flow and step slugs with exactly
// flowdef's pattern, so Go and SQL cannot drift apart (one slug length
// everywhere).
func TestSlugRuleInSQL(t *testing.T) {
	b, err := os.ReadFile("../migrations/0002_qflow.sql")
	if err != nil {
		t.Fatal(err)
	}
	found := regexp.MustCompile(`slug ~ '([^']*)'`).FindAllStringSubmatch(string(b), -1)
	if len(found) < 2 {
		t.Fatalf("found %d slug checks in 0002_qflow.sql, want the flows' and the steps'", len(found))
	}
	for _, m := range found {
		if m[1] != flowdef.SlugPattern {
			t.Errorf("SQL checks slugs with %q, flowdef with %q", m[1], flowdef.SlugPattern)
		}
	}
}

// TestTaskInputKeys: a step's task input holds the flow input under
// flowdef.InputKey and each dependency's output under its slug.
func TestTaskInputKeys(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("keys").
		Step("first", qflow.StepDef{}).
		Step("second", qflow.StepDef{TakesInput: true, DependsOn: []string{"first"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan map[string]json.RawMessage, 1)
	e.startWorker(def, map[string]qflow.Handler{
		"first": func(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`"one"`), nil },
		"second": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
			var in map[string]json.RawMessage
			if err := json.Unmarshal(task.Input, &in); err != nil {
				return nil, err
			}
			got <- in
			return json.RawMessage(`2`), nil
		},
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := e.client.StartFlow(ctx, def, map[string]int{"n": 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	in := <-got
	var run struct{ N int }
	if err := json.Unmarshal(in[flowdef.InputKey], &run); err != nil || run.N != 7 || len(in) != 2 || string(in["first"]) != `"one"` {
		t.Errorf("task input %s (%v)", in, err)
	}
}
