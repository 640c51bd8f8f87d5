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

// Run is a run's state with its steps and their tasks.
type Run struct {
	ID          uuid.UUID       `json:"id"`
	Flow        string          `json:"flow"`
	FlowVersion int             `json:"flow_version"`
	Status      string          `json:"status"`
	Input       json.RawMessage `json:"input"`
	// Output, once the run completed, holds its completed leaf steps'
	// outputs by slug (a skipped leaf has no key).
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	FailedStep string          `json:"failed_step,omitempty"`
	// Key is the run's idempotency key (StartOptions.Key), "" for none.
	Key string `json:"key,omitempty"`
	// Resumes counts the times ResumeRun resumed the run; ResumedAt is the
	// last (nil if never).
	Resumes    int        `json:"resumes,omitempty"`
	ResumedAt  *time.Time `json:"resumed_at,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// Unserved reports that the run is still going but no live worker
	// serves its flow version: none has heartbeated within
	// DefaultWorkerStaleAfter with the version's queue, so nothing will run
	// its tasks until one starts.
	Unserved bool `json:"unserved,omitempty"`
	// ParentRunID is, for a child run started by a subflow step (see
	// Subflow), the run that started it, and ParentStep that step; zero
	// for a run started otherwise.
	ParentRunID *uuid.UUID `json:"parent_run_id,omitempty"`
	ParentStep  string     `json:"parent_step,omitempty"`
	// Children are the runs the run's subflow steps started, oldest
	// first (a step retried has one per attempt).
	Children []ChildRun  `json:"children,omitempty"`
	Steps    []StepState `json:"steps,omitempty"`
}

// StepState is one step of a run. A skipped step (Status StatusSkipped) has
// no output: its one task is skipped when its condition was false, its
// tasks failed or were cancelled (and Error set) when it is an optional step
// that failed, and it has no task when it was skipped with a dependency.
type StepState struct {
	Step       string          `json:"step"`
	Status     string          `json:"status"`
	TaskCount  *int            `json:"task_count,omitempty"` // nil until the step starts
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	Tasks      []TaskState     `json:"tasks,omitempty"`
}

// TaskState is one task of a step.
type TaskState struct {
	Index      int             `json:"index"`
	Status     string          `json:"status"`
	Attempts   int             `json:"attempts"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	WorkerID   *uuid.UUID      `json:"worker_id,omitempty"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	// WakesAt is, for a queued task that workers may not claim yet, when
	// they may: after a snooze (Snooze, SnoozeUntil), a retry's delay or
	// its step's start delay. Nil when it may be claimed now, or is not
	// queued.
	WakesAt *time.Time `json:"wakes_at,omitempty"`
}

// GetRun returns a run with its steps and tasks, or ErrRunNotFound.
func (c *Client) GetRun(ctx context.Context, id uuid.UUID) (*Run, error) {
	r := &Run{ID: id}
	var errText, failed, key *string
	err := c.pool.QueryRow(ctx, `
		SELECT r.flow_slug, f.version, r.status, r.input, r.output, r.error, r.failed_step, r.started_at, r.finished_at,
		       r.idempotency_key, r.resumes, r.resumed_at
		FROM qflow.runs r JOIN qflow.flows f ON f.id = r.flow_id WHERE r.id = $1::uuid`, id).
		Scan(&r.Flow, &r.FlowVersion, &r.Status, &r.Input, &r.Output, &errText, &failed, &r.StartedAt, &r.FinishedAt,
			&key, &r.Resumes, &r.ResumedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrRunNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("qflow: get run %s: %w", id, err)
	}
	r.Error, r.FailedStep, r.Key = deref(errText), deref(failed), deref(key)
	if err := c.runTree(ctx, r); err != nil {
		return nil, err
	}
	if r.Status == StatusStarted {
		if _, _, r.Unserved, err = c.unserved(ctx, id); err != nil {
			return nil, err
		}
	}
	rows, err := c.pool.Query(ctx, `
		SELECT st.idx, st.slug,
		       CASE WHEN ss.status = 'created' THEN 'waiting' ELSE coalesce(ss.status,
		            CASE WHEN r.status IN ('failed', 'cancelled') THEN 'cancelled' ELSE 'created' END) END,
		       ss.task_count, ss.output, ss.error, ss.started_at, ss.finished_at
		FROM qflow.runs r
		JOIN qflow.steps st ON st.flow_id = r.flow_id
		LEFT JOIN qflow.step_states ss ON ss.run_id = r.id AND ss.step_idx = st.idx
		WHERE r.id = $1::uuid ORDER BY st.idx`, id)
	if err != nil {
		return nil, fmt.Errorf("qflow: get run %s: %w", id, err)
	}
	idx := map[int16]int{}
	for rows.Next() {
		var s StepState
		var i int16
		var e *string
		if err := rows.Scan(&i, &s.Step, &s.Status, &s.TaskCount, &s.Output, &e, &s.StartedAt, &s.FinishedAt); err != nil {
			rows.Close()
			return nil, err
		}
		s.Error = deref(e)
		idx[i] = len(r.Steps)
		r.Steps = append(r.Steps, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = c.pool.Query(ctx, `
		SELECT step_idx, task_index, status, attempts, output, error, worker_id, started_at, finished_at,
		       CASE WHEN status = 'queued' AND vt > clock_timestamp() AND vt < 'infinity' THEN vt END
		FROM qflow.step_tasks WHERE run_id = $1::uuid ORDER BY step_idx, task_index`, id)
	if err != nil {
		return nil, fmt.Errorf("qflow: get run %s: %w", id, err)
	}
	for rows.Next() {
		var t TaskState
		var i int16
		var e *string
		if err := rows.Scan(&i, &t.Index, &t.Status, &t.Attempts, &t.Output, &e, &t.WorkerID, &t.StartedAt, &t.FinishedAt, &t.WakesAt); err != nil {
			rows.Close()
			return nil, err
		}
		t.Error = deref(e)
		s := &r.Steps[idx[i]]
		s.Tasks = append(s.Tasks, t)
	}
	return r, rows.Err()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// ListRunsParams filter and page ListRuns. Zero fields do not filter.
type ListRunsParams struct {
	Flow   string // flow slug
	Status string // one of the run statuses
	Limit  int    // page size (default 100, at most 1000)
	// After continues a listing after this run (the last ID of the
	// previous page); runs are listed newest first.
	After uuid.UUID
}

// RunSummary is a run without its steps, as ListRuns returns it.
type RunSummary struct {
	ID         uuid.UUID  `json:"id"`
	Flow       string     `json:"flow"`
	Status     string     `json:"status"`
	Error      string     `json:"error,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// ListRuns lists runs newest first, filtered by flow and status.
func (c *Client) ListRuns(ctx context.Context, p ListRunsParams) ([]RunSummary, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	p.Limit = min(p.Limit, 1000)
	switch p.Status {
	case "", StatusStarted, StatusCompleted, StatusFailed, StatusCancelled:
	default:
		return nil, fmt.Errorf("qflow: list runs: unknown status %q", p.Status)
	}
	var after *uuid.UUID
	if p.After != uuid.Nil {
		after = &p.After
	}
	rows, err := c.pool.Query(ctx, `
		SELECT r.id, r.flow_slug, r.status, coalesce(r.error, ''), r.started_at, r.finished_at
		FROM qflow.runs r
		WHERE ($1::text = '' OR r.flow_slug = $1::text)
		  AND ($2::text = '' OR r.status = $2::text)
		  AND ($3::uuid IS NULL OR (r.started_at, r.id) < (SELECT a.started_at, a.id FROM qflow.runs a WHERE a.id = $3::uuid))
		ORDER BY r.started_at DESC, r.id DESC
		LIMIT $4::integer`, p.Flow, p.Status, after, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("qflow: list runs: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[RunSummary])
}

// GetFlow returns the newest stored definition of a flow, or ErrUnknownFlow.
func (c *Client) GetFlow(ctx context.Context, slug string) (*FlowDef, error) {
	var raw []byte
	err := c.pool.QueryRow(ctx, `SELECT definition FROM qflow.flows WHERE slug = $1::text ORDER BY version DESC LIMIT 1`, slug).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w %q", ErrUnknownFlow, slug)
	}
	if err != nil {
		return nil, fmt.Errorf("qflow: get flow %q: %w", slug, err)
	}
	var def FlowDef
	if err := json.Unmarshal(raw, &def); err != nil {
		return nil, fmt.Errorf("qflow: get flow %q: stored definition: %w", slug, err)
	}
	return &def, nil
}

// FlowInfo describes one stored flow version.
type FlowInfo struct {
	Slug      string    `json:"slug"`
	Version   int       `json:"version"`
	ShapeHash string    `json:"shape_hash"`
	Queue     string    `json:"queue"`
	Steps     int       `json:"steps"`
	CreatedAt time.Time `json:"created_at"`
	ID        int       `json:"id"` // as DefineFlow returns it
}

// sqlFlowInfo selects FlowInfo's columns, in its field order.
const sqlFlowInfo = `SELECT slug, version, shape_hash, queue_name, step_count, created_at, id FROM qflow.flows`

// ListFlows lists every stored flow version, by slug then version.
func (c *Client) ListFlows(ctx context.Context) ([]FlowInfo, error) {
	rows, err := c.pool.Query(ctx, sqlFlowInfo+` ORDER BY slug, version`)
	if err != nil {
		return nil, fmt.Errorf("qflow: list flows: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[FlowInfo])
}

// unserved reports whether run id is going with no live worker serving its
// flow version (see Run.Unserved).
func (c *Client) unserved(ctx context.Context, id uuid.UUID) (flow string, version int, unserved bool, err error) {
	err = c.pool.QueryRow(ctx, sqlUnserved, id, DefaultWorkerStaleAfter.Seconds()).Scan(&flow, &version, &unserved)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, false, fmt.Errorf("%w: %s", ErrRunNotFound, id)
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("qflow: get run %s: %w", id, err)
	}
	return flow, version, unserved, nil
}

// GetFlowInfo describes the flow version with this id (as DefineFlow
// returns it), or fails with ErrUnknownFlow.
func (c *Client) GetFlowInfo(ctx context.Context, id int) (*FlowInfo, error) {
	rows, err := c.pool.Query(ctx, sqlFlowInfo+` WHERE id = $1::integer`, id)
	if err != nil {
		return nil, fmt.Errorf("qflow: get flow id %d: %w", id, err)
	}
	info, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[FlowInfo])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: no flow version has id %d", ErrUnknownFlow, id)
	}
	if err != nil {
		return nil, fmt.Errorf("qflow: get flow id %d: %w", id, err)
	}
	return &info, nil
}
