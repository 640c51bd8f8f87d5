package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// This file holds the read-only queries behind the operator's tools (the
// qflow command and the dashboard). They read only the qflow tables
// (flows, steps, runs, step_states, step_tasks, workers), never the queue
// implementation, so they keep working whatever carries the tasks.

// DefaultWorkerStaleAfter is how long after its last heartbeat a worker
// that has not stopped is still counted as live by ListWorkers and
// Overview.
const DefaultWorkerStaleAfter = time.Minute

// WorkerInfo is one worker process as recorded in the database.
type WorkerInfo struct {
	ID          uuid.UUID  `json:"id"`
	Hostname    string     `json:"hostname"`
	PID         int        `json:"pid"`
	Queues      []string   `json:"queues"`
	StartedAt   time.Time  `json:"started_at"`
	HeartbeatAt time.Time  `json:"heartbeat_at"`
	StoppedAt   *time.Time `json:"stopped_at,omitempty"`
	// Live reports that the worker has not stopped and heartbeated within
	// the staleness window.
	Live bool `json:"live"`
	// HeldTasks counts the tasks the worker has claimed and not finished.
	HeldTasks int `json:"held_tasks"`
}

// ListWorkersParams filter ListWorkers. The zero value lists live workers.
type ListWorkersParams struct {
	// All also lists stopped and stale workers (at most Limit of them).
	All bool
	// StaleAfter overrides DefaultWorkerStaleAfter (0: the default).
	StaleAfter time.Duration
	// Limit caps the rows (default 100, at most 1000).
	Limit int
}

// ListWorkers lists workers, live ones first, then by most recent heartbeat.
func (c *Client) ListWorkers(ctx context.Context, p ListWorkersParams) ([]WorkerInfo, error) {
	stale := p.StaleAfter
	if stale <= 0 {
		stale = DefaultWorkerStaleAfter
	}
	if p.Limit <= 0 {
		p.Limit = 100
	}
	p.Limit = min(p.Limit, 1000)
	rows, err := c.pool.Query(ctx, `
		SELECT w.id, w.hostname, w.pid, w.queues, w.started_at, w.heartbeat_at, w.stopped_at,
		       (w.stopped_at IS NULL AND w.heartbeat_at > now() - make_interval(secs => $1::float8)) AS live,
		       (SELECT count(*) FROM qflow.step_tasks t WHERE t.worker_id = w.id AND t.status = 'started')::int
		FROM qflow.workers w
		WHERE $2::boolean OR (w.stopped_at IS NULL AND w.heartbeat_at > now() - make_interval(secs => $1::float8))
		ORDER BY live DESC, w.heartbeat_at DESC, w.id
		LIMIT $3::integer`, stale.Seconds(), p.All, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("qflow: list workers: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[WorkerInfo])
}

// QueueInfo is the backlog of one flow version: tasks waiting to be
// claimed and tasks being run.
type QueueInfo struct {
	Flow    string `json:"flow"`
	Version int    `json:"version"`
	Queue   string `json:"queue"`
	// Queued counts tasks waiting for a worker (including retries waiting
	// for their delay).
	Queued int `json:"queued"`
	// Running counts tasks claimed by a worker and not finished.
	Running int `json:"running"`
	// OldestQueuedAt is when the oldest waiting task was queued; nil when
	// none waits.
	OldestQueuedAt *time.Time `json:"oldest_queued_at,omitempty"`
}

// OldestAge returns how long the oldest queued task has waited, as of now;
// 0 when none waits.
func (q QueueInfo) OldestAge(now time.Time) time.Duration {
	if q.OldestQueuedAt == nil {
		return 0
	}
	return max(now.Sub(*q.OldestQueuedAt), 0)
}

// ListQueues returns the backlog of every flow version, by flow slug then
// version. Versions with nothing queued or running are included, so every
// stored flow version appears once.
func (c *Client) ListQueues(ctx context.Context) ([]QueueInfo, error) {
	rows, err := c.pool.Query(ctx, `
		SELECT f.slug, f.version, f.queue_name,
		       coalesce(t.queued, 0)::int, coalesce(t.running, 0)::int, t.oldest
		FROM qflow.flows f
		LEFT JOIN (
			SELECT flow_id,
			       count(*) FILTER (WHERE status = 'queued') AS queued,
			       count(*) FILTER (WHERE status = 'started') AS running,
			       min(queued_at) FILTER (WHERE status = 'queued') AS oldest
			FROM qflow.step_tasks
			WHERE status IN ('queued', 'started')
			GROUP BY flow_id
		) t ON t.flow_id = f.id
		ORDER BY f.slug, f.version`)
	if err != nil {
		return nil, fmt.Errorf("qflow: list queues: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[QueueInfo])
}

// Overview summarises the engine's state for a dashboard.
type Overview struct {
	// Runs counts every run by status (started, completed, failed,
	// cancelled); statuses with no run are present with 0.
	Runs map[string]int `json:"runs"`
	// Window is the period the recent figures cover, ending at Now.
	Window time.Duration `json:"window_ns"`
	Now    time.Time     `json:"now"`
	// Started counts runs started within the window; Finished those that
	// finished within it, by status.
	Started  int            `json:"started"`
	Finished map[string]int `json:"finished"`
	// Throughput is the number of runs finished within the window per
	// minute.
	Throughput float64 `json:"throughput_per_min"`
	// FailureRate is failed / (completed + failed) over the runs finished
	// within the window; 0 when none finished.
	FailureRate float64 `json:"failure_rate"`
	// TasksCompleted counts tasks that completed within the window.
	TasksCompleted int `json:"tasks_completed"`
	// Queued and Running count tasks waiting and running, all flows.
	Queued  int `json:"queued"`
	Running int `json:"running"`
	// OldestQueuedAt is when the oldest waiting task was queued; nil when
	// none waits.
	OldestQueuedAt *time.Time `json:"oldest_queued_at,omitempty"`
	// LiveWorkers counts workers that heartbeated within
	// DefaultWorkerStaleAfter and have not stopped.
	LiveWorkers int `json:"live_workers"`
}

// Overview returns the counts a dashboard's front page shows. window is the
// period of the recent figures (0 means one hour).
func (c *Client) Overview(ctx context.Context, window time.Duration) (*Overview, error) {
	if window <= 0 {
		window = time.Hour
	}
	o := &Overview{
		Window:   window,
		Runs:     map[string]int{StatusStarted: 0, StatusCompleted: 0, StatusFailed: 0, StatusCancelled: 0},
		Finished: map[string]int{StatusCompleted: 0, StatusFailed: 0, StatusCancelled: 0},
	}
	secs := window.Seconds()
	rows, err := c.pool.Query(ctx, `SELECT status, count(*)::int FROM qflow.runs GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("qflow: overview: %w", err)
	}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("qflow: overview: %w", err)
		}
		o.Runs[s] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("qflow: overview: %w", err)
	}
	var completed, failed, cancelled int
	err = c.pool.QueryRow(ctx, `
		SELECT now(),
		       (SELECT count(*) FROM qflow.runs WHERE started_at > now() - make_interval(secs => $1::float8))::int,
		       count(*) FILTER (WHERE status = 'completed')::int,
		       count(*) FILTER (WHERE status = 'failed')::int,
		       count(*) FILTER (WHERE status = 'cancelled')::int
		FROM qflow.runs
		WHERE status <> 'started' AND finished_at > now() - make_interval(secs => $1::float8)`, secs).
		Scan(&o.Now, &o.Started, &completed, &failed, &cancelled)
	if err != nil {
		return nil, fmt.Errorf("qflow: overview: %w", err)
	}
	o.Finished[StatusCompleted], o.Finished[StatusFailed], o.Finished[StatusCancelled] = completed, failed, cancelled
	o.Throughput = float64(completed+failed+cancelled) / window.Minutes()
	if completed+failed > 0 {
		o.FailureRate = float64(failed) / float64(completed+failed)
	}
	err = c.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE status = 'queued')::int,
		       count(*) FILTER (WHERE status = 'started')::int,
		       min(queued_at) FILTER (WHERE status = 'queued'),
		       (SELECT count(*) FROM qflow.step_tasks
		        WHERE status = 'completed' AND finished_at > now() - make_interval(secs => $1::float8))::int,
		       (SELECT count(*) FROM qflow.workers
		        WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => $2::float8))::int
		FROM qflow.step_tasks WHERE status IN ('queued', 'started')`, secs, DefaultWorkerStaleAfter.Seconds()).
		Scan(&o.Queued, &o.Running, &o.OldestQueuedAt, &o.TasksCompleted, &o.LiveWorkers)
	if err != nil {
		return nil, fmt.Errorf("qflow: overview: %w", err)
	}
	return o, nil
}

// GetFlowVersion returns one stored version of a flow's definition, or
// ErrUnknownFlow. Version 0 means the newest, as GetFlow.
func (c *Client) GetFlowVersion(ctx context.Context, slug string, version int) (*FlowDef, error) {
	if version == 0 {
		return c.GetFlow(ctx, slug)
	}
	var raw []byte
	err := c.pool.QueryRow(ctx, `SELECT definition FROM qflow.flows WHERE slug = $1::text AND version = $2::integer`, slug, version).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w %q version %d", ErrUnknownFlow, slug, version)
	}
	if err != nil {
		return nil, fmt.Errorf("qflow: get flow %q version %d: %w", slug, version, err)
	}
	var def FlowDef
	if err := json.Unmarshal(raw, &def); err != nil {
		return nil, fmt.Errorf("qflow: get flow %q version %d: stored definition: %w", slug, version, err)
	}
	return &def, nil
}

// TaskInput returns the input one task of a run was given, as the engine
// stored it when the task was queued: the element for a map step's task,
// else an object with the flow input under "run" (when the step takes it)
// and each dependency's output under its slug. An unknown run, step or
// index gives ErrRunNotFound.
func (c *Client) TaskInput(ctx context.Context, run uuid.UUID, step string, index int) (json.RawMessage, error) {
	var in json.RawMessage
	err := c.pool.QueryRow(ctx, `
		SELECT t.input FROM qflow.step_tasks t
		JOIN qflow.runs r ON r.id = t.run_id
		JOIN qflow.steps s ON s.flow_id = r.flow_id AND s.idx = t.step_idx
		WHERE t.run_id = $1::uuid AND s.slug = $2::text AND t.task_index = $3::integer`, run, step, index).Scan(&in)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s step %q task %d", ErrRunNotFound, run, step, index)
	}
	if err != nil {
		return nil, fmt.Errorf("qflow: task input: %w", err)
	}
	return in, nil
}

// BrokenRows lists the rows of the engine's run, step and task tables
// (qflow.runs, qflow.step_states, qflow.step_tasks) that break the rules the
// engine's functions keep: the status values, counters never negative, and
// status in step with finished_at, outputs and counters. Each line names the
// table, the row's key and its status; at most limit lines (1,000 when
// limit is not between 1 and 1,000). A healthy database has none. The rules
// are not CHECK constraints, which PostgreSQL would parse and plan again on
// every statement that writes the tables (docs/reliability.md); a row
// written by hand, or by a bug, is found here instead. It reads every row
// of the three tables (qflow.invariant_violations, migration 0008).
func (c *Client) BrokenRows(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := c.pool.Query(ctx, `SELECT v FROM qflow.invariant_violations() AS v LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("qflow: check the engine's rows: %w", err)
	}
	broken, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("qflow: check the engine's rows: %w", err)
	}
	return broken, nil
}
