// Command goals composes "Build authentication system" from a goal: a
// deterministic planner (no network) decomposes it, one sub-goal is
// decomposed a level deeper, and the flattened DAG runs on a local worker
// while live progress is printed from the run's events.
//
//	go run ./examples/goals                 # local server (database qflow_example) or a throwaway cluster
//	DATABASE_URL=postgres://... go run ./examples/goals
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/localpg"
	"github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/goals"
)

// exampleDatabase is the database the example uses on a server it finds
// (not on one named by DATABASE_URL).
const exampleDatabase = "qflow_example"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "goals example:", err)
		os.Exit(1)
	}
}

// start finds PostgreSQL (DATABASE_URL, the local server, or a throwaway
// cluster) and runs the example on it.
func start(ctx context.Context) error {
	url, stop, err := localpg.ForProgram(ctx, exampleDatabase, os.Stdout)
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	return run(ctx, pool, os.Stdout)
}

// planner is a deterministic decomposer: a fixed breakdown per goal.
var planner = goals.DecomposerFunc(func(ctx context.Context, g goals.Goal, depth int) ([]goals.TaskSpec, error) {
	switch g.ID {
	case "auth":
		return []goals.TaskSpec{
			{ID: "requirements", Kind: "analyze", Description: "Collect requirements: users, roles, MFA"},
			{ID: "data_model", Kind: "design", Description: "Design users and credentials tables", DependsOn: []string{"requirements"}},
			{ID: "login", Description: "Implement credential login", DependsOn: []string{"data_model"},
				SubGoal: &goals.Goal{Description: "Implement credential login"}},
			{ID: "oauth", Kind: "code", Description: "Add OAuth sign-in", DependsOn: []string{"data_model"}, Idempotent: true},
			{ID: "tests", Kind: "test", Description: "End-to-end tests", DependsOn: []string{"login", "oauth"}},
			{ID: "docs", Kind: "write", Description: "Write the operator guide", DependsOn: []string{"requirements"}},
			{ID: "release", Kind: "write", Description: "Release notes", DependsOn: []string{"tests", "docs"}},
		}, nil
	case "login":
		return []goals.TaskSpec{
			{ID: "hashing", Kind: "code", Description: "Password hashing with argon2id", Idempotent: true},
			{ID: "endpoint", Kind: "code", Description: "POST /login", DependsOn: []string{"hashing"}},
			{ID: "sessions", Description: "Session management", DependsOn: []string{"endpoint"},
				SubGoal: &goals.Goal{Description: "Session management"}},
			{ID: "rate_limit", Kind: "code", Description: "Rate-limit failed logins", DependsOn: []string{"endpoint"}},
		}, nil
	case "sessions":
		return []goals.TaskSpec{
			{ID: "tokens", Kind: "code", Description: "Signed session tokens"},
			{ID: "refresh", Kind: "code", Description: "Refresh tokens", DependsOn: []string{"tokens"}},
			{ID: "revoke", Kind: "code", Description: "Revocation list", DependsOn: []string{"tokens"}},
		}, nil
	}
	return nil, fmt.Errorf("the planner does not know goal %q", g.ID)
})

// work is the handler of every kind: it pretends to work for a moment and
// reports what it built on.
func work(verb string, d time.Duration) goals.Handler {
	return goals.HandlerFunc(func(ctx context.Context, t *goals.TaskRun) (string, error) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		deps := make([]string, 0, len(t.Deps))
		for id := range t.Deps {
			deps = append(deps, id)
		}
		sort.Strings(deps)
		s := verb + " " + t.Task.Description
		if len(deps) > 0 {
			s += " (after " + strings.Join(deps, ", ") + ")"
		}
		return s, nil
	})
}

var handlers = goals.Handlers{
	"analyze": work("analysed:", 30*time.Millisecond),
	"design":  work("designed:", 40*time.Millisecond),
	"code":    work("implemented:", 50*time.Millisecond),
	"test":    work("tested:", 60*time.Millisecond),
	"write":   work("wrote:", 20*time.Millisecond),
}

func run(ctx context.Context, pool *pgxpool.Pool, out io.Writer) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	client := runtime.NewClient(pool, &runtime.ClientOptions{Logger: quiet})
	defer client.Close()
	if err := client.Migrate(ctx); err != nil {
		return err
	}
	goal := goals.Goal{ID: "auth", Description: "Build authentication system"}
	opts := &goals.Options{Level: goals.LevelAdvanced, Concurrency: 2, Timeout: time.Minute, Logger: quiet}

	plan, err := goals.PlanGoal(ctx, client, goal, planner, handlers, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Plan for %q: %d tasks, %d sub-goals, flow %s\n\n%s\n", goal.Description, len(plan.Tasks), len(plan.SubGoals), plan.Def.Slug, plan.Mermaid())

	began := time.Now()
	opts.OnEvent = func(ev goals.Event) {
		at := time.Since(began).Round(time.Millisecond)
		switch ev.Type {
		case "task_started":
			fmt.Fprintf(out, "%8s  start  %s\n", at, ev.Task)
		case "task_completed":
			fmt.Fprintf(out, "%8s  done   %s (%d ms)\n", at, ev.Task, ev.DurationMS)
		case "task_failed":
			fmt.Fprintf(out, "%8s  FAIL   %s: %s (retry: %v)\n", at, ev.Task, ev.Error, ev.WillRetry)
		case "workflow_completed", "workflow_failed", "workflow_cancelled":
			fmt.Fprintf(out, "%8s  run %s\n", at, strings.TrimPrefix(ev.Type, "workflow_"))
		}
	}
	res, err := goals.RunPlan(ctx, client, plan, handlers, opts)
	if err != nil {
		return err
	}
	var final string
	_ = json.Unmarshal(res.Final, &final)
	fmt.Fprintf(out, "\nRun %s (flow version %d) took %s\nFinal: %s\n", res.RunID, res.FlowVersion, res.Duration.Round(time.Millisecond), final)
	stats, err := client.KindStats(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nLearned so far (by handler kind):")
	for _, s := range stats {
		fmt.Fprintf(out, "  %-8s runs %-3d tasks %-4d p50 %6.1f ms  p99 %6.1f ms\n", s.Kind, s.Runs, s.Tasks, s.P50MS, s.P99MS)
	}
	return nil
}
