package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
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
			if err := e.client.SetStepPriorities(ctx, id, tc.prios); err != nil {
				t.Fatal(err)
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

// TestStepPrioritiesErrors: unknown steps, unknown flow versions and
// priorities that do not fit the engine's integer are refused, with the
// package's errors; the SQL function refuses mismatched arrays itself.
func TestStepPrioritiesErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, _ := qflow.NewFlow("prio_err").Step("a", qflow.StepDef{}).Build()
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id    int
		prios map[string]int
		want  error
	}{
		{id, map[string]int{"nope": 1}, qflow.ErrInvalidFlow},
		{id, map[string]int{"a": 1 << 40}, qflow.ErrInvalidFlow},
		{id + 1000, map[string]int{"a": 1}, qflow.ErrUnknownFlow},
	} {
		if err := e.client.SetStepPriorities(ctx, tc.id, tc.prios); !errors.Is(err, tc.want) {
			t.Errorf("SetStepPriorities(%d, %v) = %v, want %v", tc.id, tc.prios, err, tc.want)
		}
	}
	if _, err := e.db.Pool.Exec(ctx, `SELECT qflow.set_step_priorities($1::integer, $2::text[], $3::integer[])`, id, []string{"a"}, []int32{1, 2}); err == nil {
		t.Error("set_step_priorities with 1 slug and 2 priorities: no error")
	}
	if err := e.client.SetStepPriorities(ctx, id, nil); err != nil {
		t.Errorf("no priorities: %v", err)
	}
}

// TestGetFlowInfo: a flow version is found by the id DefineFlow returned.
func TestGetFlowInfo(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, _ := qflow.NewFlow("info").Step("a", qflow.StepDef{}).Step("b", qflow.StepDef{DependsOn: []string{"a"}}).Build()
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	def2, _ := qflow.NewFlow("info").Step("a", qflow.StepDef{}).Build()
	id2, err := e.client.DefineFlow(ctx, def2)
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.client.GetFlowInfo(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != id2 || info.Slug != "info" || info.Version != 2 || info.Steps != 1 || info.ShapeHash != def2.ShapeHash() || info.Queue != "info_2" {
		t.Errorf("GetFlowInfo(%d) = %+v", id2, info)
	}
	if info, err := e.client.GetFlowInfo(ctx, id); err != nil || info.Version != 1 {
		t.Errorf("GetFlowInfo(%d) = %+v, %v", id, info, err)
	}
	if _, err := e.client.GetFlowInfo(ctx, id2+1000); !errors.Is(err, qflow.ErrUnknownFlow) {
		t.Errorf("unknown id: %v", err)
	}
}
