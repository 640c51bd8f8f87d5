package runtime_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// TestStartRootsWritesWhatStartStepsWrites starts the same runs through
// start_runs_claim twice, each in a fresh database: once on the fast path
// for plain root steps (start_roots), once on the general path (forced by
// a "keys" option whose keys are all null, which starts unkeyed runs),
// claiming two of the six root tasks for a worker both times. Every row
// written and every event published must be the same. Runs are named by
// their rank in id order (claims and events follow id order) and have the
// same input, so the two databases' random ids do not matter.
func TestStartRootsWritesWhatStartStepsWrites(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    string
		started bool // publish the claimed tasks' task_started
		events  int  // how many events the start publishes
	}{
		{"events", `"priority": 2, "timeout_ms": 3600000, "trace_context": {"traceparent": "00-x"}`, true, 3 + 6 + 2},
		{"no task_started", `"priority": 2`, false, 3 + 6},
		{"events off", `"events": false, "max_attempts": 5`, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want string
			for _, opts := range []string{`{` + c.opts + `}`, `{` + c.opts + `, "keys": [null, null, null]}`} {
				got := startRootsRecord(t, opts, c.started, c.events)
				if want == "" {
					want = got
				} else if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("the general path wrote otherwise than start_roots (-start_roots +general):\n%s", diff)
				}
			}
		})
	}
}

// startRootsRecord starts three runs of a flow with two roots (b with a
// priority, so claimed first) with opts, and describes what it wrote and
// the events it published (started: task_started of the claimed tasks
// too), n of them.
func startRootsRecord(t *testing.T, opts string, started bool, n int) string {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	l := listenEvents(t, e)
	def, err := qflow.NewFlow("roots").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{}).
		Step("c", qflow.StepDef{DependsOn: []string{"a", "b"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.SetStepPriorities(ctx, id, map[string]int{"b": 5}); err != nil {
		t.Fatal(err)
	}
	worker := uuid.New()
	var ids []uuid.UUID
	var claimed []string
	if err := e.db.Pool.QueryRow(ctx, `SELECT s.o_ids, coalesce(array_agg(format('%s/%s', x.r, x.s)) FILTER (WHERE x.r IS NOT NULL), '{}')
		FROM qflow.start_runs_claim($1, ARRAY['{"x": 1}', '{"x": 1}', '{"x": 1}']::jsonb[], $2::jsonb, $3, $1, 2, 30000, $4) s
		LEFT JOIN LATERAL unnest(s.o_run, s.o_step) AS x(r, s) ON true GROUP BY s.o_ids`, id, opts, worker, started).Scan(&ids, &claimed); err != nil {
		t.Fatal(err)
	}
	rank := map[uuid.UUID]string{}
	var rows string
	if err := e.db.Pool.QueryRow(ctx, `WITH rk AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM qflow.runs)
		SELECT (SELECT string_agg(format('run %s: %s left=%s in=%s ev=%s seq=%s prio=%s max=%s deadline=%s trace=%s key=%s',
				rk.n, r.status, r.remaining_steps, r.input, r.events, r.sequential, r.priority, r.max_attempts,
				r.deadline IS NOT NULL, r.trace_context, r.idempotency_key), E'\n' ORDER BY rk.n)
				FROM qflow.runs r JOIN rk ON rk.id = r.id)
			|| E'\n' || (SELECT string_agg(format('state %s/%s: %s %s/%s out=%s started=%s', rk.n, s.step_idx, s.status,
				s.remaining_tasks, s.task_count, s.output, s.started_at IS NOT NULL), E'\n' ORDER BY rk.n, s.step_idx)
				FROM qflow.step_states s JOIN rk ON rk.id = s.run_id)
			|| E'\n' || (SELECT string_agg(format('task %s/%s/%s: %s #%s in=%s prio=%s max=%s ev=%s seq=%s lane=%s key=%s trace=%s deadline=%s mine=%s started=%s leased=%s',
				rk.n, t.step_idx, t.task_index, t.status, t.attempts, t.input, t.priority, t.max_attempts, t.events,
				t.sequential, t.lane, t.limit_key, t.trace_context, t.deadline IS NOT NULL, t.worker_id = $1,
				t.started_at IS NOT NULL, t.vt > now() + interval '20 seconds'), E'\n' ORDER BY t.seq)
				FROM qflow.step_tasks t JOIN rk ON rk.id = t.run_id),
			(SELECT array_agg(rk.id ORDER BY rk.n) FROM rk)`, worker).Scan(&rows, &ids); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		rank[id] = fmt.Sprint(i + 1)
	}
	for i, c := range claimed {
		r, s, _ := strings.Cut(c, "/")
		claimed[i] = rank[uuid.MustParse(r)] + "/" + s
	}
	// The events, in the order published, each named by its run's rank
	// (workflow_started, published in input order, by none: the inputs
	// are the same).
	var evs []string
	for len(evs) < n {
		select {
		case m := <-l.C():
			if m.Event == nil {
				t.Fatalf("notification without an event: %+v", m)
			}
			run := rank[m.Event.RunID]
			if m.Event.Type == notify.WorkflowStarted {
				run = "*"
			}
			evs = append(evs, run+" "+describe(*m.Event))
		case <-ctx.Done():
			t.Fatalf("%d events (%q), want %d", len(evs), evs, n)
		}
	}
	select {
	case m := <-l.C():
		t.Fatalf("an event more: %+v", m)
	case <-time.After(100 * time.Millisecond):
	}
	b, _ := json.MarshalIndent(map[string]any{"claimed": claimed, "events": evs}, "", " ")
	return rows + "\n" + string(b)
}
