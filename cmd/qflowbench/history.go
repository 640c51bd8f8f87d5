package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The history prefill: finished runs of the chain flow, as the engine
// leaves them (migrations/0002_qflow.sql), inserted set-based. Run g
// (1..$2) has a random-looking id derived from g, input g, started $3 + g ms
// and took 3 ms; step s (0..2) started at +s ms, ran one attempt for 1 ms
// and output g+s+1, so the run's output is {"c": g+3}. $1 is the flow id,
// $4 its slug.
const (
	sqlHistoryRuns = `
INSERT INTO qflow.runs (id, flow_id, flow_slug, status, input, output, remaining_steps,
                        events, started_at, finished_at)
SELECT md5('qflowbench-history-' || g)::uuid, $1, $4::text, 'completed', to_jsonb(g),
       jsonb_build_object('c', g + 3), 0, true, t, t + interval '3 ms'
FROM generate_series(1, $2::integer) g
CROSS JOIN LATERAL (SELECT $3::timestamptz + g * interval '1 ms') AS x(t)`

	sqlHistorySteps = `
INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status, task_count, remaining_tasks,
                               output, created_at, started_at, finished_at)
SELECT md5('qflowbench-history-' || g)::uuid, s::smallint, $1, 'completed', 1, 0,
       to_jsonb(g + s + 1), t, t, t + interval '1 ms'
FROM generate_series(1, $2::integer) g
CROSS JOIN generate_series(0, 2) s
CROSS JOIN LATERAL (SELECT $3::timestamptz + g * interval '1 ms' + s * interval '1 ms') AS x(t)
ORDER BY g, s`

	sqlHistoryTasks = `
INSERT INTO qflow.step_tasks (run_id, step_idx, task_index, flow_id, status, attempts, max_attempts,
                              vt, events, sequential, input, output, worker_id,
                              queued_at, started_at, finished_at)
SELECT md5('qflowbench-history-' || g)::uuid, s::smallint, 0, $1, 'completed', 1, 3,
       t + interval '1 ms', true, false,
       CASE s WHEN 0 THEN jsonb_build_object('run', g)
              WHEN 1 THEN jsonb_build_object('a', g + 1)
              ELSE jsonb_build_object('b', g + 2) END,
       to_jsonb(g + s + 1), '00000000-0000-4000-8000-000000000001'::uuid,
       t, t, t + interval '1 ms'
FROM generate_series(1, $2::integer) g
CROSS JOIN generate_series(0, 2) s
CROSS JOIN LATERAL (SELECT $3::timestamptz + g * interval '1 ms' + s * interval '1 ms') AS x(t)
ORDER BY g, s`
)

// prefill inserts at least tasks finished tasks (whole runs of the 3-step
// chain of flow flowID), then vacuums and analyses the database. It reports
// the sizes and the time each part took.
func prefill(ctx context.Context, pool *pgxpool.Pool, flowID, tasks int, log io.Writer) (map[string]float64, error) {
	runs := (tasks + chainSteps - 1) / chainSteps
	var autovacuum string
	if err := pool.QueryRow(ctx, `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "history: inserting %d finished runs (%d tasks)\n", runs, runs*chainSteps)
	began := time.Now()
	// The history ends a minute before now, and stays in the past.
	t0 := began.Add(-time.Minute - time.Duration(runs+10)*time.Millisecond)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	for _, q := range []string{sqlHistoryRuns, sqlHistorySteps, sqlHistoryTasks} {
		args := []any{flowID, runs, t0}
		if q == sqlHistoryRuns {
			args = append(args, chainSlug)
		}
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return nil, fmt.Errorf("history prefill: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	inserted := time.Since(began)
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		return nil, err
	}
	vacuumed := time.Since(began) - inserted
	if autovacuum == "off" {
		fmt.Fprintln(log, "history: note: autovacuum is OFF on this server; the prefill ran VACUUM ANALYZE itself, and nothing vacuums during the measurement")
	}
	fmt.Fprintf(log, "history: inserted in %.1fs, VACUUM ANALYZE in %.1fs\n", inserted.Seconds(), vacuumed.Seconds())
	return map[string]float64{
		"history_tasks":          float64(runs * chainSteps),
		"history_runs":           float64(runs),
		"prefill_seconds":        inserted.Seconds(),
		"prefill_vacuum_seconds": vacuumed.Seconds(),
		"autovacuum_on":          map[bool]float64{true: 1}[autovacuum == "on"],
	}, nil
}
