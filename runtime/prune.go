package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PruneOptions select the finished runs Prune deletes.
type PruneOptions struct {
	// OlderThan keeps runs that finished less than this long ago; it must be
	// positive.
	OlderThan time.Duration
	// Statuses limits pruning to runs that ended so: any of completed,
	// failed and cancelled (default: all three). Runs still going are never
	// pruned.
	Statuses []string
	// BatchSize is how many runs one transaction deletes (default 500, at
	// most 10,000), so no lock is held for long and nothing is rewritten.
	BatchSize int
}

// PruneResult counts what Prune deleted.
type PruneResult struct {
	Runs  int64 `json:"runs"`
	Steps int64 `json:"steps"`
	Tasks int64 `json:"tasks"`
	// Stats counts runs' entries in the statistics' record of runs already
	// folded in (the statistics themselves are kept).
	Stats int64 `json:"stats"`
}

// ErrBadPrune wraps the errors of Prune's options.
var ErrBadPrune = errors.New("qflow: prune")

// Prune deletes finished runs older than opts.OlderThan, with their step
// states and tasks, in batches of opts.BatchSize runs, one transaction per
// batch, and reports what it deleted. It also deletes the state of limits
// across workers (StepOptions.Concurrency, Rate and Key) that holds nothing
// any more: a key's gate is made again when the key next comes. Runs still going are never touched,
// and a run being pruned by another Prune at the same moment is skipped.
// If ctx ends, the batches already deleted stay deleted and the count so
// far is returned with ctx's error.
func (c *Client) Prune(ctx context.Context, opts PruneOptions) (PruneResult, error) {
	if err := opts.check(); err != nil {
		return PruneResult{}, err
	}
	return prune(ctx, c.pool, opts)
}

// check validates opts and fills in the defaults.
func (opts *PruneOptions) check() error {
	if opts.OlderThan <= 0 {
		return fmt.Errorf("%w: OlderThan must be positive (got %s): pruning would reach runs that just finished", ErrBadPrune, opts.OlderThan)
	}
	if len(opts.Statuses) == 0 {
		opts.Statuses = []string{StatusCompleted, StatusFailed, StatusCancelled}
	}
	for _, s := range opts.Statuses {
		switch s {
		case StatusCompleted, StatusFailed, StatusCancelled:
		default:
			return fmt.Errorf("%w: status %q: want completed, failed or cancelled", ErrBadPrune, s)
		}
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.BatchSize > 10000 {
		return fmt.Errorf("%w: BatchSize %d: at most 10,000", ErrBadPrune, opts.BatchSize)
	}
	return nil
}

// prune deletes batches on db until one comes back short; opts are checked.
func prune(ctx context.Context, db DB, opts PruneOptions) (PruneResult, error) {
	var res PruneResult
	statuses, batch := opts.Statuses, opts.BatchSize
	for {
		var b PruneResult
		err := db.QueryRow(ctx, sqlPrune, statuses, opts.OlderThan.Milliseconds(), batch).
			Scan(&b.Runs, &b.Steps, &b.Tasks, &b.Stats)
		if err != nil {
			return res, fmt.Errorf("qflow: prune: %w", err)
		}
		res.Runs, res.Steps, res.Tasks, res.Stats = res.Runs+b.Runs, res.Steps+b.Steps, res.Tasks+b.Tasks, res.Stats+b.Stats
		if b.Runs < int64(batch) {
			break
		}
	}
	// Then the gates of limits across workers that hold nothing (they are
	// made again when next needed).
	for {
		var n int
		if err := db.QueryRow(ctx, sqlPruneGates, batch).Scan(&n); err != nil {
			return res, fmt.Errorf("qflow: prune gates: %w", err)
		}
		if n < batch {
			return res, nil
		}
	}
}

// RetentionOptions make a worker prune finished runs periodically
// (WorkerOptions.Retention).
type RetentionOptions struct {
	// PruneOptions select what is deleted, as for Client.Prune; OlderThan
	// is required.
	PruneOptions
	// Interval is the time between two prunes (default one hour, at least
	// one minute). The first prune comes one Interval after the worker
	// starts.
	Interval time.Duration
}

// retentionLock is the advisory lock (pg_try_advisory_lock's one-bigint
// key space) that lets one worker of a database prune at a time: the
// 64-bit FNV-1a hash of "qflow.retention".
const retentionLock int64 = 4141047795805631332

// check validates o and fills in the defaults.
func (o *RetentionOptions) check() error {
	if err := o.PruneOptions.check(); err != nil {
		return fmt.Errorf("qflow: WorkerOptions.Retention: %w", err)
	}
	switch {
	case o.Interval == 0:
		o.Interval = time.Hour
	case o.Interval < minRetentionInterval:
		return fmt.Errorf("qflow: WorkerOptions.Retention: %w: Interval %s: at least %s", ErrBadPrune, o.Interval, minRetentionInterval)
	}
	return nil
}

// minRetentionInterval is the shortest RetentionOptions.Interval (tests
// shorten it).
var minRetentionInterval = time.Minute

// retain prunes every Retention.Interval until ctx ends, when no other
// worker of the database is pruning.
func (w *Worker) retain(ctx context.Context) {
	o := *w.opts.Retention
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.abandon:
			return
		case <-t.C:
		}
		res, ran, err := w.pruneOnce(ctx, o.PruneOptions)
		switch {
		case err != nil && ctx.Err() == nil:
			w.log.Warn("qflow: retention: prune", "worker_id", w.id, "error", err, "runs", res.Runs)
		case ran && res.Runs > 0:
			w.log.Info("qflow retention pruned runs", "worker_id", w.id, "runs", res.Runs, "steps", res.Steps, "tasks", res.Tasks)
		}
	}
}

// pruneOnce prunes on one connection holding the retention lock; ran is
// false when another session holds it.
func (w *Worker) pruneOnce(ctx context.Context, opts PruneOptions) (res PruneResult, ran bool, err error) {
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return res, false, err
	}
	defer conn.Release()
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::bigint)`, retentionLock).Scan(&ran); err != nil || !ran {
		if err == nil {
			w.log.Debug("qflow: retention: another session is pruning; skipping this turn", "worker_id", w.id)
		}
		return res, false, err
	}
	defer func() {
		// A session lock outlives the statement: give it back, or drop the
		// connection if that fails or finds no lock to give back (behind a
		// transaction-mode pooler the statements may reach other server
		// sessions; session pooling is needed), so it cannot stay held.
		var unlocked bool
		if uerr := conn.QueryRow(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1::bigint)`, retentionLock).Scan(&unlocked); uerr != nil || !unlocked {
			w.log.Warn("qflow: retention: could not release the prune lock; closing its connection", "worker_id", w.id, "error", uerr)
			conn.Conn().Close(context.Background())
		}
	}()
	res, err = prune(ctx, conn, opts)
	return res, true, err
}
