package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

// qflow.invariant_violations names each row of runs, step_states and
// step_tasks that breaks one of the engine's rules (they are not CHECK
// constraints; every test's database is checked with it when the test
// ends), and nothing for a run the engine wrote.
func TestInvariantViolationsNameBrokenRows(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := chain3(t, "inv")
	run, err := e.client.StartFlow(ctx, def, map[string]int{"v": 1}, nil) // no worker: a, queued
	if err != nil {
		t.Fatal(err)
	}
	id := run.ID.String()
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	violations := func() []string {
		t.Helper()
		rows, err := tx.Query(ctx, `SELECT v FROM qflow.invariant_violations() AS v ORDER BY v`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := violations(); len(got) != 0 {
		t.Fatalf("a started run breaks rules: %q", got)
	}
	cases := []struct{ name, sql, want string }{
		{"run status", `UPDATE qflow.runs SET status = 'done'`, "runs " + id + ": status done"},
		{"run finished while started", `UPDATE qflow.runs SET finished_at = now()`, "runs " + id + ": status started"},
		{"run completed without output", `UPDATE qflow.runs SET status = 'completed', finished_at = now(), remaining_steps = 0`,
			"runs " + id + ": status completed"},
		{"run steps left below zero", `UPDATE qflow.runs SET remaining_steps = -1`, "runs " + id + ": status started"},
		{"empty key", `UPDATE qflow.runs SET idempotency_key = ''`, "runs " + id + ": status started"},
		{"run attempts", `UPDATE qflow.runs SET max_attempts = 0`, "runs " + id + ": status started"},
		{"resumes", `UPDATE qflow.runs SET resumes = -1`, "runs " + id + ": status started"},
		{"step status", `UPDATE qflow.step_states SET status = 'running'`, "step_states " + id + "/0: status running"},
		{"step tasks left below zero", `UPDATE qflow.step_states SET remaining_tasks = -1`, "step_states " + id + "/0: status started"},
		{"step completed with tasks left", `UPDATE qflow.step_states SET status = 'completed', output = '1'`,
			"step_states " + id + "/0: status completed"},
		{"task status", `UPDATE qflow.step_tasks SET status = 'running'`, "step_tasks " + id + "/0/0: status running"},
		{"task started with no attempt", `UPDATE qflow.step_tasks SET status = 'started'`, "step_tasks " + id + "/0/0: status started"},
		{"task finished while queued", `UPDATE qflow.step_tasks SET finished_at = now()`, "step_tasks " + id + "/0/0: status queued"},
		{"task completed without output", `UPDATE qflow.step_tasks SET status = 'completed', finished_at = now()`,
			"step_tasks " + id + "/0/0: status completed"},
		{"task attempts", `UPDATE qflow.step_tasks SET attempts = -1`, "step_tasks " + id + "/0/0: status queued"},
		{"task max attempts", `UPDATE qflow.step_tasks SET max_attempts = 0`, "step_tasks " + id + "/0/0: status queued"},
	}
	for _, c := range cases {
		if _, err := tx.Exec(ctx, `SAVEPOINT c`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, c.sql); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if diff := cmp.Diff([]string{c.want}, violations()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT c`); err != nil {
			t.Fatal(err)
		}
	}
}
