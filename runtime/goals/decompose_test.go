package goals_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/quantumflow/qflow/runtime/goals"
)

// table is a decomposer from a fixed table: goal id → tasks.
type table map[string][]goals.TaskSpec

func (tb table) Decompose(_ context.Context, g goals.Goal, _ int) ([]goals.TaskSpec, error) {
	return tb[g.ID], nil
}

func sub(desc string) *goals.Goal { return &goals.Goal{Description: desc} }

// twoLevel: app = design → (auth: a sub-goal) → ship, and auth has a
// sub-goal "login" a level deeper.
var twoLevel = table{
	"app": {
		{ID: "design", Kind: "work"},
		{ID: "db", Kind: "work"},
		{ID: "auth", SubGoal: sub("Authentication"), DependsOn: []string{"design", "db"}},
		{ID: "ship", Kind: "work", DependsOn: []string{"auth"}},
	},
	"auth": {
		{ID: "schema", Kind: "work"},
		{ID: "login", SubGoal: sub("Login"), DependsOn: []string{"schema"}},
		{ID: "tokens", Kind: "work"},
		{ID: "audit", Kind: "work", DependsOn: []string{"login"}},
	},
	"login": {
		{ID: "form", Kind: "work"},
		{ID: "check", Kind: "work", DependsOn: []string{"form"}},
		{ID: "rate_limit", Kind: "work"},
	},
}

var workHandlers = goals.Handlers{"work": goals.HandlerFunc(func(_ context.Context, t *goals.TaskRun) (string, error) { return t.Task.ID, nil })}

func TestFlattenTwoLevels(t *testing.T) {
	p, err := goals.PlanGoal(context.Background(), nil, goals.Goal{ID: "app", Description: "Build an app"}, twoLevel, workHandlers, nil)
	if err != nil {
		t.Fatal(err)
	}
	type edge struct {
		ID, Slug, Parent string
		Deps             []string
	}
	var got []edge
	for _, tk := range p.Tasks {
		got = append(got, edge{tk.ID, tk.Slug, tk.Parent, tk.DependsOn})
	}
	want := []edge{
		{"design", "design", "", nil},
		{"db", "db", "", nil},
		{"auth/schema", "auth_schema", "auth", []string{"design", "db"}},
		{"auth/login/form", "auth_login_form", "auth/login", []string{"auth/schema"}},
		{"auth/login/check", "auth_login_check", "auth/login", []string{"auth/login/form"}},
		{"auth/login/rate_limit", "auth_login_rate_limit", "auth/login", []string{"auth/schema"}},
		{"auth/tokens", "auth_tokens", "auth", []string{"design", "db"}},
		{"auth/audit", "auth_audit", "auth", []string{"auth/login/check", "auth/login/rate_limit"}},
		{"ship", "ship", "", []string{"auth/tokens", "auth/audit"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("flattened tasks (-want +got):\n%s", diff)
	}
	wantSubs := []goals.SubGoal{
		{ID: "auth", Description: "Authentication", Depth: 1},
		{ID: "auth/login", Description: "Login", Parent: "auth", Depth: 2},
	}
	if diff := cmp.Diff(wantSubs, p.SubGoals); diff != "" {
		t.Fatalf("sub-goals (-want +got):\n%s", diff)
	}
	if p.Def.Slug != "goal_app" || len(p.Def.Steps) != 9 {
		t.Fatalf("flow %q with %d steps", p.Def.Slug, len(p.Def.Steps))
	}
	if got := p.Def.Steps[8].DependsOn; !cmp.Equal(got, []string{"auth_tokens", "auth_audit"}) {
		t.Fatalf("ship's step depends on %v", got)
	}
	m := p.Mermaid()
	for _, s := range []string{"flowchart TD", `subgraph sg_auth_`, `auth_login_check["auth/login/check<br/>work"]`, "auth_login_rate_limit --> auth_audit", "auth_audit --> ship"} {
		if !strings.Contains(m, s) {
			t.Errorf("Mermaid lacks %q:\n%s", s, m)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name   string
		tb     table
		opts   *goals.Options
		kind   error
		detail string // a substring of the message
	}{
		{"cycle", table{"g": {
			{ID: "a", Kind: "work", DependsOn: []string{"c"}},
			{ID: "b", Kind: "work", DependsOn: []string{"a"}},
			{ID: "c", Kind: "work", DependsOn: []string{"b"}},
		}}, nil, goals.ErrCycle, "a -> c -> b -> a"},
		{"cycle in sub-goal", table{"g": {{ID: "s", SubGoal: sub("s")}}, "s": {
			{ID: "x", Kind: "work", DependsOn: []string{"y"}},
			{ID: "y", Kind: "work", DependsOn: []string{"x"}},
		}}, nil, goals.ErrCycle, "s/x -> s/y -> s/x"},
		{"self dependency", table{"g": {{ID: "a", Kind: "work", DependsOn: []string{"a"}}}}, nil, goals.ErrCycle, "depends on itself"},
		{"unknown dependency", table{"g": {{ID: "a", Kind: "work", DependsOn: []string{"nope"}}}}, nil, goals.ErrUnknownDependency, `depends on "nope"`},
		{"duplicate id", table{"g": {{ID: "a", Kind: "work"}, {ID: "a", Kind: "work"}}}, nil, goals.ErrDuplicateID, `task "a": defined twice`},
		{"no kind", table{"g": {{ID: "a"}}}, nil, goals.ErrMissingKind, "neither a handler kind nor a sub-goal"},
		{"unknown kind", table{"g": {{ID: "a", Kind: "paint"}}}, nil, goals.ErrMissingKind, `no handler for kind "paint"`},
		{"depth exceeded", table{
			"g":  {{ID: "s1", SubGoal: sub("1")}},
			"s1": {{ID: "s2", SubGoal: sub("2")}},
			"s2": {{ID: "w", Kind: "work"}},
		}, &goals.Options{MaxDepth: 1}, goals.ErrDepthExceeded, "g -> s1 -> s1/s2"},
		{"empty", table{"g": nil}, nil, goals.ErrEmptyDecomposition, "no tasks"},
		{"empty sub-goal", table{"g": {{ID: "s", SubGoal: sub("s")}}}, nil, goals.ErrEmptyDecomposition, `goal "s"`},
		{"kind and sub-goal", table{"g": {{ID: "a", Kind: "work", SubGoal: sub("x")}}}, nil, goals.ErrBadTask, "both"},
		{"slash in id", table{"g": {{ID: "a/b", Kind: "work"}}}, nil, goals.ErrBadTask, `"/"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := goals.PlanGoal(context.Background(), nil, goals.Goal{ID: "g"}, c.tb, workHandlers, c.opts)
			if err == nil {
				t.Fatalf("no error; plan %+v", p.Tasks)
			}
			if !errors.Is(err, c.kind) || !errors.Is(err, goals.ErrInvalidPlan) {
				t.Fatalf("error %v is not %v", err, c.kind)
			}
			if !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("error %q lacks %q", err, c.detail)
			}
			var ve *goals.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
		})
	}
}

func TestValidationReportsEveryProblem(t *testing.T) {
	_, err := goals.PlanGoal(context.Background(), nil, goals.Goal{ID: "g"}, table{"g": {
		{ID: "a", Kind: "work", DependsOn: []string{"x"}},
		{ID: "b"},
		{ID: "a", Kind: "work"},
	}}, workHandlers, nil)
	for _, k := range []error{goals.ErrUnknownDependency, goals.ErrMissingKind, goals.ErrDuplicateID} {
		if !errors.Is(err, k) {
			t.Errorf("error %v does not report %v", err, k)
		}
	}
}

func TestSlugsAreValidAndDeterministic(t *testing.T) {
	long := strings.Repeat("Very Long Task Name ", 4)
	tb := table{"Build authentication system!": {
		{ID: "Build API", Kind: "work"},
		{ID: "build-api", Kind: "work"},
		{ID: "1st", Kind: "work"},
		{ID: "run", Kind: "work"},
		{ID: long, Kind: "work"},
	}}
	p1, err := goals.PlanGoal(context.Background(), nil, goals.Goal{ID: "Build authentication system!"}, tb, workHandlers, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := goals.PlanGoal(context.Background(), nil, goals.Goal{ID: "Build authentication system!"}, tb, workHandlers, nil)
	if p1.Def.ShapeHash() != p2.Def.ShapeHash() {
		t.Fatal("the same decomposition gave two shapes")
	}
	if p1.Def.Slug != "goal_build_authentication_system" {
		t.Fatalf("flow slug %q", p1.Def.Slug)
	}
	seen := map[string]bool{}
	for _, tk := range p1.Tasks {
		if seen[tk.Slug] || len(tk.Slug) > 40 || tk.Slug == "run" {
			t.Errorf("task %q: slug %q duplicated, too long or reserved", tk.ID, tk.Slug)
		}
		seen[tk.Slug] = true
	}
	if err := p1.Def.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := p1.Task("Build API").Slug; got != "build_api" {
		t.Fatalf("slug %q", got)
	}
}

func TestDecomposerErrorsPassThrough(t *testing.T) {
	boom := errors.New("model unavailable")
	failing := goals.DecomposerFunc(func(ctx context.Context, g goals.Goal, depth int) ([]goals.TaskSpec, error) {
		if depth == 0 {
			return []goals.TaskSpec{{ID: "s", SubGoal: sub("deeper")}}, nil
		}
		return nil, boom
	})
	_, err := goals.PlanGoal(context.Background(), nil, goals.Goal{ID: "g"}, failing, workHandlers, nil)
	if !errors.Is(err, boom) || !errors.Is(err, goals.ErrDecomposerFailed) {
		t.Fatalf("error %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = goals.PlanGoal(ctx, nil, goals.Goal{ID: "g"}, twoLevel, workHandlers, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
}
