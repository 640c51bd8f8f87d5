package runtime_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
)

// TestStepPriorities: with one worker slot, ready tasks of a prioritized
// flow start highest priority first; a flow without priorities stays FIFO.
func TestStepPriorities(t *testing.T) {
	for _, tc := range []struct {
		name  string
		prios map[string]int
		want  []string
	}{
		{"fifo", nil, []string{"lo", "mid", "hi"}},
		{"prioritized", map[string]int{"hi": 10, "mid": 5}, []string{"hi", "mid", "lo"}},
		{"negative", map[string]int{"lo": -1, "hi": 3}, []string{"hi", "mid", "lo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			def, err := qflow.NewFlow("prio").
				Step("lo", qflow.StepDef{}).
				Step("mid", qflow.StepDef{}).
				Step("hi", qflow.StepDef{}).
				Build()
			if err != nil {
				t.Fatal(err)
			}
			id, err := e.client.DefineFlow(ctx, def)
			if err != nil {
				t.Fatal(err)
			}
			if tc.prios != nil {
				var slugs []string
				var prios []int32
				for s, p := range tc.prios {
					slugs = append(slugs, s)
					prios = append(prios, int32(p))
				}
				if _, err := e.db.Pool.Exec(ctx, `SELECT qflow.set_step_priorities($1::integer, $2::text[], $3::integer[])`, id, slugs, prios); err != nil {
					t.Fatal(err)
				}
			}
			// Two runs queued before any worker runs: all six tasks are ready.
			var ids []uuid.UUID
			for range 2 {
				rid, err := e.client.StartRun(ctx, "prio", map[string]int{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, rid)
			}
			var mu sync.Mutex
			var order []string
			h := func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
				mu.Lock()
				order = append(order, task.Step)
				mu.Unlock()
				return json.RawMessage(`1`), nil
			}
			e.startWorker(def, map[string]qflow.Handler{"lo": h, "mid": h, "hi": h},
				&qflow.WorkerOptions{Concurrency: 1, BatchSize: 1})
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			for _, rid := range ids {
				if _, err := e.client.WaitRun(wctx, rid); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			// Both runs' tasks are ready together: each priority level is
			// served (for both runs) before the next.
			var want []string
			for _, s := range tc.want {
				want = append(want, s, s)
			}
			if tc.prios == nil {
				want = append(slices.Clone(tc.want), tc.want...) // FIFO: run by run
			}
			if !slices.Equal(order, want) {
				t.Fatalf("start order %v, want %v", order, want)
			}
		})
	}
}

// TestStepPrioritiesErrors: unknown steps and mismatched arrays are refused.
func TestStepPrioritiesErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, _ := qflow.NewFlow("prio_err").Step("a", qflow.StepDef{}).Build()
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]any{
		{id, []string{"nope"}, []int32{1}},
		{id, []string{"a"}, []int32{1, 2}},
		{id + 1000, []string{"a"}, []int32{1}},
	} {
		if _, err := e.db.Pool.Exec(ctx, `SELECT qflow.set_step_priorities($1::integer, $2::text[], $3::integer[])`, args...); err == nil {
			t.Errorf("set_step_priorities%v: no error", args)
		}
	}
}
