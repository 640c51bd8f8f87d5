package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	qflow "github.com/quantumflow/qflow/runtime"
)

// A map over a non-array fails its run; a sibling step made ready in the
// same transition must not be started after the failure.
func TestFailedRunStartsNoSibling(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def := qflow.FlowDef{Slug: "sibling", Steps: []qflow.StepDef{
		{Slug: "a"},
		{Slug: "b", DependsOn: []string{"a"}, Map: true},
		{Slug: "c", DependsOn: []string{"a"}},
	}}
	var cRan atomic.Bool
	h := map[string]qflow.Handler{
		"a": func(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`{"x": 1}`), nil },
		"b": func(context.Context, *qflow.Task) (json.RawMessage, error) { return nil, nil },
		"c": func(context.Context, *qflow.Task) (json.RawMessage, error) { cRan.Store(true); return nil, nil },
	}
	_, err := e.client.RunLocal(ctx, def, h, nil, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 50 * time.Millisecond})
	var re *qflow.RunError
	if !errors.As(err, &re) || re.Step != "b" {
		t.Fatalf("RunLocal: %v; want the run failed at step b", err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_states WHERE status IN ('created', 'started')`, 0)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status IN ('queued', 'started')`, 0)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE finished_at IS NULL`, 0)
	if cRan.Load() {
		t.Fatal("step c ran after its run failed")
	}
}

// Completing a task while its run is cancelled, or while a parallel branch
// fails permanently, must not deadlock: every transition locks the run
// first.
func TestConcurrentTransitionsOfOneRunDoNotDeadlock(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def := qflow.FlowDef{Slug: "contended", Steps: []qflow.StepDef{
		{Slug: "a"}, {Slug: "b", DependsOn: []string{"a"}}, {Slug: "x"},
	}}
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	const runs = 150
	inputs := make([]any, runs)
	for i := range inputs {
		inputs[i] = i
	}
	if _, err := e.client.StartRuns(ctx, "contended", inputs, nil); err != nil {
		t.Fatal(err)
	}
	worker := uuid.New()
	rows, err := e.db.Pool.Query(ctx, `SELECT run_id, step_idx FROM qflow.claim($1, $2, 1000, 60000)`, id, worker)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		run  uuid.UUID
		step int16
	}
	var keys []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.run, &k.step); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if len(keys) != 2*runs {
		t.Fatalf("claimed %d tasks, want %d", len(keys), 2*runs)
	}
	var deadlocks, others atomic.Int64
	record := func(err error) {
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
		case errors.As(err, &pgErr) && pgErr.Code == "40P01":
			deadlocks.Add(1)
		default:
			others.Add(1)
			t.Log(err)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, k := range keys {
		if k.step != 0 { // a: complete it while the run is cancelled or x fails
			continue
		}
		wg.Add(2)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			_, err := e.db.Pool.Exec(ctx, `SELECT * FROM qflow.settle($1, ARRAY[$2::uuid], ARRAY[0]::smallint[], ARRAY[0], ARRAY['1'::jsonb], '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', 0, 0, 1000)`, worker, k.run)
			record(err)
		}()
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			if i%2 == 0 {
				_, err = e.db.Pool.Exec(ctx, `SELECT qflow.cancel_run($1)`, k.run)
			} else {
				_, err = e.db.Pool.Exec(ctx, `SELECT qflow.fail_tasks($1, ARRAY[($2::uuid, 2, 0)::qflow.task_key], ARRAY['boom'], ARRAY[true])`, worker, k.run)
			}
			record(err)
		}()
	}
	wg.Wait()
	if deadlocks.Load() > 0 || others.Load() > 0 {
		t.Fatalf("%d deadlocks and %d other errors in %d concurrent transition pairs", deadlocks.Load(), others.Load(), runs)
	}
	// Every run ended: cancelled, or failed by x.
	assertCount(t, e, `SELECT count(*) FROM qflow.runs WHERE status = 'started'`, 0)
}
