package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// StepStats are the execution statistics learned for one step of a flow
// (Flow and Step set) or for one handler kind of composed flows (Kind set,
// Flow and Step empty). The engine records a step's statistics for every
// run of every flow, in the transaction that finishes each task; a kind's
// are recorded per composed run (RecordRunStats). Durations are of
// successful attempts, from the claim to the completion, in milliseconds;
// the percentiles are over the most recent 128 of them.
type StepStats struct {
	Flow           string    `json:"flow,omitempty"`
	Step           string    `json:"step,omitempty"`
	Kind           string    `json:"kind,omitempty"`
	Runs           int64     `json:"runs"`            // runs in which the step finished
	Tasks          int64     `json:"tasks"`           // tasks that finished (completed or failed for good)
	Successes      int64     `json:"successes"`       // tasks that completed
	Failures       int64     `json:"failures"`        // tasks that failed for good
	Attempts       int64     `json:"attempts"`        // attempts of the tasks that finished, first tries included
	FailedAttempts int64     `json:"failed_attempts"` // attempts that failed, retried or not
	RetriedOK      int64     `json:"retried_ok"`      // tasks that completed after a failed attempt
	Timeouts       int64     `json:"timeouts"`        // attempts that hit the step timeout
	MeanMS         float64   `json:"mean_ms"`
	P50MS          float64   `json:"p50_ms"`
	P90MS          float64   `json:"p90_ms"`
	P95MS          float64   `json:"p95_ms"`
	P99MS          float64   `json:"p99_ms"`
	MaxMS          float64   `json:"max_ms"`
	Samples        int       `json:"samples"` // durations the percentiles are taken over
	UpdatedAt      time.Time `json:"updated_at"`
}

// RecordStatsParams add what the engine's tables cannot tell to
// RecordRunStats. A nil *RecordStatsParams records from the tables alone.
type RecordStatsParams struct {
	// Kinds maps step slugs to handler kinds: those steps' tasks are folded
	// into the kind's statistics, and the steps' statistics are labelled
	// with their kind (StepStats.Kind).
	Kinds map[string]string
	// Timeouts maps step slugs to the number of attempts that hit the step
	// timeout, as counted by the handlers, for the kinds' statistics (the
	// engine keeps only a task's last error; the steps' own statistics
	// count every timed-out attempt as it fails).
	Timeouts map[string]int
}

// RecordRunStats records a finished run of a composed flow under the
// handler kinds of its steps (see migrations/0004_stats.sql) and returns
// how many steps it recorded: 0 for a run that is still going or was
// recorded before. It is one set-based statement over the run's tasks.
// The steps' own statistics need no call: the engine records them for
// every run as its tasks finish. runtime/goals calls it after each
// composed run.
func (c *Client) RecordRunStats(ctx context.Context, id uuid.UUID, p *RecordStatsParams) (int, error) {
	kinds, timeouts := []byte(`{}`), []byte(`{}`)
	if p != nil {
		if p.Kinds != nil {
			kinds, _ = json.Marshal(p.Kinds)
		}
		if p.Timeouts != nil {
			timeouts, _ = json.Marshal(p.Timeouts)
		}
	}
	var n int
	if err := c.pool.QueryRow(ctx, `SELECT qflow.record_run_stats($1::uuid, $2::jsonb, $3::jsonb)`, id, kinds, timeouts).Scan(&n); err != nil {
		return 0, fmt.Errorf("qflow: record statistics of run %s: %w", id, err)
	}
	return n, nil
}

const sqlStatsColumns = `runs, tasks, successes, failures, attempts, failed_attempts, retried_ok, timeouts,
	CASE WHEN successes > 0 THEN sum_ms / successes ELSE 0 END, p.p50, p.p90, p.p95, p.p99, max_ms,
	cardinality(recent_ms), updated_at`

// StepStats returns the statistics of every recorded step of the flow with
// this slug (across its versions), by step slug. They include every task
// finished in a transaction that committed before the call. A flow with no
// finished task has none.
func (c *Client) StepStats(ctx context.Context, flow string) ([]StepStats, error) {
	return stepStats(ctx, c.pool, flow)
}

// sqlFoldStepStats folds the statistics appended since the last fold into
// qflow.step_stats, waiting for a fold under way.
const sqlFoldStepStats = `SELECT qflow.fold_step_stats(true)`

// stepStats folds what was appended and reads flow's step statistics, in
// one round trip and one transaction.
func stepStats(ctx context.Context, db interface {
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}, flow string) ([]StepStats, error) {
	b := &pgx.Batch{}
	b.Queue(sqlFoldStepStats)
	b.Queue(`SELECT flow_slug, step_slug, coalesce(kind, ''), `+sqlStatsColumns+`
		FROM qflow.step_stats, qflow.stats_percentiles(recent_ms) p
		WHERE flow_slug = $1::text ORDER BY step_slug`, flow)
	br := db.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("qflow: step statistics of %q: fold: %w", flow, err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("qflow: step statistics of %q: %w", flow, err)
	}
	st, err := pgx.CollectRows(rows, pgx.RowToStructByPos[StepStats])
	if err != nil {
		return nil, fmt.Errorf("qflow: step statistics of %q: %w", flow, err)
	}
	return st, nil
}

// KindStats returns the statistics of these handler kinds (all recorded
// kinds when none is given), by kind.
func (c *Client) KindStats(ctx context.Context, kinds ...string) ([]StepStats, error) {
	rows, err := c.pool.Query(ctx, `SELECT '', '', kind, `+sqlStatsColumns+`
		FROM qflow.kind_stats, qflow.stats_percentiles(recent_ms) p
		WHERE coalesce(cardinality($1::text[]), 0) = 0 OR kind = ANY ($1::text[]) ORDER BY kind`, kinds)
	if err != nil {
		return nil, fmt.Errorf("qflow: kind statistics: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[StepStats])
}
